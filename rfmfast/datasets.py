"""Loaders for data sets the recipes use. Nothing is downloaded or shipped: point them at your copy.

load_movielens(path) -> Ratings    MovieLens ``ratings.csv`` (ml-latest, 20M, 25M, 32M:
                                   ``userId,movieId,rating,timestamp`` with that header),
                                   ``u.data`` (100K: ``user<TAB>item<TAB>rating<TAB>time``)
                                   or ``ratings.dat`` (1M/10M: ``user::item::rating::time``)
"""

from __future__ import annotations

import io
import math
import os
import re
import warnings
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


_CHUNK = 1 << 16  # bytes of text parsed at a time
_FIELDS = [("user", np.int64), ("item", np.int64), ("rating", np.float64), ("timestamp", np.int64)]
_INT = re.compile(r"[+-]?[0-9]+")
_INT64 = (-(2**63), 2**63 - 1)


def load_movielens(path) -> Ratings:
    """Read a MovieLens ratings file. The format is told from the first line that is not blank:
    ``::`` separators (ratings.dat), commas (ratings.csv; a first line of names such as
    ``userId,movieId,rating,timestamp`` is the header), else tabs or spaces (u.data). Four fields
    per line: user, item, rating, timestamp. User and item ids and timestamps must be integers
    within int64 (``1e3`` or ``7.0`` is refused), read exactly (no float rounding); ratings must
    be finite numbers. Ids are mapped to 0-based rows/columns in sorted order.

    Memory: the result (32 bytes per rating), 64 KiB chunks of text, and while the ids are mapped
    9 bytes per id in their range (ids spread wider than the number of ratings: 25 bytes per
    rating): about 2x the file size for MovieLens files (20 or more bytes a line).
    Raises FileNotFoundError, or ValueError naming the first malformed line."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"no ratings file at {path!r} (MovieLens ratings.csv, u.data or ratings.dat)"
        )
    with open(path, "rb") as f:
        size = sum(block.count(b"\n") for block in iter(lambda: f.read(1 << 20), b"")) + 1
        f.seek(0)
        cols = {name: np.empty(size, dtype=dt) for name, dt in _FIELDS}
        k, line, sep = 0, 1, None
        while True:
            raw = f.read(_CHUNK)
            if not raw:
                break
            if not raw.endswith(b"\n"):
                raw += f.readline()
            if sep is None:
                if line == 1 and raw.startswith(b"\xef\xbb\xbf"):  # a UTF-8 byte order mark
                    raw = raw[3:]
                sep, raw = _format(raw)
            if sep is not None:  # (None: only blank lines so far)
                part = _parse(raw, sep, path, line)
                for name, _ in _FIELDS:
                    cols[name][k : k + len(part)] = part[name]
                k += len(part)
            line += raw.count(b"\n")
    if k == 0:
        raise ValueError(f"{path!r} holds no ratings")
    users, items = cols["user"][:k], cols["item"][:k]
    user_ids, item_ids = _index(users), _index(items)  # users, items become rows, cols
    return Ratings(users, items, cols["rating"][:k], cols["timestamp"][:k], user_ids, item_ids)


def _format(raw: bytes) -> tuple[str | None, bytes]:
    """(separator, raw): "::", "," or "" (whitespace) from the first line that is not blank, and
    the text with a header line blanked (None while the text holds only blank lines)."""
    first = next((ln for ln in raw.split(b"\n") if ln.strip()), None)
    if first is None:
        return None, raw
    line = first.decode("latin-1")
    sep = "::" if "::" in line else "," if "," in line else ""
    if all(f.strip().isidentifier() for f in _split(line, sep)):  # userId,movieId,rating,timestamp
        at = raw.index(first)
        raw = raw[:at] + raw[at + len(first) :]
    return sep, raw


def _split(line: str, sep: str) -> list[str]:
    return line.split(",") if sep == "," else line.replace("::", "\t").split()


def _parse(raw: bytes, sep: str, path: str, line: int) -> np.ndarray:
    """Structured (m,) array of the ratings in ``raw``, whose first line is file line ``line``."""
    src = raw.replace(b"::", b"\t") if sep == "::" else raw
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "input contained no data": blank lines
            part = np.loadtxt(
                io.BytesIO(src),
                dtype=_FIELDS,
                delimiter="," if sep == "," else None,
                comments=None,
                ndmin=1,
                encoding="latin-1",
            )
    except ValueError as e:
        end = line + raw.count(b"\n")
        raise _bad_line(raw, sep, path, line) or ValueError(
            f"{path!r} lines {line}-{end}: {e}"
        ) from None
    if not np.isfinite(part["rating"]).all():
        raise _bad_line(raw, sep, path, line)
    return part


def _bad_line(raw: bytes, sep: str, path: str, line: int) -> ValueError | None:
    """The error for the first malformed line of ``raw`` (file line ``line`` onwards), or None."""
    for j, ln in enumerate(raw.decode("latin-1").split("\n")):
        if (ln in ("", "\r")) if sep == "," else not ln.strip():
            continue  # a line loadtxt skips
        where, fields = f"{path!r} line {line + j}", _split(ln, sep)
        if len(fields) != 4:
            return ValueError(
                f"{where}: expected 4 fields (user, item, rating, timestamp), got "
                f"{len(fields)}: {ln[:80]!r}"
            )
        for name, s in zip(("user id", "item id", "timestamp"), (fields[0], fields[1], fields[3])):
            s = s.strip()
            if _INT.fullmatch(s):
                if not _INT64[0] <= int(s) <= _INT64[1]:
                    return ValueError(f"{where}: {name} {s} is outside the int64 range")
                continue
            try:
                float(s)
            except ValueError:
                return ValueError(f"{where}: non-numeric {name} {s!r} in {ln[:80]!r}")
            return ValueError(
                f"{where}: user, item and timestamp must be integers, got {name} "
                f"{s!r} in {ln[:80]!r}"
            )
        try:
            r = float(fields[2])
        except ValueError:
            return ValueError(f"{where}: non-numeric rating {fields[2].strip()!r} in {ln[:80]!r}")
        if not math.isfinite(r):
            return ValueError(f"{where}: rating is not a finite number: {ln[:80]!r}")
    return None


def _index(ids: np.ndarray) -> np.ndarray:
    """Sorted unique values of ``ids`` (int64, non-empty); ``ids`` is overwritten with each one's
    0-based position among them. Ids within a range no wider than their count go through a
    lookup table (9 bytes per id in the range), others through a sort (25 bytes per entry)."""
    lo, hi = int(ids.min()), int(ids.max())
    if hi - lo < len(ids):
        np.subtract(ids, lo, out=ids)
        present = np.zeros(hi - lo + 1, dtype=bool)
        present[ids] = True
        position = np.cumsum(present)
        position -= 1
        np.take(position, ids, out=ids, mode="clip")  # in place: mode "clip" is not buffered
        return np.flatnonzero(present) + lo
    order = np.argsort(ids)
    srt = ids[order]
    new = np.empty(len(srt), dtype=bool)
    new[0] = True
    np.not_equal(srt[1:], srt[:-1], out=new[1:])
    uniq = srt[new]
    np.cumsum(new, out=srt)
    srt -= 1
    ids[order] = srt
    return uniq


def split_ratings(n: int, test_fraction: float, seed: int = 0) -> np.ndarray:
    """Boolean (n,) mask of a seeded random test set of round(test_fraction * n) entries."""
    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    rng = np.random.default_rng(seed)
    test = np.zeros(n, dtype=bool)
    test[rng.permutation(n)[: int(round(test_fraction * n))]] = True
    return test


def synthetic_ratings(
    n_users: int,
    n_items: int,
    nnz: int,
    *,
    rank: int = 10,
    user_skew: float = 1.5,
    item_skew: float = 0.9,
    min_per_user: int = 1,
    max_share: float = 0.3,
    noise: float = 0.8,
    scale: tuple[float, float, float] = (0.5, 5.0, 0.5),
    seed: int = 0,
) -> Ratings:
    """Rating-like observed entries of an (n_users, n_items) matrix, with the skew real ratings
    have: the number of ratings per user and per item follow power laws.

    Each user's count is ``min_per_user`` plus a Pareto draw with tail exponent ``user_skew``
    (smaller: heavier tail), rescaled to sum to ``nnz`` and capped at ``max_share * n_items`` (at
    least ``min_per_user``; MovieLens' most active users rated 0.3 to 0.45 of the items); the
    items a user rated are drawn without replacement with probabilities proportional to a Zipf
    popularity ``(k + 1) ** -item_skew`` over a random item order. Values: 3.5 + user offset
    (sd 0.4) + item offset (sd 0.5) + a rank-``rank`` signal (sd 0.6) + noise (sd ``noise``),
    rounded to the step of ``scale = (low, high, step)`` and clipped to [low, high] (default
    half stars 0.5 to 5). ``timestamps`` are zeros; ids are 0-based.

    Memory: the draws go 4M keys at a time (about 100 MB for the keys and their sort) and take
    about 60 bytes per entry, 32 in the result. Raises ValueError when
    ``nnz`` cannot be placed (more than n_users * n_items, fewer than n_users * min_per_user).
    """
    n_users, n_items, nnz, rank = int(n_users), int(n_items), int(nnz), int(rank)
    if n_users < 1 or n_items < 1 or rank < 1:
        raise ValueError(
            f"n_users, n_items and rank must be >= 1, got {n_users}, {n_items}, {rank}"
        )
    if not n_users * min_per_user <= nnz <= n_users * n_items:
        raise ValueError(
            f"nnz={nnz} must lie in [n_users * min_per_user, n_users * n_items] = "
            f"[{n_users * min_per_user}, {n_users * n_items}]"
        )
    if min_per_user > n_items:
        raise ValueError(f"min_per_user={min_per_user} exceeds n_items={n_items}")
    if not 0 < max_share <= 1:
        raise ValueError(f"max_share must be in (0, 1], got {max_share}")
    cap = max(int(min_per_user), int(max_share * n_items))
    if nnz > n_users * cap:
        raise ValueError(
            f"nnz={nnz} exceeds n_users * max_share * n_items = {n_users * cap}; raise max_share"
        )
    low, high, step = (float(s) for s in scale)
    if not (low < high and step > 0):
        raise ValueError(f"scale must be (low, high, step) with low < high, step > 0: {scale}")
    rng = np.random.default_rng(seed)
    # per-user counts: min + Pareto tail, rescaled to the total and capped at n_items
    tail = rng.pareto(user_skew, n_users) + 1e-3
    counts = np.full(n_users, min_per_user, dtype=np.int64)
    extra = nnz - counts.sum()
    for _ in range(200):  # water-filling under the cap
        room = cap - counts
        if extra <= 0 or not room.any():
            break
        w = np.where(room > 0, tail, 0.0)
        add = np.minimum(np.floor(extra * w / w.sum()).astype(np.int64), room)
        if not add.any():
            add[np.argmax(np.where(room > 0, tail, -1))] = 1
        counts += add
        extra = nnz - counts.sum()
    pop = np.empty(n_items)
    pop[rng.permutation(n_items)] = (np.arange(n_items) + 1.0) ** -item_skew
    logp = np.log(pop)
    rows, cols = [], []
    chunk = max(1, (1 << 22) // n_items)  # Gumbel top-k per row: 4M keys at a time
    for u0 in range(0, n_users, chunk):
        u1 = min(n_users, u0 + chunk)
        keys = logp[None, :] - np.log(-np.log(rng.random((u1 - u0, n_items))))
        order = np.argsort(-keys, axis=1)
        k = counts[u0:u1]
        take = np.arange(n_items)[None, :] < k[:, None]
        rows.append(np.repeat(np.arange(u0, u1), k))
        cols.append(order[take])
    rows, cols = np.concatenate(rows), np.concatenate(cols)
    o = np.lexsort((cols, rows))
    rows, cols = rows[o].astype(np.int64), cols[o].astype(np.int64)
    U = rng.standard_normal((n_users, rank))
    V = rng.standard_normal((n_items, rank))
    signal = np.einsum("ij,ij->i", U[rows], V[cols]) / np.sqrt(rank)
    z = (
        3.5
        + 0.4 * rng.standard_normal(n_users)[rows]
        + 0.5 * rng.standard_normal(n_items)[cols]
        + 0.6 * signal
        + noise * rng.standard_normal(len(rows))
    )
    values = np.clip(low + np.round((z - low) / step) * step, low, high)
    return Ratings(
        rows,
        cols,
        values,
        np.zeros(len(rows), dtype=np.int64),
        np.arange(n_users, dtype=np.int64),
        np.arange(n_items, dtype=np.int64),
    )
