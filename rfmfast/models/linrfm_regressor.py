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
Schatten-p IRLS (docs/math.md). As with IRLS, ``eps_t`` (relative to max beta^2) shrinks
geometrically so that the weights sharpen from the minimum-norm start.

Shapes: A (m, d), y (m,) or (m, c) -> coef_ (d,) or (d, c). Cost per step: m^2 d + m^3 (the dual
form, suited to m <= d). Memory: A, one (m, m) system and O(m d) for A P A^T.
"""

from __future__ import annotations

import math
from contextlib import nullcontext
from numbers import Integral, Real

import torch
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.utils.validation import check_is_fitted

from .._threads import torch_single_thread
from . import _inputs as inputs
from ._inputs import resolve_device, torch_dtype
from .linrfm_data import DEVICES, DTYPES, Number

#: a fit whose step costs at most this many flops (m^2 max(m, d)) runs torch on one thread
SINGLE_THREAD_WORK = 1 << 27


def _pow2_scale(t: torch.Tensor) -> float:
    """A power of two s with max |t| / s in [0.5, 1) (1.0 for an all-zero t)."""
    m = float(t.abs().max())
    return 1.0 if m == 0.0 else math.ldexp(1.0, math.frexp(m)[1])


class LinRFMRegressor(RegressorMixin, BaseEstimator):
    """Sparse linear regression by lin-RFM with a diagonal feature matrix (a scikit-learn
    regressor: get_params / set_params / clone, score (R^2), pipelines and searches).

    Parameters (all checked by ``fit`` before any work; bools never pass as numbers)
    ----------
    alpha : float > 0, default 0.25
        Power of the AGOP diagonal, P = diag(AGOP)^(2 alpha); matches IRLS-l_p with p = 2 - 4 alpha.
    reg : float >= 0, default 1e-10
        Ridge of the (m, m) system, relative to trace(A P A^T) / m (exact fit as it goes to 0).
    eps : float >= 0, default 1.0
        Initial smoothing of the weights, relative to max beta^2; multiplied by ``eps_decay`` per
        step.
    eps_decay : float in (0, 1), default 0.5
    eps_min : float >= 0, default 1e-20
    max_iter : int >= 1, default 200
    tol : float >= 0, default 1e-10
        Stop when the relative change of beta is below this.
    device : None (the input's device) | "cpu" | "cuda" | torch.device
    dtype : "float64" | "float32", default "float64": the precision of the fit. The torch
        dtypes torch.float64 / torch.float32 are accepted too (as before 0.2).

    Inputs: X (m, d) and y (m,) or (m, c) as the other estimators take them (numpy, torch,
    pandas, lists; integer and bool values are numbers; models/_inputs.py): complex, sparse,
    empty, non-finite, 1-D X and non-numeric input are refused before any work, and a
    DataFrame's string column names are kept in feature_names_in_ and checked by predict.
    The problem is solved on X and y divided by powers of two near their largest magnitudes (the
    iteration is homogeneous in both), so data near 1e-200 or 1e200 work like data near 1.

    Attributes: coef_ (d,) or (d, c) (numpy, or a tensor when fitted on a tensor); weights_ (d,)
    the final P (largest entry 1); n_iter_; n_features_in_; feature_names_in_ (DataFrame
    input). Predictions are in X's float dtype: float32 for float32 input, float64 otherwise.
    """

    _parameter_constraints = {
        "alpha": [Number(Real, 0, None, closed="neither")],
        "reg": [Number(Real, 0, None, closed="left")],
        "eps": [Number(Real, 0, None, closed="left")],
        "eps_decay": [Number(Real, 0, 1, closed="neither")],
        "eps_min": [Number(Real, 0, None, closed="left")],
        "max_iter": [Number(Integral, 1, None, closed="left")],
        "tol": [Number(Real, 0, None, closed="left")],
        "device": DEVICES,
        "dtype": DTYPES,
    }

    def __init__(
        self,
        alpha=0.25,
        *,
        reg=1e-10,
        eps=1.0,
        eps_decay=0.5,
        eps_min=1e-20,
        max_iter=200,
        tol=1e-10,
        device=None,
        dtype="float64",
    ):
        self.alpha, self.reg = alpha, reg
        self.eps, self.eps_decay, self.eps_min = eps, eps_decay, eps_min
        self.max_iter, self.tol = max_iter, tol
        self.device, self.dtype = device, dtype

    def __sklearn_tags__(self):  # scikit-learn >= 1.6: y may be (m, c)
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags

    def _more_tags(self):  # scikit-learn < 1.6
        return {"multioutput": True}

    def fit(self, X, y):
        """Fit on X (m, d) and y (m,) or (m, c). Returns self. Every parameter and input is
        checked before any work."""
        self._validate_params()
        dtype, device = torch_dtype(self.dtype), resolve_device(self.device, default=None)
        if y is None:
            raise ValueError("LinRFMRegressor requires y to be passed, but the target y is None")
        inputs.check_feature_names(self, X, reset=True)
        self._torch_out = isinstance(X, torch.Tensor)
        A, _ = inputs.features(X, "X", dtype, device)
        Y, self._vector = inputs.targets(y, "y", dtype, A.device)
        if Y.shape[0] != A.shape[0]:
            shape = (Y.shape[0],) if self._vector else tuple(Y.shape)
            raise ValueError(f"y must be (m,) or (m, c) with m = {A.shape[0]}, got shape {shape}")
        m, d = A.shape
        # small problems' torch ops on one thread: on a busy machine GNU OpenMP's spinning
        # threads make them many times slower (rfmfast._threads); large ones keep the count.
        # The choice depends on the size only, so a fit gives the same bits whatever else runs.
        small = A.device.type == "cpu" and m * m * max(m, d) <= SINGLE_THREAD_WORK
        with torch_single_thread() if small else nullcontext():
            return self._fit(A, Y, dtype)

    def _fit(self, A, Y, dtype):
        a, b = _pow2_scale(A), _pow2_scale(Y)
        A, Y = A / a, Y / b  # exact: powers of two
        m, d = A.shape
        P = torch.ones(d, dtype=dtype, device=A.device)
        eye = torch.eye(m, dtype=dtype, device=A.device)
        beta = torch.zeros(d, Y.shape[1], dtype=dtype, device=A.device)
        eps = float(self.eps)
        n_iter = 0
        for _ in range(self.max_iter):
            n_iter += 1
            AP = A * P  # (m, d) = A diag(P)
            K = AP @ A.T  # (m, m)
            lam = self.reg * float(torch.diagonal(K).sum()) / m
            L, info = torch.linalg.cholesky_ex(K + (lam + torch.finfo(dtype).tiny) * eye)
            if int(info.max()) > 0:  # singular system (rank-deficient A P A^T): least squares
                w = torch.linalg.lstsq(K + lam * eye, Y).solution
            else:
                w = torch.cholesky_solve(Y, L)
            new = AP.T @ w  # (d, c) = P A^T w
            change = float((new - beta).norm() / max(float(new.norm()), 1e-300))
            beta = new
            g = (beta**2).sum(1)  # diagonal of the AGOP
            g_max = float(g.max())
            P = torch.ones_like(g) if g_max == 0 else (g / g_max + eps) ** (2 * self.alpha)
            P = P / P.max()
            eps = max(eps * self.eps_decay, self.eps_min)
            if change < self.tol:
                break
        self.n_iter_ = n_iter
        self.n_features_in_ = d
        self.weights_ = P
        coef = beta * (b / a)
        if not bool(torch.isfinite(coef).all()):
            raise ValueError(
                f"the coefficients overflow {dtype}: y is about {b:.3g} and X about "
                f"{a:.3g} in magnitude; rescale them"
            )
        coef = coef[:, 0] if self._vector else coef
        self.coef_ = coef if self._torch_out else coef.cpu().numpy()
        return self

    def predict(self, X):
        """X (q, d) -> (q,) or (q, c), in X's float dtype (float32 for float32 input, float64
        otherwise); a tensor when X is one."""
        check_is_fitted(self, "coef_")
        inputs.check_feature_names(self, X, reset=False)
        coef = torch.as_tensor(self.coef_)
        A, is_torch = inputs.features(
            X, "X", coef.dtype, resolve_device(self.device, default=None) or coef.device
        )
        if A.shape[1] != coef.shape[0]:
            raise ValueError(
                f"X has {A.shape[1]} features, but LinRFMRegressor is expecting "
                f"{coef.shape[0]} features as input"
            )
        out = (A @ coef.to(A.device)).to(inputs.output_dtype(X))
        return out if is_torch else out.cpu().numpy()
