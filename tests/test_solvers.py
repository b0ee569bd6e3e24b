"""kernel_solve: Cholesky and preconditioned CG against a dense float64 solve; jitter; auto."""

import warnings

import numpy as np
import pytest
import torch
from sklearn.exceptions import ConvergenceWarning

import rfmfast
from rfmfast.solvers import JitterWarning, cg_solve, cholesky, cholesky_solve
from rfmfast.solvers.cg import NystroemPreconditioner


def dense_solve(X, y, reg, **kw):
    K = rfmfast.kernel_matrix(X, backend="reference", **kw).to(torch.float64)
    return torch.linalg.solve(K + reg * torch.eye(len(X), dtype=torch.float64), y.to(torch.float64))


def data(n=203, d=7, c=3, dtype=torch.float64):
    X = torch.randn(n, d, dtype=dtype) * 0.5
    y = torch.randn(n, c, dtype=dtype)
    return X, y


@pytest.mark.parametrize("kernel", ["laplace", "gaussian", "l1_laplace"])
@pytest.mark.parametrize("c", [1, 3])
def test_cholesky_matches_dense(kernel, c):
    X, y = data(c=c)
    M = torch.randn(7, 7, dtype=torch.float64)
    M = M @ M.T / 7
    kw = dict(kernel=kernel, bandwidth=2.0, M=M)
    alpha, info = rfmfast.kernel_solve(X, y, reg=1e-3, solver="cholesky", return_info=True, **kw)
    assert info.solver == "cholesky" and info.jitter == 0.0
    assert info.memory_bytes == 203 * 203 * 8
    ref = dense_solve(X, y, 1e-3, **kw)
    assert float((alpha - ref).norm() / ref.norm()) < 1e-8


def test_float32_and_numpy_and_vector_y():
    X, y = data(c=1)
    ref = dense_solve(X, y, 1e-2)[:, 0]
    a = rfmfast.kernel_solve(X.numpy(), y[:, 0].numpy(), reg=1e-2, solver="cholesky")
    assert isinstance(a, np.ndarray) and a.shape == (203,)
    assert np.abs(a - ref.numpy()).max() / np.abs(ref.numpy()).max() < 1e-8
    a32 = rfmfast.kernel_solve(X, y[:, 0], reg=1e-2, dtype=torch.float32, solver="cholesky")
    assert a32.dtype == torch.float32 and a32.shape == (203,)
    assert float((a32.double() - ref).norm() / ref.norm()) < 1e-3


def test_jitter_on_singular_matrix_warns_and_is_recorded():
    X, y = data(n=60, c=2)
    X = torch.cat([X, X[:5]])  # duplicated rows: K singular, reg = 0
    y = torch.cat([y, y[:5]])
    with pytest.warns(JitterWarning, match="jitter"):
        alpha, info = rfmfast.kernel_solve(X, y, reg=0.0, solver="cholesky", return_info=True)
    assert info.jitter > 0
    # the answer is that of the system actually solved, (K + jitter I) alpha = y (backward
    # stable: a small residual; the system is too ill-conditioned to compare alphas)
    K = rfmfast.kernel_matrix(X) + info.jitter * torch.eye(len(X), dtype=torch.float64)
    assert float((K @ alpha - y).norm() / y.norm()) < 1e-6


def test_cholesky_gives_up_with_an_error(monkeypatch):
    X, y = data(n=40, c=1)
    X = torch.cat([X, X])
    y = torch.cat([y, y])
    monkeypatch.setattr(cholesky, "MAX_TRIES", 0)
    with pytest.raises(np.linalg.LinAlgError, match="Cholesky"):
        cholesky_solve(X, y, reg=0.0)


@pytest.mark.parametrize("kernel", ["laplace", "gaussian"])
def test_cg_converges_to_dense_solution(kernel):
    X, y = data(n=300, c=2)
    ref = dense_solve(X, y, 1e-2, kernel=kernel, bandwidth=3.0)
    alpha, info = rfmfast.kernel_solve(
        X,
        y,
        kernel=kernel,
        bandwidth=3.0,
        reg=1e-2,
        solver="cg",
        rank=60,
        tol=1e-10,
        return_info=True,
    )
    assert info.solver == "cg" and info.converged and info.residual <= 1e-10
    assert 0 < info.iterations < 200 and info.rank == 60
    assert float((alpha - ref).norm() / ref.norm()) < 1e-7


def test_preconditioner_and_warm_start_cut_iterations():
    X, y = data(n=300, c=1)
    kw = dict(reg=1e-3, tol=1e-8, max_iter=500)
    _, plain = cg_solve(X, y, rank=0, **kw)
    alpha, pre = cg_solve(X, y, rank=100, **kw)
    assert plain.converged and pre.converged
    assert pre.iterations < plain.iterations / 2, (pre.iterations, plain.iterations)
    _, warm = cg_solve(X, y, rank=100, x0=alpha, **kw)
    assert warm.iterations == 0 and warm.residual <= 1e-8


