"""lin-RFM: RFM on linear models. Matrix completion (LinRFMCompleter) and sparse regression
(LinRFMRegressor, in linrfm_regressor.py).

Completion of Y (n, d) from its observed entries (docs/math.md, "lin-RFM for matrix completion"):

    P = I
    repeat (one *sweep*):
        a_i = (P[O_i, O_i] + lam I)^{-1} y_{i, O_i}      every row i, batched by observed count
        x_i = a_i^T P[O_i, :],  x_i[O_i] = y_{i, O_i}    all rows: one sparse-dense product C P
        G   = X^T X / n                                  one GEMM (in row chunks if X is large)
        P   = G ** (2 alpha)                             alpha = 1/2: P = G, no matrix power at all

The row step is a minimum-norm interpolation with weight P^{-1}; with P = (X^T X)^(2 alpha) it is
the IRLS step for the Schatten-p quasi-norm with p = 2 - 4 alpha (alpha = 1/2: log-det, alpha = 1/4:
nuclear norm). Other alpha use GEMM-only matrix powers (matrix_power.py), never an SVD.

Honest model selection: a seeded ``holdout`` fraction of the *observed* entries is set aside,
and each sweep reports their RMSE. The next sweep's ridge (relative to trace(P)/d) is
``max(floor, reg_scale * held-out relative error)``: IRLS-style smoothing that shrinks with the
distance to the solution. The floor starts at ``reg`` and is divided by ``reg_step`` whenever the
best held-out RMSE has gained less than ``min_gain`` over ``plateau`` sweeps: a warm-started
regularization path that goes down to ``reg_min`` on exact low-rank data and stops near the best
ridge on noisy data. Fitting stops after ``patience`` sweeps without a new best; the best sweep's
P and ridge are kept, and a last row step with *all* observed entries (held-out ones included)
gives the final coefficients. Nothing but the observed entries is ever read.

Momentum: the Gram matrix is taken of the extrapolated rows ``X_t + momentum (X_t - X_{t-1})``
(observed entries are unchanged by it). The plain iteration converges linearly and slowly when
few entries are observed (500 x 500, rank 5, 4% observed: thousands of sweeps); momentum 0.9
cuts that to a few hundred. It costs one (n, d) buffer.

Scale: the iteration is homogeneous in the values (P and the ridge follow their scale), so it
runs on values divided by a power of two near their largest magnitude, and the residual after
the bias model likewise: the same numbers for ordinary data, and no underflow or overflow of
the squares for ratings near 1e-200 or 1e200. A residual that is exactly zero (all-zero
ratings, or constant ones with a bias) is completed by zero without any sweep.

Memory (n, d, nnz observed, b = block_elems): O(nnz) for the entries and coefficients, 4 (d, d)
matrices (G, P, the best P, a padded P; about 6 more during a GEMM-only power), 2 b working
entries for the row blocks and the completed-row chunks, and one (n, d) buffer when momentum > 0
(or holdout = 0). ``completed_`` (n, d) is kept only when n d is at most
``max_completed_elems``; ``predict`` works either way. ``fit`` refuses, before any work, a
problem whose dense part does not fit the device's free memory, and says how large it is.
"""

from __future__ import annotations

import math
import time
from numbers import Integral, Real

import numpy as np
import torch
from sklearn.base import BaseEstimator
from sklearn.utils._param_validation import StrOptions
from sklearn.utils.validation import check_is_fitted

from ._inputs import resolve_device as _resolve_device
from ._inputs import torch_dtype
from .linrfm_data import DEVICES, DTYPES, Number, holdout_split, observed_entries
from .linrfm_regressor import LinRFMRegressor  # noqa: F401  (public name of this module)
from .linrfm_rows import RowSystems
from .matrix_power import psd_power

_BIASES = ("none", "global", "rowcol")


def _pow2_scale(x: np.ndarray) -> float:
    """A power of two s with max |x| / s in [0.5, 1) (1.0 for an all-zero or empty x)."""
    m = float(np.abs(x).max()) if len(x) else 0.0
    return 1.0 if m == 0.0 else math.ldexp(1.0, math.frexp(m)[1])


