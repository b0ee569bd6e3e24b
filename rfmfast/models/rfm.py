"""Recursive Feature Machines as scikit-learn estimators: RFMRegressor and RFMClassifier.

The iteration (MATH.md), for t = 0 .. iters:

    alpha_t = (K_{M_t}(X, X) + reg I)^{-1} y          kernel_solve (Cholesky or CG)
    record train / validation metrics; keep the best iterate on validation data
    M_{t+1} = normalize(AGOP(f_t; Q) ** agop_power)   agop on a seeded random sample Q

so ``iters`` = 5 means five M updates and six solves (t = 0..5), as in xRFM. Both conventions:

    xRFM / Science 2024 (the defaults)  laplace, bandwidth 10, reg 1e-3, agop_power 1,
                                        normalize "max", centering False
    grokking (ICML 2025)                gaussian, bandwidth 2.5, reg 0, agop_power 0.5
                                        (matrix square root by eigh), normalize None,
                                        centering True

Memory: the training set, alpha (n x c), M (d x d), and the solve (n^2 entries for
"cholesky", O(n rank) for "cg"); the AGOP and the predictions are fused ops (rfmfast.agop,
rfmfast.kernel_matmul) and never form an n x n or q x n x d array.
"""
from __future__ import annotations

import time

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.utils.validation import check_is_fitted

from ..backends import choose
from ..kernels import check_kernel
from ..ops.agop import agop
from ..ops.kernel_matmul import kernel_matmul
from ..solvers import cg_solve, cholesky_solve
from ..solvers.cholesky import cpu_workspace
from ..solvers.auto import SOLVERS, available_memory, choose_solver
from . import _rfm_utils as U

_FORMAT = "rfmfast.rfm/1"


def _is_num(x) -> bool:
    return isinstance(x, (int, float, np.integer, np.floating)) and not isinstance(x, bool)


