"""Kernel ridge solves: (K_M(X, X) + reg I) alpha = y.

    cholesky   the kernel matrix built once, factored in place (cholesky.py)
    cg         matrix-free Nystroem-preconditioned conjugate gradients on kernel_matmul (cg.py)
    auto       cholesky when the n x n matrix fits the memory budget, cg otherwise (auto.py)
"""
from __future__ import annotations

from .. import _validate as _v
from .auto import SOLVERS, JitterWarning, SolveInfo, choose_solver
from .cg import cg_solve
from .cholesky import cholesky_solve

__all__ = ["kernel_solve", "cholesky_solve", "cg_solve", "SolveInfo", "JitterWarning"]


def kernel_solve(X, y, *, kernel="laplace", bandwidth=10.0, M=None, reg=1e-3, solver="auto",
                 dtype=None, tol=None, max_iter=200, x0=None, rank=1000, seed=0,
                 memory_budget=None, backend="auto", verbose=False, return_info=False):
    """Kernel ridge regression weights alpha = (K_M(X, X) + reg I)^{-1} y.

    X: (n, d), y: (n, c) or (n,) -> alpha: (n, c) or (n,); torch in, torch out; numpy in, numpy out.
    kernel, bandwidth, M, backend: as in rfmfast.kernel_matrix. reg >= 0 (0: interpolation).
    solver: "cholesky" (memory n^2 entries; jitter retry, see cholesky_solve), "cg" (memory
    O(n (rank + c)); tol, max_iter, x0 warm start, rank of the Nystroem preconditioner, seed of
    its landmarks; see cg_solve) or "auto" (cholesky when the n x n matrix fits memory_budget
    bytes, default half the free memory of the device; cg otherwise; see auto.choose_solver;
    says which when verbose).
    dtype: None (X's) or torch.float32 / torch.float64: the precision of the whole solve.
    return_info: also return a SolveInfo (solver, jitter, iterations, residual, time, memory).
    """
    if solver not in SOLVERS:
        raise ValueError(f"unknown solver {solver!r}; choose one of {', '.join(SOLVERS)}")
    Xt, np_in = _v.to_tensor(X, "X")
    yt, _ = _v.to_tensor(y, "y")
    _v.check_matrix(Xt, "X")
    _v.check_matrix(yt, "y", ndim=(1, 2))
    _v.check_rows("X", Xt, "y", yt)
    try:
        reg = float(reg)
    except (TypeError, ValueError):
        raise TypeError(f"reg must be a number >= 0, got {reg!r}") from None
    if not (reg >= 0 and reg < float("inf")):
        raise ValueError(f"reg must be a finite number >= 0, got {reg!r}")
    if dtype is not None and dtype not in _v.FLOAT_DTYPES:
        raise TypeError(f"dtype must be torch.float32 or torch.float64, got {dtype!r}")
    dtype = dtype or Xt.dtype
    if yt.device != Xt.device:
        raise ValueError(f"y is on {yt.device} but X is on {Xt.device}")
    vec = yt.ndim == 1
    Xt = Xt.to(dtype)
    yt = (yt[:, None] if vec else yt).to(dtype)
    if M is not None:
        Mt, _ = _v.to_tensor(M, "M")
        M = _v.check_M(Mt.to(Xt.device), Xt.shape[1], Xt)
    if x0 is not None:
        x0, _ = _v.to_tensor(x0, "x0")
        x0 = (x0[:, None] if x0.ndim == 1 else x0).to(dtype=dtype, device=Xt.device)
        if tuple(x0.shape) != tuple(yt.shape):
            raise ValueError(f"x0 has shape {tuple(x0.shape)} but y has {tuple(yt.shape)}")
    _v.common(kernel, bandwidth, backend)

    reason = ""
    if solver == "auto":
        solver, reason = choose_solver(Xt.shape[0], reg, Xt.element_size(), Xt.device,
                                       memory_budget)
        if verbose:
            print(f"kernel_solve: {reason}")
    opts = dict(kernel=kernel, bandwidth=bandwidth, M=M, reg=reg, backend=backend)
    if solver == "cholesky":
        alpha, info = cholesky_solve(Xt, yt, **opts)
    else:
        alpha, info = cg_solve(Xt, yt, tol=tol, max_iter=max_iter, x0=x0, rank=rank, seed=seed,
                               verbose=verbose, **opts)
        if verbose:
            print(f"kernel_solve: cg {info.iterations} iterations, relative residual "
                  f"{info.residual:.3g} (tol {info.tol:.3g})")
    info.reason = reason
    out = _v.out_like(alpha[:, 0] if vec else alpha, np_in)
    return (out, info) if return_info else out

