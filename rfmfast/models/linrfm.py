"""lin-RFM: RFM on linear models. Matrix completion (LinRFMCompleter) and sparse regression
(LinRFMRegressor, in linrfm_regressor.py).

Completion of Y (n, d) from its observed entries (docs/math.md, "lin-RFM for matrix completion"):

    P = I
    repeat (one *sweep*):
        a_i = (P[O_i, O_i] + lam I)^{-1} y_{i, O_i}      every row i, batched by observed count
        x_i = a_i^T P[O_i, :],  x_i[O_i] = y_{i, O_i}    all rows: one sparse-dense product C P
        G   = X^T X / n                                  GEMMs (row chunks; the upper panels only)
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
ridge on noisy data. Fitting stops when a lowered floor has brought no new best within
``drop_patience`` sweeps (the path has passed its best ridge: on rating data this comes after 5
to 8 sweeps), or after ``patience`` sweeps without a new best; the best sweep's P and ridge are
kept, and a last row step with *all* observed entries (held-out ones included) gives the final
coefficients. Nothing but the observed entries is ever read.

Offsets (``bias="auto"``, the default): the mean, and ridge-fitted row and column offsets, are
fitted on the entries that are not held out and kept only when they lower the held-out RMSE
(ratings: always; an exact low-rank matrix: never); lin-RFM completes the residual. They are not
refitted for the final step: P was learned on that residual.

Orientation (``orientation="auto"``): the rows of Y are the samples and P is (d, d); the
transpose, with an (n, n) P over the rows, is the same model and on exact low-rank data the same
completion. The cheaper of the two per sweep is taken from the cost model in linrfm_plan.py (the
batched Cholesky of the row systems grows with the cube of the entries per row, the Gram matrix
with n d^2), among those that fit the free memory: on a wide rating matrix (700 users x 9,000
items) the transpose is 20 times cheaper. ``plan_`` and ``orientation_`` say what was chosen.

Momentum: the Gram matrix is taken of the extrapolated rows ``X_t + momentum (X_t - X_{t-1})``
(observed entries are unchanged by it). The plain iteration converges linearly and slowly when
few entries are observed (500 x 500, rank 5, 4% observed: thousands of sweeps); momentum 0.9
cuts that to a few hundred. It costs one (n, d) buffer.

Scale: the iteration is homogeneous in the values (P and the ridge follow their scale), so it
runs on values divided by a power of two near their largest magnitude, and the residual after
the bias model likewise: the same numbers for ordinary data, and no underflow or overflow of
the squares for ratings near 1e-200 or 1e200. A residual that is exactly zero (all-zero
ratings, or constant ones with a bias) is completed by zero without any sweep.

Memory (n, d, nnz observed, b = block_elems; d is the number of columns of the orientation
fitted, n of its rows): O(nnz) for the entries and coefficients, 4 (d, d) matrices (G, P, the
best P, a padded P; about 6 more during a GEMM-only power), 2 b working entries for the row
blocks and the completed-row chunks, and one (n, d) buffer when momentum > 0 (or holdout = 0).
``completed_`` (n, d) is kept only when n d is at most
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
from .linrfm_ids import is_table, read_table, table_columns, wants_ids
from .linrfm_plan import describe, plan
from .linrfm_regressor import LinRFMRegressor  # noqa: F401  (public name of this module)
from .linrfm_rows import RowSystems, gram_mirror_, gram_update_
from .matrix_power import psd_power

_BIASES = ("auto", "none", "global", "rowcol")
# bias="auto": a richer offset model is taken only when it lowers the held-out RMSE by this much
_BIAS_GAIN = 0.01
_ORIENTATIONS = ("auto", "rows", "cols")


def _pow2_scale(x: np.ndarray) -> float:
    """A power of two s with max |x| / s in [0.5, 1) (1.0 for an all-zero or empty x)."""
    m = float(np.abs(x).max()) if len(x) else 0.0
    return 1.0 if m == 0.0 else math.ldexp(1.0, math.frexp(m)[1])


def _entries(ranges, rows_of, r, c) -> np.ndarray:
    """Entries (r, c) (float64 numpy) of a matrix given by row blocks: ``rows_of(r0, r1)`` is
    rows r0..r1-1 for each (r0, r1) of ``ranges``; one block in memory at a time, and only the
    blocks that hold a query are made."""
    out = np.zeros(len(r), dtype=np.float64)
    for r0, r1 in ranges:
        sel = np.nonzero((r >= r0) & (r < r1))[0]
        if len(sel):
            X = rows_of(r0, r1)
            ri = torch.as_tensor(r[sel] - r0, device=X.device)
            out[sel] = X[ri, torch.as_tensor(c[sel], device=X.device)].cpu().numpy()
    return out


class SweepProgress:
    """Progress within one sweep, printed when ``enabled`` and the sweep has run 2 s: on a
    terminal one line rewritten every 0.5 s, otherwise (a log) a line every 30 s."""

    def __init__(self, sweep: int, enabled: bool):
        import sys

        self.sweep, self.enabled, self.out = sweep, enabled, sys.stdout
        self.tty = enabled and hasattr(self.out, "isatty") and self.out.isatty()
        self.t0 = self.last = time.perf_counter()
        self.shown = False

    def __call__(self, phase: str, fraction: float) -> None:
        if not self.enabled:
            return
        now = time.perf_counter()
        if now - self.t0 < 2.0 or now - self.last < (0.5 if self.tty else 30.0):
            return
        self.last, self.shown = now, True
        line = f"  sweep {self.sweep}: {phase} {fraction:4.0%} ({now - self.t0:.0f} s)"
        print(f"\r{line:<64}" if self.tty else line, end="" if self.tty else "\n", flush=True)

    def close(self) -> None:
        if self.shown and self.tty:
            print("\r" + " " * 64 + "\r", end="", flush=True)


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
    reg_step, plateau, min_gain : float > 1, int >= 1, float in [0, 1); defaults 10.0, 1, 0.002
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
    drop_patience : int >= 1, default 2
        Sweeps after a lowered ridge floor without a new best before stopping (the ridge path
        has passed its best).
    tol : float >= 0, default 1e-4
        A new best must beat the old by this relative margin (holdout 0: relative change of X).
    bias : "auto" | "none" | "global" | "rowcol", default "auto"
        Model the global mean (and row/column offsets, ridge ``bias_reg`` >= 0, default 5.0)
        first and complete the residual. "auto": the one of none / global / rowcol with the
        lowest held-out RMSE, a richer one only when it gains 1% ("none" when holdout is 0).
        Rows/columns with no observation are predicted by the offsets alone.
    orientation : "auto" | "rows" | "cols", default "auto"
        Complete Y ("rows") or its transpose ("cols"); "auto": the cheaper per sweep by the
        stated cost model (module docstring) among those that fit in memory.
    power_method : "newton_schulz" | "eigh", default "newton_schulz"
        How G^(2 alpha) is computed when alpha is not 1/2 (GEMM-only, or the eigendecomposition).
    mixed_precision : bool, default True
        With dtype float64, run in float32 the sweeps whose ridge keeps the row systems well
        conditioned ((1 + d / reg) * 2^-23 <= 1e-3: on ratings, all of them), where float32's
        rounding is far below what steers the path; the last row step is always in ``dtype``.
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
        Print the plan (orientation, estimated cost, memory), the offsets chosen, and one line
        per sweep (sweep, ridge, held-out RMSE, seconds).
    callback : callable(record, values) -> bool, optional
        Called after each sweep with the history record and ``values(rows, cols)``, which gives
        that sweep's completed values (for monitoring; it costs one pass over the rows). Return
        True to stop.

    Attributes
    ----------
    completed_ : (n, d) completed matrix (numpy, or torch when fitted from a tensor) or None
    history_ : list of dict per sweep: sweep, reg (relative), dtype (of the sweep's arithmetic),
        holdout_rmse (in the units of the values) or change, seconds. Empty when the residual
        after the offsets is exactly zero (its completion is zero: no sweep is run)
    best_iter_, n_iter_, reg_ : the chosen sweep, sweeps run, the chosen relative ridge
    stop_reason_ : "ridge_drop_failed" | "patience" | "exact" | "tol" | "max_iter" | "callback"
        | "zero_residual"
    bias_ : the offsets used ("none", "global" or "rowcol")
    orientation_ : "rows" (Y was completed) or "cols" (its transpose was)
    plan_ : dict, the figures behind the orientation: "cost" (estimated multiply-adds per sweep
        per orientation), "bytes" (dense memory per orientation), "free" (bytes free)
    mu_, row_bias_ (n,), col_bias_ (d,) : the offsets (zeros for "none")
    row_ids_ (n,), col_ids_ (d,) : the original ids of the rows and columns when fitted from a
        DataFrame or with ids (sorted), else None
    n_unknown_ : int, in the last predict / recommend call, the queries with an id not seen in
        fit (answered by the offsets)
    scale_ : float, the residual after the offsets is completed as ``scale_ * x`` where the
        rows x_i = coef_i^T P_[O_i, :] of the orientation fitted come from P_ (its (d, d) weight
        matrix at the chosen sweep; (n, n) when orientation_ is "cols") and coef_ (nnz,), the
        row coefficients (both for the residual divided by scale_)
    shape_ : (n, d) of Y
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
        "drop_patience": [Number(Integral, 1, None, closed="left")],
        "tol": [Number(Real, 0, None, closed="left")],
        "bias": [StrOptions(set(_BIASES))],
        "bias_reg": [Number(Real, 0, None, closed="left")],
        "power_method": [StrOptions({"newton_schulz", "eigh"})],
        "orientation": [StrOptions(set(_ORIENTATIONS))],
        "mixed_precision": ["boolean"],
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
        min_gain=0.002,
        reg_scale=0.1,
        reg_min=1e-10,
        momentum=0.9,
        max_iter=500,
        holdout=0.05,
        patience=10,
        drop_patience=2,
        tol=1e-4,
        bias="auto",
        bias_reg=5.0,
        power_method="newton_schulz",
        orientation="auto",
        mixed_precision=True,
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
        self.drop_patience = drop_patience
        self.orientation = orientation
        self.mixed_precision = mixed_precision
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
    def _choose_bias(self, rows, cols, vals, fit_idx, val_idx, shape) -> str:
        """The offset model: ``bias`` as given, or for "auto" the one of none / global / rowcol
        with the lowest RMSE on the held-out entries, a richer one only when it gains at least
        1% (relative) on the simpler; "none" without held-out entries."""
        if self.bias != "auto":
            return self.bias
        if not len(val_idx):
            return "none"
        best, best_err = "none", float(np.sqrt(np.mean(vals[val_idx] ** 2)))
        for kind in ("global", "rowcol"):
            mu, rb, cb = self._fit_bias(rows[fit_idx], cols[fit_idx], vals[fit_idx], shape, kind)
            r, c = rows[val_idx], cols[val_idx]
            err = float(np.sqrt(np.mean((vals[val_idx] - mu - rb[r] - cb[c]) ** 2)))
            if err < best_err * (1 - _BIAS_GAIN):
                best, best_err = kind, err
        return best

    def _fit_bias(self, rows, cols, vals, shape, kind):
        n, d = shape
        mu, rb, cb = 0.0, np.zeros(n), np.zeros(d)
        if kind == "none":
            return mu, rb, cb
        mu = float(vals.mean())
        if kind == "rowcol":
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

    def _sweep_dtype(self, reg: float, d: int, dtype: torch.dtype) -> torch.dtype:
        """float32 for a float64 fit's sweep whose relative ridge bounds the row systems'
        condition number (at most 1 + d / reg: lam = reg trace(P) / d and no eigenvalue of a
        principal block exceeds trace(P)) well inside float32's range: (1 + d / reg) eps32 <=
        1e-3, so that the held-out RMSE that steers the path is exact to about 1e-3 of itself
        or better. Otherwise, and with mixed_precision=False, ``dtype``."""
        if not self.mixed_precision or dtype != torch.float64:
            return dtype
        ok = (1.0 + d / reg) * torch.finfo(torch.float32).eps <= 1e-3
        return torch.float32 if ok else dtype

    def _power(self, G):
        p = 2.0 * self.alpha
        return G if p == 1.0 else psd_power(G, p, method=self.power_method)

    # ---- fit ---------------------------------------------------------------------------------
    def fit(self, Y, mask=None, *, shape=None, columns=None, ids=None):
        """Fit on the observed entries of an (n, d) matrix. Returns self.

        Y : one of
            - a pandas DataFrame of ratings, one row per observed entry: ``columns`` names its
              (user, item, rating) columns (default ("user", "item", "rating") when present, else
              its three columns in order). The ids may be any sortable values (ints with gaps,
              strings); they are kept (``row_ids_``, ``col_ids_``) and ``predict`` and
              ``recommend`` take them.
            - a tuple (rows (nnz,), cols (nnz,), values (nnz,)): integer positions with ``shape``
              (n, d) given or inferred (max index + 1), or ids as for a DataFrame when they are
              not integers (or when ``ids=True``).
            - a scipy.sparse (n, d) matrix (its stored entries are the observed ones).
            - a dense (n, d) array/tensor with a boolean (n, d) ``mask`` (True = observed; other
              entries are never read) or with NaN marking the missing entries.
        ids : None (ids for a DataFrame or non-integer rows/cols, positions otherwise) | bool
        Everything (parameters, the table, indices, values, shape, memory) is checked before any
        work: a table with missing columns, missing ids, NaN ratings or a pair given twice is
        refused with the offending ids named.
        """
        device = self._check_params()
        dtype = torch_dtype(self.dtype)
        self._maps = None
        self._seen_csr = None  # recommend's index of the observed entries, built on first use
        if wants_ids(Y, ids):
            if mask is not None or shape is not None:
                raise ValueError(
                    "mask and shape do not apply to ratings with ids (the shape is the number "
                    "of distinct ids)"
                )
            r, c, v, row_map, col_map = read_table(Y, columns)
            self._maps = (row_map, col_map)
            Y, shape = (r, c, v), (len(row_map), len(col_map))
        elif is_table(Y):
            Y = table_columns(Y, columns)  # integer positions in a DataFrame, ids=False
        elif columns is not None:
            raise ValueError("columns applies to a DataFrame of ratings")
        self.row_ids_ = None if self._maps is None else self._maps[0].ids_
        self.col_ids_ = None if self._maps is None else self._maps[1].ids_
        self._torch_out = isinstance(Y, torch.Tensor)
        rows, cols, vals, shape = observed_entries(Y, mask, shape)
        self.shape_ = shape
        from ..solvers.auto import available_memory

        item = torch.finfo(dtype).bits // 8
        self.plan_ = plan(rows, cols, shape, item, available_memory(device), self)
        self.orientation_ = self.plan_["orientation"]
        if self.verbose:
            print(describe(self.plan_, shape), flush=True)
        if self.orientation_ == "cols":  # complete the transpose: rows <-> columns
            order = np.lexsort((rows, cols))
            rows, cols, vals = cols[order], rows[order], vals[order]
            shape = (shape[1], shape[0])
        n, d = shape  # of the orientation that is fitted
        s_v = self._value_scale(vals, dtype)
        held = (
            holdout_split(rows, cols, shape, self.holdout, self.random_state)
            if self.holdout > 0
            else np.zeros(len(rows), dtype=bool)
        )
        fit_idx, val_idx = np.nonzero(~held)[0], np.nonzero(held)[0]
        v = vals / s_v  # exact: s_v is a power of two
        self.bias_ = self._choose_bias(rows, cols, v, fit_idx, val_idx, shape)
        if self.verbose:
            print(f"offsets: {self.bias_}", flush=True)
        mu, rb, cb = self._fit_bias(rows[fit_idx], cols[fit_idx], v[fit_idx], shape, self.bias_)
        # the offsets of the fitted entries are kept for the final step too: P is learned on
        # their residual, and offsets refitted on all entries would add row/column directions
        # that P need not span (an exact low-rank matrix would then be completed with an error
        # of the size of the change)
        self._bias = (mu * s_v, rb * s_v, cb * s_v)  # in the fitted orientation
        resid = v - mu - rb[rows] - cb[cols]
        s_r = _pow2_scale(resid[fit_idx])
        self._fit_scale = s_v * s_r
        self.history_ = []
        self.stop_reason_ = "zero_residual"
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
        s_f = _pow2_scale(resid)
        self.scale_ = s_v * s_f
        self._systems = RowSystems(
            rows, cols, resid / s_f, shape, device=device, dtype=dtype, block_elems=self.block_elems
        )
        self.P_ = best_P
        self.coef_ = self._systems.solve(best_P, best_reg * float(torch.diagonal(best_P).sum()) / d)
        self.mu_ = self._bias[0]
        self.row_bias_, self.col_bias_ = self._public(self._bias[1], self._bias[2])
        self.completed_ = None
        if n * d <= self.max_completed_elems:
            X = torch.cat([self._complete(r0, r1) for r0, r1 in self._systems.row_ranges()])
            if self.orientation_ == "cols":
                X = X.T.contiguous()
            self.completed_ = X if self._torch_out else X.cpu().numpy()
        return self

    def _public(self, a, b):
        """A (rows, cols) pair of the fitted orientation in the orientation of Y."""
        return (b, a) if self.orientation_ == "cols" else (a, b)

    def _complete(self, r0, r1):
        """Rows r0..r1-1 of the final completed matrix in the fitted orientation, offsets
        included (r1 - r0, d) on the device."""
        X = self._systems.complete(self.P_, self.coef_, r0, r1)
        X *= self.scale_
        mu, rb, cb = self._bias
        X += torch.as_tensor(mu + rb[r0:r1, None] + cb[None, :], dtype=X.dtype, device=X.device)
        return X

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

        P = None  # the identity: the first sweep's systems are diagonal
        reg = floor = float(self.reg)
        best, best_trace, since_floor = np.inf, [], 0
        best_P, best_reg, best_iter, stall = P, reg, 0, 0
        drop_at = None  # sweep of the last floor drop that has not yet brought a new best
        self.stop_reason_ = "max_iter"
        X_prev = None  # (n, d) previous completed rows, only with momentum
        for t in range(1, self.max_iter + 1):
            t0 = time.perf_counter()
            wd = self._sweep_dtype(reg, d, dtype)
            if P is not None and P.dtype != wd:
                P = P.to(wd)
            if X_prev is not None and X_prev.dtype != wd:
                X_prev = X_prev.to(wd)
            P_used = P
            lam = reg * (float(torch.diagonal(P).sum()) if P is not None else d) / d
            progress = SweepProgress(t, self.verbose)
            coef = systems.solve(P, lam, progress=progress, dtype=wd)
            G = torch.zeros(d, d, dtype=wd, device=device)
            sq_err, sq_change, sq_norm = 0.0, 0.0, 0.0
            ranges = systems.row_ranges()
            for k, (r0, r1) in enumerate(ranges):
                progress("completed rows and Gram matrix", k / len(ranges))
                X = systems.complete(P, coef, r0, r1)
                v0, v1 = val_bounds[k], val_bounds[k + 1]
                if v1 > v0:
                    sq_err += float(
                        ((X[val_r[v0:v1] - r0, val_c[v0:v1]] - val_y[v0:v1]) ** 2).sum()
                    )
                if self.momentum > 0 or not len(val_idx):
                    if X_prev is None:
                        X_prev = torch.zeros(n, d, dtype=wd, device=device)
                    prev = X_prev[r0:r1]
                    if not len(val_idx):  # the relative change of X is the signal
                        sq_change += float(torch.linalg.vector_norm(X - prev) ** 2)
                        sq_norm += float(torch.linalg.vector_norm(X) ** 2)
                    ext = None
                    if self.momentum > 0 and t > 1:
                        # extrapolated rows X + m (X - X_prev) feed the Gram matrix
                        ext = torch.lerp(prev, X, 1.0 + self.momentum)
                    prev.copy_(X)
                    X = X if ext is None else ext
                gram_update_(G, X)
            gram_mirror_(G)
            G /= n
            if device.type == "cuda":
                torch.cuda.synchronize()
            rec = {"sweep": t, "reg": reg, "dtype": str(wd).replace("torch.", "")}
            if len(val_idx):
                rmse = (sq_err / len(val_idx)) ** 0.5
                rec["holdout_rmse"] = rmse * self._fit_scale
                if rmse < best * (1 - self.tol):
                    best, best_P, best_reg, best_iter, stall = rmse, P, reg, t, 0
                    drop_at = None
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
                    drop_at = t if drop_at is None else drop_at  # the first drop without gain
                if rmse <= 1e-13 * val_rms:
                    done, self.stop_reason_ = True, "exact"
                elif drop_at is not None and t - drop_at >= self.drop_patience:
                    # a smaller ridge brought no new best: the path has passed its best ridge
                    done, self.stop_reason_ = True, "ridge_drop_failed"
                elif stall >= self.patience:
                    done, self.stop_reason_ = True, "patience"
                else:
                    done = False
            else:
                signal = (sq_change / max(sq_norm, 1e-300)) ** 0.5  # relative change of X
                rec["change"] = signal
                best_P, best_reg, best_iter = P, reg, t
                floor = max(floor / self.reg_step, self.reg_min)
                done = signal < self.tol
                if done:
                    self.stop_reason_ = "tol"
            # the ridge follows the held-out relative error (IRLS-style smoothing that shrinks
            # with the distance to the solution), never below the current floor
            reg = min(max(self.reg_scale * signal, floor), self.reg)
            P = self._power(G)
            rec["seconds"] = time.perf_counter() - t0
            progress.close()
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
                done, self.stop_reason_ = True, "callback"
            if done:
                break
        eye = torch.eye(d, dtype=dtype, device=device)
        return (eye if best_P is None else best_P.to(dtype)), best_reg, best_iter, t

    def _sweep_values(self, systems, P, coef, r, c):
        """Values at (r, c) (of Y's orientation) of the current sweep's completed matrix
        (offsets included), numpy."""
        r, c = self._public(np.asarray(r), np.asarray(c))  # to the fitted orientation
        mu, rb, cb = self._bias
        x = _entries(systems.row_ranges(), lambda r0, r1: systems.complete(P, coef, r0, r1), r, c)
        return mu + rb[r] + cb[c] + self._fit_scale * x

    # ---- predict -----------------------------------------------------------------------------
    def _positions(self, values, axis: int, what: str) -> np.ndarray:
        """int64 positions along ``axis`` (0 rows, 1 columns) of ids or integer positions;
        -1 for ids not seen in fit. Positions out of range are an error."""
        if self._maps is not None:
            return self._maps[axis].encode(values)
        a = np.asarray(values.cpu() if isinstance(values, torch.Tensor) else values)
        if a.ndim == 0:
            a = a.reshape(1)
        if a.ndim != 1:
            raise ValueError(f"{what} must be 1-D, got shape {a.shape}")
        if len(a) and a.dtype.kind not in "iu":
            raise TypeError(
                f"{what} must be integers (positions: the model was fitted without ids), "
                f"got dtype {a.dtype}"
            )
        size = self.shape_[axis]
        if len(a) and (a.min() < 0 or a.max() >= size):
            raise ValueError(
                f"{what} out of range for the fitted shape {self.shape_} (fit with ids to "
                "answer unknown ones by the offsets)"
            )
        return a.astype(np.int64)

    def predict(self, rows, cols):
        """Completed values at (rows[k], cols[k]) -> (q,) (numpy float64, or torch when fitted
        from a tensor). Observed entries come back as observed.

        rows, cols : (q,) integer positions, or the original ids when fitted from a DataFrame or
            with ids. An id not seen in fit is answered by the offset model alone (mean plus the
            known row or column offset); ``n_unknown_`` counts those pairs in the last call."""
        check_is_fitted(self, "coef_")
        r = self._positions(rows, 0, "rows")
        c = self._positions(cols, 1, "cols")
        if c.shape != r.shape:
            raise ValueError(f"rows and cols must be of one length, got {r.shape} and {c.shape}")
        known = (r >= 0) & (c >= 0)
        self.n_unknown_ = int(len(r) - known.sum())
        out = np.empty(len(r), dtype=np.float64)
        if self.n_unknown_:
            u = ~known
            ru, cu = r[u], c[u]
            out[u] = (
                self.mu_
                + np.where(ru >= 0, self.row_bias_[np.maximum(ru, 0)], 0.0)
                + np.where(cu >= 0, self.col_bias_[np.maximum(cu, 0)], 0.0)
            )
        out[known] = self._values(r[known], c[known])
        return torch.as_tensor(out) if self._torch_out else out

    def _values(self, r, c):
        """Completed values (float64 numpy) at known positions (r, c) of Y's orientation."""
        if self.completed_ is not None:
            X = self.completed_
            if self._torch_out:
                vals = X[torch.as_tensor(r, device=X.device), torch.as_tensor(c, device=X.device)]
                return vals.cpu().numpy().astype(np.float64)
            return X[r, c].astype(np.float64)
        r, c = self._public(r, c)  # to the fitted orientation
        return _entries(self._systems.row_ranges(), self._complete, r, c)

    def recommend(self, user, k=10, *, exclude_seen=True):
        """The ``k`` columns (items) with the highest completed values for a row (user).

        user : one row id/position, or (q,) of them (ids when fitted with ids).
        k : int in [1, d]. exclude_seen : leave out the row's observed entries (their slots,
            when fewer than k are left, come last with score -inf).
        Returns (items, scores): for one user (k,) and (k,); for q users (q, k) and (q, k).
        Items are ids when fitted with ids, else column positions; scores float64 numpy. A user
        not seen in fit gets the columns of highest offset (``n_unknown_`` counts them).
        Memory: (b, d) scores at a time, b = max(1, block_elems // d) users, and with no
        ``completed_`` kept, one block of completed rows of the fitted orientation."""
        check_is_fitted(self, "coef_")
        n, d = self.shape_
        if not isinstance(k, Integral) or isinstance(k, bool) or not 1 <= k <= d:
            raise ValueError(f"k must be an integer in [1, {d}], got {k!r}")
        single = np.ndim(user.cpu() if isinstance(user, torch.Tensor) else user) == 0
        u = self._positions(user, 0, "user")
        self.n_unknown_ = int((u < 0).sum())
        items = np.empty((len(u), k), dtype=np.int64)
        scores = np.empty((len(u), k), dtype=np.float64)
        step = max(1, self.block_elems // max(d, 1))
        for s in range(0, len(u), step):
            ub = u[s : s + step]
            S = torch.as_tensor(self._row_scores(ub), dtype=torch.float64)
            if exclude_seen:
                rr, cc = self._seen(ub)
                S[torch.as_tensor(rr), torch.as_tensor(cc)] = -torch.inf
            top = torch.topk(S, k, dim=1)
            items[s : s + step], scores[s : s + step] = top.indices.numpy(), top.values.numpy()
        if self._maps is not None:
            items = self._maps[1].decode(items.reshape(-1)).reshape(items.shape)
        return (items[0], scores[0]) if single else (items, scores)

    def _row_scores(self, u):
        """(len(u), d) float64 numpy completed rows of Y's orientation; offsets only (mean plus
        column offsets) for u = -1."""
        n, d = self.shape_
        out = np.broadcast_to(self.mu_ + self.col_bias_[None, :], (len(u), d)).copy()
        known = np.nonzero(u >= 0)[0]
        if not len(known):
            return out
        uk = u[known]
        if self.completed_ is not None:
            X = self.completed_
            if self._torch_out:
                out[known] = X[torch.as_tensor(uk, device=X.device)].cpu().numpy()
            else:
                out[known] = X[uk]
            return out
        for r0, r1 in self._systems.row_ranges():
            if self.orientation_ == "rows":
                sel = np.nonzero((uk >= r0) & (uk < r1))[0]
                if len(sel):
                    X = self._complete(r0, r1)
                    idx = torch.as_tensor(uk[sel] - r0, device=X.device)
                    out[known[sel]] = X[idx].cpu().numpy()
            else:  # a row of Y is a column of the fitted transpose
                X = self._complete(r0, r1)
                out[known, r0:r1] = X[:, torch.as_tensor(uk, device=X.device)].T.cpu().numpy()
        return out

    def _seen(self, u):
        """(batch slots, columns) of the observed entries of the rows u (-1: none) of Y."""
        if getattr(self, "_seen_csr", None) is None:  # Y's observed columns by row, once
            rows = self._systems.rows.cpu().numpy()
            cols = self._systems.cols.cpu().numpy()
            if self.orientation_ == "cols":
                order = np.lexsort((rows, cols))
                rows, cols = cols[order], rows[order]
            indptr = np.concatenate([[0], np.cumsum(np.bincount(rows, minlength=self.shape_[0]))])
            self._seen_csr = (indptr, cols)
        indptr, cols = self._seen_csr
        slots = np.nonzero(u >= 0)[0]
        start, count = indptr[u[slots]], np.diff(indptr)[u[slots]]
        rr = np.repeat(slots, count)
        offs = np.arange(int(count.sum())) - np.repeat(np.cumsum(count) - count, count)
        return rr, cols[np.repeat(start, count) + offs]
