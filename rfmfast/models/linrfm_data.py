"""Input handling for lin-RFM completion: the observed entries as sorted (rows, cols, values).

Accepted forms (all checked before any work):
    (rows, cols, values)        three 1-D arrays of equal length; ``shape`` given or inferred (max + 1)
    scipy.sparse matrix/array   every *stored* entry is observed (explicit zeros included)
    dense (n, d) + mask         observed where ``mask`` is True; entries outside the mask are never read
    dense (n, d), no mask       missing entries are NaN; all finite entries are observed

Errors: indices that are not integers, negative or out of range; duplicate (row, col) pairs;
NaN or inf among observed values; no observed entry at all. Rows or columns with no observation
are allowed (see LinRFMCompleter: they are predicted by the bias model alone).
"""
from __future__ import annotations

import numpy as np
import torch


def _as_numpy(x, name: str) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    try:
        return np.asarray(x)
    except Exception as e:  # pragma: no cover - exotic inputs
        raise TypeError(f"{name} could not be read as an array: {e}") from None


def observed_entries(Y, mask=None, shape=None):
    """(rows int64 (nnz,), cols int64 (nnz,), values float64 (nnz,), (n, d)) sorted by row then column."""
    import scipy.sparse as sp

    if isinstance(Y, tuple) or isinstance(Y, list):
        if len(Y) != 3:
            raise ValueError(f"observed entries as a tuple must be (rows, cols, values), got {len(Y)} items")
        if mask is not None:
            raise ValueError("mask applies to a dense matrix, not to (rows, cols, values)")
        rows, cols, vals = (_as_numpy(a, n) for a, n in zip(Y, ("rows", "cols", "values")))
    elif sp.issparse(Y):
        if mask is not None:
            raise ValueError("mask applies to a dense matrix; a sparse matrix's stored entries are the observed ones")
        coo = Y.tocoo()
        rows, cols, vals = coo.row, coo.col, coo.data
        shape = coo.shape if shape is None else shape
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
        shape = dense.shape
    for a, n in ((rows, "rows"), (cols, "cols")):
        if a.ndim != 1:
            raise ValueError(f"{n} must be 1-D, got shape {a.shape}")
        if a.dtype.kind not in "iu":
            raise TypeError(f"{n} must be integers, got dtype {a.dtype}")
    if vals.ndim != 1 or not (len(rows) == len(cols) == len(vals)):
        raise ValueError(f"rows, cols and values must be 1-D of one length, got {rows.shape}, "
                         f"{cols.shape}, {vals.shape}")
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
    n, d = (int(s) for s in shape)
    if rows.max() >= n or cols.max() >= d:
        bad = np.nonzero((rows >= n) | (cols >= d))[0][0]
        raise ValueError(f"entry ({rows[bad]}, {cols[bad]}) is out of range for shape ({n}, {d})")
    bad = ~np.isfinite(vals)
    if bad.any():
        i = np.nonzero(bad)[0][0]
        raise ValueError(f"observed value at ({rows[i]}, {cols[i]}) is {vals[i]}; observed values must "
                         "be finite (mark missing entries by leaving them out, or with a mask)")
    order = np.lexsort((cols, rows))
    rows, cols, vals = rows[order], cols[order], vals[order]
    dup = (rows[1:] == rows[:-1]) & (cols[1:] == cols[:-1])
    if dup.any():
        i = np.nonzero(dup)[0][0]
        raise ValueError(f"entry ({rows[i]}, {cols[i]}) is given more than once; "
                         f"{int(dup.sum())} duplicate(s) in all. Combine them first (e.g. average)")
    return rows, cols, vals, (n, d)


def holdout_split(rows: np.ndarray, cols: np.ndarray, shape, fraction: float, seed: int) -> np.ndarray:
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
