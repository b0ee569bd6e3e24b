"""kernel_solve / cg_solve / cholesky_solve never return a diverged answer silently, check their
options before any work, name the input at fault and show progress when verbose."""

import re
import warnings

import numpy as np
import pytest
import torch
from sklearn.exceptions import ConvergenceWarning

import rfmfast
import rfmfast.solvers as solvers
from rfmfast.solvers import JitterWarning, cg, cg_solve, cholesky_solve


def conflicting(n=60, dup=10, d=4, dtype=torch.float64):
    """Duplicated rows with conflicting targets: with reg = 0, K is singular and y is not in
    its range, so no alpha solves the system (CG diverges)."""
    g = torch.Generator().manual_seed(0)
    X = torch.randn(n, d, generator=g, dtype=dtype)
    X = torch.cat([X, X[:dup]])
    y = torch.randn(n + dup, generator=g, dtype=dtype)
    return X, y


def true_residual(X, y, alpha, reg=0.0):
    K = rfmfast.kernel_matrix(X.double(), backend="reference")
    r = y.double() - (K + reg * torch.eye(len(X), dtype=torch.float64)) @ alpha.double()
    return float(r.norm() / y.double().norm())


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_diverging_cg_stops_warns_and_returns_its_best_iterate(dtype):
    X, y = conflicting(dtype=dtype)
    with pytest.warns(ConvergenceWarning, match="cg did not converge.*reg > 0"):
        alpha, info = rfmfast.kernel_solve(X, y, reg=0.0, solver="cg", return_info=True)
    assert not info.converged and info.status in ("diverged", "breakdown")
    assert "did not converge" in info.message
    assert info.iterations < 50  # stopped once the residual grew
    # no 1e30 answer: the best iterate, no worse than alpha = 0, and its residual is reported
    assert float(alpha.abs().max()) < 1e4
    assert true_residual(X, y, alpha) <= 1.0
    assert info.residual == pytest.approx(true_residual(X, y, alpha), rel=1e-3)


def test_auto_raises_when_cg_diverges_and_cholesky_does_not_fit():
    X, y = conflicting()
    with pytest.warns(ConvergenceWarning):
        with pytest.raises(np.linalg.LinAlgError, match="does not fit the memory budget"):
            rfmfast.kernel_solve(X, y, reg=0.0, solver="auto", memory_budget=1000)


def test_auto_redoes_a_failed_cg_by_cholesky_where_it_fits(monkeypatch):
    X, y = conflicting()
    monkeypatch.setattr(solvers, "choose_solver", lambda *a, **k: ("cg", "cg: forced"))
    with pytest.warns(ConvergenceWarning), pytest.warns(JitterWarning):
        alpha, info = rfmfast.kernel_solve(X, y, reg=0.0, solver="auto", return_info=True)
    assert info.solver == "cholesky" and info.jitter > 0
    assert "Redone by cholesky" in info.reason and "did not converge" in info.message


def test_max_iter_reached_is_a_warning_and_a_record():
    X, y = conflicting()
    with pytest.warns(ConvergenceWarning, match="max_iter was reached"):
        _, info = rfmfast.kernel_solve(
            X, y, reg=1e-3, solver="cg", rank=0, max_iter=2, tol=1e-12, return_info=True
        )
    assert info.status == "max_iter" and info.iterations == 2 and not info.converged


def test_float32_targets_near_overflow_are_solved():
    """||y|| overflows float32 for y ~ 1e30: cg scales y by a power of two first (it used to
    stop at once with alpha = 0)."""
    g = torch.Generator().manual_seed(1)
    X = torch.randn(200, 5, generator=g)
    y = torch.randn(200, 2, generator=g)
    small = rfmfast.kernel_solve(X.double(), y.double(), reg=1e-2, solver="cholesky")
    with np.errstate(all="ignore"):
        alpha, info = rfmfast.kernel_solve(
            X, y * 1e30, reg=1e-2, solver="cg", rank=50, return_info=True
        )
    assert info.converged and bool(torch.isfinite(alpha).all())
    err = float((alpha.double() / 1e30 - small).norm() / small.norm())
    assert err < 1e-2


