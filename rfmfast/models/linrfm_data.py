"""Input handling for lin-RFM: the observed entries as sorted (rows, cols, values), and the
parameter constraints and device choice that LinRFMCompleter and LinRFMRegressor share.

Accepted forms of the observed entries (all checked before any work):
    (rows, cols, values)        a tuple of three 1-D arrays of equal length; ``shape`` given or
                                inferred (max + 1)
    scipy.sparse matrix/array   every *stored* entry is observed (explicit zeros included)
    dense (n, d) + mask         observed where ``mask`` is True; entries outside the mask are
                                never read
    dense (n, d), no mask       missing entries are NaN; all finite entries are observed
                                (a nested list is a dense matrix, never a triple)

Errors: indices that are not integers, negative or out of range; a ``shape`` that is not two
integers >= 0, or that disagrees with a dense or sparse Y; duplicate (row, col) pairs; NaN or inf
among observed values; no observed entry at all. Rows or columns with no observation are allowed
(see LinRFMCompleter: they are predicted by the bias model alone).
"""

from __future__ import annotations

from numbers import Integral

import numpy as np
import torch
from sklearn.utils._param_validation import Options, StrOptions

from ..solvers._params import Number  # noqa: F401  (the one Interval that refuses bools)
from ._inputs import resolve_device, torch_dtype  # noqa: F401  (lin-RFM's parameters)

# dtype parameters: "float32" / "float64" (the defaults are strings), or the torch dtypes
DTYPES = [StrOptions({"float32", "float64"}), Options(torch.dtype, {torch.float32, torch.float64})]
DEVICES = [None, str, torch.device]


def check_shape(shape) -> tuple[int, int]:
    """``shape`` as (n, d) Python ints: a pair of integers >= 0 (no floats, bools or strings)."""
    ok = (
        isinstance(shape, (tuple, list))
        and len(shape) == 2
        and all(
            isinstance(s, Integral) and not isinstance(s, (bool, np.bool_)) and s >= 0
            for s in shape
        )
    )
    if not ok:
        raise ValueError(f"shape must be a pair of integers >= 0, (n, d), got {shape!r}")
    return int(shape[0]), int(shape[1])


def _as_numpy(x, name: str) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    try:
        return np.asarray(x)
    except Exception as e:  # pragma: no cover - exotic inputs
        raise TypeError(f"{name} could not be read as an array: {e}") from None


