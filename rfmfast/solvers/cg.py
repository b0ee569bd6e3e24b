"""Matrix-free kernel ridge solve: preconditioned conjugate gradients on kernel_matmul.

The preconditioner is a rank-m Nystroem approximation of K from m landmarks drawn at random
(as in Falkon), K ~ U diag(lam) U^T, used as in randomized Nystroem PCG (Frangella, Tropp and
Udell, 2023):

    P^{-1} v = (lam_m + mu) U (diag(lam) + mu I)^{-1} U^T v + (v - U U^T v),   mu = reg

which maps the top m eigenvalues of K + reg I close to lam_m + reg and leaves the rest alone.
"""

from __future__ import annotations

import math
import time
import warnings

import torch
from sklearn.exceptions import ConvergenceWarning

from .. import _validate as validate
from ..ops.kernel_matmul import kernel_matmul
from ..ops.kernel_matrix import kernel_matrix
from ._params import check_solve_options, check_weights
from .auto import SolveInfo

#: a residual this many times above the best one seen so far means the iteration diverges
GROWTH = 1e3
#: default seconds between two verbose progress lines (start and end are always printed)
PROGRESS_EVERY_S = 2.0


def default_tol(dtype: torch.dtype) -> float:
    """Relative residual CG stops at by default: 1e-3 in float32 (products of n terms in float32
    stall near 1e-4), 1e-8 in float64."""
    return 1e-3 if dtype == torch.float32 else 1e-8


class NystroemPreconditioner:
    """Rank-m Nystroem preconditioner for K(X, X) + reg I.

    X: (n, d); m landmarks drawn without replacement by ``generator``. Memory: two (n, m)
    float64 buffers while building (K(X, landmarks) and its factor), one (n, m) in X's dtype
    afterwards (U). Building costs one float64 (n, m) kernel matrix plus O(n m^2) float64
    work for the factorization (a triangular solve and the Gram matrix B^T B; its
    eigendecomposition is m x m).
    """

    def __init__(self, X, *, kernel, bandwidth, M, reg, rank, generator, backend="auto"):
        n = X.shape[0]
        m = max(1, min(int(rank), n))
        idx = torch.randperm(n, generator=generator)[:m].to(X.device)
        # float64 throughout the build, whatever X's dtype: W = K(landmarks, landmarks) is as
        # ill-conditioned as K, and from a float32 C the factor degrades as m grows (CG then
        # needed more iterations at rank 2000 than at 500 with a learned M); U is stored in X's
        # dtype at the end.
        X64 = X.to(torch.float64)
        M64 = None if M is None else torch.as_tensor(M).to(device=X.device, dtype=torch.float64)
        C = kernel_matrix(X64, X64[idx], kernel=kernel, bandwidth=bandwidth, M=M64, backend=backend)
        del X64
        W = C[idx].clone()  # (m, m)
        eps = torch.finfo(torch.float64).eps  # the build's precision, not X's
        shift = eps * m * float(W.diagonal().mean())
        W.diagonal().add_(shift)
        R = torch.linalg.cholesky(W, upper=True)  # W = R^T R
        del W
        B = torch.linalg.solve_triangular(R, C, upper=True, left=False)  # C R^{-1}
        del C
        # K ~ B B^T = U diag(w) U^T from the eigendecomposition of the small Gram matrix B^T B
        # (m x m): cheaper and steadier on CPU than an SVD of the tall B.
        w, V = torch.linalg.eigh(B.T @ B)
        # directions below the build's rounding are dropped: with float32's eps here (as when
        # the build ran in X's float32) everything under ~m eps32 lambda_max went, which kept
        # about 80 of 1000 directions on a learned M and capped the gain of any larger rank
        keep = w > w.max().clamp(min=0) * m * eps
        w, V = w[keep], V[:, keep]
        self.U = (B @ (V / w.sqrt())).to(X.dtype)  # (n, r)
        del B
        self.lam = (w - shift).clamp(min=0).to(X.dtype)
        # with reg = 0 the formula needs a positive shift: use a small fraction of the spectrum
        self.mu = float(reg) if reg > 0 else 1e-6 * float(self.lam.max().clamp(min=1e-30))
        self.rank = int(self.U.shape[1])
        self.memory_bytes = self.U.numel() * self.U.element_size() * 2

    def __call__(self, R: torch.Tensor) -> torch.Tensor:
        """R: (n, c) -> P^{-1} R: (n, c)."""
        UtR = self.U.T @ R  # (m, c)
        lam_m = self.lam.min()
        scale = ((lam_m + self.mu) / (self.lam + self.mu))[:, None]
        return R + self.U @ (UtR * (scale - 1.0))


