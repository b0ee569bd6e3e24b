"""Loaders for data sets the recipes use. Nothing is downloaded or shipped: point them at your copy.

    load_movielens(path) -> Ratings    MovieLens ``u.data`` (100K: ``user<TAB>item<TAB>rating<TAB>time``)
                                       or ``ratings.dat`` (1M/10M: ``user::item::rating::time``)
"""
from __future__ import annotations

import os
from typing import NamedTuple

import numpy as np


class Ratings(NamedTuple):
    """Ratings as observed entries of a (users, items) matrix.

    rows, cols : int64 (nnz,)  0-based positions into ``user_ids`` / ``item_ids``
    values     : float64 (nnz,) the ratings
    timestamps : int64 (nnz,)
    user_ids, item_ids : int64 sorted original ids (row ``i`` is user ``user_ids[i]``)
    """
    rows: np.ndarray
    cols: np.ndarray
    values: np.ndarray
    timestamps: np.ndarray
    user_ids: np.ndarray
    item_ids: np.ndarray

    @property
    def shape(self) -> tuple[int, int]:
        return len(self.user_ids), len(self.item_ids)


def load_movielens(path) -> Ratings:
    """Read a MovieLens ratings file: ``u.data`` (tab- or space-separated) or ``ratings.dat``
    (``::``-separated); the format is told from the first line. Four fields per line
    (user, item, rating, timestamp); ids are mapped to 0-based rows/columns in sorted order.
    Raises FileNotFoundError, or ValueError naming the first malformed line."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no ratings file at {path!r} (MovieLens u.data or ratings.dat)")
    with open(path, encoding="latin-1") as f:
        text = f.read()
    lines = [ln for ln in text.splitlines() if ln.strip()]
    if not lines:
        raise ValueError(f"{path!r} holds no ratings")
    sep = "::" if "::" in lines[0] else None
    fields = [ln.split(sep) if sep else ln.split() for ln in lines]
    for k, f in enumerate(fields):
        if len(f) != 4:
            raise ValueError(f"{path!r} line {k + 1}: expected 4 fields (user, item, rating, "
                             f"timestamp), got {len(f)}: {lines[k][:80]!r}")
    try:
        arr = np.array(fields, dtype=np.float64)
    except ValueError:
        for k, f in enumerate(fields):
            try:
                [float(x) for x in f]
            except ValueError:
                raise ValueError(f"{path!r} line {k + 1}: non-numeric field in {lines[k][:80]!r}") from None
        raise
    ids = arr[:, [0, 1, 3]]
    if not np.all(ids == np.round(ids)):
        k = int(np.nonzero(np.any(ids != np.round(ids), axis=1))[0][0])
        raise ValueError(f"{path!r} line {k + 1}: user, item and timestamp must be integers")
    if not np.all(np.isfinite(arr[:, 2])):
        k = int(np.nonzero(~np.isfinite(arr[:, 2]))[0][0])
        raise ValueError(f"{path!r} line {k + 1}: rating is not a finite number")
    users, rows = np.unique(arr[:, 0].astype(np.int64), return_inverse=True)
    items, cols = np.unique(arr[:, 1].astype(np.int64), return_inverse=True)
    return Ratings(rows.astype(np.int64), cols.astype(np.int64), arr[:, 2].copy(),
                   arr[:, 3].astype(np.int64), users, items)


def split_ratings(n: int, test_fraction: float, seed: int = 0) -> np.ndarray:
    """Boolean (n,) mask of a seeded random test set of round(test_fraction * n) entries."""
    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    rng = np.random.default_rng(seed)
    test = np.zeros(n, dtype=bool)
    test[rng.permutation(n)[:int(round(test_fraction * n))]] = True
    return test
