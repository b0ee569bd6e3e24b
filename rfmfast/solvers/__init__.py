"""Kernel ridge solves: (K_M(X, X) + reg I) alpha = y; with sample weights w (``weights``), the
weighted ridge (K + reg W^{-1}) alpha = y, the minimiser of sum_i w_i (f(x_i) - y_i)^2 +
reg ||f||^2.

cholesky   the kernel matrix built once, factored in place (cholesky.py)
cg         matrix-free Nystroem-preconditioned conjugate gradients on kernel_matmul (cg.py);
           one that does not converge warns (ConvergenceWarning) and says why in SolveInfo
auto       cholesky when the n x n matrix fits the memory budget, cg otherwise (auto.py)
"""

from __future__ import annotations

import torch

from .. import _validate as validate
from ._params import check_solve_options, check_weights
from .auto import JitterWarning, SolveInfo, choose_solver, redo_by_cholesky
from .cg import cg_solve
from .cholesky import cholesky_solve

__all__ = ["kernel_solve", "cholesky_solve", "cg_solve", "SolveInfo", "JitterWarning"]


def _cast(t, name, dtype):
    """t (finite) in dtype; finite values beyond dtype's range are refused, not made inf."""
    big = torch.finfo(dtype).max
    if torch.finfo(t.dtype).max > big and float(t.abs().max()) > big:
        raise ValueError(
            f"{name} values exceed {str(dtype)[6:]}'s range (max {big:.2g}; the "
            f"largest |{name}| is {float(t.abs().max()):.3g}): pass "
            f"dtype=torch.float64 or rescale {name}"
        )
    return t.to(dtype)


def kernel_solve(
    X,
    y,
    *,
    kernel="laplace",
    bandwidth=10.0,
    M=None,
    reg=1e-3,
    solver="auto",
    dtype=None,
    tol=None,
    max_iter=200,
    x0=None,
    rank=1000,
    seed=0,
    memory_budget=None,
    backend="auto",
    verbose=False,
    progress_every=None,
    return_info=False,
    weights=None,
):
    """Kernel ridge regression weights alpha = (K_M(X, X) + reg I)^{-1} y.

    X: (n, d), y: (n, c) or (n,) -> alpha: (n, c) or (n,); torch in, torch out; numpy in, numpy out.
    kernel, bandwidth, M, backend: as in rfmfast.kernel_matrix. reg >= 0 (0: interpolation).
    solver: "cholesky" (memory n^2 entries; jitter retry, see cholesky_solve), "cg" (memory
    O(n (rank + c)); tol > 0, max_iter >= 1, x0 warm start (y's shape), rank >= 0 of the
    Nystroem preconditioner, seed of its landmarks; see cg_solve) or "auto" (cholesky when the
    n x n matrix fits memory_budget bytes, default half the free memory of the device; cg
    otherwise; see auto.choose_solver; says which when verbose).
    A cg that does not reach tol warns (sklearn.exceptions.ConvergenceWarning) and says so in
    the SolveInfo; with solver="auto" it is redone by cholesky where the matrix fits the budget,
    and one that diverged with no room for cholesky raises numpy.linalg.LinAlgError.
    dtype: None (X's) or torch.float32 / torch.float64: the precision of the whole solve.
    verbose: which solver and why; progress of the solve (cg: iteration, residual, seconds per
    iteration, time left, at most every progress_every seconds, default cg.PROGRESS_EVERY_S).
    return_info: also return a SolveInfo (solver, jitter, iterations, residual, time, memory).
    weights: None, or (n,) positive sample weights w (numpy or torch): the weighted ridge
    (K + reg W^{-1}) alpha = y, the minimiser of sum_i w_i (f(x_i) - y_i)^2 + reg ||f||^2
    (drop the rows of weight zero first: they do not enter it).
    Every option is checked before any work (scikit-learn's parameter validation messages).
    """
    check_solve_options(
        "kernel_solve",
        kernel=kernel,
        bandwidth=bandwidth,
        reg=reg,
        solver=solver,
        dtype=dtype,
        tol=tol,
        max_iter=max_iter,
        rank=rank,
        seed=seed,
        memory_budget=memory_budget,
        backend=backend,
        verbose=verbose,
        progress_every=progress_every,
        return_info=return_info,
    )
    Xt, np_in = validate.to_tensor(X, "X")
    yt, _ = validate.to_tensor(y, "y")
    validate.check_matrix(Xt, "X")
    validate.check_matrix(yt, "y", ndim=(1, 2))
    validate.check_rows("X", Xt, "y", yt)
    reg = float(reg)
    dtype = dtype or Xt.dtype
    if yt.device != Xt.device:
        raise ValueError(f"y is on {yt.device} but X is on {Xt.device}")
    vec = yt.ndim == 1
    Xt = _cast(Xt, "X", dtype)
    yt = _cast(yt[:, None] if vec else yt, "y", dtype)
    if M is not None:
        Mt, _ = validate.to_tensor(M, "M")
        M = validate.check_M(Mt.to(Xt.device), Xt.shape[1], Xt)
    if x0 is not None:
        x0, _ = validate.to_tensor(x0, "x0")
        validate.check_matrix(x0, "x0", ndim=(1, 2))  # float, finite: named as x0
        x0 = x0[:, None] if x0.ndim == 1 else x0
        if tuple(x0.shape) != tuple(yt.shape):
            raise ValueError(f"x0 has shape {tuple(x0.shape)} but y has {tuple(yt.shape)}")
        x0 = _cast(x0, "x0", dtype).to(Xt.device)
    validate.common(kernel, bandwidth, backend)
    w = check_weights(weights, Xt)

    reason = ""
    auto = solver == "auto"
    if auto:
        solver, reason = choose_solver(
            Xt.shape[0], reg, Xt.element_size(), Xt.device, memory_budget
        )
        if verbose:
            print(f"kernel_solve: {reason}")
    opts = dict(kernel=kernel, bandwidth=bandwidth, M=M, reg=reg, backend=backend, weights=w)
    if solver == "cholesky":
        alpha, info = cholesky_solve(Xt, yt, verbose=verbose, **opts)
    else:
        alpha, info = cg_solve(
            Xt,
            yt,
            tol=tol,
            max_iter=max_iter,
            x0=x0,
            rank=rank,
            seed=seed,
            verbose=verbose,
            progress_every=progress_every,
            **opts,
        )
        if (
            auto
            and not info.converged
            and redo_by_cholesky(info, Xt.shape[0], Xt.element_size(), Xt.device, memory_budget)
        ):
            failed = info
            alpha, info = cholesky_solve(Xt, yt, verbose=verbose, **opts)
            info.iterations, info.message = failed.iterations, failed.message
            reason += f"; {failed.message} Redone by cholesky."
    info.reason = reason
    out = validate.out_like(alpha[:, 0] if vec else alpha, np_in)
    return (out, info) if return_info else out
