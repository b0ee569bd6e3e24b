"""Recursive Feature Machines as scikit-learn estimators: RFMRegressor and RFMClassifier.

The iteration (docs/math.md), for t = 0 .. iters:

    alpha_t = (K_{M_t}(X, X) + reg I)^{-1} y          kernel_solve (Cholesky or CG)
    record train / validation metrics; keep the best iterate on validation data
    M_{t+1} = normalize(AGOP(f_t; Q) ** agop_power)   agop on a seeded random sample Q

so ``iters`` = 5 means five M updates and six solves (t = 0..5), as in xRFM.

Nystroem RFM (centers=m or an (m, d) array; centers=None is the exact iteration above): every
iteration solves the Nystroem system on the fixed centers C with the current M
(rfmfast/solvers/nystroem.py: CG with Falkon's preconditioner, warm-started from the previous
alpha), and the AGOP is that of the Nystroem predictor f_t(x) = K_{M_t}(x, C) alpha_t on the same
sampled queries Q (the agop op with C as its centers); predictions are K_M(X, C) alpha.

Both conventions:

    xRFM / Science 2024 (the defaults)  laplace, bandwidth 10, reg 1e-3, agop_power 1,
                                        normalize "max", centering False
    grokking (ICML 2025)                gaussian, bandwidth 2.5, reg 0, agop_power 0.5
                                        (matrix square root by eigh), normalize None,
                                        centering True

Memory: the training set, alpha (n x c), M (d x d), and the solve (n^2 entries for
"cholesky", O(n rank) for "cg"; Nystroem: alpha (m x c) and two m x m matrices, never n x m);
the AGOP and the predictions are fused ops (rfmfast.agop, rfmfast.kernel_matmul) and never
form an n x n or q x n x d array.

Every parameter is checked at the start of fit (scikit-learn's parameter validation,
_parameter_constraints). A solve that did not converge, an AGOP that is zero (M would collapse
and the model become a constant) or that overflowed never passes silently: a warning
(sklearn.exceptions.ConvergenceWarning) and a record in history_, or an error saying what to do.
"""

from __future__ import annotations

import time
import warnings
from contextlib import nullcontext
from numbers import Real

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils._param_validation import Options, StrOptions
from sklearn.utils.validation import check_is_fitted

from .._threads import torch_kernel_threads, torch_single_thread
from ..kernels import check_kernel
from ..ops.agop import agop
from ..ops.kernel_matmul import kernel_matmul
from ..solvers import cg_solve, cholesky_solve
from ..solvers._params import BACKEND, KERNEL, Number, at_least, positive
from ..solvers.auto import SOLVERS, choose_solver, redo_by_cholesky
from ..solvers.cholesky import Workspace
from ..solvers.nystroem import MAX_ITER as NYSTROEM_MAX_ITER
from ..solvers.nystroem import nystroem_solve
from . import _inputs as inputs
from . import _rfm_utils as rfm_utils

_FORMAT = "rfmfast.rfm/1"