class _Progress:
    """Verbose lines of one solve: a start line, at most one line per ``every`` seconds with the
    iteration, residual, time per iteration and an estimate of the time left, and an end line."""

    def __init__(self, verbose, every, max_iter, tol):
        self.on, self.every, self.max_iter, self.tol = bool(verbose), every, max_iter, tol
        self.t0 = self.last = time.perf_counter()
        self.res0 = math.inf

    def say(self, text):
        if self.on:
            print(f"  cg: {text}", flush=True)

    def step(self, it, res):
        if not self.on:
            return
        now = time.perf_counter()
        if now - self.last < self.every:
            return
        self.last = now
        per_it = (now - self.t0) / it
        most = f"{(self.max_iter - it) * per_it:.3g} s"
        left = f"at most {most} left (max_iter)" if res > self.tol else "tol reached"
        rate = math.log(self.res0 / res) / it if 0 < res < self.res0 else 0.0
        if rate > 0 and res > self.tol:  # the residual's mean rate of decrease so far
            need = min(math.log(res / self.tol) / rate, self.max_iter - it)
            left = f"~{need * per_it:.3g} s left (at most {most})"
        print(
            f"  cg iteration {it}/{self.max_iter}: residual {res:.3g} (tol {self.tol:.2g}), "
            f"{per_it:.3g} s/iteration, {left}",
            flush=True,
        )


def _check(X, y, x0):
    """X: (n, d), y: (n, c) and x0 (None or y's shape) as cg_solve needs them: x0 is named in
    its own errors (it is the input that enters the first product)."""
    validate.check_matrix(X, "X")
    validate.check_matrix(y, "y")
    validate.check_rows("X", X, "y", y)
    validate.check_same(X, "X", y=y)
    if x0 is None:
        return None
    if not isinstance(x0, torch.Tensor):
        raise TypeError(f"x0 must be a torch.Tensor like y, got {type(x0).__name__}")
    if tuple(x0.shape) != tuple(y.shape):
        raise ValueError(f"x0 has shape {tuple(x0.shape)} but y has {tuple(y.shape)}")
    validate.check_finite(x0, "x0")
    return x0.to(dtype=y.dtype, device=y.device)


_WHY = {
    "max_iter": "max_iter was reached; raise max_iter or rank, or use solver='cholesky'",
    "stalled": (
        "a restart did not halve the residual: the rounding floor of {dtype} was "
        "reached; use {wider}a larger tol"
    ),
    "diverged": (
        "the residual {grew}: K + reg I is singular or indefinite in {dtype} (reg = 0 "
        "with duplicated points?); use reg > 0, {wider}solver='cholesky' (it adds "
        "jitter)"
    ),
    "breakdown": (
        "p^T (K + reg I) p <= 0: K + reg I is not numerically positive definite in "
        "{dtype} (reg = 0 with duplicated points?); use reg > 0, {wider}"
        "solver='cholesky' (it adds jitter)"
    ),
}


def _why(status, dtype, peak):
    grew = (
        f"grew to {peak:.3g}, over {GROWTH:g} x its best"
        if math.isfinite(peak)
        else "became non-finite"
    )
    wider = "float64, " if dtype != "float64" else ""
    return _WHY[status].format(dtype=dtype, grew=grew, wider=wider)