def observed_entries(Y, mask=None, shape=None):
    """(rows int64 (nnz,), cols int64 (nnz,), values float64 (nnz,), (n, d)) sorted by row then
    column."""
    import scipy.sparse as sp

    if shape is not None:
        shape = check_shape(shape)
    if (
        isinstance(Y, list)
        and len(Y) == 3
        and any(isinstance(a, (np.ndarray, torch.Tensor)) for a in Y)
    ):
        raise TypeError(
            "a list of three arrays is ambiguous: pass the observed entries as a tuple "
            "(rows, cols, values), or the dense matrix as one array"
        )
    if isinstance(Y, tuple):
        if len(Y) != 3:
            raise ValueError(
                f"observed entries as a tuple must be (rows, cols, values), got {len(Y)} items"
            )
        if mask is not None:
            raise ValueError("mask applies to a dense matrix, not to (rows, cols, values)")
        rows, cols, vals = (_as_numpy(a, n) for a, n in zip(Y, ("rows", "cols", "values")))
    elif sp.issparse(Y):
        if mask is not None:
            raise ValueError(
                "mask applies to a dense matrix; a sparse matrix's stored entries are the "
                "observed ones"
            )
        coo = Y.tocoo()
        rows, cols, vals = coo.row, coo.col, coo.data
        shape = _same_shape(coo.shape, shape, "the sparse Y")
    else:
        dense = _as_numpy(Y, "Y")
        if dense.ndim != 2:
            raise ValueError(f"a dense Y must be 2-D (n, d), got shape {dense.shape}")
        if dense.dtype.kind not in "fiu":
            raise TypeError(f"Y must hold numbers, got dtype {dense.dtype}")
        if mask is None:
            m = ~np.isnan(dense)
        else:
            m = _as_numpy(mask, "mask")
            if m.shape != dense.shape:
                raise ValueError(f"mask has shape {m.shape} but Y has shape {dense.shape}")
            if m.dtype != np.bool_:
                raise TypeError(f"mask must be boolean, got dtype {m.dtype}")
        rows, cols = np.nonzero(m)
        vals = dense[rows, cols]  # only the observed entries are read
        shape = _same_shape(dense.shape, shape, "the dense Y")
    for a, n in ((rows, "rows"), (cols, "cols")):
        if a.ndim != 1:
            raise ValueError(f"{n} must be 1-D, got shape {a.shape}")
        if a.dtype.kind not in "iu":
            raise TypeError(
                f"{n} must be integers, got dtype {a.dtype} (for ids of any kind, pass a "
                "DataFrame or fit(..., ids=True))"
            )
        if a.dtype.kind == "u" and len(a) and a.max() > np.iinfo(np.int64).max:
            raise ValueError(f"{n} holds index {a.max()}, beyond any matrix shape")
    if vals.ndim != 1 or not (len(rows) == len(cols) == len(vals)):
        raise ValueError(
            f"rows, cols and values must be 1-D of one length, got {rows.shape}, "
            f"{cols.shape}, {vals.shape}"
        )
    if len(vals) == 0:
        raise ValueError("no observed entries")
    if vals.dtype.kind not in "fiu":
        raise TypeError(f"values must be numbers, got dtype {vals.dtype}")
    rows = rows.astype(np.int64)
    cols = cols.astype(np.int64)
    vals = vals.astype(np.float64)
    if rows.min() < 0 or cols.min() < 0:
        raise ValueError("row and column indices must be >= 0")
    if shape is None:
        shape = (int(rows.max()) + 1, int(cols.max()) + 1)
    n, d = shape
    if rows.max() >= n or cols.max() >= d:
        bad = np.nonzero((rows >= n) | (cols >= d))[0][0]
        raise ValueError(f"entry ({rows[bad]}, {cols[bad]}) is out of range for shape ({n}, {d})")
    bad = ~np.isfinite(vals)
    if bad.any():
        i = np.nonzero(bad)[0][0]
        raise ValueError(
            f"observed value at ({rows[i]}, {cols[i]}) is {vals[i]}; observed values must "
            "be finite (mark missing entries by leaving them out, or with a mask)"
        )
    order = np.lexsort((cols, rows))
    rows, cols, vals = rows[order], cols[order], vals[order]
    dup = (rows[1:] == rows[:-1]) & (cols[1:] == cols[:-1])
    if dup.any():
        i = np.nonzero(dup)[0][0]
        raise ValueError(
            f"entry ({rows[i]}, {cols[i]}) is given more than once; "
            f"{int(dup.sum())} duplicate(s) in all. Combine them first (e.g. average)"
        )
    return rows, cols, vals, (n, d)


def _same_shape(actual, given, what):
    actual = (int(actual[0]), int(actual[1]))
    if given is not None and given != actual:
        raise ValueError(f"shape={given} disagrees with {what}, which is {actual}")
    return actual


def holdout_split(
    rows: np.ndarray, cols: np.ndarray, shape, fraction: float, seed: int
) -> np.ndarray:
    """Boolean (nnz,) mask of held-out entries: a seeded random ``fraction``, except that every row
    and column keeps at least one entry for fitting when it had one."""
    nnz = len(rows)
    rng = np.random.default_rng(seed)
    held = rng.random(nnz) < fraction
    for idx, size in ((rows, shape[0]), (cols, shape[1])):
        kept = np.bincount(idx[~held], minlength=size)
        empty = np.nonzero(kept == 0)[0]
        if len(empty):
            # give one held-out entry back to each emptied row/column
            cand = np.nonzero(held & np.isin(idx, empty))[0]
            _, first = np.unique(idx[cand], return_index=True)
            held[cand[first]] = False
    return held