class _RFMBase(BaseEstimator):
    """Shared fit / predict / save logic. Subclasses define how targets are encoded and scored."""

    _metric = "mse"
    _maximize = False
    # scikit-learn's parameter validation (self._validate_params() at the start of fit);
    # numbers are Number intervals: bools and strings are refused, bounds are stated
    _parameter_constraints: dict = {
        "kernel": KERNEL,
        "bandwidth": [positive()],
        "reg": [at_least(0, Real)],
        "iters": [at_least(0)],
        "diag": ["boolean"],
        "centering": ["boolean"],
        "agop_power": [positive()],
        "normalize": [StrOptions({"max"}), None],
        "agop_samples": [at_least(1)],
        "solver": [StrOptions(set(SOLVERS))],
        "centers": [None, at_least(1), "array-like"],
        "validation_fraction": [Number(Real, 0, 1, closed="neither"), None],
        "early_stopping": [at_least(1, Real), None],
        "keep_best": ["boolean"],
        "device": [str, torch.device],
        "backend": BACKEND,
        "dtype": [
            StrOptions({"float32", "float64"}),
            Options(torch.dtype, {torch.float32, torch.float64}),
            Options(np.dtype, {np.dtype("float32"), np.dtype("float64")}),
        ],
        "random_state": [at_least(0), None],
        "verbose": ["verbose"],
    }

    def __init__(
        self,
        kernel="laplace",
        bandwidth=10.0,
        reg=1e-3,
        iters=5,
        diag=False,
        centering=False,
        agop_power=1.0,
        normalize="max",
        agop_samples=20_000,
        solver="auto",
        validation_fraction=None,
        early_stopping=None,
        keep_best=True,
        device="auto",
        backend="auto",
        dtype="float32",
        random_state=0,
        verbose=False,
        centers=None,
    ):
        self.kernel = kernel
        self.bandwidth = bandwidth
        self.reg = reg
        self.iters = iters
        self.diag = diag
        self.centering = centering
        self.agop_power = agop_power
        self.normalize = normalize
        self.agop_samples = agop_samples
        self.solver = solver
        self.validation_fraction = validation_fraction
        self.early_stopping = early_stopping
        self.keep_best = keep_best
        self.device = device
        self.backend = backend
        self.dtype = dtype
        self.random_state = random_state
        self.verbose = verbose
        self.centers = centers

    # ---- parameter checks (before any work) -------------------------------------------------
    def _check_params(self):
        """Every parameter against _parameter_constraints (InvalidParameterError, a ValueError
        naming it), then what the constraints cannot say (the kernel's own bandwidth rule, the
        device, Nystroem centers with the exact solver) -> (torch dtype, torch device)."""
        self._validate_params()
        check_kernel(self.kernel, self.bandwidth)
        if self.centers is not None and self.solver == "cholesky":
            raise ValueError(
                "solver='cholesky' is the exact solve (centers=None); Nystroem "
                "centers are solved by preconditioned CG: use solver='auto' or 'cg'"
            )
        return inputs.torch_dtype(self.dtype), inputs.resolve_device(self.device)

    # ---- subclass hooks ---------------------------------------------------------------------
    def _encode(self, y, dtype, device, fitting, weights=None):  # -> (n, c) tensor
        """weights (fit only): the checked (n,) sample weights or None; the classifier takes
        its classes from the rows of positive weight."""
        raise NotImplementedError

    def _score_metric(self, scores: torch.Tensor, Y: torch.Tensor, w=None) -> float:
        """The metric of scores against Y, weighted by w ((n,) tensor) when given."""
        raise NotImplementedError

    # ---- fit --------------------------------------------------------------------------------
    def fit(self, X, y, X_val=None, y_val=None, callback=None, *, sample_weight=None):
        """Fit on X: (n, d), y: (n,) or (n, c) (labels for the classifier).

        X_val, y_val: validation data for keeping the best iterate and early stopping; if not
        given and validation_fraction is set, a seeded random split of X is held out.
        callback: called as callback(row) after each solve with that iteration's history row
        (dict: metrics, timings); returning True stops the fit there (no further AGOP).
        sample_weight: None, a number, or (n,) weights >= 0, not all zero. Each solve is then
        the weighted ridge, minimising sum_i w_i (f(x_i) - y_i)^2 + reg ||f||^2, i.e.
        (K + reg W^{-1}) alpha = y; the AGOP weights its query points by w too,
        sum_q w_q grad f(x_q) grad f(x_q)^T / sum_q w_q (centering: the w-weighted mean
        gradient), so that an integer weight is the same fit as that many copies of the row.
        Rows of weight zero are dropped before anything else (they are as if not there: no
        center, no query, no hold-out row, no class). The agop_samples queries are drawn
        uniformly from the rows left and weighted by theirs; a validation_fraction hold-out
        keeps its rows' weights (weighted validation metric); X_val is unweighted. Equal
        weights c are the unweighted fit with reg / c.
        numpy, torch (any device: moved to ``device``) and pandas inputs are accepted; a
        DataFrame's column names are kept in feature_names_in_ and checked at predict time.
        With centers, they are drawn (centers=m) or checked (an array) before any work, from
        the training rows left after a validation_fraction hold-out.
        """
        dtype, device = self._check_params()
        if y is None:
            raise ValueError(
                f"{type(self).__name__} requires y to be passed, but the target y is None"
            )
        inputs.check_feature_names(self, X, reset=True)
        Xt, _ = inputs.features(X, "X", dtype, device)
        w = inputs.sample_weights(sample_weight, Xt.shape[0])
        Y = self._encode(y, dtype, device, fitting=True, weights=w)
        inputs.check_rows(Xt.shape[0], Y.shape[0])
        keep, w, reg = inputs.weighted_ridge(w, self.reg)
        if keep is not None:
            idx = torch.from_numpy(keep).to(device)
            Xt, Y = Xt[idx], Y[idx]
        wt = None if w is None else torch.from_numpy(w).to(device=device, dtype=dtype)
        rng = np.random.default_rng(self.random_state)
        Xv = Yv = wv = None
        if X_val is not None or y_val is not None:
            if X_val is None or y_val is None:
                raise ValueError("pass both X_val and y_val, or neither")
            inputs.check_feature_names(self, X_val, reset=False, name="X_val")
            Xv, _ = inputs.features(X_val, "X_val", dtype, device)
            Yv = self._encode(y_val, dtype, device, fitting=False)
            inputs.check_rows(Xv.shape[0], Yv.shape[0], "X_val", "y_val")
            if Xv.shape[1] != Xt.shape[1]:
                raise ValueError(f"X_val has {Xv.shape[1]} features but X has {Xt.shape[1]}")
        elif self.validation_fraction is not None:
            n = Xt.shape[0]
            n_val = int(round(self.validation_fraction * n))
            if n_val < 1 or n - n_val < 2:
                raise ValueError(
                    f"validation_fraction={self.validation_fraction} leaves no "
                    f"usable split of {n} samples" + ("" if keep is None else " of positive weight")
                )
            perm = torch.from_numpy(rng.permutation(n)).to(device)
            Xv, Yv = Xt[perm[:n_val]], Y[perm[:n_val]]
            Xt, Y = Xt[perm[n_val:]], Y[perm[n_val:]]
            if wt is not None:
                wv, wt = wt[perm[:n_val]], wt[perm[n_val:]]
                mean = float(wt.to(torch.float64).mean())  # the training rows' mean: 1 again
                wt, reg = wt / mean, reg / mean
                wt = None if bool((wt == wt[0]).all()) else wt
        held = Xv is not None and X_val is None
        C = inputs.centers(
            self.centers,
            Xt,
            self.random_state,
            points="training points left after the validation hold-out"
            if held
            else "training points",
        )
        # The fit's own torch ops (checks, reductions over vectors, d x d algebra) are small: on
        # one thread, so that on a busy machine their spinning OpenMP threads cost nothing; the
        # kernels keep the thread count (rfmfast._threads).
        with torch_single_thread() if Xt.device.type == "cpu" else nullcontext():
            self._fit_loop(Xt, Y, Xv, Yv, rng, callback, C, w=wt, w_val=wv, reg=reg)
        return self

    def _solve(self, X, Y, M, solver, x0, workspace=None, C=None, w=None, reg=None):
        """One kernel ridge solve (the weighted ridge with reg / w on the diagonal when w,
        (n,), is given; reg: the ridge, default self.reg); verbose reaches the solver (its
        progress lines). A cg that does not converge warns (ConvergenceWarning, from cg_solve)
        and its info says so; with solver="auto" it is redone by Cholesky where the n x n
        matrix fits, and one that diverged with no room for Cholesky raises
        (solvers.auto.redo_by_cholesky).
        C (m, d): the Nystroem solve on those centers (solver "nystroem"), warm-started from x0
        (m, c); one that does not converge warns and says so in its info, and is kept."""
        opts = dict(
            kernel=self.kernel,
            bandwidth=float(self.bandwidth),
            M=M,
            reg=float(self.reg if reg is None else reg),
            backend=self.backend,
            verbose=bool(self.verbose),
            weights=w,
        )
        if C is not None:
            with torch_kernel_threads():  # the m x m algebra gains from threads
                return nystroem_solve(X, Y, C, x0=x0, max_iter=NYSTROEM_MAX_ITER, **opts)
        if solver == "cholesky":
            return cholesky_solve(X, Y, workspace=workspace, **opts)
        with torch_kernel_threads():
            alpha, info = cg_solve(X, Y, x0=x0, seed=self.random_state or 0, **opts)
        if (
            self.solver == "auto"
            and not info.converged
            and redo_by_cholesky(info, X.shape[0], X.element_size(), X.device, None)
        ):
            alpha, info2 = cholesky_solve(X, Y, **opts)
            info2.reason = (
                f"cg did not converge ({info.iterations} iterations, residual "
                f"{info.residual:.2g}, {info.status}); redone by cholesky"
            )
            info2.iterations, info2.message = info.iterations, info.message
            return alpha, info2
        return alpha, info

    def _fit_loop(self, X, Y, Xv, Yv, rng, callback=None, C=None, w=None, w_val=None, reg=None):
        """The iteration on X (n, d), Y (n, c); C (m, d): Nystroem centers (None: exact).
        w (n,), w_val: the training and hold-out rows' sample weights (None: unweighted; w of
        mean 1), reg: the ridge of the weighted problem (default self.reg)."""
        n, d = X.shape
        reg = float(self.reg if reg is None else reg)
        solver, reason = self.solver, ""
        if C is not None:
            solver, reason = (
                "nystroem",
                (
                    f"nystroem: m = {C.shape[0]} centers, CG with Falkon's "
                    "preconditioner, warm-started"
                ),
            )
        elif solver == "auto":
            solver, reason = choose_solver(n, reg, X.element_size(), X.device, None)
        if self.verbose:
            print(
                f"RFM: n = {n}, d = {d}, outputs = {Y.shape[1]}, "
                f"validation = {0 if Xv is None else Xv.shape[0]}; solver {reason or solver}"
            )
        Z = X if C is None else C  # the predictor's centers: f(x) = K_M(x, Z) alpha
        q = min(n, int(self.agop_samples))
        Q, wq = X, w
        if q < n:
            pick = torch.from_numpy(np.sort(rng.choice(n, q, replace=False))).to(X.device)
            Q, wq = X[pick], (None if w is None else w[pick])
        opts = dict(kernel=self.kernel, bandwidth=float(self.bandwidth), backend=self.backend)
        M, alpha = None, None
        best = None
        history = []
        # Every Cholesky solve of the fit reuses one n x n buffer where the kernel matrix is
        # written in place (the C++ backend): no n^2 allocation and page faults per iteration.
        # Elsewhere the solve allocates its own (on CUDA the caching allocator reuses it).
        ws = Workspace() if solver == "cholesky" else None
        t_fit = time.perf_counter()
        for t in range(int(self.iters) + 1):
            t0 = time.perf_counter()
            alpha, info = self._solve(X, Y, M, solver, alpha, ws, C, w, reg)
            if info.reason and self.verbose:
                print(f"  {info.reason}")
            row = {
                "iter": t,
                "solver": info.solver,
                "solve_s": time.perf_counter() - t0,
                "jitter": info.jitter,
                "cg_iterations": info.iterations,
                "residual": info.residual,
                "converged": info.converged,
                "warning": info.message or None,
                "agop_s": None,
            }
            # training predictions from the solve itself: K alpha = y - (reg + jitter) alpha,
            # unless cg stopped short of its tolerance or the solve is Nystroem (then K alpha
            # is computed: K(X, C) alpha)
            # (weighted: K alpha = y - (reg / w + jitter) alpha)
            if info.converged and C is None:
                ridge = reg if w is None else reg / w[:, None]
                fitted = Y - (ridge + info.jitter) * alpha
            else:
                fitted = kernel_matmul(X, Z, alpha, M=M, **opts)
            row[f"train_{self._metric}"] = self._score_metric(fitted, Y, w)
            val = None
            if Xv is not None:
                val = self._score_metric(kernel_matmul(Xv, Z, alpha, M=M, **opts), Yv, w_val)
            row[f"val_{self._metric}"] = val
            better = (
                best is None
                or val is None
                or not self.keep_best
                or (val > best["val"] if self._maximize else val < best["val"])
            )
            if better:
                best = {"t": t, "val": val, "M": M, "alpha": alpha, "jitter": info.jitter}
            stop = (
                self.early_stopping is not None
                and val is not None
                and best["val"] is not None
                and (
                    val < best["val"] / self.early_stopping
                    if self._maximize
                    else val > best["val"] * self.early_stopping
                )
            )
            stop = bool(callback(row)) if callback is not None and not stop else stop
            note = "  (early stop)" if stop else ""
            if t < self.iters and not stop:
                t1 = time.perf_counter()
                agop_opts = dict(M=M, diag=bool(self.diag), centering=bool(self.centering), **opts)
                if wq is None:
                    A = agop(Q, Z, alpha, **agop_opts)
                else:  # the queries weighted by their sample weights
                    A = rfm_utils.weighted_agop(Q, Z, alpha, wq, **agop_opts)
                row["agop_s"] = time.perf_counter() - t1
                why = rfm_utils.agop_trouble(
                    A, Z, alpha, float(self.bandwidth), t
                )  # raises on overflow
                if why is None:
                    M = rfm_utils.agop_to_M(A, float(self.agop_power), self.normalize)
                else:  # a zero M: a constant model. Stop, keep the best so far
                    warnings.warn(why, ConvergenceWarning, stacklevel=3)
                    row["warning"] = why if row["warning"] is None else f"{row['warning']} {why}"
                    stop, note = True, "  (stopped: the AGOP is zero)"
            history.append(row)
            if self.verbose:
                left = (time.perf_counter() - t_fit) / (t + 1) * (int(self.iters) - t)
                print(
                    rfm_utils.progress_line(
                        t, int(self.iters), row, self._metric, None if stop else left
                    )
                    + note
                )
            if stop:
                break
        self._set_fitted(Z, best, history, d)

    def _set_fitted(self, X, best, history, d):
        """X: the predictor's centers (the training points of an exact fit, else the Nystroem
        centers), best: the kept iterate."""
        M = best["M"]  # None: the identity (iteration 0)
        self._X_t, self._alpha_t, self._M_t = X, best["alpha"], M
        self.centers_ = X.cpu().numpy()
        if M is None:
            M = torch.ones(d, dtype=X.dtype) if self.diag else torch.eye(d, dtype=X.dtype)
        self.M_ = M.cpu().numpy()
        self.alpha_ = best["alpha"].cpu().numpy()
        self.best_iter_ = best["t"]
        self.jitter_ = best["jitter"]
        self.history_ = history
        self.n_features_in_ = d

    # ---- predict ----------------------------------------------------------------------------
    def _scores(self, X) -> tuple[torch.Tensor, tuple]:
        """(the (m, c) scores in the model's dtype, how _out returns a result for this X: torch
        or not, X's device, the output dtype of inputs.output_dtype)."""
        check_is_fitted(self, "alpha_")
        inputs.check_feature_names(self, X, reset=False)
        dev = self._X_t.device
        Xq, is_torch = inputs.features(X, "X", self._X_t.dtype, dev)
        if Xq.shape[1] != self.n_features_in_:
            raise ValueError(
                f"X has {Xq.shape[1]} features, but {type(self).__name__} is "
                f"expecting {self.n_features_in_} features as input"
            )
        in_dev = X.device if is_torch else None
        S = kernel_matmul(
            Xq,
            self._X_t,
            self._alpha_t,
            kernel=self.kernel,
            bandwidth=float(self.bandwidth),
            M=self._M_t,
            backend=self.backend,
        )
        return S, (is_torch, in_dev, inputs.output_dtype(X))

    @staticmethod
    def _out(t: torch.Tensor, how):
        """t in the input's float dtype: a tensor on X's device for torch input, else numpy."""
        is_torch, dev, dtype = how
        t = t.to(dtype)
        return t.to(dev) if is_torch else t.cpu().numpy()

    # ---- learned features -------------------------------------------------------------------
    @property
    def feature_importances_(self) -> np.ndarray:
        """(d,) float64: the diagonal of M_ (M_ itself when diag=True) over its sum, summing to
        1 (uniform if that diagonal is zero): how much the learned metric stretches each input
        feature. A property computed from M_, so a loaded model has it too; before fit it raises
        NotFittedError. The features themselves, X M^(1/2): rfmfast.models.rfm_features.
        RFMFeatures."""
        check_is_fitted(self, "M_")
        M = np.asarray(self.M_, dtype=np.float64)
        m = np.abs(M if M.ndim == 1 else np.diagonal(M))
        total = float(m.sum())
        return m / total if total > 0 and np.isfinite(total) else np.full(m.shape, 1 / m.size)

    # ---- save / load ------------------------------------------------------------------------
    def save(self, path) -> None:
        """Write the fitted model to ``path``: tensors and plain values in a checksummed file
        (models/_io.py), written whole or not at all. state["X"] holds the predictor's centers:
        the training points of an exact fit, the Nystroem centers otherwise; an array
        ``centers`` parameter is saved as a float64 tensor (loaded back as a numpy array)."""
        from . import _io

        check_is_fitted(self, "alpha_")
        params = self.get_params()
        params["dtype"] = str(inputs.torch_dtype(params["dtype"])).replace("torch.", "")
        spec = params["centers"]
        if spec is not None and not isinstance(spec, (int, np.integer)):
            a, is_torch = inputs.as_array(spec, "centers")
            params["centers"] = (
                a.cpu().to(torch.float64).contiguous()
                if is_torch
                else torch.from_numpy(np.array(a, dtype=np.float64))
            )
        M = None if self._M_t is None else self._M_t.cpu()
        names = getattr(self, "feature_names_in_", None)
        state = {
            "X": self._X_t.cpu(),
            "alpha": self._alpha_t.cpu(),
            "M": M,
            "best_iter": self.best_iter_,
            "jitter": self.jitter_,
            "history": self.history_,
            "feature_names": None if names is None else [str(v) for v in names],
        }
        state.update(self._extra_state())
        _io.save(
            path,
            {"format": _FORMAT, "class": type(self).__name__, "params": params, "state": state},
        )

    @classmethod
    def load(cls, path, device=None):
        """Read a model written by ``save``; device: where to put it (default: its ``device``).

        The checksum, the format tag and the contents are checked before anything is built:
        every parameter and state entry present, X (n, d) and alpha (n, c) finite tensors of the
        saved dtype, M None or (d,) / (d, d) as ``diag`` says, the ``centers`` parameter None,
        an int equal to n or a finite (n, d) float64 tensor (X then holds those n centers).
        Any other file raises ValueError "... not an rfmfast model file (or corrupted): ...";
        nothing in a file is executed. A file written before the ``centers`` parameter
        existed loads as centers=None.
        """
        from . import _io

        blob = _io.load(path, _FORMAT)
        kind = _io.get(blob, "class", str, path)
        if kind != cls.__name__:
            raise ValueError(f"{path} holds a {kind}, not a {cls.__name__}")
        params = _io.get(blob, "params", dict, path)
        params = dict(params) if "centers" in params else {**params, "centers": None}
        expected = set(cls._get_param_names())
        if set(params) != expected:
            odd = sorted(set(params) ^ expected, key=str)
            raise _io.corrupt(path, f"its parameters do not match {cls.__name__}'s: {odd}")
        s = _io.get(blob, "state", dict, path)
        dtype = _io.get(params, "dtype", str, path, where="params")
        if dtype not in ("float32", "float64"):
            raise _io.corrupt(path, f"params['dtype'] is {dtype!r}")
        dtype = getattr(torch, dtype)
        diag = _io.get(params, "diag", bool, path, where="params")
        X = _io.tensor(s, "X", path, (None, None), dtype)
        n, d = X.shape
        spec = _io.get(params, "centers", (int, torch.Tensor, type(None)), path, where="params")
        if isinstance(spec, torch.Tensor):
            spec = _io.tensor(params, "centers", path, (n, d), torch.float64, where="params")
            params["centers"] = spec.numpy()
        elif spec is not None and spec != n:
            raise _io.corrupt(path, f"params['centers'] = {spec} but state['X'] holds {n} centers")
        alpha = _io.tensor(s, "alpha", path, (n, None), dtype)
        M = None
        if _io.get(s, "M", (torch.Tensor, type(None)), path, where="state") is not None:
            M = _io.tensor(s, "M", path, (d,) if diag else (d, d), dtype)
        best_iter = _io.get(s, "best_iter", int, path, where="state")
        jitter = _io.get(s, "jitter", (int, float), path, where="state")
        history = _io.get(s, "history", list, path, where="state")
        if not all(isinstance(r, dict) for r in history):
            raise _io.corrupt(path, "state['history'] is not a list of dicts")
        names = _io.get(s, "feature_names", (list, type(None)), path, where="state")
        if names is not None and (len(names) != d or not all(isinstance(v, str) for v in names)):
            raise _io.corrupt(path, f"state['feature_names'] is not {d} strings")
        if best_iter < 0 or not 0 <= jitter < float("inf") or n < 1 or alpha.shape[1] < 1:
            raise _io.corrupt(
                path,
                f"state['best_iter'] = {best_iter}, state['jitter'] = "
                f"{jitter}, X {tuple(X.shape)}, alpha {tuple(alpha.shape)}",
            )
        model = cls(**params)
        if hasattr(model, "_parameter_constraints"):  # every value, as fit would check it
            try:
                model._validate_params()
            except ValueError as e:
                raise _io.corrupt(path, f"its parameters are invalid: {e}") from None
        model._load_extra_state(s, path, alpha.shape[1])
        dev = inputs.resolve_device(device if device is not None else model.device)
        model._set_fitted(
            X.to(dev),
            {
                "M": None if M is None else M.to(dev),
                "alpha": alpha.to(dev),
                "t": best_iter,
                "jitter": float(jitter),
            },
            history,
            d,
        )
        if names is not None:
            model.feature_names_in_ = np.asarray(names, dtype=object)
        return model

    def _extra_state(self) -> dict:
        return {}

    def _load_extra_state(self, state: dict, path, n_outputs: int) -> None:
        """Check and set the subclass's entries of a loaded ``state``; alpha has n_outputs
        columns."""


