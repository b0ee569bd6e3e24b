"""RFMFeatures: the features an RFM learned, X -> X S with S^T S = M, for any other model.

An RFM's kernel only sees X through the learned metric, ||x - z||_M^2 = (x - z)^T M (x - z)
= ||S x - S z||^2 for any S with S^T S = M; so X S (rows x^T S) are the inputs in which the RFM's
kernel is the plain kernel, the "learned features" to hand to a linear model, a tree or a net.

The choice of S: the symmetric square root S = M^(1/2) = V diag(sqrt(max(w, 0))) V^T, with
M = V diag(w) V^T by ``numpy.linalg.eigh`` (of (M + M^T) / 2, in float64; eigenvalues below
zero, which a PSD M only has by rounding, are set to 0). It keeps the features aligned with the
inputs (feature j of X S is mostly input j when M is close to diagonal), and for diag=True
(M_ is the (d,) diagonal) it is X * sqrt(m). Any other S = Q M^(1/2) (Q orthogonal) gives the
same distances, hence the same kernel.

    from sklearn.linear_model import Ridge
    from sklearn.pipeline import make_pipeline
    from rfmfast.models.rfm_features import RFMFeatures

    pipe = make_pipeline(RFMFeatures(RFMRegressor(iters=5)), Ridge()).fit(X, y)
    RFMFeatures(fitted_rfm, prefit=True).fit(X).transform(X)     # an RFM fitted before

``set_output(transform="pandas")`` works (scikit-learn's TransformerMixin; the columns are
``get_feature_names_out()``: rfmfeatures0, rfmfeatures1, ...).
"""

from __future__ import annotations

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassNamePrefixFeaturesOutMixin, TransformerMixin, clone
from sklearn.utils._param_validation import HasMethods
from sklearn.utils.validation import check_is_fitted

from . import _inputs as inputs


def sqrt_M(M) -> np.ndarray:
    """The symmetric PSD square root S of an RFM's M, so that S^T S = S S = M (up to the
    rounding of a PSD M's eigenvalues below zero, set to 0): (d, d) M -> (d, d) float64
    V diag(sqrt(max(w, 0))) V^T by eigh of (M + M^T) / 2; (d,) diagonal m -> sqrt(max(m, 0))."""
    M = np.asarray(M.detach().cpu() if torch.is_tensor(M) else M, dtype=np.float64)
    if not np.isfinite(M).all():
        raise ValueError("M has NaN or inf entries; it has no square root")
    if M.ndim == 1:
        return np.sqrt(np.clip(M, 0, None))
    if M.ndim != 2 or M.shape[0] != M.shape[1]:
        raise ValueError(f"M must be (d, d) or its (d,) diagonal, got shape {M.shape}")
    w, V = np.linalg.eigh((M + M.T) / 2)
    return (V * np.sqrt(np.clip(w, 0, None))) @ V.T


class RFMFeatures(ClassNamePrefixFeaturesOutMixin, TransformerMixin, BaseEstimator):
    """X -> X S with S = M^(1/2) (symmetric, by eigh; X * sqrt(m) for a diagonal M), M the
    feature matrix of a Recursive Feature Machine.

    Parameters
    ----------
    estimator : RFMRegressor or RFMClassifier (or any estimator with ``M_`` after fit),
        default None (an RFMRegressor with its defaults). Cloned and fitted on (X, y) by
        ``fit``, unless ``prefit``.
    prefit : bool, default False. True: ``estimator`` is already fitted; ``fit(X, y=None)``
        only checks X against it and takes its M.

    Attributes
    ----------
    estimator_ : the fitted RFM (the clone, or ``estimator`` itself when prefit).
    sqrt_M_ : (d, d) or (d,) float64 array, S.
    feature_importances_ : (d,) the RFM's diag(M) normalized to sum 1.
    n_features_in_, feature_names_in_ (when X was a DataFrame of string column names).
    """

    _parameter_constraints: dict = {"estimator": [HasMethods(["fit"]), None], "prefit": ["boolean"]}

    def __init__(self, estimator=None, *, prefit=False):
        self.estimator = estimator
        self.prefit = prefit

    def fit(self, X, y=None, **fit_params):
        """Fit the RFM on (X, y) (``fit_params``, e.g. sample_weight or X_val / y_val, go to its
        fit), or with prefit=True take the fitted one; then S = M^(1/2)."""
        self._validate_params()
        if self.prefit:
            if self.estimator is None:
                raise ValueError("prefit=True needs a fitted estimator, got estimator=None")
            check_is_fitted(self.estimator, "M_")
            est = self.estimator
        else:
            if y is None:
                raise ValueError(
                    "RFMFeatures requires y to be passed, but the target y is None: it fits "
                    "an RFM on (X, y) (or pass a fitted RFM with prefit=True)"
                )
            if self.estimator is None:
                from .rfm import RFMRegressor

                est = RFMRegressor()
            else:
                est = clone(self.estimator)
            est.fit(X, y, **fit_params)
        Xt, _ = inputs.features(X, "X", torch.float64, torch.device("cpu"))
        d = int(getattr(est, "n_features_in_", np.shape(est.M_)[0]))
        if Xt.shape[1] != d:
            raise ValueError(
                f"X has {Xt.shape[1]} features, but the fitted {type(est).__name__} is "
                f"expecting {d} features as input"
            )
        inputs.check_feature_names(self, X, reset=True)
        self.estimator_ = est
        self.sqrt_M_ = sqrt_M(est.M_)
        self.n_features_in_ = d
        return self

    def transform(self, X):
        """X (n, d) -> X S (n, d), in X's float dtype (float32 stays float32, anything else is
        float64); a torch tensor gives a tensor on its device, anything else numpy."""
        check_is_fitted(self, "sqrt_M_")
        inputs.check_feature_names(self, X, reset=False)
        Xt, is_torch = inputs.features(X, "X", torch.float64, torch.device("cpu"))
        if Xt.shape[1] != self.n_features_in_:
            raise ValueError(
                f"X has {Xt.shape[1]} features, but RFMFeatures is expecting "
                f"{self.n_features_in_} features as input"
            )
        S = torch.from_numpy(self.sqrt_M_)
        Z = Xt * S if S.ndim == 1 else Xt @ S
        Z = Z.to(inputs.output_dtype(X))
        return Z.to(X.device) if is_torch else Z.numpy()

    @property
    def feature_importances_(self) -> np.ndarray:
        """The fitted RFM's diag(M) over its sum (RFMRegressor.feature_importances_)."""
        check_is_fitted(self, "sqrt_M_")
        M = np.asarray(self.estimator_.M_, dtype=np.float64)
        m = np.abs(M if M.ndim == 1 else np.diagonal(M))
        total = float(m.sum())
        return m / total if total > 0 and np.isfinite(total) else np.full(m.shape, 1 / m.size)

    @property
    def _n_features_out(self) -> int:  # ClassNamePrefixFeaturesOutMixin: d output columns
        return self.n_features_in_

    def __sklearn_tags__(self):  # scikit-learn >= 1.6
        tags = super().__sklearn_tags__()
        tags.target_tags.required = not self.prefit
        return tags
