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
