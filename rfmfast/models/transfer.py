"""Kernel transfer learning by projection and translation (Radhakrishnan, Ruiz Luyten, Prasad and
Uhler, "Transfer learning with kernel methods", Nature Communications 2023; code:
github.com/uhlerlab/kernel_tf). docs/transfer.md has worked examples and the reproduction.

A *source* model f_s: R^d -> R^c was trained on a large source task. With a few target samples
(X, y) the target model is one of:

    projection    f_t(x) = f_p(f_s(x))       f_p a kernel machine fit on (f_s(X), y): the source
                                             outputs are the features, so the target's label set
                                             (and its number of outputs) may differ from the
                                             source's
    translation   f_t(x) = f_s(x) + f_c(x)   f_c a kernel machine fit on (X, y - f_s(X)), the
                                             residuals of the target labels against the source's
                                             outputs for the same labels (same c)

The kernel machine is rfmfast.KernelRidge (default: Laplace kernel, bandwidth 10, reg 0, the
ridgeless interpolant the reference computes with a linear solve). Classifiers regress on
one-hot labels (1 for the class, 0 elsewhere) and predict the argmax, as the reference does.

Conventions taken from the reference code (cifarc_analysis/laplace_main.py, scaling_laplace.py,
cntk_imagenet/projected_*.py):
    - the source outputs are the source kernel machine's raw outputs (K(x, X_s) alpha_s, before
      any argmax or softmax), used as they are: no normalization of f_s(x) before projection;
    - the projection kernel is the same Laplace kernel, bandwidth 10, on those outputs;
    - the translation correction uses the source's kernel on the target inputs, fit to
      one-hot labels minus the source's outputs, and predicts f_s + f_c;
    - both solves are ridgeless (numpy.linalg.solve(K, y)); here a Cholesky solve (with the
      solver's jitter retry), in float64 by default (the reference: float32 LU).
    - the inputs are unit-norm rows in the reference's ImageNet / CIFAR pipelines; these
      estimators take X as given (normalize it yourself when you want that convention).

``source`` is any callable X -> (n, c) (or (n,)) outputs, or a fitted estimator:
    - rfmfast.RFMClassifier: its per-class kernel outputs (decision_function for three or more
      classes; for two classes both columns, which decision_function reduces to a difference)
    - any other estimator with decision_function (a classifier): its decision_function
    - rfmfast.RFMRegressor / rfmfast.KernelRidge / any regressor: its predict
A fitted estimator is used as it is: it is never refit, and clone() of these estimators keeps the
same source object (see __sklearn_clone__), so model selection over the target kernel machine's
parameters works with a pre-trained source.

An RFM source carries its learned feature matrix M_. Translation uses it (M="source", the
default): the correction is fit with the source's kernel K_{M_s}, as the reference fits the
correction with the source's kernel (the RFM's kernel is K_{M_s}, not the plain Laplace kernel).
Pass M=None for the identity, or an array. Projection's kernel acts on the c source outputs, so
the source's (d, d) M does not apply there; its M is None or a (c, c) / (c,) array.
"""

from __future__ import annotations

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin, clone
from sklearn.exceptions import NotFittedError
from sklearn.utils._param_validation import HasMethods, InvalidParameterError, StrOptions
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from ..kernels import check_kernel
from .kernel_ridge import KernelRidge

__all__ = [
    "ProjectedKernelRegressor",
    "ProjectedKernelClassifier",
    "TranslatedKernelRegressor",
    "TranslatedKernelClassifier",
    "identity",
    "source_outputs",
]


def identity(X):
    """The identity source, x -> x. ProjectedKernelClassifier(source=identity) (or the
    regressor) is the target-only baseline: the same kernel machine fit on the target inputs."""
    return np.asarray(X, dtype=np.float64)


# ---- the source ---------------------------------------------------------------------------------


def _is_estimator_source(source) -> bool:
    return hasattr(source, "predict") and hasattr(source, "get_params")


