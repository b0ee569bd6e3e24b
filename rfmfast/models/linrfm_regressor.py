"""lin-RFM for sparse linear regression: a diagonal feature matrix on a linear model.

For ``f(x) = beta^T x`` the AGOP is ``beta beta^T``; keep its diagonal ``beta^2`` (summed over
outputs), raise it to a power, and re-solve the weighted minimum-norm problem:

    P = I
    repeat:
        beta = P A^T (A P A^T + lam I)^{-1} y        minimum-norm fit with weight P^{-1}
        P    = (beta^2 + eps_t) ** (2 alpha)         elementwise; eps_t -> 0

The exponent (derived). The step minimises ``sum_j beta_j^2 / P_j`` subject to ``A beta = y``
(lam -> 0). IRLS for the l_p quasi-norm minimises ``sum_j w_j beta_j^2`` with weights
``w_j = (beta_j^2 + eps)^(p/2 - 1)``. The two coincide when ``1 / P_j = w_j``, i.e.
``(beta^2)^(-2 alpha) = (beta^2)^(p/2 - 1)``:

    p = 2 - 4 alpha,   alpha = (2 - p) / 4

alpha = 1/4 is IRLS for l_1 (basis pursuit), alpha = 1/2 is IRLS-0 (sum log |beta_j|), alpha -> 0
is minimum-norm least squares (p = 2). The same exponent links lin-RFM completion to the
Schatten-p IRLS (MATH.md). As with IRLS, ``eps_t`` (relative to max beta^2) shrinks geometrically
so that the weights sharpen from the minimum-norm start.

Shapes: A (m, d), y (m,) or (m, c) -> coef_ (d,) or (d, c). Cost per step: m^2 d + m^3 (the dual
form, suited to m <= d). Memory: A, one (m, m) system and O(m d) for A P A^T.
"""
from __future__ import annotations

import numpy as np
import torch


class LinRFMRegressor:
    """Sparse linear regression by lin-RFM with a diagonal feature matrix (scikit-learn style).

    Parameters
    ----------
    alpha : float, default 0.25
        Power of the AGOP diagonal, P = diag(AGOP)^(2 alpha); matches IRLS-l_p with p = 2 - 4 alpha.
    reg : float, default 1e-10
        Ridge of the (m, m) system, relative to trace(A P A^T) / m (exact fit as it goes to 0).
    eps : float, default 1.0
        Initial smoothing of the weights, relative to max beta^2; multiplied by ``eps_decay`` per step.
    eps_decay : float, default 0.5
    eps_min : float, default 1e-20
    max_iter : int, default 200
    tol : float, default 1e-10
        Stop when the relative change of beta is below this.
    device, dtype : where and in which precision (default CPU, float64).

    Attributes: coef_ (d,) or (d, c); weights_ (d,) the final P; n_iter_.
    """

    def __init__(self, alpha=0.25, *, reg=1e-10, eps=1.0, eps_decay=0.5, eps_min=1e-20,
                 max_iter=200, tol=1e-10, device=None, dtype=torch.float64):
        self.alpha, self.reg = alpha, reg
        self.eps, self.eps_decay, self.eps_min = eps, eps_decay, eps_min
        self.max_iter, self.tol = max_iter, tol
        self.device, self.dtype = device, dtype

    def _tensor(self, a, name):
        t = a if isinstance(a, torch.Tensor) else torch.as_tensor(np.asarray(a))
        if t.dtype not in (torch.float32, torch.float64):
            raise TypeError(f"{name} must be float32 or float64, got {t.dtype}")
        if t.numel() == 0:
            raise ValueError(f"{name} is empty")
        if not bool(torch.isfinite(t).all()):
            raise ValueError(f"{name} contains NaN or inf")
        dev = torch.device(self.device) if self.device is not None else t.device
        return t.to(device=dev, dtype=self.dtype)

    def fit(self, X, y):
        """Fit on X (m, d) and y (m,) or (m, c). Returns self."""
        if not self.alpha > 0:
            raise ValueError(f"alpha must be > 0, got {self.alpha}")
        if not (self.reg >= 0 and 0 < self.eps_decay < 1 and self.eps >= 0):
            raise ValueError("need reg >= 0, eps >= 0 and 0 < eps_decay < 1")
        self._torch_out = isinstance(X, torch.Tensor)
        A = self._tensor(X, "X")
        Y = self._tensor(y, "y")
        if A.ndim != 2:
            raise ValueError(f"X must be 2-D (m, d), got shape {tuple(A.shape)}")
        self._vector = Y.ndim == 1
        Y = Y[:, None] if Y.ndim == 1 else Y
        if Y.ndim != 2 or Y.shape[0] != A.shape[0]:
            raise ValueError(f"y must be (m,) or (m, c) with m = {A.shape[0]}, got {tuple(y.shape)}")
        m, d = A.shape
        P = torch.ones(d, dtype=self.dtype, device=A.device)
        eye = torch.eye(m, dtype=self.dtype, device=A.device)
        beta = torch.zeros(d, Y.shape[1], dtype=self.dtype, device=A.device)
        eps = self.eps
        for t in range(1, self.max_iter + 1):
            AP = A * P                                     # (m, d) = A diag(P)
            K = AP @ A.T                                   # (m, m)
            lam = self.reg * float(torch.diagonal(K).sum()) / m
            L, info = torch.linalg.cholesky_ex(K + (lam + torch.finfo(self.dtype).tiny) * eye)
            if int(info.max()) > 0:  # singular system (rank-deficient A P A^T): least squares
                w = torch.linalg.lstsq(K + lam * eye, Y).solution
            else:
                w = torch.cholesky_solve(Y, L)
            new = AP.T @ w                                 # (d, c) = P A^T w
            change = float((new - beta).norm() / max(float(new.norm()), 1e-300))
            beta = new
            g = (beta ** 2).sum(1)                         # diagonal of the AGOP
            P = (g + eps * float(g.max()) + 1e-300) ** (2 * self.alpha)
            P = P / P.max()
            eps = max(eps * self.eps_decay, self.eps_min)
            if change < self.tol:
                break
        self.n_iter_ = t
        self.weights_ = P
        coef = beta[:, 0] if self._vector else beta
        self.coef_ = coef if self._torch_out else coef.cpu().numpy()
        return self

    def predict(self, X):
        """X (q, d) -> (q,) or (q, c)."""
        if not hasattr(self, "coef_"):
            raise RuntimeError("call fit before predict")
        A = self._tensor(X, "X")
        coef = torch.as_tensor(self.coef_, dtype=self.dtype, device=A.device)
        if A.ndim != 2 or A.shape[1] != coef.shape[0]:
            raise ValueError(f"X must be (q, {coef.shape[0]}), got shape {tuple(A.shape)}")
        out = A @ coef
        return out if isinstance(X, torch.Tensor) else out.cpu().numpy()
