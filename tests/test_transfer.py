"""Kernel transfer learning (rfmfast.models.transfer, rfmfast.models.learning_curve,
rfmfast.recipes.transfer): projection is KernelRidge on the source's outputs, translation is the
source plus KernelRidge on the residuals, for callable and fitted rfmfast sources; clone keeps
the source; bad input is refused before any work; learning curves and the scaling-law fit; and
the digits reproduction at CI size (transferred >= target-only baseline at n = 20)."""

import argparse

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.model_selection import GridSearchCV
from sklearn.utils._param_validation import InvalidParameterError
from sklearn.utils.estimator_checks import parametrize_with_checks

from rfmfast import KernelRidge, RFMClassifier, RFMRegressor
from rfmfast.models.learning_curve import fit_scaling_law, learning_curve
from rfmfast.models.transfer import (
    ProjectedKernelClassifier,
    ProjectedKernelRegressor,
    TranslatedKernelClassifier,
    TranslatedKernelRegressor,
    identity,
    source_outputs,
)
from rfmfast.recipes import transfer as recipe

KR = dict(kernel="laplace", bandwidth=10.0, reg=0.0, dtype="float64")


def data(n=60, d=5, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d))
    return X / np.linalg.norm(X, axis=1, keepdims=True)


def src_fn(X):
    """A fixed 3-output source: smooth functions of the inputs."""
    X = np.asarray(X, dtype=np.float64)
    return np.stack([np.sin(2 * X[:, 0]), X[:, 1] * X[:, 2], np.cos(X[:, 3] + X[:, 4])], axis=1)


class Spy:
    """A callable source that counts its calls (to see that bad input stops before any work)."""

    def __init__(self, fn=src_fn):
        self.fn, self.calls = fn, 0

    def __call__(self, X):
        self.calls += 1
        return self.fn(X)


# --- projection --------------------------------------------------------------------------------


def test_projection_regressor_is_kernel_ridge_on_source_outputs():
    X, Q = data(60), data(30, seed=1)
    y = X[:, 0] - 2 * X[:, 1] ** 2
    model = ProjectedKernelRegressor(src_fn, bandwidth=3.0).fit(X, y)
    ref = KernelRidge(**{**KR, "bandwidth": 3.0}).fit(src_fn(X), y)
    np.testing.assert_allclose(model.predict(Q), ref.predict(src_fn(Q)), rtol=1e-10, atol=1e-12)
    assert model.predict(Q).shape == (30,) and model.n_source_outputs_ == 3
    assert model.n_features_in_ == 5
    # ridgeless: the projected model interpolates its training targets
    np.testing.assert_allclose(model.predict(X), y, atol=1e-7)
    # a 2-output target from a 3-output source (the output counts may differ)
    Y2 = np.stack([y, -y], axis=1)
    assert ProjectedKernelRegressor(src_fn).fit(X, Y2).predict(Q).shape == (30, 2)


def test_projection_classifier_new_label_set():
    X, Q = data(90), data(40, seed=1)
    lab = np.array(["a", "b", "c"])[(src_fn(X)[:, 0] > 0).astype(int) + (X[:, 2] > 0.3)]
    model = ProjectedKernelClassifier(src_fn).fit(X, lab)
    assert list(model.classes_) == ["a", "b", "c"]
    Y = (lab[:, None] == model.classes_[None]).astype(float)
    ref = KernelRidge(**KR).fit(src_fn(X), Y)
    S = ref.predict(src_fn(Q))
    np.testing.assert_allclose(model.decision_function(Q), S, rtol=1e-10, atol=1e-12)
    assert (model.predict(Q) == model.classes_[S.argmax(1)]).all()
    np.testing.assert_allclose(model.predict_proba(Q).sum(1), 1.0)
    assert model.score(X, lab) == 1.0  # ridgeless: interpolates the one-hot labels
    # classes= keeps a column for a class absent from the sample
    full = ProjectedKernelClassifier(src_fn, classes=["a", "b", "c", "d"]).fit(X, lab)
    assert full.decision_function(Q).shape == (40, 4)


