"""Nystroem kernel ridge solve on m centers, by conjugate gradients with Falkon's preconditioner.

With centers C (m, d), K_nm = K(X, C) and K_mm = K(C, C), the weights alpha (m, c) minimise

    ||K_nm alpha - y||^2 + reg alpha^T (K_mm + s I) alpha,

s a shift of the order of m times the rounding unit (SHIFT), whose normal equations, divided
by n (Falkon's scaling, lam = reg / n), are

    H alpha = K_nm^T y / n,        H = K_nm^T K_nm / n + lam T^T T,   T^T T = K_mm + s I.

The preconditioner (Rudi, Carratino and Rosasco, 2017) takes K_nm^T K_nm ~ (n / m) K_mm^2:

    T = chol(K_mm + s I),   A = chol(T T^T / m + lam I)     both m x m and upper triangular
    B = T^{-1} A^{-1},      B^T H B = A^{-T} (T^{-T} K_nm^T K_nm T^{-1} / n + lam I) A^{-1} ~ I

and CG runs on B^T H B beta = B^T K_nm^T y / n, alpha = B beta. With C = X (m = n) the
minimiser is the exact solve's (K + reg I)^{-1} y, up to the shift's ridge reg s on alpha.
The shift also stands in the problem, as in Falkon: with K_mm itself in place of T^T T the
directions where K_mm is numerically singular (smooth kernels) get eigenvalues of about
lambda(K_mm) / s in B^T H B, and CG stalls or breaks down there.
"""

from __future__ import annotations

import math
import time
import warnings

import numpy as np
import torch
from sklearn.exceptions import ConvergenceWarning

from .. import _validate as validate
from ..ops.cholesky import cholesky_inplace
from ..ops.kernel_matmul import kernel_matmul
from ..ops.kernel_matrix import kernel_matrix
from ..ops.nystroem_matmul import nystroem_matmul, runs_fused
from ._params import check_solve_options, check_weights
from .auto import SolveInfo, available_memory
from .cg import GROWTH, PROGRESS_EVERY_S, _Progress
from .cg import default_tol as cg_default_tol

#: default iterations at most; with Falkon's preconditioner a few tens are typical
MAX_ITER = 100
#: the shift s of K_mm + s I (the factor T and the problem's regularizer), per unit of m and of
#: K_mm's mean diagonal, in the precision of the factorization
SHIFT = {torch.float32: 1e-6, torch.float64: 1e-13}
#: up to this many centers, float32 data get float64 factors when they fit the memory budget
WIDE_CENTERS = 20_000
#: how many times a float64 factorization that failed is retried with 10 x the shift
MAX_TRIES = 6


class PrecisionWarning(RuntimeWarning):
    """A float32 factorization failed and was redone in float64 (slower, twice the memory)."""


def default_tol(dtype: torch.dtype) -> float:
    """Relative residual of the preconditioned normal equations to reach: cg_solve's defaults,
    1e-3 in float32 (the products of n terms stall near 1e-4), 1e-8 in float64. The
    preconditioned system is well conditioned, so that this is close to the relative error of
    the fitted values."""
    return cg_default_tol(dtype)


def _check(X, y, C, x0):
    validate.check_matrix(X, "X")
    validate.check_matrix(y, "y")
    validate.check_matrix(C, "C")
    validate.check_rows("X", X, "y", y)
    validate.check_d("X", X, "C", C)
    validate.check_same(X, "X", y=y, C=C)
    if x0 is None:
        return None
    if not isinstance(x0, torch.Tensor):
        raise TypeError(f"x0 must be a torch.Tensor like y, got {type(x0).__name__}")
    want = (C.shape[0], y.shape[1])
    if tuple(x0.shape) != want:
        raise ValueError(f"x0 has shape {tuple(x0.shape)} but alpha is {want} (centers x outputs)")
    validate.check_finite(x0, "x0")
    return x0.to(dtype=y.dtype, device=y.device)


def memory_needed(n: int, m: int, c: int, itemsize: int, factor_itemsize: int) -> int:
    """Bytes nystroem_solve holds at most: two m x m matrices in the factorization's precision
    (K(C, C) factored in place into T, and T T^T / m + lam I factored in place into A) and a
    few (n, c) and (m, c) vectors."""
    return 2 * m * m * factor_itemsize + 3 * n * c * itemsize + 10 * m * c * 8


