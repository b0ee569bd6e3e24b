"""KernelClassifier: kernel interpolation (or ridge) classifiers on the deep NNGP / NTK kernels and
the singular kernels, and the reference classifiers their infinite-depth limits are compared to:
1-NN, the majority vote, the Hilbert estimate and the Bayes rule of two Dirichlet classes."""

from __future__ import annotations

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted

from ..ops.dual_kernel import dual_kernel
from ..ops.singular_kernel import singular_kernel
from ..ops.singular_kernel.reference import squared_distances


class _Family:
    """What KernelClassifier does with one kernel family (data, not string branches)."""

    def __init__(self, dual: bool, solve: bool, log_domain: bool):
        self.dual, self.solve, self.log_domain = dual, solve, log_domain


#: kernel= families: dual (rfmfast.dual_kernel, kind = the name) or singular; whether the
#: default is the kernel solve (else the weighted vote); whether a log domain exists
FAMILIES = {
    "nngp": _Family(dual=True, solve=True, log_domain=True),
    "ntk": _Family(dual=True, solve=True, log_domain=False),
    "singular": _Family(dual=False, solve=False, log_domain=False),
}
CALLABLE = _Family(dual=False, solve=True, log_domain=False)


def _features(X, name="X") -> np.ndarray:
    a = np.asarray(X)
    if a.dtype == object or a.dtype.kind not in "biuf":
        raise ValueError(f"{name} must be a real numeric array, got dtype {a.dtype}")
    a = np.array(a, dtype=np.float64)
    if a.ndim != 2 or a.shape[0] == 0 or a.shape[1] == 0:
        raise ValueError(f"{name} must be a non-empty 2-D array, got shape {a.shape}")
    if not np.isfinite(a).all():
        raise ValueError(f"{name} contains NaN or inf")
    return a


class _Base(ClassifierMixin, BaseEstimator):
    """Labels, one-hot targets and the feature count, shared by the classifiers here."""

    def _fit_labels(self, X, y):
        X = _features(X)
        y = np.asarray(y)
        if y.ndim != 1 or y.shape[0] != X.shape[0]:
            raise ValueError(
                f"y must be 1-D with one label per row of X ({X.shape[0]}), got {y.shape}"
            )
        check_classification_targets(y)
        self.classes_, idx = np.unique(y, return_inverse=True)
        if len(self.classes_) < 2:
            raise ValueError("y has a single class: nothing to classify")
        self.n_features_in_ = X.shape[1]
        Y = np.zeros((len(y), len(self.classes_)))
        Y[np.arange(len(y)), idx] = 1.0
        return X, Y, idx

    def _check(self, X):
        check_is_fitted(self, "classes_")
        X = _features(X)
        if X.shape[1] != self.n_features_in_:
            raise ValueError(
                f"X has {X.shape[1]} features, but {type(self).__name__} is expecting "
                f"{self.n_features_in_} features as input"
            )
        return X

    def predict(self, X):
        """X: (q, d) -> (q,) labels: the class of largest score."""
        return self.classes_[np.argmax(self.decision_scores(X), axis=1)]


class KernelClassifier(_Base):
    """Kernel interpolation / ridge classification on the kernels of the theory papers.

    kernel: "nngp" or "ntk" (rfmfast.dual_kernel with ``depth`` and ``activation``, rows put on
        the unit sphere), "singular" (||x - z||^(-alpha)), or a callable (X, Z) -> (n, m) array.
    reg: the ridge (0: interpolation, as the papers). With solve=True the scores are
        K(X_test, X) (K(X, X) + reg I)^(-1) Y for one-hot Y; with solve=False they are the
        kernel-weighted vote K(X_test, X) Y (the Hilbert / Nadaraya-Watson estimate; the default
        for the singular kernel, whose training matrix has an infinite diagonal).
    log_domain: with an NNGP kernel, the kernel is taken in the log domain (dual_kernel's
        log_domain) and every test row is divided by its largest entry before the vote, so that
        depths whose kernel values underflow (hermite_k: rho^(k^L)) still classify (as 1-NN does
        in the limit). The training matrix is exp(log K): its underflowing off-diagonal is 0.
    Memory: the (n, n) training matrix and a (q, n) test block. Time: O(n^2 d + n^3) to fit.
    """

    def __init__(
        self,
        kernel="nngp",
        *,
        depth=1,
        activation="relu",
        alpha=1.0,
        reg=0.0,
        solve=None,
        log_domain=False,
        backend="auto",
    ):
        self.kernel = kernel
        self.depth = depth
        self.activation = activation
        self.alpha = alpha
        self.reg = reg
        self.solve = solve
        self.log_domain = log_domain
        self.backend = backend

    def _family(self) -> _Family:
        if callable(self.kernel):
            return CALLABLE
        fam = FAMILIES.get(self.kernel) if isinstance(self.kernel, str) else None
        if fam is None:
            raise ValueError(
                f"kernel must be one of {tuple(FAMILIES)} or a callable, got {self.kernel!r}"
            )
        return fam

    def _solving(self) -> bool:
        return self._family().solve if self.solve is None else bool(self.solve)

    def _kernel(self, A, B, log: bool):
        """K(A, B) as a float64 numpy array, or its (log|K|, sign) pair when log."""
        fam = self._family()
        if fam is CALLABLE:
            return np.asarray(self.kernel(A, B), dtype=np.float64)
        if not fam.dual:
            return singular_kernel(A, B, float(self.alpha))
        return dual_kernel(
            A,
            B,
            depth=int(self.depth),
            activation=self.activation,
            kind=self.kernel,
            log_domain=log,
            normalize=True,
            backend=self.backend,
        )

    def fit(self, X, y):
        """X: (n, d), y: (n,) labels. Solves for the coefficients (or keeps Y for the vote)."""
        if not (np.isfinite(self.reg) and self.reg >= 0):
            raise ValueError(f"reg must be a finite number >= 0, got {self.reg!r}")
        if self.log_domain and not self._family().log_domain:
            raise ValueError("log_domain=True needs kernel='nngp'")
        X, Y, _ = self._fit_labels(X, y)
        self.X_fit_ = X
        if not self._solving():
            self.coef_ = Y
            return self
        if self.log_domain:
            la, sg = self._kernel(X, X, True)
            K = sg * np.exp(la)
        else:
            K = self._kernel(X, X, False)
        if not np.isfinite(K).all():
            raise ValueError(
                "the training kernel matrix has non-finite entries (a singular kernel is "
                "infinite on its diagonal and at coincident points): use solve=False, the "
                "weighted vote"
            )
        K = K + float(self.reg) * np.eye(len(K))
        try:
            self.coef_ = np.linalg.solve(K, Y)
        except np.linalg.LinAlgError:
            raise ValueError(
                "the training kernel matrix is singular (duplicate points?); use reg > 0"
            ) from None
        return self

    def decision_scores(self, X):
        """X: (q, d) -> (q, classes) scores (with log_domain, each row scaled by a positive
        factor: only their order within a row is meaningful)."""
        X = self._check(X)
        if self.log_domain:
            la, sg = self._kernel(X, self.X_fit_, True)
            top = la.max(axis=1, keepdims=True)
            top[~np.isfinite(top)] = 0.0
            return (sg * np.exp(la - top)) @ self.coef_
        K = self._kernel(X, self.X_fit_, False)
        if not self._family().dual:  # the singular kernel: coincident pairs are inf
            hit = np.isinf(K)
            rows = hit.any(axis=1)
            if rows.any():  # a test point on a training point takes its (or their) label
                S = np.where(hit[rows], 1.0, 0.0) @ self.coef_
                out = np.empty((len(X), self.coef_.shape[1]))
                out[rows] = S
                out[~rows] = K[~rows] @ self.coef_
                return out
        return K @ self.coef_