def test_identity_source_is_the_target_only_kernel_machine():
    X, Q = data(50), data(20, seed=1)
    y = X[:, 0] * X[:, 1]
    base = ProjectedKernelRegressor(identity).fit(X, y)
    np.testing.assert_allclose(base.predict(Q), KernelRidge(**KR).fit(X, y).predict(Q), rtol=1e-10)


# --- translation -------------------------------------------------------------------------------


def test_translation_regressor_is_source_plus_residual_fit():
    X, Q = data(60), data(30, seed=1)
    Y = src_fn(X) + 0.3 * X[:, :3] ** 2
    model = TranslatedKernelRegressor(src_fn).fit(X, Y)
    corr = KernelRidge(**KR).fit(X, Y - src_fn(X))
    np.testing.assert_allclose(
        model.predict(Q), src_fn(Q) + corr.predict(Q), rtol=1e-10, atol=1e-12
    )
    assert model.M_ is None  # a callable source has no M_
    np.testing.assert_allclose(model.predict(X), Y, atol=1e-7)
    # 1-D y with a 1-output source
    one = TranslatedKernelRegressor(lambda Z: src_fn(Z)[:, 0]).fit(X, Y[:, 0])
    assert one.predict(Q).shape == (30,)
    np.testing.assert_allclose(one.predict(Q), model.predict(Q)[:, 0], atol=1e-8)


def test_translation_classifier_kernel_ridge_source_needs_classes():
    X, Q = data(120), data(40, seed=1)
    lab = (X[:, 0] > 0).astype(int) + 2 * (X[:, 1] > 0)  # 4 classes
    src = KernelRidge(**KR).fit(X[:80], np.eye(4)[lab[:80]])
    few = np.isin(lab[80:], [0, 1, 2])  # a target sample missing class 3
    Xt, yt = X[80:][few], lab[80:][few]
    with pytest.raises(ValueError, match="pass classes="):
        TranslatedKernelClassifier(src).fit(Xt, yt)
    model = TranslatedKernelClassifier(src, classes=[0, 1, 2, 3]).fit(Xt, yt)
    corr = KernelRidge(**KR).fit(Xt, np.eye(4)[yt] - src.predict(Xt))
    S = src.predict(Q) + corr.predict(Q)
    np.testing.assert_allclose(model.decision_function(Q), S, rtol=1e-10, atol=1e-12)
    assert (model.predict(Q) == S.argmax(1)).all()


def test_rfm_sources_carry_their_M():
    X, Q = data(80, d=4), data(30, d=4, seed=1)
    y = X[:, 0] ** 2 + X[:, 1]
    rfm = RFMRegressor(iters=2, reg=1e-3, dtype="float64").fit(X, y)
    assert not np.allclose(rfm.M_, np.eye(4))
    t_src = TranslatedKernelRegressor(rfm).fit(X, y + 0.5 * X[:, 2])
    np.testing.assert_array_equal(t_src.M_, rfm.M_)
    corr = KernelRidge(**KR, M=rfm.M_).fit(X, y + 0.5 * X[:, 2] - rfm.predict(X))
    np.testing.assert_allclose(t_src.predict(Q), rfm.predict(Q) + corr.predict(Q), rtol=1e-9)
    t_id = TranslatedKernelRegressor(rfm, M=None).fit(X, y + 0.5 * X[:, 2])
    assert t_id.M_ is None and not np.allclose(t_id.predict(Q), t_src.predict(Q))
    # projection on an RFM regressor's single output
    p = ProjectedKernelRegressor(rfm).fit(X, np.sign(y))
    ref = KernelRidge(**KR).fit(rfm.predict(X)[:, None], np.sign(y))
    np.testing.assert_allclose(p.predict(Q), ref.predict(rfm.predict(Q)[:, None]), rtol=1e-9)