def check_source(source, n_features: int | None = None) -> None:
    """Refuse, before any work, a source that cannot give outputs: not a callable or an
    estimator with predict, a class instead of an instance, an estimator not fitted, or one
    fitted on another number of features."""
    if isinstance(source, type):
        raise TypeError(
            f"source must be a fitted estimator or a callable X -> (n, c) outputs, got the "
            f"class {source.__name__}; pass a fitted instance"
        )
    if _is_estimator_source(source):
        try:
            check_is_fitted(source)
        except NotFittedError:
            raise NotFittedError(
                f"the source {type(source).__name__} is not fitted; fit it on the source task "
                "first (transfer never fits the source)"
            ) from None
        d = getattr(source, "n_features_in_", None)
        if n_features is not None and d is not None and int(d) != n_features:
            raise ValueError(
                f"X has {n_features} features, but the source {type(source).__name__} was "
                f"fitted on {int(d)}"
            )
    elif not callable(source):
        raise TypeError(
            "source must be a fitted estimator (with predict / decision_function) or a "
            f"callable X -> (n, c) outputs, got {type(source).__name__}"
        )


def _raw_outputs(source, X):
    if hasattr(source, "_class_scores"):  # the classifiers below: every class's score
        return source._class_scores(X)
    from .rfm import RFMClassifier

    if isinstance(source, RFMClassifier):  # two classes: both columns, not their difference
        S, _ = source._scores(X)
        return S.detach().cpu().to(torch.float64).numpy()
    if _is_estimator_source(source):
        if hasattr(source, "decision_function"):
            return source.decision_function(X)
        return source.predict(X)
    return source(X)


