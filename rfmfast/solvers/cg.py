"""Matrix-free kernel ridge solve: preconditioned conjugate gradients on kernel_matmul.

The preconditioner is a rank-m Nystroem approximation of K from m landmarks drawn at random
(as in Falkon), K ~ U diag(lam) U^T, used as in randomized Nystroem PCG (Frangella, Tropp and
Udell, 2023):

    P^{-1} v = (lam_m + mu) U (diag(lam) + mu I)^{-1} U^T v + (v - U U^T v),   mu = reg

which maps the top m eigenvalues of K + reg I close to lam_m + reg and leaves the rest alone.
"""
from __future__ import annotations

import time

import torch

from ..ops.kernel_matmul import kernel_matmul
from ..ops.kernel_matrix import kernel_matrix
from .auto import SolveInfo


def default_tol(dtype: torch.dtype) -> float:
    """Relative residual CG stops at by default: 1e-3 in float32 (products of n terms in float32
    stall near 1e-4), 1e-8 in float64."""
    return 1e-3 if dtype == torch.float32 else 1e-8


class NystroemPreconditioner:
    """Rank-m Nystroem preconditioner for K(X, X) + reg I.

    X: (n, d); m landmarks drawn without replacement by ``generator``. Memory: two (n, m)
    buffers while building (K(X, landmarks) and its factor), one (n, m) afterwards (U).
    Building costs one (n, m) kernel matrix plus O(n m^2) for the factorization (a triangular
    solve and the Gram matrix B^T B; its eigendecomposition is m x m).
    """

    def __init__(self, X, *, kernel, bandwidth, M, reg, rank, generator, backend="auto"):
        n = X.shape[0]
        m = max(1, min(int(rank), n))
        idx = torch.randperm(n, generator=generator)[:m].to(X.device)
        C = kernel_matrix(X, X[idx], kernel=kernel, bandwidth=bandwidth, M=M, backend=backend)
        W = C[idx].to(torch.float64)                                      # (m, m)
        shift = torch.finfo(X.dtype).eps * m * float(W.diagonal().mean())
        W.diagonal().add_(shift)
        R = torch.linalg.cholesky(W, upper=True)                           # W = R^T R
        B = torch.linalg.solve_triangular(R.to(X.dtype), C, upper=True, left=False)  # C R^{-1}
        del C
        # K ~ B B^T = U diag(w) U^T from the eigendecomposition of the small Gram matrix B^T B
        # (m x m, float64): cheaper and steadier on CPU than an SVD of the tall B.
        w, V = torch.linalg.eigh((B.T @ B).to(torch.float64))
        keep = w > w.max().clamp(min=0) * m * torch.finfo(X.dtype).eps
        w, V = w[keep], V[:, keep]
        self.U = B @ (V / w.sqrt()).to(X.dtype)                               # (n, r)
        self.lam = (w - shift).clamp(min=0).to(X.dtype)
        # with reg = 0 the formula needs a positive shift: use a small fraction of the spectrum
        self.mu = float(reg) if reg > 0 else 1e-6 * float(self.lam.max().clamp(min=1e-30))
        self.rank = int(self.U.shape[1])
        self.memory_bytes = self.U.numel() * self.U.element_size() * 2

    def __call__(self, R: torch.Tensor) -> torch.Tensor:
        """R: (n, c) -> P^{-1} R: (n, c)."""
        UtR = self.U.T @ R                                                  # (m, c)
        lam_m = self.lam.min()
        scale = ((lam_m + self.mu) / (self.lam + self.mu))[:, None]
        return R + self.U @ (UtR * (scale - 1.0))


def cg_solve(X: torch.Tensor, y: torch.Tensor, *, kernel="laplace", bandwidth=10.0, M=None,
             reg=1e-3, tol=None, max_iter=200, x0=None, rank=1000, seed=0, backend="auto",
             verbose=False) -> tuple[torch.Tensor, SolveInfo]:
    """alpha ~ (K(X, X) + reg I)^{-1} y by Nystroem-preconditioned conjugate gradients.

    X: (n, d), y: (n, c), x0: (n, c) warm start or None (zeros) -> alpha: (n, c).
    Each iteration is one kernel_matmul (K never stored) on all c columns at once; each column
    runs its own CG recurrence, and a column that has converged is frozen.
    tol: relative residual ||y_c - (K + reg I) alpha_c|| / ||y_c|| to reach (default_tol(dtype)).
    rank: Nystroem landmarks (0 = no preconditioner). Memory: O(n (rank + 4 c)) plus the op's blocks.
    When the recursive residual estimate reaches tol, the true residual is recomputed (one more
    product) and CG restarts from x if it is still above tol, as long as each restart at least
    halves it (otherwise the dtype's rounding floor is reached and CG stops); info.residual is
    that true residual and info.converged says whether it is <= tol.
    """
    t0 = time.perf_counter()
    n, c = y.shape
    tol = default_tol(X.dtype) if tol is None else float(tol)
    gen = torch.Generator().manual_seed(int(seed))
    opts = dict(kernel=kernel, bandwidth=bandwidth, M=M, backend=backend)

    def matvec(V):
        return kernel_matmul(X, X, V, **opts) + reg * V

    P = None
    if rank and rank > 0:
        P = NystroemPreconditioner(X, reg=reg, rank=rank, generator=gen, **opts)
    precond = P if P is not None else (lambda R: R)

    ynorm = y.norm(dim=0).clamp(min=torch.finfo(y.dtype).tiny)
    x = torch.zeros_like(y) if x0 is None else x0.to(y.dtype).clone()
    r = y - matvec(x) if x0 is not None else y.clone()
    it, last = 0, float("inf")
    while True:
        # r is the true residual here; restart the recurrence until it is below tol, unless a
        # restart did not halve it (the rounding floor of the dtype: stop, not converged)
        res = r.norm(dim=0) / ynorm
        active = res > tol
        worst = float(res.max())
        if it >= max_iter or not bool(active.any()) or worst > 0.5 * last:
            break
        last = worst
        z = precond(r)
        p = z.clone()
        rz = (r * z).sum(0)
        while it < max_iter and bool(active.any()):
            Ap = matvec(p)
            pAp = (p * Ap).sum(0)
            step = torch.where(active & (pAp > 0), rz / torch.where(pAp > 0, pAp, 1), 0)
            x += step * p
            r -= step * Ap
            it += 1
            est = r.norm(dim=0) / ynorm
            active = active & (est > tol)
            if verbose and (it % 10 == 0 or not bool(active.any())):
                print(f"  cg iteration {it}: relative residual {float(est.max()):.3g}")
            z = precond(r)
            rz_new = (r * z).sum(0)
            beta = torch.where(active, rz_new / torch.where(rz != 0, rz, 1), 0)
            p = z + beta * p
            rz = rz_new
        r = y - matvec(x)
    residual = float(res.max())
    info = SolveInfo(solver="cg", n=n, dtype=str(X.dtype).replace("torch.", ""), reg=float(reg),
                     iterations=it, residual=residual, tol=tol, converged=residual <= tol,
                     rank=P.rank if P is not None else 0, seconds=time.perf_counter() - t0,
                     memory_bytes=P.memory_bytes if P is not None else 0)
    return x, info