class RFMRegressor(RegressorMixin, _RFMBase):
    """Recursive Feature Machine regressor (scikit-learn API).

    Parameters
    ----------
    kernel : "laplace" | "gaussian" | "l1_laplace"
    bandwidth : float, the kernel bandwidth L (10 in xRFM; 2.5 for the grokking setting)
    reg : float >= 0, ridge added to the kernel matrix diagonal (0 = interpolation)
    iters : int, number of M updates (iters + 1 solves)
    diag : bool, learn only the diagonal of M
    centering : bool, subtract the mean gradient per output before the AGOP
    agop_power : float, M = AGOP ** agop_power (1: xRFM; 0.5: grokking, via eigh)
    normalize : "max" | None, divide M by its largest entry (xRFM) or not (grokking)
    agop_samples : int, AGOP on a seeded random sample of at most this many training points
    solver : "auto" | "cholesky" | "cg" (see rfmfast.kernel_solve). With centers, "auto" and
        "cg" run the Nystroem solve; "cholesky" is refused
    validation_fraction : None or float, seeded hold-out when fit gets no X_val / y_val
    early_stopping : None or ratio r >= 1, stop when the validation MSE exceeds r x the best
    keep_best : bool, keep the iterate with the best validation metric (else the last one)
    device : "auto" | "cpu" | "cuda"; backend : op backend ("auto", "reference", "cpu", ...)
    dtype : "float32" | "float64"; random_state : int seed >= 0 or None
    verbose : bool, one line per iteration (metrics, timings, time left) and the solver's
        progress (cg and Nystroem: iteration, residual, time per iteration and left, every ~2 s)
    centers : None, int m in [1, n], or an (m, d) array, as in rfmfast.KernelRidge. None: the
        exact iteration, every training point a center. m: Nystroem RFM on m training points
        drawn uniformly at random without replacement (seeded by random_state; after a
        validation_fraction hold-out, from the rows left). An array: Nystroem RFM on those
        centers. Each iteration solves the Nystroem system (CG with Falkon's preconditioner,
        rfmfast/solvers/nystroem.py) with the current M, warm-started from the previous alpha,
        and takes the AGOP of f(x) = K_M(x, C) alpha on the agop_samples queries.

    Attributes
    ----------
    M_ : (d, d) or (d,) numpy array, the feature matrix of the kept iterate
    alpha_ : (n, c) numpy array, the solved weights (c = 1 for 1-D y); (m, c) with centers
    centers_ : (n, d) or (m, d) numpy array, the predictor's centers: the training points of an
        exact fit, the Nystroem centers otherwise; predict(Q) = K_M(Q, centers_) alpha_
    best_iter_ : int, the kept iterate; history_ : list of dicts, per-iteration metrics/timings,
        the solve ("solver": "cholesky", "cg" or "nystroem"; "cg_iterations", "residual",
        "converged") and "warning" (None, or what went wrong: a cg that did not
        converge, an AGOP that was zero)
    jitter_ : float, diagonal jitter the kept solve needed (0.0 normally)
    n_features_in_ : int; feature_names_in_ : (d,) array of the DataFrame's column names (only
        when fitted on a DataFrame with string column names; predict refuses other names)

    fit(X, y, sample_weight=w) fits the weighted ridge, minimising
    sum_i w_i (f(x_i) - y_i)^2 + reg ||f||^2, with the AGOP's query points weighted by w too
    (see fit). Predictions are in X's float dtype: float64 in -> float64 out, float32 in ->
    float32 out (integers, bools, lists: float64), whatever ``dtype`` the model computes in.
    """

    def _encode(self, y, dtype, device, fitting, weights=None):
        Y, one_d = inputs.targets(y, "y" if fitting else "y_val", dtype, device)
        if fitting:
            self._y_1d = one_d
            self.n_outputs_ = Y.shape[1]
        elif Y.shape[1] != self.n_outputs_:
            raise ValueError(f"y_val has {Y.shape[1]} outputs but y has {self.n_outputs_}")
        return Y

    def __sklearn_tags__(self):  # scikit-learn >= 1.6: y may be (n, c)
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags

    def _more_tags(self):  # scikit-learn < 1.6
        return {"multioutput": True}

    def _score_metric(self, scores, Y, w=None):
        sq = (scores - Y).to(torch.float64) ** 2  # no float32 overflow
        if w is None:
            return float(sq.mean())
        w = w.to(torch.float64)
        return float((w * sq.mean(1)).sum() / w.sum())

    def predict(self, X):
        """X: (m, d) -> predictions (m,) for 1-D y, else (m, c), in X's float dtype (float32
        for float32 input, float64 otherwise; computed in ``dtype``); numpy unless X is a torch
        tensor (then a tensor on X's device)."""
        S, how = self._scores(X)
        if self._y_1d:
            S = S[:, 0]
        return self._out(S, how)

    def _extra_state(self):
        return {"y_1d": self._y_1d, "n_outputs": self.n_outputs_}

    def _load_extra_state(self, s, path, n_outputs):
        from . import _io

        y_1d = _io.get(s, "y_1d", bool, path, where="state")
        n_out = _io.get(s, "n_outputs", int, path, where="state")
        if n_out != n_outputs or (y_1d and n_out != 1):
            raise _io.corrupt(
                path,
                f"state['n_outputs'] = {n_out} (y_1d {y_1d}) but alpha has {n_outputs} column(s)",
            )
        self._y_1d, self.n_outputs_ = y_1d, n_out