def _gib(b: float) -> str:
    return f"{b / (1 << 30):.3g} GiB"


def check_memory(
    n: int, m: int, c: int, dtype: torch.dtype, device, memory_budget=None, factor_dtype=None
) -> int:
    """Raise MemoryError, naming the size, when the solve's m x m matrices do not fit the budget
    (default: half the free memory of the device). Returns the bytes needed."""
    fdtype = factor_dtype or dtype
    item = torch.finfo(dtype).bits // 8
    fitem = torch.finfo(fdtype).bits // 8
    need = memory_needed(n, m, c, item, fitem)
    budget = int(memory_budget) if memory_budget is not None else available_memory(device) // 2
    if need > budget:
        raise MemoryError(
            f"Nystroem kernel ridge regression with m = {m} centers needs {_gib(need)}: two "
            f"{m} x {m} matrices in {str(fdtype)[6:]} ({_gib(m * m * fitem)} each: K(C, C) "
            f"factored into T, and the preconditioner's A) and the (n, c) vectors, over the "
            f"memory budget of {_gib(budget)}"
            + ("" if memory_budget is not None else " (half the free memory of the device)")
            + "; use fewer centers"
        )
    return need


def widen_M(M: torch.Tensor | None) -> torch.Tensor | None:
    """A float32 feature matrix in float64 for the float64 factors, its eigenvalues that float32
    rounding left below zero set to zero. A float32 M (an AGOP) is positive semi-definite only to
    float32's rounding (its smallest eigenvalue can be -1e-10 of its largest), which the ops'
    float64 check (1e-10) would refuse; the change is within that rounding."""
    if M is None or M.dtype == torch.float64:
        return M
    M = M.to(torch.float64)
    if M.ndim == 1:
        return M.clamp(min=0.0)
    w, V = torch.linalg.eigh((M + M.T) * 0.5)
    M = (V * w.clamp(min=0.0)) @ V.T
    return (M + M.T) * 0.5