class NearestNeighborClassifier(_Base):
    """1-NN by exact Euclidean distances (ties: the lowest training index)."""

    def fit(self, X, y):
        X, _, idx = self._fit_labels(X, y)
        self.X_fit_, self.y_idx_ = X, idx
        return self

    def decision_scores(self, X):
        X = self._check(X)
        D = squared_distances(torch.from_numpy(X), torch.from_numpy(self.X_fit_)).numpy()
        out = np.zeros((len(X), len(self.classes_)))
        out[np.arange(len(X)), self.y_idx_[np.argmin(D, axis=1)]] = 1.0
        return out


class MajorityVoteClassifier(_Base):
    """The most frequent training class for every input (ties: the first class)."""

    def fit(self, X, y):
        _, Y, _ = self._fit_labels(X, y)
        self.counts_ = Y.sum(0)
        return self

    def decision_scores(self, X):
        X = self._check(X)
        return np.tile(self.counts_, (len(X), 1))


class HilbertClassifier(_Base):
    """The Hilbert estimate: the vote of the training labels weighted by ||x - x_i||^(-a).

    exponent: a; None takes D - 1 for the data's D coordinates (the rule for data on the unit
    sphere in R^D, where it is consistent). A test point on a training point takes its label.
    """

    def __init__(self, exponent=None):
        self.exponent = exponent

    def fit(self, X, y):
        X, Y, _ = self._fit_labels(X, y)
        a = X.shape[1] - 1 if self.exponent is None else self.exponent
        self.exponent_ = float(a)
        self.vote_ = KernelClassifier("singular", alpha=self.exponent_, solve=False).fit(
            X, self.classes_[Y.argmax(1)]
        )
        return self

    def decision_scores(self, X):
        self._check(X)
        return self.vote_.decision_scores(X)


class DirichletBayesClassifier(_Base):
    """The Bayes rule for two classes of Dirichlet-distributed points put on the unit sphere:
    a point x (any positive multiple of a simplex point; it is divided by its coordinate sum)
    goes to class 0 when prior * p(x | alpha0) > (1 - prior) * p(x | alpha1). The classes are
    the two labels of y in sorted order; fit only records them (the rule needs no data)."""

    def __init__(self, alpha0=(1.0, 2.0), alpha1=(2.0, 1.0), prior=0.5):
        self.alpha0 = alpha0
        self.alpha1 = alpha1
        self.prior = prior

    def fit(self, X, y):
        X, _, _ = self._fit_labels(X, y)
        if len(self.classes_) != 2:
            raise ValueError("DirichletBayesClassifier is a two-class rule")
        for a in (self.alpha0, self.alpha1):
            if len(a) != X.shape[1]:
                raise ValueError(f"alpha {a} has {len(a)} entries for {X.shape[1]} features")
        return self

    def decision_scores(self, X):
        from scipy.stats import dirichlet

        X = self._check(X)
        if (X <= 0).any():
            raise ValueError("Dirichlet points have positive coordinates")
        S = X / X.sum(1, keepdims=True)
        l0 = dirichlet.logpdf(S.T, np.asarray(self.alpha0, float)) + np.log(self.prior)
        l1 = dirichlet.logpdf(S.T, np.asarray(self.alpha1, float)) + np.log1p(-self.prior)
        return np.stack([l0, l1], axis=1)
