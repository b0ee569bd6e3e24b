"""The solves and estimators on CUDA tensors give the CPU's answers (marker ``gpu``; skipped
without a CUDA device). Run on a GPU machine with ``pytest -m gpu`` (bench/gpu_check.sh does).

The ops themselves are checked against the float64 reference in tests/test_<op>.py; these
tests check the code above them (solvers, RFM and lin-RFM loops) for device handling: nothing is
silently moved to the CPU, outputs come back where the inputs were, and the numbers agree with
the CPU run to the precision used.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from _cases import low_rank_data, rel_err

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]


@pytest.mark.parametrize("solver", ["cholesky", "cg"])
@pytest.mark.parametrize("kernel", ["laplace", "gaussian", "l1_laplace"])
def test_kernel_solve_on_cuda_matches_cpu(solver, kernel):
    from rfmfast import kernel_solve

    X, y = low_rank_data(700, 9, seed=1)
    M = np.diag(np.linspace(0.5, 2.0, 9))
    opts = dict(kernel=kernel, bandwidth=3.0, M=M, reg=1e-2, solver=solver)
    Xc = torch.from_numpy(X)
    a_cpu = kernel_solve(Xc, torch.from_numpy(y), **opts)
    a_gpu = kernel_solve(Xc.cuda(), torch.from_numpy(y).cuda(), **opts)
    assert a_gpu.device.type == "cuda"
    tol = 1e-10 if solver == "cholesky" else 1e-5  # cg stops at its tolerance on each side
    assert rel_err(a_gpu.cpu(), a_cpu) < tol


def test_rfm_regressor_on_cuda_matches_cpu():
    from rfmfast import RFMRegressor

    X, y = low_rank_data(1500, 12, seed=2)
    Xt, yt = low_rank_data(500, 12, seed=3)
    kw = dict(
        kernel="laplace",
        bandwidth=10.0,
        reg=1e-3,
        iters=3,
        dtype="float64",
        solver="cholesky",
        random_state=0,
    )
    cpu = RFMRegressor(device="cpu", **kw).fit(X, y)
    gpu = RFMRegressor(device="cuda", **kw).fit(X, y)
    assert rel_err(torch.from_numpy(gpu.M_), torch.from_numpy(cpu.M_)) < 1e-8
    p_cpu, p_gpu = cpu.predict(Xt), gpu.predict(Xt)
    assert isinstance(p_gpu, np.ndarray)
    assert rel_err(torch.from_numpy(p_gpu), torch.from_numpy(p_cpu)) < 1e-8
    # torch input on the GPU: the predictions stay there
    out = gpu.predict(torch.from_numpy(Xt).cuda())
    assert out.device.type == "cuda"


def test_rfm_float32_on_cuda_learns_the_target():
    """The default float32 path (Triton ops, TF32 off by default) reaches the CPU's test MSE."""
    from rfmfast import RFMRegressor

    X, y = low_rank_data(3000, 20, seed=4)
    Xt, yt = low_rank_data(1000, 20, seed=5)
    mse = {}
    for dev in ("cpu", "cuda"):
        m = RFMRegressor(bandwidth=10.0, reg=1e-3, iters=4, device=dev, random_state=0).fit(X, y)
        mse[dev] = float(np.mean((m.predict(Xt) - yt) ** 2))
    assert mse["cuda"] < 0.5 * np.var(yt)
    assert abs(mse["cuda"] - mse["cpu"]) <= 0.05 * mse["cpu"]


def test_rfm_classifier_on_cuda_matches_cpu():
    from rfmfast import RFMClassifier

    rng = np.random.default_rng(6)
    X = rng.normal(size=(800, 6))
    y = (X[:, 0] * X[:, 1] > 0).astype(int) + (X[:, 2] > 1)
    kw = dict(bandwidth=5.0, iters=2, dtype="float64", random_state=0)
    cpu = RFMClassifier(device="cpu", **kw).fit(X, y)
    gpu = RFMClassifier(device="cuda", **kw).fit(X, y)
    np.testing.assert_array_equal(gpu.predict(X), cpu.predict(X))
    np.testing.assert_allclose(gpu.predict_proba(X), cpu.predict_proba(X), atol=1e-8)


def test_device_auto_picks_cuda():
    from rfmfast import RFMRegressor

    X, y = low_rank_data(300, 6, seed=7)
    m = RFMRegressor(iters=1, device="auto").fit(X, y)
    assert m._X_t.device.type == "cuda"


def test_linrfm_on_cuda_tensors():
    """The completer runs on the GPU and gives the CPU's completion."""
    from rfmfast import LinRFMCompleter

    rng = np.random.default_rng(8)
    Y = rng.normal(size=(120, 3)) @ rng.normal(size=(3, 90))
    mask = rng.random(Y.shape) < 0.4
    a = LinRFMCompleter(max_iter=30, device="cpu").fit(Y, mask)
    b = LinRFMCompleter(max_iter=30, device="cuda").fit(Y, mask)
    np.testing.assert_allclose(b.completed_, a.completed_, rtol=0, atol=1e-8)
    r, c = np.nonzero(~mask)
    np.testing.assert_allclose(b.predict(r, c), a.predict(r, c), rtol=0, atol=1e-8)