class FalkonPreconditioner:
    """T and A of Falkon's preconditioner B = T^{-1} A^{-1}, from the centers C (m, d) and lam.

    T = chol(K(C, C) + s I) (upper: T^T T = K_mm + s I) and A = chol(T T^T / m + lam I), kept as
    their transposes (lower) in two m x m buffers of the factorization's dtype, each factored in
    place; every product with them is a triangular solve, O(m^2 c). s = SHIFT[dtype] m times
    K_mm's mean diagonal. C's dtype is tried first; where its factorization fails (float32), the
    kernel matrix is rebuilt in float64 and factored there (self.redone says why). A float64 one
    that fails is retried with 10 x the shift (and, for A, a jitter on its diagonal), MAX_TRIES
    times, then numpy.linalg.LinAlgError.
    """

    def __init__(
        self,
        C: torch.Tensor,
        lam: float,
        *,
        kernel,
        bandwidth,
        M,
        backend="auto",
        on_redo=None,
        wide=False,
    ):
        self.m = C.shape[0]
        self.lam = float(lam)
        self.redone = self.raised = ""
        opts = dict(kernel=kernel, bandwidth=bandwidth, backend=backend)
        if wide and C.dtype == torch.float32:  # float64 from the start (nystroem_solve says when)
            C = C.to(torch.float64)
            M = widen_M(M)
        if C.dtype == torch.float32:
            K = kernel_matrix(C, None, M=M, triangle="lower", **opts)
            failed = self._factor(K, self._shift(K, torch.float32), 0.0, backend)
            if not failed:
                return
            del K
            self.redone = (
                f"the float32 Cholesky factorization of {failed} failed (m = "
                f"{self.m}); the m x m factorizations were redone in float64"
            )
            if on_redo is not None:
                on_redo()
            C = C.to(torch.float64)
            M = widen_M(M)
        K = kernel_matrix(C, None, M=M, triangle="lower", **opts)
        # wide: float32 data solved in float64 arithmetic, with float32's shift (the same
        # problem as the float32 factors would solve)
        s, jitter = self._shift(K, torch.float32 if wide else torch.float64), 0.0
        for attempt in range(MAX_TRIES + 1):
            failed = self._factor(K, s, jitter, backend)
            if not failed:
                if attempt:
                    self.raised = (
                        f"the shift s of K(C, C) + s I was raised to {s:.3g} (and "
                        f"A's jitter to {jitter:.3g}) after {attempt} failed "
                        "float64 factorization(s)"
                    )
                return
            if attempt == MAX_TRIES:
                before = f" ({self.redone})" if self.redone else ""
                raise np.linalg.LinAlgError(
                    f"the Cholesky factorization of {failed} failed in float64 even with shift "
                    f"{s:.3g} (m = {self.m}, reg / n = {self.lam:.3g}){before}; check the "
                    "centers for repeated rows, or use a larger reg"
                )
            K = kernel_matrix(C, None, M=M, triangle="lower", **opts)  # factored: rebuild
            s *= 10
            if failed.startswith("T T^T"):
                jitter = max(jitter * 10, 10 * torch.finfo(torch.float64).eps)

    def _shift(self, K, dtype) -> float:
        return SHIFT[dtype] * self.m * max(float(K.diagonal().mean()), 1e-300)

    def _factor(self, K, s, jitter, backend) -> str:
        """Factor K (m, m, lower triangle read) in place; '' on success, else which matrix
        failed."""
        self.L = self.G = None
        K.diagonal().add_(s)
        if cholesky_inplace(K, backend=backend) or not bool(torch.isfinite(K.diagonal()).all()):
            return "K(C, C) + s I"
        L = K.tril_()  # L = T^T
        G = _lower_gram(L)  # T T^T, lower triangle
        G.mul_(1.0 / self.m).diagonal().add_(self.lam + jitter)
        if cholesky_inplace(G, backend=backend) or not bool(torch.isfinite(G.diagonal()).all()):
            return "T T^T / m + (reg / n) I"
        self.L, self.G = L, G.tril_()  # G = A^T
        self.dtype, self.shift, self.jitter = L.dtype, float(s), float(jitter)
        return ""

    def inv_T(self, v):
        """T^{-1} v."""
        return torch.linalg.solve_triangular(self.L.mT, v, upper=True)

    def inv_Tt(self, v):
        """T^{-T} v."""
        return torch.linalg.solve_triangular(self.L, v, upper=False)

    def inv_A(self, v):
        """A^{-1} v."""
        return torch.linalg.solve_triangular(self.G.mT, v, upper=True)

    def inv_At(self, v):
        """A^{-T} v."""
        return torch.linalg.solve_triangular(self.G, v, upper=False)

    def apply(self, v):
        """B v = T^{-1} A^{-1} v: (m, c) -> (m, c)."""
        return self.inv_T(self.inv_A(v))

    def apply_t(self, v):
        """B^T v = A^{-T} T^{-T} v."""
        return self.inv_At(self.inv_Tt(v))

    def inverse(self, v):
        """B^{-1} v = A T v (a warm start alpha -> beta)."""
        return self.G.mT @ (self.L.mT @ v)

    @property
    def memory_bytes(self) -> int:
        return 2 * self.m * self.m * self.L.element_size()


#: block size of _lower_gram's products
GRAM_BLOCK = 1024


def _lower_gram(L: torch.Tensor) -> torch.Tensor:
    """The lower triangle of L^T L for a lower-triangular L (m, m) (upper triangle zero): in
    blocks, only the products that meet both triangles, about a sixth of a full GEMM's flops
    (L^T L)_IJ = sum_{K >= I} L_KI^T L_KJ for J <= I."""
    m = L.shape[0]
    b = GRAM_BLOCK
    if m <= b:
        return (L.mT @ L).tril_()
    G = torch.zeros_like(L)
    for i in range(0, m, b):
        Li = L[i:, i : i + b]  # rows K >= I of block column I (L is zero above)
        for j in range(0, i + 1, b):
            G[i : i + b, j : j + b] = Li.mT @ L[i:, j : j + b]
    return G.tril_()


_WHY = {
    "max_iter": "max_iter was reached; raise max_iter, or reg (a larger reg converges faster)",
    "stalled": (
        "a restart did not halve the residual: the rounding floor of {dtype} was "
        "reached; use {wider}a larger tol"
    ),
    "diverged": (
        "the residual {grew}: the normal equations are singular in {dtype} (reg = 0 "
        "with repeated centers?); use reg > 0{or_wider}"
    ),
    "breakdown": (
        "p^T H p <= 0: the normal equations are not numerically positive definite in "
        "{dtype} (reg = 0 with repeated centers?); use reg > 0{or_wider}"
    ),
}


