"""Kernel ridge regression as a scikit-learn estimator: KernelRidge, exact or on Nystroem centers.

    centers=None   exact: alpha = (K(X, X) + reg I)^{-1} y by rfmfast.kernel_solve (Cholesky
                   while the n x n matrix fits the memory budget, else matrix-free PCG)
    centers=m      Nystroem on m training points drawn uniformly at random (seeded)
    centers=array  Nystroem on those (m, d) centers

The Nystroem weights minimise ||K(X, C) alpha - y||^2 + reg alpha^T K(C, C) alpha, solved by
conjugate gradients with Falkon's preconditioner (rfmfast/solvers/nystroem.py); with C = X this
is the exact solve. Every parameter and input is checked before any work, and a solve that did
not converge warns (sklearn.exceptions.ConvergenceWarning) and says so in solve_info_.
"""

from __future__ import annotations

import time
from numbers import Real

import numpy as np
import torch
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.utils._param_validation import Options, StrOptions
from sklearn.utils.validation import check_is_fitted

from .. import _validate as validate
from ..kernels import check_kernel
from ..ops.kernel_matmul import kernel_matmul
from ..solvers import kernel_solve
from ..solvers._params import BACKEND, KERNEL, at_least, positive
from ..solvers.auto import SOLVERS, available_memory
from ..solvers.nystroem import MAX_ITER, nystroem_solve
from . import _inputs as inputs