def test_rfm_classifier_source_gives_both_binary_columns():
    X, Q = data(80, d=4), data(30, d=4, seed=1)
    lab = np.where(X[:, 0] + X[:, 1] > 0, "pos", "neg")
    rfm = RFMClassifier(iters=1, reg=1e-3, dtype="float64").fit(X, lab)
    F = source_outputs(rfm, Q)
    assert F.shape == (30, 2)  # not decision_function's (30,) difference
    np.testing.assert_allclose(F[:, 1] - F[:, 0], rfm.decision_function(Q), rtol=1e-6, atol=1e-9)
    model = TranslatedKernelClassifier(rfm).fit(X, lab)
    assert list(model.classes_) == list(rfm.classes_)  # the source's classes
    np.testing.assert_array_equal(model.M_, rfm.M_)
    Y = (lab[:, None] == rfm.classes_[None]).astype(float)
    corr = KernelRidge(**KR, M=rfm.M_).fit(X, Y - source_outputs(rfm, X))
    S = source_outputs(rfm, Q) + corr.predict(Q)
    np.testing.assert_allclose(model.decision_function(Q), S[:, 1] - S[:, 0], rtol=1e-8)
    # projection from the 2 source scores onto a 3-class task
    lab3 = (X[:, 2] > -0.2).astype(int) + (X[:, 3] > 0.4)
    assert ProjectedKernelClassifier(rfm).fit(X, lab3).decision_function(Q).shape == (30, 3)


# --- scikit-learn conventions ------------------------------------------------------------------


@pytest.mark.parametrize(
    "cls", [ProjectedKernelRegressor, TranslatedKernelRegressor, ProjectedKernelClassifier]
)
def test_clone_keeps_the_fitted_source_and_params(cls):
    X = data(40)
    src = KernelRidge(**KR).fit(X, src_fn(X))
    model = cls(src, bandwidth=4.0, reg=1e-6)
    params = model.get_params(deep=False)
    assert params["source"] is src and params["bandwidth"] == 4.0 and params["reg"] == 1e-6
    twin = clone(model)
    assert twin.source is src and twin.get_params(deep=False) == params
    twin.set_params(bandwidth=2.0)
    assert twin.bandwidth == 2.0 and model.bandwidth == 4.0
    y = (X[:, 0] > 0).astype(int) if "Classifier" in cls.__name__ else src_fn(X) + X[:, :3] / 10
    fitted = clone(model).fit(X, y)
    assert not hasattr(clone(fitted), "n_features_in_")  # clone is unfitted, source still fitted


@parametrize_with_checks(
    [ProjectedKernelRegressor(device="cpu"), ProjectedKernelClassifier(device="cpu")]
)
def test_sklearn_estimator_checks(estimator, check):
    """scikit-learn's checks on the identity source (the target-only kernel machine). The
    translated estimators are not run through them: their y must have the source's outputs,
    which a fixed source cannot match for every check's data."""
    check(estimator)


def test_grid_search_over_the_target_kernel_machine():
    X = data(80)
    src = KernelRidge(**KR).fit(X, src_fn(X)[:, 0])
    y = src_fn(X)[:, 0] + X[:, 1]
    gs = GridSearchCV(
        TranslatedKernelRegressor(src), {"bandwidth": [1.0, 10.0], "reg": [0.0, 1e-3]}, cv=3
    )
    gs.fit(X, y[:, None])
    assert gs.best_estimator_.source is src
    assert gs.best_estimator_.predict(X[:5]).shape == (5, 1)