def _why(status, dtype, peak):
    grew = (
        f"grew to {peak:.3g}, over {GROWTH:g} x its best"
        if math.isfinite(peak)
        else "became non-finite"
    )
    wider = "float64, " if dtype != "float64" else ""
    or_wider = " or float64" if wider else ""
    return _WHY[status].format(dtype=dtype, grew=grew, wider=wider, or_wider=or_wider)


def nystroem_solve(
    X: torch.Tensor,
    y: torch.Tensor,
    C: torch.Tensor,
    *,
    kernel="laplace",
    bandwidth=10.0,
    M=None,
    reg=1e-3,
    tol=None,
    max_iter=MAX_ITER,
    x0=None,
    memory_budget=None,
    backend="auto",
    verbose=False,
    progress_every=None,
    weights=None,
) -> tuple[torch.Tensor, SolveInfo]:
    """Nystroem kernel ridge weights on the centers C, by CG with Falkon's preconditioner.

    X: (n, d), y: (n, c), C: (m, d) (all of X's dtype and device), x0: (m, c) warm start (e.g.
    the previous alpha of an RFM loop) or None (zeros) -> alpha: (m, c) in X's dtype, and a
    SolveInfo; predictions are f(Q) = K(Q, C) alpha. A column of x0 whose residual is larger
    than the zero start's is replaced by zeros.
    alpha minimises ||K(X, C) alpha - y||^2 + reg alpha^T (K(C, C) + s I) alpha. reg is the
    ridge of the exact solve, (K + reg I) alpha = y, which this is when C = X (up to s):
    scikit-learn's KernelRidge alpha is reg, Falkon's penalty is reg / n. s, the
    preconditioner's shift (SHIFT[dtype] m times K(C, C)'s mean diagonal: 1e-13 m in float64,
    1e-6 m in float32), keeps the normal equations well conditioned where K(C, C) is
    numerically singular (smooth kernels), as in Falkon; it changes only the directions where
    K(C, C)'s eigenvalues are below s.
    kernel, bandwidth, M, backend: as in rfmfast.kernel_matrix.
    Each iteration is one product K(C, X) (K(X, C) u) (nystroem_matmul where a backend fuses
    it, else two kernel_matmul passes) on all c columns at once, plus four m x m triangular
    solves; each column runs its own CG recurrence and a converged one is frozen.
    tol: relative residual ||r_c|| / ||B^T b_c|| of the preconditioned normal equations to
    reach (default_tol(dtype)); max_iter >= 1 products at most. The stopping rules, restarts
    and reports are those of cg_solve: the answer is per column the iterate with the smallest
    true residual; one above tol warns (sklearn.exceptions.ConvergenceWarning) and says why in
    info.status / info.message.
    The m x m factorizations run in X's dtype; a float32 one that fails is redone in float64
    with a PrecisionWarning, recorded in info.reason (as is a shift raised after a float64
    factorization failed).
    Memory: two m x m matrices (K(C, C) factored in place into T, and A; memory_needed) plus
    O(n c) and the product's blocks; never n x m. A solve whose m x m matrices do not fit
    memory_budget bytes (default: half the free memory of the device) raises MemoryError
    naming the size, before any work (and before a float64 redo).
    verbose: a start line, progress (iteration, residual, time per iteration and left) at most
    every progress_every seconds (default cg.PROGRESS_EVERY_S; 0: every iteration), an end line.
    weights: None, or (n,) positive sample weights w: alpha minimises
    ||W^{1/2} (K(X, C) alpha - y)||^2 + reg alpha^T (K(C, C) + s I) alpha (with C = X the exact
    weighted ridge (K + reg W^{-1}) alpha = y). Solved as the problem with w / mean(w) and
    reg / mean(w) (the same minimiser), so that Falkon's preconditioner fits it; each product
    is then two kernel_matmul passes with the weights between them (drop the rows of weight
    zero first).
    """
    check_solve_options(
        "nystroem_solve",
        kernel=kernel,
        bandwidth=bandwidth,
        reg=reg,
        tol=tol,
        max_iter=max_iter,
        memory_budget=memory_budget,
        backend=backend,
        verbose=verbose,
        progress_every=progress_every,
    )
    x0 = _check(X, y, C, x0)
    w = check_weights(weights, X)
    n, c = y.shape
    m = C.shape[0]
    need = check_memory(n, m, c, X.dtype, X.device, memory_budget)
    t0 = time.perf_counter()
    reg = float(reg)
    reg_w = reg  # the ridge of the problem solved: reg / mean(w) with weights
    if w is not None:
        mean = float(w.to(torch.float64).mean())
        reg_w = reg / mean
        w = None if bool((w == w[0]).all()) else (w.to(torch.float64) / mean).to(X.dtype)[:, None]
    lam = reg_w / n
    tol = default_tol(X.dtype) if tol is None else float(tol)
    every = PROGRESS_EVERY_S if progress_every is None else float(progress_every)
    show = _Progress(verbose, every, max_iter, tol)
    opts = dict(kernel=kernel, bandwidth=bandwidth, M=M, backend=backend)
    fused = runs_fused(X.device, backend) and w is None
    show.say(
        f"Nystroem: n = {n}, m = {m} centers, {c} right-hand side(s), reg = {reg:g}, "
        f"tol {tol:.3g}, max_iter {max_iter}; about {_gib(need)} "
        f"({'fused' if fused else 'two kernel_matmul passes per'} product)"
    )

    def redo():  # the float64 redo must fit too: say so before building it
        nonlocal need
        need = check_memory(n, m, c, X.dtype, X.device, memory_budget, torch.float64)

    # float32 data with a feature matrix M: the m x m factors and the m-space CG in float64
    # wherever they fit (the product stays in float32). With a learned M, K(C, C) is far worse
    # conditioned, and float32 factors let the CG recurrence drift from the true residual at
    # large n. Without M float32 factors converge as well and cost less (each iteration's four
    # triangular solves read the factors: 4 m^2 entries).
    wide = False
    if X.dtype == torch.float32 and M is not None and m <= WIDE_CENTERS:
        try:
            need = check_memory(n, m, c, X.dtype, X.device, memory_budget, torch.float64)
            wide = True
        except MemoryError:
            pass
    P = FalkonPreconditioner(C, lam, on_redo=redo, wide=wide, **opts)
    dtype = str(X.dtype).replace("torch.", "")
    if P.redone:
        warnings.warn(
            f"{P.redone} (reg = {reg:g}): slower, and the m x m matrices take twice the memory",
            PrecisionWarning,
            stacklevel=2,
        )
    work = P.dtype  # the precision of the m-space vectors

    def kk(u):
        """K_mn (K_nm u) / n: (m, c) in work -> work."""
        ud = u.to(X.dtype)
        if fused:
            out = nystroem_matmul(X, C, ud, **opts)
        elif w is None:
            out = kernel_matmul(C, X, kernel_matmul(X, C, ud, **opts), **opts)
        else:
            out = kernel_matmul(C, X, w * kernel_matmul(X, C, ud, **opts), **opts)
        return out.to(work) / n

    def op(v):
        """B^T H B v = A^{-T} (T^{-T} K_mn K_nm T^{-1} A^{-1} v / n + lam A^{-1} v), with the
        regularizer's K(C, C) + s I = T^T T."""
        w = P.inv_A(v)
        return P.inv_At(P.inv_Tt(kk(P.inv_T(w))) + lam * w)

    # solve for y / s with s a power of two per column (exact): norms stay far from overflow
    s = y.abs().amax(0)
    s = torch.where(s > 0, torch.exp2(torch.ceil(torch.log2(s))), torch.ones_like(s))
    yw = y / s if w is None else w * (y / s)
    rhs = P.apply_t(kernel_matmul(C, X, yw, **opts).to(work) / n)
    del yw
    rnorm = rhs.norm(dim=0)
    rnorm = torch.where(rnorm > 0, rnorm, torch.ones_like(rnorm))
    show.say(f"preconditioner ({str(P.dtype)[6:]}) in {time.perf_counter() - t0:.2f} s")
    show.t0 = show.last = time.perf_counter()

    beta = torch.zeros_like(rhs) if x0 is None else P.inverse((x0 / s).to(work))
    r = rhs - op(beta) if x0 is not None else rhs.clone()
    if x0 is not None:  # a warm start farther from the solution than zero is dropped, per column
        cold = r.norm(dim=0) > rhs.norm(dim=0)
        beta[:, cold] = 0
        r[:, cold] = rhs[:, cold]
    res = r.norm(dim=0) / rnorm
    x_best, best = beta.clone(), res.clone()
    show.res0 = float(res.max()) if show.on else math.inf
    failed = torch.zeros(c, dtype=torch.bool, device=y.device)
    status = {"max_iter": False, "stalled": False, "diverged": False, "breakdown": False}
    it, last, peak = 0, math.inf, 0.0
    while True:
        # r is the true residual of beta here; restart the recurrence until it is below tol,
        # unless a restart did not halve it (the rounding floor: stop)
        active = (res > tol) & ~failed
        if not bool(active.any()):
            break
        worst = float(res[active].max())
        if it >= max_iter:
            status["max_iter"] = True
            break
        if worst > 0.5 * last:
            status["stalled"] = True
            break
        last = worst
        p = r.clone()
        rr = (r * r).sum(0)
        while it < max_iter and bool(active.any()):
            Ap = op(p)
            pAp = (p * Ap).sum(0)
            broke = active & ~(pAp > 0)  # also NaN
            step = torch.where(active & ~broke, rr / torch.where(pAp > 0, pAp, 1), 0)
            beta += step * p
            r -= step * Ap
            it += 1
            est = r.norm(dim=0) / rnorm
            better = active & (est < best)
            x_best[:, better] = beta[:, better]
            best = torch.where(better, est, best)
            grew = active & ~broke & ~(est <= GROWTH * best)  # also NaN / inf
            if bool(grew.any()):
                status["diverged"] = True
                g = est[grew]
                peak = max(peak, float(g.max()) if bool(torch.isfinite(g).all()) else math.inf)
            status["breakdown"] |= bool(broke.any())
            failed |= broke | grew
            active = active & ~broke & ~grew & (est > tol)
            if show.on:
                show.step(it, float(torch.where(failed, best, est).max()))
            rr_new = (r * r).sum(0)
            coef = torch.where(active, rr_new / torch.where(rr != 0, rr, 1), 0)
            p = torch.where(active, r + coef * p, 0)  # frozen columns: no more updates
            rr = rr_new
        beta = x_best.clone()
        r = rhs - op(beta)
        res = r.norm(dim=0) / rnorm
        best = res.clone()
    alpha = (P.apply(x_best) * s.to(work)).to(X.dtype)
    residual = float(res.max())
    converged = residual <= tol
    why = next(
        (k for k in ("diverged", "breakdown", "stalled", "max_iter") if status[k]), "max_iter"
    )
    message = ""
    if not converged:
        message = (
            f"Nystroem cg did not converge ({why}): relative residual {residual:.3g} > "
            f"tol {tol:.3g} after {it} iterations (n = {n}, m = {m}, reg = {reg:g}, "
            f"{dtype}); " + _why(why, dtype, peak) + "."
        )
        warnings.warn(
            f"{message} The answer is the iterate with the smallest residual.",
            ConvergenceWarning,
            stacklevel=2,
        )
    if not bool(torch.isfinite(alpha).all()):
        wider = "use float64 or " if dtype != "float64" else ""
        raise ValueError(
            f"the Nystroem solution overflowed {dtype} (largest |y| "
            f"{float(y.abs().max()):.3g}, reg = {reg:g}): {wider}rescale y"
        )
    show.say(
        f"{'converged' if converged else why} after {it} iterations in "
        f"{time.perf_counter() - t0:.2f} s, relative residual {residual:.3g}"
    )
    reason = "; ".join(note for note in (P.redone, P.raised) if note)
    info = SolveInfo(
        solver="nystroem",
        n=n,
        dtype=dtype,
        reg=reg,
        iterations=it,
        residual=residual,
        tol=tol,
        converged=converged,
        status="converged" if converged else why,
        message=message,
        seconds=time.perf_counter() - t0,
        memory_bytes=P.memory_bytes,
        reason=reason,
        peak_memory_bytes=need,
        centers=m,
    )
    return alpha, info