def cg_solve(
    X: torch.Tensor,
    y: torch.Tensor,
    *,
    kernel="laplace",
    bandwidth=10.0,
    M=None,
    reg=1e-3,
    tol=None,
    max_iter=200,
    x0=None,
    rank=1000,
    seed=0,
    backend="auto",
    verbose=False,
    progress_every=None,
    weights=None,
) -> tuple[torch.Tensor, SolveInfo]:
    """alpha ~ (K(X, X) + reg I)^{-1} y by Nystroem-preconditioned conjugate gradients.

    X: (n, d), y: (n, c), x0: (n, c) warm start or None (zeros) -> alpha: (n, c), X's dtype.
    Each iteration is one kernel_matmul (K never stored) on all c columns at once; each column
    runs its own CG recurrence, and a column that has converged is frozen.
    tol: relative residual ||y_c - (K + reg I) alpha_c|| / ||y_c|| to reach (default_tol(dtype)).
    max_iter >= 1: iterations (products) at most. rank: Nystroem landmarks (0 = none).
    Memory: O(n (rank + 7 c)) plus the op's blocks. y is scaled per column by a power of two
    (exact) so that its norms cannot overflow in float32.
    When the recursive residual estimate reaches tol, the true residual is recomputed (one more
    product) and CG restarts from x if it is still above tol, as long as each restart at least
    halves it (otherwise the dtype's rounding floor is reached and CG stops). A column whose
    residual grows GROWTH times above its best or turns non-finite, or whose p^T A p <= 0, stops
    at once. The answer is, per column, the iterate with the smallest residual seen; if it is
    above tol a ConvergenceWarning (sklearn.exceptions) says why and what to do, and
    info.converged / info.status / info.message record it. info.residual is the true residual.
    verbose: a start line, progress (iteration, residual, seconds per iteration, time left) at
    most every progress_every seconds (default PROGRESS_EVERY_S; 0: every iteration), an end line.
    weights: None, or (n,) positive sample weights w: the weighted ridge (K + reg W^{-1})
    alpha = y (see cholesky_solve), the residual that of this system; the preconditioner is
    that of K + mu I with mu the mean of reg / w (drop the rows of weight zero first).
    """
    check_solve_options(
        "cg_solve",
        kernel=kernel,
        bandwidth=bandwidth,
        reg=reg,
        tol=tol,
        max_iter=max_iter,
        rank=rank,
        seed=seed,
        backend=backend,
        verbose=verbose,
        progress_every=progress_every,
    )
    x0 = _check(X, y, x0)
    w = check_weights(weights, X)
    t0 = time.perf_counter()
    n, c = y.shape
    reg = float(reg)
    tol = default_tol(X.dtype) if tol is None else float(tol)
    every = PROGRESS_EVERY_S if progress_every is None else float(progress_every)
    show = _Progress(verbose, every, max_iter, tol)
    gen = torch.Generator().manual_seed(int(seed))
    opts = dict(kernel=kernel, bandwidth=bandwidth, M=M, backend=backend)

    ridge = None if w is None else (reg / w)[:, None]  # the weighted ridge's diagonal

    def matvec(V):
        return kernel_matmul(X, X, V, **opts) + (reg * V if ridge is None else ridge * V)

    P = None
    if rank > 0:
        mu = reg if ridge is None else float(ridge.mean())
        P = NystroemPreconditioner(X, reg=mu, rank=rank, generator=gen, **opts)
    precond = P if P is not None else (lambda R: R)
    show.say(
        f"n = {n}, {c} right-hand side(s), tol {tol:.3g}, max_iter {max_iter}, "
        f"preconditioner rank {P.rank if P is not None else 0} "
        f"({time.perf_counter() - t0:.2f} s)"
    )
    show.t0 = show.last = time.perf_counter()

    # solve for y / s with s a power of two per column (exact): norms stay far from overflow
    s = y.abs().amax(0)
    s = torch.where(s > 0, torch.exp2(torch.ceil(torch.log2(s))), torch.ones_like(s))
    ys = y / s
    ynorm = ys.norm(dim=0)
    ynorm = torch.where(ynorm > 0, ynorm, torch.ones_like(ynorm))
    x = torch.zeros_like(ys) if x0 is None else x0 / s
    r = ys - matvec(x) if x0 is not None else ys.clone()
    res = r.norm(dim=0) / ynorm
    x_best, best = x.clone(), res.clone()
    show.res0 = float(res.max()) if show.on else math.inf
    failed = torch.zeros(c, dtype=torch.bool, device=y.device)  # no restart can help these
    status = {"max_iter": False, "stalled": False, "diverged": False, "breakdown": False}
    it, last, peak = 0, math.inf, 0.0
    while True:
        # r is the true residual of x here; restart the recurrence until it is below tol,
        # unless a restart did not halve it (the rounding floor of the dtype: stop)
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
        z = precond(r)
        p = z.clone()
        rz = (r * z).sum(0)
        while it < max_iter and bool(active.any()):
            Ap = matvec(p)
            pAp = (p * Ap).sum(0)
            broke = active & ~(pAp > 0)  # also NaN
            step = torch.where(active & ~broke, rz / torch.where(pAp > 0, pAp, 1), 0)
            x += step * p
            r -= step * Ap
            it += 1
            est = r.norm(dim=0) / ynorm
            better = active & (est < best)
            x_best[:, better] = x[:, better]
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
            z = precond(r)
            rz_new = (r * z).sum(0)
            beta = torch.where(active, rz_new / torch.where(rz != 0, rz, 1), 0)
            p = torch.where(active, z + beta * p, 0)  # frozen columns: no more updates
            rz = rz_new
            bad = active & ~torch.isfinite(p).all(0)
            if bool(bad.any()):
                status["diverged"], peak = True, math.inf
                failed |= bad
                active &= ~bad
                p = torch.where(active, p, 0)
        x = x_best.clone()
        r = ys - matvec(x)
        res = r.norm(dim=0) / ynorm
        best = res.clone()
    alpha = x_best * s
    residual = float(res.max())
    converged = residual <= tol
    why = next(
        (k for k in ("diverged", "breakdown", "stalled", "max_iter") if status[k]), "max_iter"
    )
    dtype = str(X.dtype).replace("torch.", "")
    message = ""
    if not converged:
        message = (
            f"cg did not converge ({why}): relative residual {residual:.3g} > tol "
            f"{tol:.3g} after {it} iterations (n = {n}, reg = {reg:g}, {dtype}); "
            + _why(why, dtype, peak)
            + "."
        )
        warnings.warn(
            f"{message} The answer is the iterate with the smallest residual.",
            ConvergenceWarning,
            stacklevel=2,
        )
    if not bool(torch.isfinite(alpha).all()):
        wider = "use float64 or " if dtype != "float64" else ""
        raise ValueError(
            f"the cg solution overflowed {dtype} (largest |y| "
            f"{float(y.abs().max()):.3g}, reg = {reg:g}): {wider}rescale y"
        )
    show.say(
        f"{'converged' if converged else why} after {it} iterations in "
        f"{time.perf_counter() - t0:.2f} s, relative residual {residual:.3g}"
    )
    info = SolveInfo(
        solver="cg",
        n=n,
        dtype=dtype,
        reg=reg,
        iterations=it,
        residual=residual,
        tol=tol,
        converged=converged,
        status="converged" if converged else why,
        message=message,
        rank=P.rank if P is not None else 0,
        seconds=time.perf_counter() - t0,
        memory_bytes=P.memory_bytes if P is not None else 0,
    )
    return alpha, info