def source_outputs(source, X) -> np.ndarray:
    """The source's outputs f_s(X): an (n, c) float64 array (a 1-D output becomes one column).

    X is passed to the source as given (an estimator source checks its own input). The output
    must have X's number of rows, be numeric and finite; anything else is a ValueError naming
    the source."""
    n = X.shape[0] if hasattr(X, "shape") else len(X)
    out = _raw_outputs(source, X)
    if hasattr(out, "detach"):  # a torch tensor
        out = out.detach().cpu().numpy()
    name = getattr(source, "__name__", type(source).__name__)
    try:
        F = np.asarray(out, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(
            f"the source {name} returned non-numeric outputs (e.g. class labels); a source "
            "must return scores: pass a callable returning its raw outputs"
        ) from None
    if F.ndim == 1:
        F = F[:, None]
    if F.ndim != 2 or F.shape[0] != n:
        raise ValueError(
            f"the source {name} returned outputs of shape {np.shape(out)} for {n} samples; "
            "expected (n, c) or (n,)"
        )
    if F.shape[1] == 0:
        raise ValueError(f"the source {name} returned no output columns (shape {F.shape})")
    if not np.isfinite(F).all():
        raise ValueError(f"the source {name} returned NaN or inf outputs")
    return F


def _source_input(X_original, X_checked, source):
    """What the source is called with: the caller's DataFrame for an estimator source fitted on
    column names (so that it can check them), else the checked float64 array."""
    if getattr(source, "feature_names_in_", None) is not None and hasattr(X_original, "columns"):
        return X_original
    return X_checked


# ---- the estimators -----------------------------------------------------------------------------

_KR_PARAMS = (
    "kernel",
    "bandwidth",
    "reg",
    "centers",
    "solver",
    "dtype",
    "device",
    "backend",
    "random_state",
)

_DOC_PARAMS = """
    source : a fitted estimator or a callable X -> (n, c) outputs (see the module docstring):
        never refit; clone() keeps the same object
    kernel : "laplace" | "gaussian" | "l1_laplace" (default "laplace", the reference's)
    bandwidth : float > 0 (default 10, the reference's)
    reg : float >= 0, the ridge of the kernel machine (default 0: ridgeless, the reference's
        interpolating solve; the Laplace kernel matrix of distinct points is positive definite)
    M : the kernel machine's feature matrix (see the module docstring)
    centers, solver, dtype, device, backend, random_state : passed to rfmfast.KernelRidge
        (dtype default "float64": a ridgeless solve on a flat kernel is ill-conditioned in
        float32)"""


class _TransferBase(BaseEstimator):
    _parameter_constraints: dict = {
        "source": [callable, HasMethods(["predict"])],
        "M": ["array-like", None],
    }

    # ---- clone: the source is a pre-trained model, not a hyperparameter ----------------------
    def __sklearn_clone__(self):
        params = self.get_params(deep=False)
        source = params.pop("source")
        new = type(self)(source=source, **{k: clone(v, safe=False) for k, v in params.items()})
        return new

    # ---- checks -------------------------------------------------------------------------------
    def _kernel_machine(self, M) -> KernelRidge:
        """The unfitted KernelRidge, every parameter checked (before any work)."""
        km = KernelRidge(M=M, **{k: getattr(self, k) for k in _KR_PARAMS})
        try:
            km._validate_params()
        except InvalidParameterError as e:  # name this estimator, not the one inside
            raise InvalidParameterError(
                str(e).replace("of KernelRidge", f"of {type(self).__name__}")
            ) from None
        check_kernel(km.kernel, km.bandwidth)
        return km

    def _check_X(self, X, reset: bool):
        return validate_data(
            self, X, reset=reset, dtype=np.float64, ensure_all_finite=True, ensure_min_samples=1
        )

    def _check_fit_inputs(self, X, y, *, classifier: bool):
        self._validate_params()
        if y is None:
            raise ValueError(
                f"{type(self).__name__} requires y to be passed, but the target y is None"
            )
        Xc, yc = validate_data(
            self,
            X,
            y,
            reset=True,
            dtype=np.float64,
            multi_output=not classifier,
            y_numeric=not classifier,
            ensure_all_finite=True,
        )
        if classifier:
            check_classification_targets(yc)
        check_source(self.source, Xc.shape[1])
        return Xc, yc

    def _outputs(self, X_original, X_checked):
        return source_outputs(self.source, _source_input(X_original, X_checked, self.source))


# ---- classification helpers ---------------------------------------------------------------------


def _class_set(classes, y, n_columns: int | None, source) -> np.ndarray:
    """The label of each one-hot column. n_columns: the source's output columns (translation:
    they must be the same classes), None for projection."""
    src_classes = getattr(source, "classes_", None)
    if classes is not None:
        cls = np.asarray(classes)
        if cls.ndim != 1 or len(cls) == 0:
            raise ValueError(f"classes must be a non-empty 1-D list of labels, got {classes!r}")
        if len(np.unique(cls)) != len(cls):
            raise ValueError(f"classes has repeated labels: {classes!r}")
    elif n_columns is not None and src_classes is not None:
        cls = np.asarray(src_classes)
    else:
        cls = np.unique(y)
        if n_columns is not None and len(cls) != n_columns:
            raise ValueError(
                f"the source gives {n_columns} output column(s) but y has {len(cls)} "
                "class(es), and the source has no classes_ to say which column is which: pass "
                f"classes= (the label of each of the {n_columns} source columns, in order)"
            )
    if n_columns is not None and len(cls) != n_columns:
        raise ValueError(
            f"translation needs one source output column per class: the source gives "
            f"{n_columns} column(s) for {len(cls)} class(es)"
            + (
                " (a binary decision_function is one margin: pass a callable returning both "
                "classes' scores)"
                if n_columns == 1 and len(cls) == 2
                else ""
            )
        )
    missing = np.setdiff1d(np.unique(y), cls)
    if len(missing):
        raise ValueError(
            f"y has labels that are not in the classes {cls.tolist()!r}: {missing[:10].tolist()!r}"
        )
    if len(cls) < 2 and n_columns is None:
        raise ValueError(
            f"y has one class ({cls[0]!r}); a classifier needs two or more (or pass "
            "classes= with the full label set)"
        )
    return cls


def _one_hot(y, classes) -> np.ndarray:
    order = np.argsort(classes, kind="stable")
    idx = order[np.searchsorted(classes[order], y)]
    Y = np.zeros((len(y), len(classes)))
    Y[np.arange(len(y)), idx] = 1.0
    return Y


class _ClassifierOutputs:
    """decision_function / predict / predict_proba from _class_scores (q, k)."""

    def decision_function(self, X):
        """X: (q, d) -> scores (q, n_classes), the kernel regression outputs on the one-hot
        labels; two classes: (q,), classes_[1]'s score minus classes_[0]'s (scikit-learn's
        convention)."""
        S = self._class_scores(X)
        return S[:, 1] - S[:, 0] if S.shape[1] == 2 else S

    def predict(self, X):
        """X: (q, d) -> labels (q,): the class of the largest score."""
        S = self._class_scores(X)  # checks that the model is fitted
        return self.classes_[np.argmax(S, axis=1)]

    def predict_proba(self, X):
        """X: (q, d) -> (q, n_classes), the softmax of the class scores (not calibrated)."""
        S = self._class_scores(X)
        E = np.exp(S - S.max(axis=1, keepdims=True))
        return E / E.sum(axis=1, keepdims=True)


# ---- projection ---------------------------------------------------------------------------------


class ProjectedKernelRegressor(RegressorMixin, _TransferBase):
    __doc__ = (
        """Projection: a kernel machine on the source's outputs, f_t(x) = f_p(f_s(x)).

    fit(X, y): F = f_s(X) (n, c); f_p = KernelRidge(...).fit(F, y). predict(Q) = f_p(f_s(Q)).
    y: (n,) or (n, t), any t (the target's outputs need not be the source's).

    Parameters
    ----------"""
        + _DOC_PARAMS
        + """
        M here: None or a (c, c) / (c,) feature matrix on the c source outputs.

    Attributes
    ----------
    kernel_machine_ : the fitted rfmfast.KernelRidge on the source outputs
    n_source_outputs_ : int c; n_features_in_ : int d (feature_names_in_ for a DataFrame)

    Memory: the source's outputs on X, (n, c); the kernel machine's solve (n^2 entries for
    Cholesky, rfmfast.KernelRidge) and its weights (n, t). predict: the source on Q, (q, c), and
    a fused kernel product (never q x n).
    """
    )

    def __init__(
        self,
        source=identity,
        kernel="laplace",
        bandwidth=10.0,
        reg=0.0,
        M=None,
        centers=None,
        solver="auto",
        dtype="float64",
        device="auto",
        backend="auto",
        random_state=0,
    ):
        self.source = source
        self.kernel = kernel
        self.bandwidth = bandwidth
        self.reg = reg
        self.M = M
        self.centers = centers
        self.solver = solver
        self.dtype = dtype
        self.device = device
        self.backend = backend
        self.random_state = random_state

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags

    def fit(self, X, y):
        """X: (n, d), y: (n,) or (n, t). Every input and parameter is checked before any work."""
        Xc, yc = self._check_fit_inputs(X, y, classifier=False)
        km = self._kernel_machine(self.M)
        F = self._outputs(X, Xc)
        self.kernel_machine_ = km.fit(F, yc)
        self.n_source_outputs_ = F.shape[1]
        return self

    def predict(self, X):
        """X: (q, d) -> (q,) for 1-D y, else (q, t)."""
        check_is_fitted(self, "kernel_machine_")
        Xc = self._check_X(X, reset=False)
        return self.kernel_machine_.predict(self._outputs(X, Xc))


class ProjectedKernelClassifier(_ClassifierOutputs, ClassifierMixin, _TransferBase):
    __doc__ = (
        """Projection for classification: a kernel machine on the source's outputs, fit to
    the one-hot target labels; predict = argmax. The target's classes need not be the source's
    (e.g. a 3-class task on a 10-class source's scores).

    fit(X, y): F = f_s(X) (n, c); Y = one-hot(y) (n, k); f_p = KernelRidge(...).fit(F, Y).

    Parameters
    ----------"""
        + _DOC_PARAMS
        + """
        M here: None or a (c, c) / (c,) feature matrix on the c source outputs.
    classes : None (the labels in y) or the full label set, one one-hot column each (a class
        absent from a small sample keeps its column, all zeros, as in the reference)

    Attributes
    ----------
    classes_ : (k,) labels; kernel_machine_ : the fitted KernelRidge on the source outputs
    n_source_outputs_ : int c; n_features_in_ : int d

    Memory: as ProjectedKernelRegressor with t = k.
    """
    )
    _parameter_constraints: dict = {
        **_TransferBase._parameter_constraints,
        "classes": ["array-like", None],
    }

    def __init__(
        self,
        source=identity,
        kernel="laplace",
        bandwidth=10.0,
        reg=0.0,
        M=None,
        centers=None,
        solver="auto",
        dtype="float64",
        device="auto",
        backend="auto",
        random_state=0,
        classes=None,
    ):
        self.source = source
        self.kernel = kernel
        self.bandwidth = bandwidth
        self.reg = reg
        self.M = M
        self.centers = centers
        self.solver = solver
        self.dtype = dtype
        self.device = device
        self.backend = backend
        self.random_state = random_state
        self.classes = classes

    def fit(self, X, y):
        """X: (n, d), y: (n,) labels. Every input and parameter is checked before any work."""
        Xc, yc = self._check_fit_inputs(X, y, classifier=True)
        classes = _class_set(self.classes, yc, None, self.source)
        km = self._kernel_machine(self.M)
        F = self._outputs(X, Xc)
        self.kernel_machine_ = km.fit(F, _one_hot(yc, classes))
        self.classes_ = classes
        self.n_source_outputs_ = F.shape[1]
        return self

    def _class_scores(self, X):
        check_is_fitted(self, "kernel_machine_")
        Xc = self._check_X(X, reset=False)
        return np.asarray(self.kernel_machine_.predict(self._outputs(X, Xc))).reshape(
            Xc.shape[0], -1
        )


# ---- translation --------------------------------------------------------------------------------


def _resolve_M(M, source):
    if isinstance(M, str):
        if M != "source":
            raise ValueError(f"M must be 'source', None or an array, got {M!r}")
        Ms = getattr(source, "M_", None)
        return None if Ms is None else np.asarray(Ms)
    return M


class _TranslationBase(_TransferBase):
    _parameter_constraints: dict = {
        **_TransferBase._parameter_constraints,
        "M": ["array-like", None, StrOptions({"source"})],
    }

    def _correction(self, Xc):
        M = _resolve_M(self.M, self.source)
        if M is not None and np.ndim(M) >= 1 and np.shape(M)[0] != Xc.shape[1]:
            raise ValueError(
                f"M has shape {np.shape(M)} but X has {Xc.shape[1]} features (the correction "
                "kernel acts on X)"
            )
        return self._kernel_machine(M), M


class TranslatedKernelRegressor(RegressorMixin, _TranslationBase):
    __doc__ = (
        """Translation: the source plus a correction, f_t(x) = f_s(x) + f_c(x), f_c a kernel
    machine fit to the residuals y - f_s(X) on the target inputs.

    fit(X, y): F = f_s(X); f_c = KernelRidge(M=...).fit(X, y - F). predict(Q) = f_s(Q) + f_c(Q).
    y must have the source's outputs: (n,) for a one-column source, (n, c) for c columns.

    Parameters
    ----------"""
        + _DOC_PARAMS
        + """
        M here: "source" (default: the source's M_ where it has one, e.g. an RFM, so that the
        correction uses the source's learned kernel; else the identity), None, or an array.

    Attributes
    ----------
    correction_ : the fitted KernelRidge on (X, y - f_s(X)); M_ : the feature matrix it used
    (None: the identity); n_features_in_ : int d

    Memory: X and the residuals (n, c); the correction's solve (n^2 entries for Cholesky) and
    weights (n, c). predict: the source on Q (q, c) and a fused kernel product.
    """
    )

    def __init__(
        self,
        source,
        kernel="laplace",
        bandwidth=10.0,
        reg=0.0,
        M="source",
        centers=None,
        solver="auto",
        dtype="float64",
        device="auto",
        backend="auto",
        random_state=0,
    ):
        self.source = source
        self.kernel = kernel
        self.bandwidth = bandwidth
        self.reg = reg
        self.M = M
        self.centers = centers
        self.solver = solver
        self.dtype = dtype
        self.device = device
        self.backend = backend
        self.random_state = random_state

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags

    def fit(self, X, y):
        """X: (n, d), y: (n,) or (n, c) with c the source's outputs. Checked before any work
        (the output count once the source has answered, before the solve)."""
        Xc, yc = self._check_fit_inputs(X, y, classifier=False)
        km, M = self._correction(Xc)
        F = self._outputs(X, Xc)
        Y = yc[:, None] if yc.ndim == 1 else yc
        if Y.shape[1] != F.shape[1]:
            raise ValueError(
                f"translation needs y to have the source's outputs: y has {Y.shape[1]} "
                f"column(s), the source {F.shape[1]} (projection allows different ones)"
            )
        R = Y - F
        self.correction_ = km.fit(Xc, R[:, 0] if yc.ndim == 1 else R)
        self.M_ = M
        self._y_1d = yc.ndim == 1
        return self

    def predict(self, X):
        """X: (q, d) -> (q,) for 1-D y, else (q, c): f_s(X) + f_c(X)."""
        check_is_fitted(self, "correction_")
        Xc = self._check_X(X, reset=False)
        F = self._outputs(X, Xc)
        C = np.asarray(self.correction_.predict(Xc), dtype=np.float64)
        return F[:, 0] + C if self._y_1d else F + C.reshape(F.shape)


class TranslatedKernelClassifier(_ClassifierOutputs, ClassifierMixin, _TranslationBase):
    __doc__ = (
        """Translation for classification: the source's class scores plus a correction fit to
    the residuals of the one-hot targets against those scores; predict = argmax.

    fit(X, y): S = f_s(X) (n, k), one column per class; f_c = KernelRidge(M=...).fit(X,
    one-hot(y) - S). Scores on Q: f_s(Q) + f_c(Q). The classes are the source's: its classes_
    (an RFMClassifier or any classifier), or ``classes`` (the label of each source column, in
    order), or the labels in y when there are exactly as many as source columns.

    Parameters
    ----------"""
        + _DOC_PARAMS
        + """
        M here: "source" (default: the source's M_ where it has one), None, or an array.
    classes : None or the label of each source output column, in order

    Attributes
    ----------
    classes_ : (k,) labels; correction_ : the fitted KernelRidge; M_ : the feature matrix it
    used (None: the identity); n_features_in_ : int d

    Memory: as TranslatedKernelRegressor with c = k.
    """
    )
    _parameter_constraints: dict = {
        **_TranslationBase._parameter_constraints,
        "classes": ["array-like", None],
    }

    def __init__(
        self,
        source,
        kernel="laplace",
        bandwidth=10.0,
        reg=0.0,
        M="source",
        centers=None,
        solver="auto",
        dtype="float64",
        device="auto",
        backend="auto",
        random_state=0,
        classes=None,
    ):
        self.source = source
        self.kernel = kernel
        self.bandwidth = bandwidth
        self.reg = reg
        self.M = M
        self.centers = centers
        self.solver = solver
        self.dtype = dtype
        self.device = device
        self.backend = backend
        self.random_state = random_state
        self.classes = classes

    def fit(self, X, y):
        """X: (n, d), y: (n,) labels among the source's classes. Checked before any work (the
        column count once the source has answered, before the solve)."""
        Xc, yc = self._check_fit_inputs(X, y, classifier=True)
        if self.classes is not None:  # what can be said before the source runs
            _class_set(self.classes, yc, len(np.asarray(self.classes)), self.source)
        km, M = self._correction(Xc)
        S = self._outputs(X, Xc)
        classes = _class_set(self.classes, yc, S.shape[1], self.source)
        self.correction_ = km.fit(Xc, _one_hot(yc, classes) - S)
        self.classes_ = classes
        self.M_ = M
        return self

    def _class_scores(self, X):
        check_is_fitted(self, "correction_")
        Xc = self._check_X(X, reset=False)
        S = self._outputs(X, Xc)
        return S + np.asarray(self.correction_.predict(Xc), dtype=np.float64).reshape(S.shape)
