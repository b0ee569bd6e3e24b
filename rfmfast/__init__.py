"""rfmfast: fused, memory-bounded kernels for Recursive Feature Machines.

Public API (everything else is internal):

Ops (torch tensors in and out; numpy in gives numpy out)
    kernel_matrix(X, Z=None, *, kernel, bandwidth, M, backend)          -> (n, m)
    kernel_matmul(X, Z, V, *, kernel, bandwidth, M, backend)            -> (n, t)
    nystroem_matmul(X, C, V, W=None, *, kernel, bandwidth, M, backend)  -> (m, t)
    kernel_grads(Q, X, alpha, *, kernel, bandwidth, M, backend)         -> (q, c, d)
    agop(Q, X, alpha, *, kernel, bandwidth, M, diag, centering, backend) -> (d, d) or (d,)
    dual_kernel(X, Z=None, *, depth, activation, kind, log_domain, backend) -> (n, m)
    singular_kernel(X, Z=None, alpha, *, coincident)                     -> (n, m)
Solves and estimators
    kernel_solve, KernelRidge, RFMRegressor, RFMClassifier, LinRFMCompleter, LinRFMRegressor,
    RFMFeatures (X -> X M^(1/2), a scikit-learn transformer), KernelClassifier (deep NNGP / NTK
    and singular kernels), ConvRFMClassifier (images), the
    transfer-learning estimators
    ProjectedKernelRegressor / ...Classifier, TranslatedKernelRegressor / ...Classifier,
    learning_curve
Backends
    available_backends()
Submodules
    rfmfast.nn (the AGOP, feature matrices and tangent kernels of torch models; Taylor models;
    catapults), rfmfast.metrics (matrix correlation, alignment, psd_power), rfmfast.datasets

Optional parts (the C++ extension, Triton, CUDA) load lazily: importing rfmfast never
fails because one of them is missing.
"""

from . import _fork  # noqa: F401  (a forked child runs single-threaded; see rfmfast/_fork.py)
from ._version import __version__

# name -> module that defines it; loaded on first access so that `import rfmfast` stays
# cheap and never fails for a missing optional part.
_LAZY = {
    "kernel_matrix": "rfmfast.ops.kernel_matrix",
    "kernel_matmul": "rfmfast.ops.kernel_matmul",
    "nystroem_matmul": "rfmfast.ops.nystroem_matmul",
    "kernel_grads": "rfmfast.ops.agop",
    "agop": "rfmfast.ops.agop",
    "dual_kernel": "rfmfast.ops.dual_kernel",
    "singular_kernel": "rfmfast.ops.singular_kernel",
    "available_backends": "rfmfast.backends",
    "KERNELS": "rfmfast.kernels",
    "kernel_solve": "rfmfast.solvers",
    "KernelRidge": "rfmfast.models.kernel_ridge",
    "RFMRegressor": "rfmfast.models.rfm",
    "RFMClassifier": "rfmfast.models.rfm",
    "LinRFMCompleter": "rfmfast.models.linrfm",
    "LinRFMRegressor": "rfmfast.models.linrfm",
    "KernelClassifier": "rfmfast.models.kernel_classifier",
    "ConvRFMClassifier": "rfmfast.models.convrfm",
    "RFMFeatures": "rfmfast.models.rfm_features",
    "ProjectedKernelRegressor": "rfmfast.models.transfer",
    "ProjectedKernelClassifier": "rfmfast.models.transfer",
    "TranslatedKernelRegressor": "rfmfast.models.transfer",
    "TranslatedKernelClassifier": "rfmfast.models.transfer",
    "learning_curve": "rfmfast.models.learning_curve",
    "datasets": "rfmfast.datasets",
    "nn": "rfmfast.nn",
    "metrics": "rfmfast.metrics",
}
_SUBMODULES = ("datasets", "nn", "metrics")

__all__ = ["__version__", *_LAZY]


def __getattr__(name):
    if name in _LAZY:
        import importlib

        module = importlib.import_module(_LAZY[name])
        value = module if name in _SUBMODULES else getattr(module, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'rfmfast' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_LAZY))