class KernelRidge(RegressorMixin, BaseEstimator):
    """Kernel ridge regression, exact or Nystroem (scikit-learn API; the name mirrors
    sklearn.kernel_ridge.KernelRidge).

    Parameters
    ----------
    kernel : "laplace" | "gaussian" | "l1_laplace"
    bandwidth : float > 0, the kernel bandwidth L
    M : None, (d, d) symmetric PSD or (d,) non-negative array: the kernel's feature matrix,
        K(x, z) = exp(-||x - z||_M / L) (e.g. an RFM's M_); None is the identity
    reg : float >= 0, the ridge. The exact solve is (K + reg I) alpha = y, so reg is
        scikit-learn's KernelRidge(alpha=reg); the Nystroem weights minimise
        ||K(X, C) alpha - y||^2 + reg alpha^T K(C, C) alpha, the same problem on the span of the
        centers. Falkon minimises (1/n) ||K(X, C) alpha - y||^2 + penalty alpha^T K(C, C) alpha:
        its penalty is reg / n (reg = n * penalty).
    centers : None, int m in [1, n], or an (m, d) array. None: exact, every training point a
        center. m: Nystroem on m training points drawn uniformly at random without replacement
        (seeded by random_state). An array: Nystroem on those centers.
    solver : "auto" | "cholesky" | "cg". Exact: as in rfmfast.kernel_solve ("auto": Cholesky
        while the n x n matrix fits memory_budget, else matrix-free Nystroem-preconditioned CG).
        Nystroem: "auto" and "cg" run CG with Falkon's preconditioner; "cholesky" is refused.
    tol : float > 0 or None, the relative residual CG stops at (None: the solver's default,
        1e-3 in float32, 1e-8 in float64)
    max_iter : int >= 1 or None, CG iterations at most (None: 200 exact, 100 Nystroem)
    memory_budget : bytes or None (half the free memory of the device). Exact: "auto" takes
        Cholesky only where the n x n matrix fits it; solver="cholesky" past it (or past the
        free memory when None) is a MemoryError naming the size. Nystroem: its two m x m
        matrices must fit it, else a MemoryError naming the size. Both before any work.
    device : "auto" | "cpu" | "cuda" | "cuda:N"; backend : op backend ("auto", "reference", ...)
    dtype : "float32" | "float64", the precision of the solve and the predictions
    random_state : int seed >= 0 or None (0), for the centers and CG's preconditioner
    verbose : bool, which solver and why, the CG residual every ~2 s on long fits, and a
        summary line

    Attributes
    ----------
    centers_ : (m, d) numpy array, the centers (the training points when centers=None)
    alpha_ : (m, c) numpy array, the weights: predict(Q) = K(Q, centers_) alpha_
    solve_info_ : rfmfast.solvers.SolveInfo: solver, iterations, residual, converged / status /
        message, seconds, memory_bytes and peak_memory_bytes, centers, and reason (why the
        solver was chosen; a float64 redo of the factorizations)
    n_iter_ : int, the CG iterations of the solve (exact "cg" or Nystroem); 1 for a direct
        Cholesky solve (scikit-learn's convention for estimators with max_iter: at least 1)
    n_features_in_ : int; feature_names_in_ : the DataFrame's column names (only when fitted on
        a DataFrame with string column names)

    fit(X, y, sample_weight=w): the weighted ridge (see fit). Predictions are in X's float
    dtype (float64 in -> float64 out, float32 in -> float32 out; integers: float64).

    Memory: exact as rfmfast.kernel_solve (n^2 entries for Cholesky, O(n rank) for CG); Nystroem
    two m x m matrices and O(n c), never n x m (rfmfast.solvers.nystroem.nystroem_solve).
    """

    _parameter_constraints: dict = {
        "kernel": KERNEL,
        "bandwidth": [positive()],
        "M": ["array-like", None],
        "reg": [at_least(0, Real)],
        "centers": [None, at_least(1), "array-like"],
        "solver": [StrOptions(set(SOLVERS))],
        "tol": [positive(), None],
        "max_iter": [at_least(1), None],
        "memory_budget": [positive(), None],
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
        M=None,
        reg=1e-3,
        centers=None,
        solver="auto",
        tol=None,
        max_iter=None,
        memory_budget=None,
        device="auto",
        backend="auto",
        dtype="float32",
        random_state=0,
        verbose=False,
    ):
        self.kernel = kernel
        self.bandwidth = bandwidth
        self.M = M
        self.reg = reg
        self.centers = centers
        self.solver = solver
        self.tol = tol
        self.max_iter = max_iter
        self.memory_budget = memory_budget
        self.device = device
        self.backend = backend
        self.dtype = dtype
        self.random_state = random_state
        self.verbose = verbose

    def __sklearn_tags__(self):  # scikit-learn >= 1.6: y may be (n, c)
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags

    def _more_tags(self):  # scikit-learn < 1.6
        return {"multioutput": True}

    # ---- checks (before any work) -----------------------------------------------------------
    def _feature_matrix(self, X: torch.Tensor):
        """M as a checked tensor of X's dtype and device, or None."""
        if self.M is None:
            return None
        a, is_torch = inputs.as_array(self.M, "M")
        t = a if is_torch else torch.from_numpy(np.array(a, dtype=np.float64))
        if not t.is_floating_point():
            t = t.to(torch.float64)
        if not bool(torch.isfinite(t).all()):
            raise ValueError("M contains NaN or inf")
        return validate.check_M(t.to(device=X.device, dtype=X.dtype), X.shape[1], X)

    def _centers(self, X: torch.Tensor):
        """The (m, d) centers on X's dtype and device, or None for the exact solve
        (models/_inputs.centers, shared with the RFM estimators)."""
        return inputs.centers(self.centers, X, self.random_state)

    def _check_exact_memory(self, n: int, itemsize: int, device) -> None:
        """solver="cholesky" on an n x n matrix past the budget: refused, naming the size."""
        if self.solver != "cholesky":
            return
        need = n * n * itemsize
        given = self.memory_budget is not None
        budget = int(self.memory_budget) if given else available_memory(device)
        if need > budget:
            gib = 1 << 30
            what = "the memory budget" if given else f"the free memory on {device}"
            raise MemoryError(
                f"the exact Cholesky solve needs the {n} x {n} kernel matrix, "
                f"{need / gib:.3g} GiB, over {what} ({budget / gib:.3g} GiB); use "
                "solver='auto' or 'cg' (matrix-free) or Nystroem centers "
                "(centers=m)"
            )

    # ---- fit --------------------------------------------------------------------------------
    def fit(self, X, y, sample_weight=None):
        """Fit on X: (n, d), y: (n,) or (n, c); numpy, torch (any device: moved to ``device``)
        or pandas. Every parameter and input is checked before any work.

        sample_weight: None, a number, or (n,) weights >= 0, not all zero: the weighted ridge,
        minimising sum_i w_i (f(x_i) - y_i)^2 + reg ||f||^2. Exact: (K + reg W^{-1}) alpha = y
        (Cholesky or CG, the same choice); Nystroem: ||W^{1/2} (K(X, C) alpha - y)||^2 +
        reg alpha^T K(C, C) alpha. Rows of weight zero are dropped first (no center, no
        effect: as if they were not there; centers=m are drawn from the rows left); an integer
        weight is the same fit as that many copies of the row, and equal weights c are the
        unweighted fit with reg / c."""
        self._validate_params()
        check_kernel(self.kernel, self.bandwidth)
        dtype, device = inputs.torch_dtype(self.dtype), inputs.resolve_device(self.device)
        if y is None:
            raise ValueError("KernelRidge requires y to be passed, but the target y is None")
        inputs.check_feature_names(self, X, reset=True)
        Xt, _ = inputs.features(X, "X", dtype, device)
        w = inputs.sample_weights(sample_weight, Xt.shape[0])
        Y, one_d = inputs.targets(y, "y", dtype, device)
        inputs.check_rows(Xt.shape[0], Y.shape[0])
        keep, w, reg = inputs.weighted_ridge(w, self.reg)
        if keep is not None:
            idx = torch.from_numpy(keep).to(device)
            Xt, Y = Xt[idx], Y[idx]
        wt = None if w is None else torch.from_numpy(w).to(device=device, dtype=dtype)
        n, d = Xt.shape
        M = self._feature_matrix(Xt)
        C = self._centers(Xt)
        if C is not None and self.solver == "cholesky":
            raise ValueError(
                "solver='cholesky' is the exact solve (centers=None); Nystroem "
                "centers are solved by preconditioned CG: use solver='auto' or 'cg'"
            )
        t0 = time.perf_counter()
        opts = dict(
            kernel=self.kernel,
            bandwidth=float(self.bandwidth),
            M=M,
            reg=reg,
            tol=self.tol,
            memory_budget=self.memory_budget,
            backend=self.backend,
            verbose=bool(self.verbose),
            weights=wt,
        )
        if self.verbose:
            what = "exact" if C is None else f"Nystroem, m = {C.shape[0]} centers"
            print(f"KernelRidge: n = {n}, d = {d}, outputs = {Y.shape[1]}, {what}")
        if C is None:
            self._check_exact_memory(n, Xt.element_size(), device)
            alpha, info = kernel_solve(
                Xt,
                Y,
                solver=self.solver,
                seed=self.random_state or 0,
                max_iter=200 if self.max_iter is None else self.max_iter,
                return_info=True,
                **opts,
            )
            if info.peak_memory_bytes is None:  # the matrix or factor, and a few (n, c)
                info.peak_memory_bytes = info.memory_bytes + 8 * Y.numel() * Y.element_size()
            C = Xt
        else:
            alpha, info = nystroem_solve(
                Xt,
                Y,
                C,
                x0=None,
                max_iter=MAX_ITER if self.max_iter is None else self.max_iter,
                **opts,
            )
        if self.verbose:
            res = "" if info.residual is None else f", relative residual {info.residual:.3g}"
            print(
                f"KernelRidge: {info.solver} in {time.perf_counter() - t0:.2f} s"
                f"{'' if not info.iterations else f', {info.iterations} iterations'}{res}"
                f"{'' if info.converged else ' (did not converge: ' + info.status + ')'}"
            )
        self._C_t, self._alpha_t, self._M_t, self._y_1d = C, alpha, M, one_d
        self.centers_ = C.cpu().numpy()
        self.alpha_ = alpha.cpu().numpy()
        self.solve_info_ = info
        self.n_iter_ = max(1, int(info.iterations or 0))
        self.n_features_in_ = d
        self.n_outputs_ = Y.shape[1]
        return self

    # ---- predict ----------------------------------------------------------------------------
    def predict(self, X):
        """X: (q, d) -> predictions (q,) for 1-D y, else (q, c): K(X, centers_) alpha_; numpy
        unless X is a torch tensor (then a tensor on X's device). In X's float dtype (float32
        for float32 input, float64 otherwise), computed in ``dtype``."""
        check_is_fitted(self, "alpha_")
        inputs.check_feature_names(self, X, reset=False)
        Xq, is_torch = inputs.features(X, "X", self._C_t.dtype, self._C_t.device)
        if Xq.shape[1] != self.n_features_in_:
            raise ValueError(
                f"X has {Xq.shape[1]} features, but KernelRidge is expecting "
                f"{self.n_features_in_} features as input"
            )
        S = kernel_matmul(
            Xq,
            self._C_t,
            self._alpha_t,
            kernel=self.kernel,
            bandwidth=float(self.bandwidth),
            M=self._M_t,
            backend=self.backend,
        )
        if self._y_1d:
            S = S[:, 0]
        S = S.to(inputs.output_dtype(X))
        return S.to(X.device) if is_torch else S.cpu().numpy()