def test_overflowing_solutions_say_so():
    g = torch.Generator().manual_seed(2)
    X = torch.randn(50, 3, generator=g) * 0.01  # near duplicates: tiny eigenvalues
    y = torch.randn(50, generator=g) * 1e37
    with pytest.raises(ValueError, match="overflowed float32.*float64 or rescale y"):
        rfmfast.kernel_solve(X, y, reg=0.0, solver="cholesky")
    with warnings.catch_warnings(), pytest.raises(ValueError, match="overflowed float32"):
        warnings.simplefilter("ignore", ConvergenceWarning)  # it may stop short of tol first
        rfmfast.kernel_solve(X, y, reg=0.0, solver="cg")


def test_nan_in_x0_is_reported_as_x0():
    X, y = conflicting()
    x0 = torch.zeros_like(y)
    x0[3] = float("nan")
    with pytest.raises(ValueError, match="x0 contains NaN"):
        rfmfast.kernel_solve(X, y, solver="cg", x0=x0)
    with pytest.raises(ValueError, match="x0 contains NaN"):
        cg_solve(X, y[:, None], x0=x0[:, None])


BAD_OPTIONS = [
    ("max_iter", 0),
    ("max_iter", -5),
    ("max_iter", 2.0),
    ("max_iter", True),
    ("tol", -1e-3),
    ("tol", 0.0),
    ("tol", "1e-3"),
    ("rank", -1),
    ("rank", True),
    ("memory_budget", -5),
    ("memory_budget", "1GB"),
    ("reg", -1.0),
    ("reg", True),
    ("reg", "0.1"),
    ("reg", float("nan")),
    ("reg", float("inf")),
    ("bandwidth", "10"),
    ("bandwidth", True),
    ("bandwidth", 0.0),
    ("seed", -1),
    ("seed", 1.5),
    ("solver", "lu"),
    ("verbose", "yes"),
    ("progress_every", -1.0),
    ("return_info", 1),
    ("backend", "gpu"),
    ("kernel", "rbf"),
    ("dtype", torch.float16),
]


@pytest.mark.parametrize("name,value", BAD_OPTIONS)
def test_kernel_solve_refuses_bad_options_before_any_work(name, value, monkeypatch):
    def no_work(*a, **k):
        raise AssertionError("work started before the options were checked")

    for mod, fn in (
        (cg, "kernel_matmul"),
        (cg, "kernel_matrix"),
        (solvers, "cholesky_solve"),
        (solvers, "cg_solve"),
    ):
        monkeypatch.setattr(mod, fn, no_work)
    X, y = conflicting(n=20, dup=0)
    with pytest.raises(ValueError, match=re.escape(f"'{name}' parameter of kernel_solve")):
        rfmfast.kernel_solve(X, y, **{name: value})


@pytest.mark.parametrize(
    "name,value",
    [
        ("max_iter", 0),
        ("tol", -1.0),
        ("rank", -2),
        ("reg", True),
        ("bandwidth", "10"),
        ("seed", -1),
        ("progress_every", "1"),
    ],
)
def test_cg_solve_refuses_bad_options(name, value):
    X, y = conflicting(n=20, dup=0)
    with pytest.raises(ValueError, match=re.escape(f"'{name}' parameter of cg_solve")):
        cg_solve(X, y[:, None], **{name: value})


@pytest.mark.parametrize(
    "name,value",
    [("reg", -1.0), ("reg", "1"), ("bandwidth", False), ("kernel", "rbf"), ("verbose", "no")],
)
def test_cholesky_solve_refuses_bad_options(name, value):
    X, y = conflicting(n=20, dup=0)
    with pytest.raises(ValueError, match=re.escape(f"'{name}' parameter of cholesky_solve")):
        cholesky_solve(X, y[:, None], **{name: value})


