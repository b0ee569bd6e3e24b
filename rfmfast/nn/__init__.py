"""rfmfast.nn: feature learning in torch models, measured (no GPU needed).

    agop(model, X, *, layer, outputs, centering, wrt, chunk, method)  -> (D, D)
    feature_matrix(layer, init=None)                                  -> (d, d)
    nfa_report(model, X, init_model=None, *, power=0.5)               -> NFAReport
    ntk_eigs(model, X, k=1, *, method)                                -> (k,)
    critical_lr(model, X)                                             -> 2 / lambda_0
    linearized(model), quadratic(model)                               -> TaylorModel
    catapults(losses, factor=2)                                       -> [Spike]
Matrix comparisons (correlation, alignment, psd_power) are in rfmfast.metrics; the papers'
experiments, reproduced, in rfmfast.nn.experiments; the in-context-learning feature map and
models (a batched kernel smoother over prompts) in rfmfast.nn.icl.
"""

from .agop import agop
from .features import NFAReport, NFARow, feature_matrix, nfa_report
from .spikes import Spike, catapults
from .tangent import critical_lr, ntk_eigs
from .taylor import TaylorModel, linearized, quadratic

__all__ = [
    "agop",
    "feature_matrix",
    "nfa_report",
    "NFAReport",
    "NFARow",
    "ntk_eigs",
    "critical_lr",
    "linearized",
    "quadratic",
    "TaylorModel",
    "catapults",
    "Spike",
]