def linrfm_device(device, backend: str):
    """torch.device for ``device`` (None: CUDA when available, else CPU). lin-RFM is GEMM,
    Cholesky and gather work that PyTorch already runs at full speed on both, so it has one
    implementation: backend "auto" or "reference"; any other backend is refused with the reason."""
    from .._validate import check_backend_name

    check_backend_name(backend)
    if backend not in ("auto", "reference"):
        from ..ops import BackendUnavailable

        raise BackendUnavailable(
            f"lin-RFM has only the PyTorch implementation (backend 'auto' or "
            f"'reference'); its work is GEMMs, batched Cholesky and gathers, "
            f"where a '{backend}' kernel would not pay"
        )
    return _resolve_device(device)


class LinRFMCompleter(BaseEstimator):
    """Low-rank matrix completion by lin-RFM, scikit-learn style: get_params / set_params,
    clone, repr and pickling as for any estimator; predict before fit raises
    sklearn.exceptions.NotFittedError. Its fit(Y, mask) takes one matrix's observed entries (no
    X, y of samples), so scikit-learn's estimator checks, pipelines and cross-validation, which
    fit on (X, y) rows, do not apply.

    Parameters (all checked by ``fit`` before any work; bools never pass as numbers)
    ----------
    alpha : float > 0, default 0.5
        Power of the Gram matrix (P = G^(2 alpha)). 0.5 is SVD-free and power-free.
    reg : float > 0, default 10.0
        Largest ridge and the first floor, relative to trace(P)/d.
    reg_step, plateau, min_gain : float > 1, int >= 1, float in [0, 1); defaults 10.0, 1, 0.02
        The floor is divided by ``reg_step`` when the best held-out RMSE has gained less than
        ``min_gain`` (relative) over the last ``plateau`` sweeps (holdout 0: every sweep).
    reg_scale : float > 0, default 0.1
        Next ridge = reg_scale * held-out relative RMSE (holdout 0: relative change of X).
    reg_min : float in (0, reg], default 1e-10
        Smallest relative ridge.
    momentum : float in [0, 1), default 0.9
        Extrapolation of the completed rows before the Gram update (0: the plain iteration,
        and no (n, d) buffer).
    max_iter : int >= 1, default 500
        Maximum number of sweeps.
    holdout : float in [0, 0.5), default 0.05
        Fraction of the observed entries held out to steer the ridge and stop. 0: no validation;
        the ridge follows the relative change of X and fitting stops when it is below ``tol``.
    patience : int >= 1, default 10
        Sweeps without a new best held-out RMSE before stopping.
    tol : float >= 0, default 1e-4
        A new best must beat the old by this relative margin (holdout 0: relative change of X).
    bias : "none" | "global" | "rowcol", default "none"
        Model the global mean (and row/column offsets, ridge ``bias_reg`` >= 0) first and complete
        the residual. Rows/columns with no observation are predicted by the bias model alone.
    power_method : "newton_schulz" | "eigh", default "newton_schulz"
        How G^(2 alpha) is computed when alpha is not 1/2 (GEMM-only, or the eigendecomposition).
    device : None | "auto" | "cpu" | "cuda" | torch.device, default None (CUDA if available)
    dtype : "float64" | "float32" (or the torch dtypes), default "float64"
    backend : "auto" | "reference" (lin-RFM is pure PyTorch; see ``linrfm_device``).
    block_elems : int >= 1, default 2**24
        Working-set bound (entries) of a row-solve block and of a completed-row chunk.
    max_completed_elems : int >= 0, default 2**27
        Keep ``completed_`` only when n * d is at most this.
    random_state : int >= 0 or None, default 0
        Seed of the held-out split.
    verbose : bool, default False
        Print one line per sweep (sweep, ridge, held-out RMSE, seconds).
    callback : callable(record, values) -> bool, optional
        Called after each sweep with the history record and ``values(rows, cols)``, which gives
        that sweep's completed values (for monitoring; it costs one pass over the rows). Return
        True to stop.

    Attributes
    ----------
    completed_ : (n, d) completed matrix (numpy, or torch when fitted from a tensor) or None
    history_ : list of dict per sweep: sweep, reg (relative), holdout_rmse (in the units of the
        values) or change, seconds. Empty when the residual after the bias model is exactly zero
        (its completion is zero: no sweep is run)
    best_iter_, n_iter_, reg_ : the chosen sweep, sweeps run, the chosen relative ridge
    mu_, row_bias_ (n,), col_bias_ (d,) : the bias model (zeros for bias="none")
    scale_ : float, the residual after the bias model is completed as ``scale_ * x`` where the
        rows x_i = coef_i^T P_[O_i, :] come from P_ (d, d), the weight matrix of the chosen
        sweep, and coef_ (nnz,), the row coefficients (both for the residual divided by scale_)
    shape_ : (n, d)
    """

    _parameter_constraints = {
        "alpha": [Number(Real, 0, None, closed="neither")],
        "reg": [Number(Real, 0, None, closed="neither")],
        "reg_step": [Number(Real, 1, None, closed="neither")],
        "plateau": [Number(Integral, 1, None, closed="left")],
        "min_gain": [Number(Real, 0, 1, closed="left")],
        "reg_scale": [Number(Real, 0, None, closed="neither")],
        "reg_min": [Number(Real, 0, None, closed="neither")],
        "momentum": [Number(Real, 0, 1, closed="left")],
        "max_iter": [Number(Integral, 1, None, closed="left")],
        "holdout": [Number(Real, 0, 0.5, closed="left")],
        "patience": [Number(Integral, 1, None, closed="left")],
        "tol": [Number(Real, 0, None, closed="left")],
        "bias": [StrOptions(set(_BIASES))],
        "bias_reg": [Number(Real, 0, None, closed="left")],
        "power_method": [StrOptions({"newton_schulz", "eigh"})],
        "device": DEVICES,
        "dtype": DTYPES,
        "backend": [str],
        "block_elems": [Number(Integral, 1, None, closed="left")],
        "max_completed_elems": [Number(Integral, 0, None, closed="left")],
        "random_state": [Number(Integral, 0, None, closed="left"), None],
        "verbose": ["boolean"],
        "callback": [callable, None],
    }

    def __init__(
        self,
        alpha=0.5,
        *,
        reg=10.0,
        reg_step=10.0,
        plateau=1,
        min_gain=0.02,
        reg_scale=0.1,
        reg_min=1e-10,
        momentum=0.9,
        max_iter=500,
        holdout=0.05,
        patience=10,
        tol=1e-4,
        bias="none",
        bias_reg=10.0,
        power_method="newton_schulz",
        device=None,
        dtype="float64",
        backend="auto",
        block_elems=2**24,
        max_completed_elems=2**27,
        random_state=0,
        verbose=False,
        callback=None,
    ):
        self.alpha = alpha
        self.reg, self.reg_scale, self.reg_min, self.momentum = reg, reg_scale, reg_min, momentum
        self.reg_step, self.plateau, self.min_gain = reg_step, plateau, min_gain
        self.max_iter, self.holdout, self.patience, self.tol = max_iter, holdout, patience, tol
        self.bias, self.bias_reg = bias, bias_reg
        self.power_method = power_method
        self.device, self.dtype, self.backend = device, dtype, backend
        self.block_elems, self.max_completed_elems = block_elems, max_completed_elems
        self.random_state, self.verbose, self.callback = random_state, verbose, callback

    # ---- checks ------------------------------------------------------------------------------
    def _check_params(self) -> torch.device:
        """Every parameter (the constraints above, then how they relate); returns the device."""
        self._validate_params()
        if self.reg_min > self.reg:
            raise ValueError(
                f"reg_min must be <= reg, got reg_min={self.reg_min!r}, reg={self.reg!r}"
            )
        return linrfm_device(self.device, self.backend)

    def _check_size(self, n: int, d: int, dtype: torch.dtype, device: torch.device) -> None:
        """Refuse, before any work, a problem whose dense part does not fit the free memory."""
        from ..solvers.auto import available_memory

        item = torch.finfo(dtype).bits // 8
        squares = 4 + (6 if 2 * self.alpha != 1 else 0)  # G, P, best P, padded P (+ the power)
        planes = int(self.momentum > 0 or self.holdout == 0) + 2 * int(
            n * d <= self.max_completed_elems
        )
        block = 2 * min(self.block_elems, n * d)
        need = item * (squares * d * d + planes * n * d) + (item + 8) * block
        free = available_memory(device)
        if need > free:
            raise MemoryError(
                f"lin-RFM on a ({n}, {d}) matrix needs about {need / 2**30:.3g} GiB "
                f"({squares} (d, d) matrices, {planes} (n, d) buffers and 2 blocks of "
                f"{block // 2} entries in {str(dtype).replace('torch.', '')}), but "
                f"{free / 2**30:.3g} GiB are free on {device}"
            )

    @staticmethod
    def _value_scale(vals: np.ndarray, dtype: torch.dtype) -> float:
        """The power of two the values are divided by; refuses values the dtype cannot hold."""
        m = float(np.abs(vals).max())
        fi = torch.finfo(dtype)
        if m > fi.max / 16 or 0 < m < fi.tiny:
            hint = " or use dtype='float64'" if dtype == torch.float32 else ""
            raise ValueError(
                f"the largest |observed value| is {m:.3g}, outside the range that "
                f"{str(dtype).replace('torch.', '')} completes ({fi.tiny:.3g} to "
                f"{fi.max / 16:.3g}); rescale the values{hint}"
            )
        return _pow2_scale(vals)

    # ---- biases ------------------------------------------------------------------------------
    def _fit_bias(self, rows, cols, vals, shape):
        n, d = shape
        mu, rb, cb = 0.0, np.zeros(n), np.zeros(d)
        if self.bias == "none":
            return mu, rb, cb
        mu = float(vals.mean())
        if self.bias == "rowcol":
            # ridge fits of the offsets, alternating; a row or column without entries keeps 0
            den_r = np.bincount(rows, minlength=n) + float(self.bias_reg)
            den_c = np.bincount(cols, minlength=d) + float(self.bias_reg)
            for _ in range(10):
                rb = np.divide(
                    np.bincount(rows, vals - mu - cb[cols], minlength=n),
                    den_r,
                    out=np.zeros(n),
                    where=den_r > 0,
                )
                cb = np.divide(
                    np.bincount(cols, vals - mu - rb[rows], minlength=d),
                    den_c,
                    out=np.zeros(d),
                    where=den_c > 0,
                )
        return mu, rb, cb

    def _power(self, G):
        p = 2.0 * self.alpha
        return G if p == 1.0 else psd_power(G, p, method=self.power_method)

    # ---- fit ---------------------------------------------------------------------------------
    def fit(self, Y, mask=None, *, shape=None):
        """Fit on the observed entries of an (n, d) matrix. Returns self.

        Y : a tuple (rows (nnz,) int, cols (nnz,) int, values (nnz,)) with ``shape`` (n, d) given
            or inferred (max index + 1); a scipy.sparse (n, d) matrix (its stored entries); or a
            dense (n, d) array/tensor with a boolean (n, d) ``mask`` (True = observed; other
            entries are never read) or with NaN marking the missing entries.
        Everything (parameters, indices, values, shape, memory) is checked before any work.
        """
        device = self._check_params()
        dtype = torch_dtype(self.dtype)
        rows, cols, vals, shape = observed_entries(Y, mask, shape)
        n, d = shape
        self._check_size(n, d, dtype, device)
        s_v = self._value_scale(vals, dtype)
        self._torch_out = isinstance(Y, torch.Tensor)
        self.shape_ = shape
        held = (
            holdout_split(rows, cols, shape, self.holdout, self.random_state)
            if self.holdout > 0
            else np.zeros(len(rows), dtype=bool)
        )
        fit_idx, val_idx = np.nonzero(~held)[0], np.nonzero(held)[0]
        v = vals / s_v  # exact: s_v is a power of two
        mu, rb, cb = self._fit_bias(rows[fit_idx], cols[fit_idx], v[fit_idx], shape)
        self.mu_fit_, self.rb_fit_, self.cb_fit_ = mu * s_v, rb * s_v, cb * s_v
        resid = v - mu - rb[rows] - cb[cols]
        s_r = _pow2_scale(resid[fit_idx])
        self._fit_scale = s_v * s_r
        self.history_ = []
        best_P, best_reg, best_iter, t = (
            torch.eye(d, dtype=dtype, device=device),
            float(self.reg),
            0,
            0,
        )
        if np.any(resid[fit_idx]):  # else the residual is zero, and so is its completion
            best_P, best_reg, best_iter, t = self._sweeps(
                rows, cols, resid / s_r, fit_idx, val_idx, shape, device, dtype
            )
        self.n_iter_, self.best_iter_, self.reg_ = t, best_iter, best_reg

        # last row step with every observed entry, at the chosen P and ridge
        mu, rb, cb = self._fit_bias(rows, cols, v, shape)
        self.mu_, self.row_bias_, self.col_bias_ = mu * s_v, rb * s_v, cb * s_v
        resid = v - mu - rb[rows] - cb[cols]
        s_f = _pow2_scale(resid)
        self.scale_ = s_v * s_f
        self._systems = RowSystems(
            rows, cols, resid / s_f, shape, device=device, dtype=dtype, block_elems=self.block_elems
        )
        self.P_ = best_P
        self.coef_ = self._systems.solve(best_P, best_reg * float(torch.diagonal(best_P).sum()) / d)
        self.completed_ = None
        if n * d <= self.max_completed_elems:
            X = torch.cat(
                [
                    self._systems.complete(best_P, self.coef_, r0, r1)
                    for r0, r1 in self._systems.row_ranges()
                ]
            )
            X *= self.scale_
            X += torch.as_tensor(
                self.mu_ + self.row_bias_[:, None] + self.col_bias_[None, :],
                dtype=dtype,
                device=device,
            )
            self.completed_ = X if self._torch_out else X.cpu().numpy()
        return self

    def _sweeps(self, rows, cols, resid, fit_idx, val_idx, shape, device, dtype):
        """The sweeps on the residual (divided by its scale, nonzero on the fitted entries);
        appends to history_ and returns (best P, its relative ridge, its sweep, sweeps run)."""
        n, d = shape
        systems = RowSystems(
            rows[fit_idx],
            cols[fit_idx],
            resid[fit_idx],
            shape,
            device=device,
            dtype=dtype,
            block_elems=self.block_elems,
        )
        val_r = torch.as_tensor(rows[val_idx], device=device)
        val_c = torch.as_tensor(cols[val_idx], device=device)
        val_y = torch.as_tensor(resid[val_idx], dtype=dtype, device=device)
        val_rms = float((val_y**2).mean()) ** 0.5 if len(val_idx) else 1.0
        val_rms = (
            val_rms or 1.0
        )  # held-out residuals all zero: relative to the fitted ones' scale, 1
        val_bounds = np.searchsorted(rows[val_idx], [r0 for r0, _ in systems.row_ranges()] + [n])

        P = torch.eye(d, dtype=dtype, device=device)
        reg = floor = float(self.reg)
        best, best_trace, since_floor = np.inf, [], 0
        best_P, best_reg, best_iter, stall = P, reg, 0, 0
        X_prev = None  # (n, d) previous completed rows, only with momentum
        for t in range(1, self.max_iter + 1):
            t0 = time.perf_counter()
            P_used = P
            lam = reg * float(torch.diagonal(P).sum()) / d
            coef = systems.solve(P, lam)
            G = torch.zeros(d, d, dtype=dtype, device=device)
            sq_err, sq_change, sq_norm = 0.0, 0.0, 0.0
            for k, (r0, r1) in enumerate(systems.row_ranges()):
                X = systems.complete(P, coef, r0, r1)
                v0, v1 = val_bounds[k], val_bounds[k + 1]
                if v1 > v0:
                    sq_err += float(
                        ((X[val_r[v0:v1] - r0, val_c[v0:v1]] - val_y[v0:v1]) ** 2).sum()
                    )
                if self.momentum > 0 or not len(val_idx):
                    if X_prev is None:
                        X_prev = torch.zeros(n, d, dtype=dtype, device=device)
                    step = X - X_prev[r0:r1]
                    sq_change += float((step**2).sum())
                    sq_norm += float((X**2).sum())
                    X_prev[r0:r1] = X
                    if self.momentum > 0 and t > 1:
                        X = X + self.momentum * step  # extrapolated rows feed the Gram matrix
                G.addmm_(X.T, X)
            G /= n
            if device.type == "cuda":
                torch.cuda.synchronize()
            rec = {"sweep": t, "reg": reg}
            if len(val_idx):
                rmse = (sq_err / len(val_idx)) ** 0.5
                rec["holdout_rmse"] = rmse * self._fit_scale
                if rmse < best * (1 - self.tol):
                    best, best_P, best_reg, best_iter, stall = rmse, P, reg, t, 0
                else:
                    stall += 1
                signal = rmse / val_rms  # relative held-out error
                best_trace.append(best)
                since_floor += 1
                k = self.plateau
                if (
                    since_floor > k
                    and floor > self.reg_min
                    and best > best_trace[-1 - k] * (1 - self.min_gain)
                ):
                    floor, since_floor = max(floor / self.reg_step, self.reg_min), 0  # plateau
                done = stall >= self.patience or rmse <= 1e-13 * val_rms
            else:
                signal = (sq_change / max(sq_norm, 1e-300)) ** 0.5  # relative change of X
                rec["change"] = signal
                best_P, best_reg, best_iter = P, reg, t
                floor = max(floor / self.reg_step, self.reg_min)
                done = signal < self.tol
            # the ridge follows the held-out relative error (IRLS-style smoothing that shrinks
            # with the distance to the solution), never below the current floor
            reg = min(max(self.reg_scale * signal, floor), self.reg)
            P = self._power(G)
            rec["seconds"] = time.perf_counter() - t0
            self.history_.append(rec)
            if self.verbose:
                what = (
                    f"held-out RMSE {rec['holdout_rmse']:.6g}"
                    if len(val_idx)
                    else f"change {signal:.3g}"
                )
                print(
                    f"sweep {t:4d}  reg {rec['reg']:.2e}  {what}  {rec['seconds']:.3f} s",
                    flush=True,
                )
            if self.callback is not None and self.callback(
                rec, lambda r, c, P=P_used, coef=coef: self._sweep_values(systems, P, coef, r, c)
            ):
                done = True
            if done:
                break
        return best_P, best_reg, best_iter, t

    def _sweep_values(self, systems, P, coef, r, c):
        """Values at (r, c) of the current sweep's completed matrix (bias included), numpy."""
        r, c = np.asarray(r), np.asarray(c)
        out = self.mu_fit_ + self.rb_fit_[r] + self.cb_fit_[c]
        for r0, r1 in systems.row_ranges():
            sel = np.nonzero((r >= r0) & (r < r1))[0]
            if len(sel):
                X = systems.complete(P, coef, r0, r1)
                ri = torch.as_tensor(r[sel] - r0, device=X.device)
                out[sel] += (
                    self._fit_scale * X[ri, torch.as_tensor(c[sel], device=X.device)].cpu().numpy()
                )
        return out

    # ---- predict -----------------------------------------------------------------------------
    def predict(self, rows, cols):
        """Completed values at (rows[k], cols[k]): rows, cols (q,) integers -> (q,) (numpy
        float64, or torch when fitted from a tensor). Observed entries come back as observed."""
        check_is_fitted(self, "coef_")
        r = np.asarray(rows.cpu() if isinstance(rows, torch.Tensor) else rows)
        c = np.asarray(cols.cpu() if isinstance(cols, torch.Tensor) else cols)
        if r.ndim != 1 or c.shape != r.shape:
            raise ValueError(
                f"rows and cols must be 1-D of one length, got {r.shape} and {c.shape}"
            )
        if len(r) and (r.dtype.kind not in "iu" or c.dtype.kind not in "iu"):
            raise TypeError(f"rows and cols must be integers, got dtypes {r.dtype} and {c.dtype}")
        n, d = self.shape_
        if len(r) and (r.min() < 0 or r.max() >= n or c.min() < 0 or c.max() >= d):
            raise ValueError(f"indices out of range for the fitted shape ({n}, {d})")
        r, c = r.astype(np.int64), c.astype(np.int64)
        if self.completed_ is not None:
            X = self.completed_
            vals = (
                X[torch.as_tensor(r, device=X.device), torch.as_tensor(c, device=X.device)]
                if self._torch_out
                else X[r, c]
            )
            vals = np.asarray(vals.cpu() if isinstance(vals, torch.Tensor) else vals)
            out = vals.astype(np.float64)
        else:
            out = (self.mu_ + self.row_bias_[r] + self.col_bias_[c]).astype(np.float64)
            sysm = self._systems
            for r0, r1 in sysm.row_ranges():
                sel = np.nonzero((r >= r0) & (r < r1))[0]
                if len(sel):
                    X = sysm.complete(self.P_, self.coef_, r0, r1)
                    ri = torch.as_tensor(r[sel] - r0, device=X.device)
                    out[sel] += (
                        self.scale_ * X[ri, torch.as_tensor(c[sel], device=X.device)].cpu().numpy()
                    )
        return torch.as_tensor(out) if self._torch_out else out