class RFMClassifier(ClassifierMixin, _RFMBase):
    """Recursive Feature Machine classifier: kernel regression on one-hot labels, argmax.

    Same parameters as RFMRegressor; the validation metric (best iterate, early stopping) is
    accuracy. Labels may be any values of one type (numbers, strings, pandas string or
    categorical Series); every class needs at least two training samples (with sample_weight:
    two of positive weight, or one of weight >= 2). Extra attributes: classes_ (sorted; with
    sample_weight, the classes of the rows of positive weight). decision_function follows
    scikit-learn: (m,) for two classes (positive: classes_[1]), (m, n_classes) otherwise.
    predict_proba is the softmax of the class scores: ordered like them, rows summing to 1, but
    not calibrated (wrap the model in sklearn.calibration.CalibratedClassifierCV for calibrated
    probabilities). decision_function and predict_proba are in X's float dtype (float32 for
    float32 input, float64 otherwise). fit(X, y, sample_weight=w): the weighted ridge on the
    one-hot labels and a weighted AGOP, as RFMRegressor.fit says.
    """

    _metric = "accuracy"
    _maximize = True

    def _encode(self, y, dtype, device, fitting, weights=None):
        lab = inputs.labels(y, "y" if fitting else "y_val")
        if fitting:
            # with weights: the classes of the rows of positive weight; a class needs two such
            # rows or one of weight >= 2 (as if the weights were repeat counts)
            weighted = weights is not None and len(weights) == len(lab)
            pos = lab[weights > 0] if weighted else lab
            classes, inv, counts = np.unique(pos, return_inverse=True, return_counts=True)
            mass = np.bincount(inv.ravel(), weights[weights > 0]) if weighted else counts
            what = " of positive weight" if weighted else ""
            if len(classes) < 2:
                raise ValueError(
                    f"y has a single class ({classes[0].tolist()!r}, {len(pos)} "
                    f"sample(s){what}); a classifier needs two or more"
                )
            lonely = (counts < 2) & (mass < 2)
            if lonely.any():
                k = int(np.argmax(lonely))
                raise ValueError(
                    f"class {classes[k].tolist()!r} has only one sample{what}"
                    + (f" (weight {mass[k]:g})" if weighted else "")
                    + "; every class needs at least two"
                    + (" (or one of weight >= 2)" if weighted else "")
                    + " (drop it or merge it)"
                )
            self.classes_ = classes
        idx = np.searchsorted(self.classes_, lab)
        idx = np.clip(idx, 0, len(self.classes_) - 1)
        if not np.array_equal(self.classes_[idx], lab):
            if not fitting:
                raise ValueError("y_val has labels that are not in y")
            idx[self.classes_[idx] != lab] = 0  # weight-0 rows of a class absent: dropped
        Y = torch.zeros(len(lab), len(self.classes_), dtype=dtype, device=device)
        Y[torch.arange(len(lab), device=device), torch.from_numpy(idx).to(device)] = 1
        return Y

    def _score_metric(self, scores, Y, w=None):
        hit = (scores.argmax(1) == Y.argmax(1)).to(torch.float64)
        if w is None:
            return float(hit.mean())
        w = w.to(torch.float64)
        return float((w * hit).sum() / w.sum())

    def decision_function(self, X):
        """X: (m, d) -> scores. Two classes: (m,), classes_[1]'s score minus classes_[0]'s (> 0
        predicts classes_[1], as scikit-learn's scorers and calibration expect); more classes:
        (m, n_classes), the kernel regression outputs on the one-hot labels. In X's float dtype
        (float32 for float32 input, float64 otherwise)."""
        S, how = self._scores(X)
        if S.shape[1] == 2:
            S = S[:, 1] - S[:, 0]
        return self._out(S, how)

    def predict(self, X):
        """X: (m, d) -> labels (m,), always a numpy array (labels may be strings)."""
        S, _ = self._scores(X)
        return self.classes_[S.argmax(1).cpu().numpy()]

    def predict_proba(self, X):
        """X: (m, d) -> (m, n_classes), the softmax of the class scores (two classes: the
        logistic function of decision_function), computed in float64 and returned in X's float
        dtype (float32 for float32 input, float64 otherwise). Rows sum to 1 (to that dtype's
        rounding); a higher score never gets a lower probability, and the argmax is predict's.
        Not calibrated (see the class docstring)."""
        S, how = self._scores(X)
        P = torch.softmax(S.to(torch.float64), dim=1)
        return self._out(P, how)

    def _extra_state(self):
        return {"classes": self.classes_.tolist(), "classes_dtype": self.classes_.dtype.str}

    def _load_extra_state(self, s, path, n_outputs):
        from . import _io

        classes = _io.get(s, "classes", list, path, where="state")
        kind = _io.get(s, "classes_dtype", str, path, where="state")
        try:
            self.classes_ = np.array(classes, dtype=np.dtype(kind))
        except (TypeError, ValueError) as e:
            raise _io.corrupt(
                path, f"state['classes_dtype'] = {kind!r} does not fit the classes ({e})"
            ) from None
        if (
            self.classes_.dtype.kind not in "biufUS"
            or self.classes_.ndim != 1
            or len(np.unique(self.classes_)) != len(classes)
            or len(classes) != n_outputs
            or n_outputs < 2
        ):
            raise _io.corrupt(
                path,
                f"state['classes'] ({len(classes)}, dtype {kind}) do not "
                f"match alpha's {n_outputs} columns",
            )
