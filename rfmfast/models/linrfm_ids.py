"""Ratings as users meet them: (user id, item id, rating) tables with arbitrary ids.

``read_table(Y, columns, ids)`` turns a pandas DataFrame, or a tuple of three arrays whose first
two hold ids (ints with gaps, strings, any sortable values), into 0-based (rows, cols, values)
and the two ``IdMap``s that translate back; ``IdMap.encode`` maps ids given at predict time,
unknown ones to -1. Every problem with the table is reported before any work: missing columns,
missing ids, ratings that are not finite numbers, a (user, item) pair given twice, mixed id types
that cannot be ordered.

Memory: the maps hold the sorted unique ids (one entry per user and per item); reading a table
makes int64 positions and float64 values (16 bytes per rating) plus a sort of each id column.
"""

from __future__ import annotations

import numpy as np

DEFAULT_COLUMNS = ("user", "item", "rating")


class IdMap:
    """Sorted unique ids (``ids_``, shape (k,)) and their 0-based positions."""

    def __init__(self, ids: np.ndarray, name: str):
        self.ids_ = ids
        self.name = name

    def __len__(self) -> int:
        return len(self.ids_)

    def __repr__(self) -> str:
        return f"IdMap({self.name}: {len(self)} ids)"

    @classmethod
    def fit(cls, values, name: str) -> tuple[IdMap, np.ndarray]:
        """(map, positions (len(values),) int64) for the ids ``values``; refuses missing ids."""
        v = _id_array(values, name)
        try:
            uniq, pos = np.unique(v, return_inverse=True)
        except TypeError as e:
            raise TypeError(
                f"{name} ids must be of one sortable kind (all numbers or all strings); "
                f"sorting them failed: {e}"
            ) from None
        return cls(uniq, name), pos.reshape(-1).astype(np.int64)

    def encode(self, values) -> np.ndarray:
        """Positions (q,) int64 of the ids ``values``; -1 for ids not seen in fit."""
        v = _id_array(values, self.name, allow_missing=True)
        if not len(v) or not len(self.ids_):
            return np.full(len(v), -1, dtype=np.int64)
        try:
            pos = np.searchsorted(self.ids_, v)
        except TypeError:
            # ids of another kind than the fitted ones (e.g. ints for string ids): all unknown,
            # except the ones that compare equal one by one
            lookup = {k: i for i, k in enumerate(self.ids_.tolist())}
            return np.array([lookup.get(k, -1) for k in v.tolist()], dtype=np.int64)
        pos = np.minimum(pos, len(self.ids_) - 1)
        hit = self.ids_[pos] == v
        return np.where(hit, pos, -1).astype(np.int64)

    def decode(self, positions) -> np.ndarray:
        """The ids at ``positions`` (int array)."""
        return self.ids_[np.asarray(positions, dtype=np.int64)]


def _show(x) -> str:
    """An id as the user wrote it (numpy scalars as Python ones)."""
    return repr(x.item() if isinstance(x, np.generic) else x)


def _id_array(values, name: str, allow_missing: bool = False) -> np.ndarray:
    import torch

    if isinstance(values, torch.Tensor):
        values = values.detach().cpu().numpy()
    v = np.asarray(values)
    if v.ndim == 0:
        v = v.reshape(1)
    if v.ndim != 1:
        raise ValueError(f"{name} ids must be 1-D, got shape {v.shape}")
    if v.dtype.kind == "f":
        if not allow_missing and np.isnan(v).any():
            i = int(np.flatnonzero(np.isnan(v))[0])
            raise ValueError(f"{name} id at position {i} is missing (NaN)")
    elif v.dtype.kind == "O" and not allow_missing:
        miss = [i for i, x in enumerate(v.tolist()) if x is None or x != x]
        if miss:
            raise ValueError(
                f"{name} id at position {miss[0]} is missing ({_show(v[miss[0]])}); "
                f"{len(miss)} missing in all"
            )
    return v


def is_table(Y) -> bool:
    """Whether Y is a pandas DataFrame (without importing pandas when it is not loaded)."""
    import sys

    pd = sys.modules.get("pandas")
    return pd is not None and isinstance(Y, pd.DataFrame)