def test_cg_reports_non_convergence_honestly():
    X, y = data(n=300, c=2)
    with pytest.warns(ConvergenceWarning, match="max_iter was reached"):
        alpha, info = cg_solve(X, y, reg=1e-4, rank=0, tol=1e-12, max_iter=3)
    assert info.iterations == 3 and not info.converged and info.residual > 1e-12
    assert info.status == "max_iter" and "did not converge" in info.message
    K = rfmfast.kernel_matrix(X) + 1e-4 * torch.eye(300, dtype=torch.float64)
    true = float(((y - K @ alpha).norm(dim=0) / y.norm(dim=0)).max())
    assert abs(info.residual - true) <= 1e-6 * true


def test_nystroem_preconditioner_is_exact_at_full_rank():
    X, y = data(n=50, c=2)
    reg = 1e-2
    P = NystroemPreconditioner(
        X,
        kernel="laplace",
        bandwidth=10.0,
        M=None,
        reg=reg,
        rank=50,
        generator=torch.Generator().manual_seed(0),
    )
    K = rfmfast.kernel_matrix(X) + reg * torch.eye(50, dtype=torch.float64)
    # with m = n, P^{-1} (K + reg I) has all eigenvalues equal (to lam_min + reg)
    ev = torch.linalg.eigvals(P(K)).real
    assert float(ev.max() / ev.min()) < 1.01


def test_auto_chooses_by_memory(capsys):
    X, y = data(n=100, c=1)
    _, info = rfmfast.kernel_solve(X, y, solver="auto", verbose=True, return_info=True)
    assert info.solver == "cholesky" and "fits the memory budget" in info.reason
    _, info = rfmfast.kernel_solve(
        X, y, solver="auto", memory_budget=1000, verbose=True, return_info=True, rank=20
    )
    assert info.solver == "cg" and "over the memory budget" in info.reason
    out = capsys.readouterr().out
    assert "kernel_solve: cholesky" in out and "kernel_solve: cg" in out


def test_bad_input():
    X, y = data(n=20, c=1)
    with pytest.raises(ValueError, match="rows"):
        rfmfast.kernel_solve(X, y[:10])
    Xn = X.clone()
    Xn[3, 2] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        rfmfast.kernel_solve(Xn, y)
    with pytest.raises(ValueError, match="reg"):
        rfmfast.kernel_solve(X, y, reg=-1)
    with pytest.raises(ValueError, match="solver"):
        rfmfast.kernel_solve(X, y, solver="lu")
    with pytest.raises(ValueError, match="x0"):
        rfmfast.kernel_solve(X, y, solver="cg", x0=torch.zeros(5, 1, dtype=torch.float64))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a good solve warns about nothing
        rfmfast.kernel_solve(X, y, reg=1e-3)


def test_auto_policy():
    from rfmfast.solvers.auto import choose_solver

    cpu, big = torch.device("cpu"), 1 << 40
    assert choose_solver(20_000, 1e-3, 4, cpu, big)[0] == "cholesky"
    assert choose_solver(20_000, 1e-3, 4, cpu, 20_000**2 * 4 - 1)[0] == "cg"  # does not fit
    kind, why = choose_solver(5_000, 0.0, 4, cpu, 1000)
    assert kind == "cg" and "reg = 0" in why


def test_cg_stops_at_the_float32_floor():
    X, y = data(n=1500, d=10, c=2, dtype=torch.float32)
    with pytest.warns(ConvergenceWarning, match="rounding floor of float32"):
        _, info = cg_solve(X, y, reg=1e-3, tol=1e-9, max_iter=500, rank=100)
    assert not info.converged and info.iterations < 500 and 1e-9 < info.residual < 1e-2
    assert info.status == "stalled"
    _, info64 = cg_solve(X.double(), y.double(), reg=1e-3, tol=1e-9, max_iter=500, rank=100)
    assert info64.converged and info64.residual <= 1e-9


def _peak_rss_reset():
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # resets VmHWM, the peak resident set size
    except OSError:
        pytest.skip("needs Linux /proc/self/clear_refs to measure the peak memory")


def _peak_rss():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    pytest.skip("no VmHWM in /proc/self/status")


