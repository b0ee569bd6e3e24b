"""The feature-learning papers' claims, reproduced at CI size with rfmfast.nn.experiments (the
full-size figures are in docs/nn.md): the neural feature ansatz, catapults in GD and SGD, and the
quadratic model's catapult phase."""

import numpy as np
import pytest

from rfmfast.nn import experiments as E

pytestmark = [
    pytest.mark.slow,
    pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning"),
]


def test_neural_feature_ansatz():
    r = E.nfa_experiment()  # the paper's setting at full size: n = 1000, d = 50, 100 epochs
    assert r["corr_p0.5"] > 0.95
    assert r["corr_init_p0.5"] < r["corr_p0.5"] - 0.15
    assert r["test_mse"] < 0.5 * r["target_var"]
    low = E.nfa_experiment(target="lowrank")
    assert low["corr_p0.5"] > 0.95
    assert low["corr_p0.5"] > low["corr_p1"] + 0.03  # power 1/2 fits better than 1


def test_catapults_in_gd_raise_alignment():
    below = E.catapult_run(0.9, width=512, steps=500)
    above = E.catapult_run(1.5, width=512, steps=500)
    assert len(below["spikes"]) == 0
    assert len(above["spikes"]) == 1 and above["spikes"][0].height > 10
    assert np.isfinite(above["final_loss"]) and above["final_loss"] < 1e-2 * above["losses"][0]
    assert above["test_mse"] < below["test_mse"]
    assert above["alignment"] > below["alignment"]


def test_smaller_sgd_batches_give_more_catapults():
    small = E.catapult_run(0.9, batch=8, epochs=50, width=512)
    large = E.catapult_run(0.9, batch=128, epochs=50, width=512)
    assert len(small["spikes"]) > max(10, len(large["spikes"]))
    assert small["alignment"] > large["alignment"]
    assert small["test_mse"] < large["test_mse"]


def monotone(losses):
    return bool(np.all(np.diff(losses) <= 1e-12 * losses[0]))


def test_quadratic_model_catapult_phase():
    sub = E.quadratic_run(1.5, width=2048, steps=150)
    for name in ("network", "quadratic", "linear"):
        L = sub[name]["losses"]
        assert monotone(L) and L[-1] < 0.05 * L[0], name
    mid = E.quadratic_run(3.0, width=2048, steps=150)
    for name in ("network", "quadratic"):
        L, spikes = mid[name]["losses"], mid[name]["spikes"]
        assert len(spikes) == 1 and spikes[0].height > 50, name
        assert np.isfinite(L[-1]) and L[-1] < L[0], name
        assert mid[name]["lambda_end"] < mid["two_over_lr"] < mid["lambda0"], name
    assert not np.isfinite(mid["linear"]["losses"][-1])  # the linear model diverges
    over = E.quadratic_run(4.6, width=2048, steps=150)
    for name in ("network", "quadratic", "linear"):
        assert not np.isfinite(over[name]["losses"][-1]), name