def test_good_options_of_numpy_types_pass():
    X, y = conflicting(n=30, dup=0)
    a = rfmfast.kernel_solve(
        X,
        y,
        reg=np.float32(1e-2),
        bandwidth=np.int64(5),
        solver="cg",
        max_iter=np.int64(300),
        rank=np.int32(10),
        memory_budget=1e9,
        tol=1e-10,
    )
    b = rfmfast.kernel_solve(X, y, reg=1e-2, bandwidth=5.0, solver="cholesky")
    assert float((a - b).norm() / b.norm()) < 1e-7


def test_cg_progress_lines(capsys):
    """verbose: start line, one line per iteration at rate 0 (iteration, residual, seconds
    per iteration, time left), an end line; at a long rate only start and end."""
    X, y = conflicting(n=200, dup=0)
    _, info = cg_solve(X, y[:, None], reg=1e-3, rank=0, tol=1e-10, verbose=True, progress_every=0)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("  cg: n = 200") and "converged after" in lines[-1]
    steps = [ln for ln in lines if ln.startswith("  cg iteration")]
    assert len(steps) == info.iterations > 3
    assert all(
        re.search(r"residual \S+ \(tol 1e-10\), \S+ s/iteration, (.*left|tol reached)", ln)
        for ln in steps
    )
    assert all("left" in ln for ln in steps[:-1]) and "tol reached" in steps[-1]
    assert any("~" in ln for ln in steps)  # an estimate from the residual's rate
    cg_solve(X, y[:, None], reg=1e-3, rank=0, tol=1e-10, verbose=True, progress_every=3600)
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 and "cg iteration" not in " ".join(lines)
    cg_solve(X, y[:, None], reg=1e-3, rank=0, tol=1e-10)
    assert capsys.readouterr().out == ""


def test_kernel_solve_passes_progress_down(capsys, monkeypatch):
    monkeypatch.setattr(cg, "PROGRESS_EVERY_S", 0.0)
    X, y = conflicting(n=200, dup=0)
    _, info = rfmfast.kernel_solve(X, y, solver="cg", rank=20, verbose=True, return_info=True)
    out = capsys.readouterr().out
    assert out.count("cg iteration") == info.iterations > 0
    rfmfast.kernel_solve(X, y, solver="cholesky", verbose=True)
    out = capsys.readouterr().out
    assert "cholesky: n = 200" in out and "cholesky: solved in" in out


def test_float64_values_beyond_float32_are_named_not_called_inf():
    X, y = conflicting(n=20, dup=0)
    with pytest.raises(ValueError, match=r"X values exceed float32's range \(max 3\.4e\+38"):
        rfmfast.kernel_solve(X * 1e39, y, dtype=torch.float32)
    with pytest.raises(ValueError, match=r"y values exceed float32's range"):
        rfmfast.kernel_solve(X, y * 1e39, dtype=torch.float32)


@pytest.mark.parametrize("backend", ["reference", "cpu"])
def test_non_finite_kernel_matrix_is_named_not_jittered(backend, monkeypatch):
    """A kernel matrix with NaN (overflowed distances) is reported as such, not as a
    factorization that failed even with jitter."""
    from rfmfast.backends import available_backends
    from rfmfast.solvers import cholesky

    if not available_backends()[backend][0]:
        pytest.skip(f"{backend} unavailable")
    real = cholesky._kernel_matrix

    def with_nan(*a, **k):
        K = real(*a, **k)
        K[5, 2] = float("nan")
        return K

    monkeypatch.setattr(cholesky, "_kernel_matrix", with_nan)
    X, y = conflicting(n=30, dup=0)
    with pytest.raises(ValueError, match="kernel matrix has non-finite entries.*rescale X"):
        cholesky_solve(X, y[:, None], backend=backend)