def test_cholesky_holds_one_n_by_n_buffer():
    n = 3000
    X, y = data(n=n, d=5, c=1)
    cholesky_solve(X[:100], y[:100])  # warm up allocator and libraries
    import gc

    gc.collect()
    with open("/proc/self/status") as f:
        base = next((int(ln.split()[1]) * 1024 for ln in f if ln.startswith("VmRSS:")), None)
    _peak_rss_reset()
    cholesky_solve(X, y, reg=1e-3)
    grown = _peak_rss() - base
    assert grown < 1.5 * n * n * 8, (
        f"peak grew by {grown / 2**20:.0f} MiB; K is {n * n * 8 / 2**20:.0f} MiB"
    )


def test_cholesky_workspace_is_reused_and_gives_the_same_solution():
    X, y = data(n=500, d=5, c=2)
    a, _ = cholesky_solve(X, y, reg=1e-2)
    ws = torch.full((500, 500), float("nan"), dtype=X.dtype)
    ptr = ws.data_ptr()
    b, _ = cholesky_solve(X, y, reg=1e-2, workspace=ws)
    assert ws.data_ptr() == ptr and not bool(torch.isnan(ws.tril()).any())
    assert torch.allclose(b, a, rtol=1e-10, atol=1e-12)


def test_cholesky_solve_validates_before_any_work():
    """Called directly (not through kernel_solve), bad input still gets the ops' clear errors on
    every backend, never a jittered answer for NaN points."""
    X, y = data(n=50, d=3, c=1)
    bad = X.clone()
    bad[3, 1] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        cholesky_solve(bad, y)
    with pytest.raises(ValueError, match="bandwidth"):
        cholesky_solve(X, y, bandwidth=0.0)
    with pytest.raises(ValueError, match="kernel"):
        cholesky_solve(X, y, kernel="laplce")
    with pytest.raises(ValueError, match="semi-definite"):
        cholesky_solve(X, y, M=-torch.eye(3, dtype=X.dtype))


def test_backend_env_without_a_factorization_still_solves(monkeypatch):
    """RFMFAST_BACKEND=triton (which has no Cholesky) leaves the factorization to the best
    backend for the device; the kernel matrix still comes from triton."""
    from rfmfast.backends import available_backends

    if not available_backends()["triton"][0]:
        pytest.skip("triton unavailable")
    X, y = data(n=40, d=3, c=1)
    want = rfmfast.kernel_solve(X, y, solver="cholesky")
    monkeypatch.setenv("RFMFAST_BACKEND", "triton")
    got = rfmfast.kernel_solve(X, y, solver="cholesky")
    assert torch.allclose(got, want, rtol=1e-8, atol=1e-10)


def test_rfm_fit_holds_a_workspace_only_for_the_cpp_backend(monkeypatch):
    import rfmfast.models.rfm as rfm_mod

    seen = []
    real = rfm_mod.cholesky_solve

    def spy(*a, workspace=None, **k):
        out = real(*a, workspace=workspace, **k)
        seen.append(workspace is not None and workspace.buffer is not None)
        return out

    monkeypatch.setattr(rfm_mod, "cholesky_solve", spy)
    X, y = data(n=200, d=4, c=1)
    rfm_mod.RFMRegressor(iters=1, backend="reference", solver="cholesky").fit(X, y[:, 0])
    assert seen == [False, False]
    from rfmfast.backends import available_backends

    if available_backends()["cpu"][0]:
        seen.clear()
        rfm_mod.RFMRegressor(iters=1, backend="cpu", solver="cholesky").fit(X, y[:, 0])
        assert seen == [True, True]


def test_float32_preconditioner_keeps_its_rank():
    """A learned-like M (three directions) makes K nearly flat: its top eigenvalue is about n
    while reg is 1e-3. The preconditioner is built in float64 for float32 data too, so a larger
    rank helps as much as in float64 (a float32 build dropped every direction below about
    m eps32 lambda_max: rank 800 then needed 33 iterations against 18)."""
    n, d = 3000, 20
    g = torch.Generator().manual_seed(0)
    X = torch.randn(n, d, generator=g, dtype=torch.float64) * 0.5
    y = (X[:, 0] * X[:, 1] * (X[:, 5] > 0))[:, None]
    M = torch.diag(torch.tensor([1.0, 1.0, 1.0] + [1e-4] * (d - 3), dtype=torch.float64))
    its = {}
    for dt in (torch.float32, torch.float64):
        for rank in (200, 800):
            _, info = rfmfast.kernel_solve(
                X.to(dt),
                y.to(dt),
                M=M.to(dt),
                bandwidth=10.0,
                reg=1e-3,
                solver="cg",
                rank=rank,
                tol=1e-3,
                max_iter=300,
                return_info=True,
            )
            assert info.converged
            its[dt, rank] = info.iterations
    assert its[torch.float32, 800] < its[torch.float32, 200]
    assert its[torch.float32, 800] <= 1.3 * its[torch.float64, 800], its