class _RFMBase(BaseEstimator):
    """Shared fit / predict / save logic. Subclasses define how targets are encoded and scored."""

    _metric = "mse"
    _maximize = False

    def __init__(self, kernel="laplace", bandwidth=10.0, reg=1e-3, iters=5, diag=False,
                 centering=False, agop_power=1.0, normalize="max", agop_samples=20_000,
                 solver="auto", validation_fraction=None, early_stopping=None, keep_best=True,
                 device="auto", backend="auto", dtype="float32", random_state=0, verbose=False):
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

    # ---- parameter checks (before any work) -------------------------------------------------
    def _check_params(self):
        check_kernel(self.kernel, self.bandwidth)
        if not (_is_num(self.reg) and 0 <= self.reg < float("inf")):
            raise ValueError(f"reg must be a finite number >= 0, got {self.reg!r}")
        if not (isinstance(self.iters, (int, np.integer)) and self.iters >= 0):
            raise ValueError(f"iters must be an integer >= 0, got {self.iters!r}")
        if not (_is_num(self.agop_power) and 0 < self.agop_power < float("inf")):
            raise ValueError(f"agop_power must be a positive number, got {self.agop_power!r}")
        if self.normalize not in U.NORMALIZATIONS:
            raise ValueError(f"normalize must be 'max' or None, got {self.normalize!r}")
        if not (isinstance(self.agop_samples, (int, np.integer)) and self.agop_samples >= 1):
            raise ValueError(f"agop_samples must be an integer >= 1, got {self.agop_samples!r}")
        if self.solver not in SOLVERS:
            raise ValueError(f"solver must be one of {SOLVERS}, got {self.solver!r}")
        vf = self.validation_fraction
        if vf is not None and not (_is_num(vf) and 0 < vf < 1):
            raise ValueError(f"validation_fraction must be None or a float in (0, 1), got {vf!r}")
        es = self.early_stopping
        if es is not None and not (_is_num(es) and es >= 1):
            raise ValueError(f"early_stopping must be None or a ratio >= 1 (e.g. 1.1), got {es!r}")
        return U.torch_dtype(self.dtype), U.resolve_device(self.device)

    # ---- subclass hooks ---------------------------------------------------------------------
    def _encode(self, y, dtype, device, fitting):  # -> (n, c) tensor
        raise NotImplementedError

    def _score_metric(self, scores: torch.Tensor, Y: torch.Tensor) -> float:
        raise NotImplementedError

    # ---- fit --------------------------------------------------------------------------------
    def fit(self, X, y, X_val=None, y_val=None, callback=None):
        """Fit on X: (n, d), y: (n,) or (n, c) (labels for the classifier).

        X_val, y_val: validation data for keeping the best iterate and early stopping; if not
        given and validation_fraction is set, a seeded random split of X is held out.
        callback: called as callback(row) after each solve with that iteration's history row
        (dict: metrics, timings); returning True stops the fit there (no further AGOP).
        numpy, torch (any device: moved to ``device``) and pandas inputs are accepted.
        """
        dtype, device = self._check_params()
        Xt, _ = U.features(X, "X", dtype, device)
        Y = self._encode(y, dtype, device, fitting=True)
        U.check_rows(Xt.shape[0], Y.shape[0])
        rng = np.random.default_rng(self.random_state)
        Xv = Yv = None
        if X_val is not None or y_val is not None:
            if X_val is None or y_val is None:
                raise ValueError("pass both X_val and y_val, or neither")
            Xv, _ = U.features(X_val, "X_val", dtype, device)
            Yv = self._encode(y_val, dtype, device, fitting=False)
            U.check_rows(Xv.shape[0], Yv.shape[0], "X_val", "y_val")
            if Xv.shape[1] != Xt.shape[1]:
                raise ValueError(f"X_val has {Xv.shape[1]} features but X has {Xt.shape[1]}")
        elif self.validation_fraction is not None:
            n = Xt.shape[0]
            n_val = int(round(self.validation_fraction * n))
            if n_val < 1 or n - n_val < 2:
                raise ValueError(f"validation_fraction={self.validation_fraction} leaves no "
                                 f"usable split of {n} samples")
            perm = torch.from_numpy(rng.permutation(n)).to(device)
            Xv, Yv = Xt[perm[:n_val]], Y[perm[:n_val]]
            Xt, Y = Xt[perm[n_val:]], Y[perm[n_val:]]
        self._fit_loop(Xt, Y, Xv, Yv, rng, callback)
        return self

    def _solve(self, X, Y, M, solver, x0, fallback, workspace=None):
        """One kernel ridge solve. With solver="auto" having picked cg (fallback=True), a CG that
        does not converge is redone by Cholesky (the n x n matrix fits: auto checked)."""
        opts = dict(kernel=self.kernel, bandwidth=float(self.bandwidth), M=M, reg=float(self.reg),
                    backend=self.backend)
        if solver == "cholesky":
            return cholesky_solve(X, Y, workspace=workspace, **opts)
        alpha, info = cg_solve(X, Y, x0=x0, seed=self.random_state or 0, **opts)
        if fallback and not info.converged:
            alpha, info2 = cholesky_solve(X, Y, **opts)
            info2.reason = (f"cg did not converge ({info.iterations} iterations, residual "
                            f"{info.residual:.2g}); redone by cholesky")
            info2.iterations = info.iterations
            return alpha, info2
        return alpha, info

    def _fit_loop(self, X, Y, Xv, Yv, rng, callback=None):
        n, d = X.shape
        solver, reason, fits = self.solver, "", False
        if solver == "auto":
            solver, reason = choose_solver(n, float(self.reg), X.element_size(), X.device, None)
            fits = X.element_size() * n * n <= available_memory(X.device) // 2
        fallback = self.solver == "auto" and solver == "cg" and fits
        if self.verbose:
            print(f"RFM: n = {n}, d = {d}, outputs = {Y.shape[1]}, "
                  f"validation = {0 if Xv is None else Xv.shape[0]}; solver {reason or solver}")
        q = min(n, int(self.agop_samples))
        Q = X if q == n else X[torch.from_numpy(np.sort(rng.choice(n, q, replace=False))).to(X.device)]
        opts = dict(kernel=self.kernel, bandwidth=float(self.bandwidth), backend=self.backend)
        M, alpha = None, None
        best = None
        history = []
        # On the C++ backend every Cholesky solve of the fit reuses one n x n buffer: no n^2
        # allocation and page faults per iteration (about 1 s each at n = 20000). Elsewhere the
        # solve allocates its own (on CUDA the caching allocator reuses it).
        ws = None
        if solver == "cholesky" and choose(self.backend, X.device, "kernel_matrix") == "cpu":
            ws = cpu_workspace(n, X.dtype)
        for t in range(int(self.iters) + 1):
            t0 = time.perf_counter()
            alpha, info = self._solve(X, Y, M, solver, alpha, fallback, ws)
            if info.reason and self.verbose:
                print(f"  {info.reason}")
            row = {"iter": t, "solver": info.solver, "solve_s": time.perf_counter() - t0,
                   "jitter": info.jitter, "cg_iterations": info.iterations,
                   "residual": info.residual, "agop_s": None}
            # training predictions from the solve itself: K alpha = y - (reg + jitter) alpha
            row[f"train_{self._metric}"] = self._score_metric(
                Y - (float(self.reg) + info.jitter) * alpha, Y)
            val = None
            if Xv is not None:
                val = self._score_metric(kernel_matmul(Xv, X, alpha, M=M, **opts), Yv)
            row[f"val_{self._metric}"] = val
            better = (best is None or val is None or not self.keep_best
                      or (val > best["val"] if self._maximize else val < best["val"]))
            if better:
                best = {"t": t, "val": val, "M": M, "alpha": alpha, "jitter": info.jitter}
            stop = (self.early_stopping is not None and val is not None and best["val"] is not None
                    and (val < best["val"] / self.early_stopping if self._maximize
                         else val > best["val"] * self.early_stopping))
            stop = bool(callback(row)) if callback is not None and not stop else stop
            if t < self.iters and not stop:
                t1 = time.perf_counter()
                A = agop(Q, X, alpha, M=M, diag=bool(self.diag), centering=bool(self.centering),
                         **opts)
                M = U.agop_to_M(A, float(self.agop_power), self.normalize)
                row["agop_s"] = time.perf_counter() - t1
            history.append(row)
            if self.verbose:
                print(U.progress_line(t, int(self.iters), row, self._metric)
                      + ("  (early stop)" if stop else ""))
            if stop:
                break
        self._set_fitted(X, best, history, d)

    def _set_fitted(self, X, best, history, d):
        M = best["M"]  # None: the identity (iteration 0)
        self._X_t, self._alpha_t, self._M_t = X, best["alpha"], M
        if M is None:
            M = torch.ones(d, dtype=X.dtype) if self.diag else torch.eye(d, dtype=X.dtype)
        self.M_ = M.cpu().numpy()
        self.alpha_ = best["alpha"].cpu().numpy()
        self.best_iter_ = best["t"]
        self.jitter_ = best["jitter"]
        self.history_ = history
        self.n_features_in_ = d

    # ---- predict ----------------------------------------------------------------------------
    def _scores(self, X) -> tuple[torch.Tensor, bool, torch.device | None]:
        check_is_fitted(self, "alpha_")
        dev = self._X_t.device
        Xq, is_torch = U.features(X, "X", self._X_t.dtype, dev)
        if Xq.shape[1] != self.n_features_in_:
            raise ValueError(f"X has {Xq.shape[1]} features, but this model was fitted with "
                             f"{self.n_features_in_} features")
        in_dev = X.device if is_torch else None
        S = kernel_matmul(Xq, self._X_t, self._alpha_t, kernel=self.kernel,
                          bandwidth=float(self.bandwidth), M=self._M_t, backend=self.backend)
        return S, is_torch, in_dev

    @staticmethod
    def _out(t: torch.Tensor, is_torch: bool, dev):
        return t.to(dev) if is_torch else t.cpu().numpy()

    # ---- save / load ------------------------------------------------------------------------
    def save(self, path) -> None:
        """Write the fitted model to ``path`` (torch.save of tensors and plain values only)."""
        check_is_fitted(self, "alpha_")
        params = self.get_params()
        params["dtype"] = str(U.torch_dtype(params["dtype"])).replace("torch.", "")
        M = None if self._M_t is None else self._M_t.cpu()
        state = {"X": self._X_t.cpu(), "alpha": self._alpha_t.cpu(), "M": M,
                 "best_iter": self.best_iter_, "jitter": self.jitter_, "history": self.history_}
        state.update(self._extra_state())
        torch.save({"format": _FORMAT, "class": type(self).__name__, "params": params,
                    "state": state}, path)

    @classmethod
    def load(cls, path, device=None):
        """Read a model written by ``save``; device: where to put it (default: its ``device``)."""
        blob = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(blob, dict) or blob.get("format") != _FORMAT:
            raise ValueError(f"{path} is not a saved rfmfast RFM model")
        if blob["class"] != cls.__name__:
            raise ValueError(f"{path} holds a {blob['class']}, not a {cls.__name__}")
        model = cls(**blob["params"])
        dev = U.resolve_device(device if device is not None else model.device)
        s = blob["state"]
        X, alpha = s["X"].to(dev), s["alpha"].to(dev)
        M = None if s["M"] is None else s["M"].to(dev)
        model._set_fitted(X, {"M": M, "alpha": alpha, "t": s["best_iter"],
                              "jitter": s["jitter"]}, s["history"], X.shape[1])
        model._load_extra_state(s)
        return model

    def _extra_state(self) -> dict:
        return {}

    def _load_extra_state(self, state: dict) -> None:
        pass


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
    solver : "auto" | "cholesky" | "cg" (see rfmfast.kernel_solve)
    validation_fraction : None or float, seeded hold-out when fit gets no X_val / y_val
    early_stopping : None or ratio r >= 1, stop when the validation MSE exceeds r x the best
    keep_best : bool, keep the iterate with the best validation metric (else the last one)
    device : "auto" | "cpu" | "cuda"; backend : op backend ("auto", "reference", "cpu", ...)
    dtype : "float32" | "float64"; random_state : int seed; verbose : bool, one line per iteration

    Attributes
    ----------
    M_ : (d, d) or (d,) numpy array, the feature matrix of the kept iterate
    alpha_ : (n, c) numpy array, the solved weights (c = 1 for 1-D y)
    best_iter_ : int, the kept iterate; history_ : list of dicts, per-iteration metrics/timings
    jitter_ : float, diagonal jitter the kept solve needed (0.0 normally)
    n_features_in_ : int
    """

    def _encode(self, y, dtype, device, fitting):
        Y, one_d = U.targets(y, "y" if fitting else "y_val", dtype, device)
        if fitting:
            self._y_1d = one_d
            self.n_outputs_ = Y.shape[1]
        elif Y.shape[1] != self.n_outputs_:
            raise ValueError(f"y_val has {Y.shape[1]} outputs but y has {self.n_outputs_}")
        return Y

    def _score_metric(self, scores, Y):
        return float(((scores - Y) ** 2).mean())

    def predict(self, X):
        """X: (m, d) -> predictions (m,) for 1-D y, else (m, c); numpy unless X is a torch tensor."""
        S, is_torch, dev = self._scores(X)
        if self._y_1d:
            S = S[:, 0]
        return self._out(S, is_torch, dev)

    def _extra_state(self):
        return {"y_1d": self._y_1d, "n_outputs": self.n_outputs_}

    def _load_extra_state(self, s):
        self._y_1d, self.n_outputs_ = s["y_1d"], s["n_outputs"]


class RFMClassifier(ClassifierMixin, _RFMBase):
    """Recursive Feature Machine classifier: kernel regression on one-hot labels, argmax.

    Same parameters as RFMRegressor; the validation metric (best iterate, early stopping) is
    accuracy. Labels may be any values; every class needs at least two training samples.
    Extra attributes: classes_. predict_proba: scores clipped to >= 0 and normalized per row
    (uniform where all scores are <= 0) - calibrated only in the loose sense of xRFM's.
    """

    _metric = "accuracy"
    _maximize = True

    def _encode(self, y, dtype, device, fitting):
        lab = U.labels(y, "y" if fitting else "y_val")
        if fitting:
            classes, counts = np.unique(lab, return_counts=True)
            if len(classes) < 2:
                raise ValueError(f"y has a single class ({classes[0].tolist()!r}); a classifier "
                                 "needs two or more")
            if counts.min() < 2:
                raise ValueError(f"class {classes[counts.argmin()].tolist()!r} has only one sample; every "
                                 "class needs at least two (drop it or merge it)")
            self.classes_ = classes
        idx = np.searchsorted(self.classes_, lab)
        idx = np.clip(idx, 0, len(self.classes_) - 1)
        if not fitting and not np.array_equal(self.classes_[idx], lab):
            raise ValueError("y_val has labels that are not in y")
        Y = torch.zeros(len(lab), len(self.classes_), dtype=dtype, device=device)
        Y[torch.arange(len(lab), device=device), torch.from_numpy(idx).to(device)] = 1
        return Y

    def _score_metric(self, scores, Y):
        return float((scores.argmax(1) == Y.argmax(1)).to(torch.float64).mean())

    def decision_function(self, X):
        """X: (m, d) -> class scores (m, n_classes), the kernel regression outputs."""
        S, is_torch, dev = self._scores(X)
        return self._out(S, is_torch, dev)

    def predict(self, X):
        """X: (m, d) -> labels (m,), always a numpy array (labels may be strings)."""
        S, _, _ = self._scores(X)
        return self.classes_[S.argmax(1).cpu().numpy()]

    def predict_proba(self, X):
        """X: (m, d) -> (m, n_classes), rows summing to 1 (see the class docstring)."""
        S, is_torch, dev = self._scores(X)
        P = S.clamp(min=0)
        tot = P.sum(1, keepdim=True)
        P = torch.where(tot > 0, P / tot.clamp(min=torch.finfo(P.dtype).tiny),
                        torch.full_like(P, 1.0 / P.shape[1]))
        return self._out(P, is_torch, dev)

    def _extra_state(self):
        return {"classes": self.classes_.tolist(), "classes_dtype": self.classes_.dtype.str}

    def _load_extra_state(self, s):
        self.classes_ = np.array(s["classes"], dtype=np.dtype(s["classes_dtype"]))