def wants_ids(Y, ids) -> bool:
    """Whether the observed entries ``Y`` carry ids to be mapped: ``ids`` when given, else True
    for a DataFrame and for a (rows, cols, values) tuple whose rows or cols hold strings or
    other objects (float rows or cols are refused as positions, unless ``ids=True``)."""
    if ids is not None:
        return bool(ids)
    if is_table(Y):
        return True
    if isinstance(Y, tuple) and len(Y) == 3:
        for a in Y[:2]:
            kind = getattr(a, "dtype", None)
            kind = kind.kind if kind is not None and hasattr(kind, "kind") else None
            if kind is None:
                kind = np.asarray(a).dtype.kind
            if kind in "OUSM":  # strings, objects, datetimes: ids (floats stay an error)
                return True
    return False


def _resolve_columns(Y, columns) -> tuple:
    names = list(Y.columns)
    if columns is None:
        if all(c in names for c in DEFAULT_COLUMNS):
            return DEFAULT_COLUMNS
        if len(names) == 3:
            return tuple(names)
        raise ValueError(
            f"the DataFrame has columns {names}; say which hold the user ids, the item ids "
            "and the ratings with columns=(user, item, rating)"
        )
    if not (isinstance(columns, (tuple, list)) and len(columns) == 3):
        raise ValueError(f"columns must name three columns (user, item, rating): {columns!r}")
    missing = [c for c in columns if c not in names]
    if missing:
        raise ValueError(f"columns {missing} are not in the DataFrame, which has {names}")
    return tuple(columns)


def table_columns(Y, columns=None) -> tuple:
    """The (rows, cols, values) columns of a DataFrame as numpy arrays (``columns`` as for
    ``read_table``), for a frame that holds positions rather than ids."""
    return tuple(Y[c].to_numpy() for c in _resolve_columns(Y, columns))


def read_table(Y, columns=None):
    """(rows, cols, values, row_map, col_map) from a DataFrame (``columns`` = the names of the
    user, item and rating columns; default ("user", "item", "rating") when present, else the
    frame's three columns in order) or a tuple (user ids, item ids, ratings)."""
    if is_table(Y):
        columns = _resolve_columns(Y, columns)
        users, items, vals = table_columns(Y, columns)
        what = tuple(str(c) for c in columns)
    else:
        if columns is not None:
            raise ValueError("columns applies to a DataFrame; a tuple is (users, items, ratings)")
        if not (isinstance(Y, tuple) and len(Y) == 3):
            raise TypeError(
                "ids are read from a DataFrame or a tuple (user ids, item ids, ratings), "
                f"got {type(Y).__name__}"
            )
        users, items, vals = Y
        what = ("user", "item", "rating")
    users, items = _id_array(users, what[0]), _id_array(items, what[1])
    vals = np.asarray(vals.detach().cpu().numpy() if hasattr(vals, "detach") else vals)
    if not (users.shape == items.shape == vals.shape):
        raise ValueError(
            f"{what[0]}, {what[1]} and {what[2]} must be 1-D of one length, got "
            f"{users.shape}, {items.shape}, {vals.shape}"
        )
    if not len(vals):
        raise ValueError("no observed entries (the table is empty)")
    if vals.dtype.kind not in "fiub":
        try:
            vals = vals.astype(np.float64)
        except (TypeError, ValueError):
            raise TypeError(f"{what[2]} must hold numbers, got dtype {vals.dtype}") from None
    if vals.dtype.kind == "b":
        raise TypeError(f"{what[2]} must hold numbers, got booleans")
    vals = vals.astype(np.float64)
    bad = ~np.isfinite(vals)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(
            f"{what[2]} at row {i} ({what[0]} {_show(users[i])}, {what[1]} {_show(items[i])}) is "
            f"{vals[i]}; {int(bad.sum())} ratings are not finite numbers. Drop the missing ones"
        )
    row_map, rows = IdMap.fit(users, what[0])
    col_map, cols = IdMap.fit(items, what[1])
    key = rows * len(col_map) + cols
    srt = np.sort(key)
    dup = srt[1:] == srt[:-1]
    if dup.any():
        k = int(srt[1:][dup][0])
        raise ValueError(
            f"{what[0]} {_show(row_map.ids_[k // len(col_map)])} rated {what[1]} "
            f"{_show(col_map.ids_[k % len(col_map)])} more than once; {int(dup.sum())} duplicate "
            "pair(s) in all. Combine them first (e.g. keep the latest or average)"
        )
    return rows, cols, vals, row_map, col_map