def test_bad_input_is_refused_before_any_work():
    X, y = data(30), data(30)[:, 0]
    spy = Spy()
    bad = [
        (ProjectedKernelRegressor(spy, bandwidth=-1.0), X, y, InvalidParameterError),
        (ProjectedKernelRegressor(spy, kernel="cosine"), X, y, InvalidParameterError),
        (ProjectedKernelRegressor(spy, reg=-1.0), X, y, InvalidParameterError),
        (ProjectedKernelRegressor(3), X, y, InvalidParameterError),
        (ProjectedKernelRegressor(KernelRidge), X, y, TypeError),
        (ProjectedKernelRegressor(KernelRidge()), X, y, NotFittedError),
        (ProjectedKernelRegressor(spy), np.where(X > 0.5, np.nan, X), y, ValueError),
        (ProjectedKernelRegressor(spy), X, y[:-1], ValueError),
        (ProjectedKernelRegressor(spy), X[0], y[:1], ValueError),
        (ProjectedKernelRegressor(spy), X, None, ValueError),
        (TranslatedKernelRegressor(spy, M="learned"), X, y, InvalidParameterError),
        (TranslatedKernelRegressor(spy, M=np.eye(3)), X, y, ValueError),
        (ProjectedKernelClassifier(spy), X, y, ValueError),  # continuous labels
        (ProjectedKernelClassifier(spy), X, np.zeros(30, int), ValueError),  # one class
        (TranslatedKernelClassifier(spy, classes=[0, 1, 2]), X, np.arange(30) % 4, ValueError),
    ]
    for model, Xb, yb, err in bad:
        with pytest.raises(err):
            model.fit(Xb, yb)
    assert spy.calls == 0
    # a fitted source on another number of features
    src = KernelRidge(**KR).fit(X[:, :4], y)
    with pytest.raises(ValueError, match="fitted on 4"):
        ProjectedKernelRegressor(src).fit(X, y)


def test_bad_source_outputs_and_predict_inputs():
    X, y = data(30), data(30)[:, 0]
    cases = [
        (lambda Z: np.ones((len(Z) + 1, 2)), "shape"),
        (lambda Z: np.full((len(Z), 2), np.nan), "NaN"),
        (lambda Z: np.array(["x"] * len(Z)), "non-numeric"),
    ]
    for fn, msg in cases:
        with pytest.raises(ValueError, match=msg):
            ProjectedKernelRegressor(fn).fit(X, y)
    with pytest.raises(ValueError, match="source's outputs"):  # 3 source outputs, 1-D y
        TranslatedKernelRegressor(src_fn).fit(X, y)
    two = (X[:, 0] > 0).astype(int)
    with pytest.raises(ValueError, match="pass classes="):  # 3 columns, 2 labels, no classes_
        TranslatedKernelClassifier(src_fn).fit(X, two)
    with pytest.raises(ValueError, match="one source output column per class"):
        TranslatedKernelClassifier(src_fn, classes=[0, 1]).fit(X, two)
    model = ProjectedKernelRegressor(src_fn)
    with pytest.raises(NotFittedError):
        model.predict(X)
    model.fit(X, y)
    with pytest.raises(ValueError, match="features"):
        model.predict(X[:, :4])


# --- learning curves ---------------------------------------------------------------------------


def test_scaling_law_fits():
    n = np.array([10, 20, 40, 80, 160])
    law = fit_scaling_law(n, 0.2 + 0.1 * np.log(n), "log")
    assert law.params["a"] == pytest.approx(0.2) and law.params["b"] == pytest.approx(0.1)
    assert law.r2 == pytest.approx(1.0) and "ln n" in str(law)
    power = fit_scaling_law(n, 1 - 2.0 * n**-0.5, "power")
    assert power.params["c"] == pytest.approx(2.0) and power.params["beta"] == pytest.approx(0.5)
    np.testing.assert_allclose(power(n), 1 - 2.0 * n**-0.5)
    with pytest.raises(ValueError, match="below 1"):
        fit_scaling_law(n, np.ones(5), "power")
    with pytest.raises(ValueError, match="two or more"):
        fit_scaling_law([10, 10], [0.1, 0.2])


