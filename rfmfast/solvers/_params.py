"""Keyword checks of the solves (and the RFM estimators' constraints): scikit-learn's parameter
validation, so that a bad option is refused with one clear message before any work."""

from __future__ import annotations

from numbers import Integral, Real

import numpy as np
import torch
from sklearn.utils._param_validation import (
    Interval,
    Options,
    StrOptions,
    validate_parameter_constraints,
)

from ..kernels import KERNELS
from ..ops import BACKENDS
from .auto import SOLVERS


class Number(Interval):
    """scikit-learn's Interval that also refuses bools: True is an int to Python, never a
    bandwidth or an iteration count. Strings are refused by Interval itself."""

    def is_satisfied_by(self, val):
        return not isinstance(val, (bool, np.bool_)) and super().is_satisfied_by(val)


def positive(kind=Real):
    return Number(kind, 0, None, closed="neither")


def at_least(low, kind=Integral):
    return Number(kind, low, None, closed="left")


KERNEL = [StrOptions(set(KERNELS))]
BACKEND = [StrOptions({"auto", *BACKENDS})]

#: every keyword of kernel_solve / cg_solve / cholesky_solve that is a plain option
SOLVE_OPTIONS = {
    "kernel": KERNEL,
    "bandwidth": [positive()],
    "reg": [at_least(0, Real)],
    "solver": [StrOptions(set(SOLVERS))],
    "dtype": [Options(torch.dtype, {torch.float32, torch.float64}), None],
    "tol": [positive(), None],
    "max_iter": [at_least(1)],
    "rank": [at_least(0)],
    "seed": [at_least(0)],
    "memory_budget": [positive(), None],
    "backend": BACKEND,
    "verbose": ["verbose"],
    "progress_every": [at_least(0, Real), None],
    "return_info": ["boolean"],
}


def check_solve_options(caller: str, **options) -> None:
    """Raise InvalidParameterError (a ValueError and a TypeError) naming the first bad option:
    e.g. "The 'max_iter' parameter of cg_solve must be an int in the range [1, inf). Got 0
    instead." Numbers must be real and finite, bools and strings are not numbers."""
    validate_parameter_constraints({k: SOLVE_OPTIONS[k] for k in options}, options, caller)


def check_weights(weights, X: torch.Tensor) -> torch.Tensor | None:
    """A solve's sample weights: None, or (n,) positive finite numbers (numpy or torch) ->
    a tensor of X's dtype on X's device. The weighted ridge is (K + reg W^{-1}) alpha = y, the
    minimiser of sum_i w_i (f(x_i) - y_i)^2 + reg ||f||^2: a zero weight has no place in it (the
    estimators drop those rows first), and neither has one that X's dtype rounds to zero."""
    if weights is None:
        return None
    if not isinstance(weights, torch.Tensor):
        try:
            weights = torch.from_numpy(np.array(weights, dtype=np.float64))
        except (TypeError, ValueError) as e:
            raise TypeError(f"weights must be a 1-D array of numbers: {e}") from None
    n = X.shape[0]
    if weights.ndim != 1 or weights.shape[0] != n:
        raise ValueError(
            f"weights must be (n,) = ({n},), one per row of X, got shape {tuple(weights.shape)}"
        )
    if weights.is_complex() or weights.dtype == torch.bool:
        raise TypeError(f"weights must be real numbers, got {weights.dtype}")
    w = weights.detach().to(device=X.device, dtype=X.dtype)
    if not bool(torch.isfinite(w).all()):
        raise ValueError("weights contain NaN or inf (or values beyond X's dtype)")
    if not bool((w > 0).all()):
        raise ValueError(
            f"weights must be positive (in {str(X.dtype)[6:]}); drop the rows of weight zero "
            "first (they do not enter the weighted ridge)"
        )
    return w