def test_learning_curve_shapes_seeds_and_bad_args():
    X = data(120)
    y = (X[:, 0] > 0).astype(int)
    est = ProjectedKernelClassifier(identity, classes=[0, 1])
    lc = learning_curve(est, X[:80], y[:80], [10, 20, 40], [0, 1, 2], X[80:], y[80:])
    assert lc.scores.shape == (3, 3) and lc.mean.shape == (3,) and lc.law.law == "log"
    np.testing.assert_allclose(lc.mean, lc.scores.mean(1))
    again = learning_curve(est, X[:80], y[:80], [10, 20, 40], [0, 1, 2], X[80:], y[80:])
    np.testing.assert_array_equal(lc.scores, again.scores)  # seeded
    assert str(lc.table()).count("\n") == 3
    held_out = learning_curve(est, X, y, [10, 30], [0])  # no test set: the rows left out
    assert held_out.scores.shape == (2, 1)
    for kw, err in [
        (dict(sizes=[0]), ValueError),
        (dict(sizes=[81]), ValueError),
        (dict(sizes=[1.5]), ValueError),
        (dict(seeds=[-1]), ValueError),
        (dict(law="exp"), ValueError),
        (dict(y_test=None), ValueError),
    ]:
        args = dict(sizes=[10], seeds=[0], X_test=X[80:], y_test=y[80:])
        args.update(kw)
        with pytest.raises(err):
            learning_curve(est, X[:80], y[:80], **args)


# --- the reproduction, CI size ----------------------------------------------


@pytest.fixture(scope="module")
def digits():
    strong = recipe.digits_transfer("strong", "digits", seed=0)
    mild = recipe.digits_transfer("mild", "mod3", seed=0)
    return strong, mild, recipe.source_model(strong["Xs"], strong["ys"])


SEEDS = (0, 1, 2, 3, 4)


def _curve(est, d, sizes=(20,)):
    return learning_curve(est, d["X"], d["y"], sizes, SEEDS, d["X_test"], d["y_test"])


def test_split_and_corruption(digits):
    strong, mild, src = digits
    assert strong["Xs"].shape == (900, 64) and strong["X"].shape == (497, 64)
    assert strong["X_test"].shape == (400, 64) and set(mild["y"]) == {0, 1, 2}
    np.testing.assert_allclose(np.linalg.norm(strong["X"], axis=1), 1.0)
    # the source interpolates its clean training digits
    assert (src.predict(strong["Xs"]).argmax(1) == strong["ys"]).all()
    img = np.arange(64.0).reshape(1, 64)
    rolled = recipe.corrupt(img, roll=1).reshape(8, 8)
    np.testing.assert_array_equal(rolled[:, 1], np.arange(0, 64, 8))
    noisy = recipe.corrupt(np.full((200, 64), 5.0), noise=0.3, seed=0)
    assert 0.25 < np.mean(noisy != 5.0) < 0.35 and set(np.unique(noisy)) == {0.0, 5.0, 16.0}


def test_translation_beats_the_baseline_under_a_strong_shift(digits):
    """Expected: n = 20, translation 0.479 vs target-only 0.335 (an independent port); here the mean
    over 5 seeds of the 20-sample draws (measured: 0.390 vs 0.261)."""
    strong, _, src = digits
    classes = np.arange(10)
    base = _curve(ProjectedKernelClassifier(identity, classes=classes), strong)
    tran = _curve(TranslatedKernelClassifier(src, classes=classes), strong)
    assert tran.mean[0] >= base.mean[0]
    assert tran.mean[0] > base.mean[0] + 0.05  # a clear margin, not a tie


def test_projection_to_a_new_task_beats_the_baseline_under_a_mild_shift(digits):
    """Expected: digit mod 3, n = 20, projection 0.831 vs 0.650; measured: 0.799 vs 0.610."""
    _, mild, src = digits
    base = _curve(ProjectedKernelClassifier(identity, classes=np.arange(3)), mild)
    proj = _curve(ProjectedKernelClassifier(src, classes=np.arange(3)), mild)
    assert proj.mean[0] >= base.mean[0]
    assert proj.mean[0] > base.mean[0] + 0.05


def test_recipe_runs_and_plots(tmp_path, capsys):
    parser = argparse.ArgumentParser()
    recipe.register(parser.add_subparsers())
    out = tmp_path / "transfer.png"
    args = parser.parse_args(["transfer", "--sizes", "20,40", "--seeds", "2", "--out", str(out)])
    pytest.importorskip("matplotlib")
    assert args.func(args) == 0
    text = capsys.readouterr().out
    assert "translated" in text and "projected" in text and "law" in text
    assert out.stat().st_size > 0
    with pytest.raises(SystemExit):
        parser.parse_args(["transfer", "--sizes", "0,20"])
