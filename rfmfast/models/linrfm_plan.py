"""Which way round lin-RFM completes a matrix, from a stated cost model, and what it needs.

lin-RFM treats the rows of Y (n, d) as samples and learns a (d, d) weight over its columns;
completing Y^T instead (an (n, n) weight over the rows) is the same kind of model, and on exact
low-rank data gives the same completion, but its cost can differ by an order of magnitude on
real, wide or skewed rating matrices. Per sweep, for rows with k_i observed entries each:

    cost = 7 sum_i k_i^3 / 3     batched Cholesky of the row systems (P[O_i, O_i] + lam I)
         + 400 sum_i k_i^2       gathering those systems' entries out of P (memory-bound)
         + 2 n d^2               the Gram matrix X^T X of the completed rows
         + 8 nnz d               the completed rows C P (sparse times dense)
         + 30 d^3                GEMM-only matrix power, when alpha != 1/2

in units of one GEMM multiply-add; the weights are the measured rates of those steps against a
GEMM on a 2-core x86 CPU (float64 GEMM about 100 GFLOP/s, batched Cholesky of 100- to 700-size
systems 3 to 16 GFLOP/s, a random gather about 4 ns per entry). "auto" takes the orientation of
lower cost among those whose dense part fits the free memory.

Memory of one orientation (n rows, d columns, nnz observed, item bytes per value):
    item * (4 d^2 [+ 6 d^2 for a matrix power] + planes * n d) + (item + 8) * 2 * block
where planes counts the (n, d) buffers kept (1 for momentum or holdout = 0, 2 more when the
completed matrix is kept), and block = min(block_elems, n d) is the working set of a row block.
"""

from __future__ import annotations

import numpy as np

W_CHOL, W_GATHER, W_GRAM, W_SPMM, W_POWER = 7.0, 400.0, 2.0, 8.0, 30.0


def sweep_cost(counts: np.ndarray, n: int, d: int, alpha: float) -> float:
    """Cost of one sweep (GEMM multiply-adds) with rows of ``counts`` observed entries."""
    k = counts.astype(np.float64)
    nnz = float(k.sum())
    power = W_POWER * float(d) ** 3 if 2 * alpha != 1 else 0.0
    return (
        W_CHOL * float((k**3).sum()) / 3
        + W_GATHER * float((k**2).sum())
        + W_GRAM * float(n) * d * d
        + W_SPMM * nnz * d
        + power
    )


def dense_bytes(n: int, d: int, item: int, est) -> tuple[int, str]:
    """Bytes of the dense part for an (n, d) orientation with estimator ``est``'s settings, and
    a description of what they are."""
    squares = 4 + (6 if 2 * est.alpha != 1 else 0)  # G, P, best P, padded P (+ the power)
    planes = int(est.momentum > 0 or est.holdout == 0) + 2 * int(n * d <= est.max_completed_elems)
    block = 2 * min(est.block_elems, n * d)
    need = item * (squares * d * d + planes * n * d) + (item + 8) * block
    what = (
        f"{squares} ({d}, {d}) matrices, {planes} ({n}, {d}) buffers and 2 blocks of "
        f"{block // 2} entries"
    )
    return need, what


def plan(rows: np.ndarray, cols: np.ndarray, shape, item: int, free: int, est) -> dict:
    """The orientation to fit in ("rows": Y as given, "cols": its transpose) and the figures
    behind the choice: {"orientation", "cost": {o: multiply-adds per sweep, for the
    orientations that fit}, "bytes": {o: dense bytes}, "free": bytes free}. Raises MemoryError
    when the orientation asked for (or, for "auto", every orientation) does not fit."""
    n, d = shape
    need = {"rows": dense_bytes(n, d, item, est), "cols": dense_bytes(d, n, item, est)}
    asked = ("rows", "cols") if est.orientation == "auto" else (est.orientation,)
    fits = [o for o in asked if need[o][0] <= free]
    if not fits:
        parts = " or ".join(
            f"{need[o][0] / 2**30:.3g} GiB {'as given' if o == 'rows' else 'as its transpose'}"
            f" ({need[o][1]})"
            for o in asked
        )
        raise MemoryError(
            f"lin-RFM on a ({n}, {d}) matrix needs about {parts} in {item * 8}-bit floats, "
            f"but {free / 2**30:.3g} GiB are free"
        )
    cost = {}  # counted only for what fits (a bincount is as long as the axis)
    if "rows" in fits:
        cost["rows"] = sweep_cost(np.bincount(rows, minlength=n), n, d, est.alpha)
    if "cols" in fits:
        cost["cols"] = sweep_cost(np.bincount(cols, minlength=d), d, n, est.alpha)
    choice = min(fits, key=lambda o: cost[o])
    return {
        "orientation": choice,
        "cost": cost,
        "bytes": {o: need[o][0] for o in need},
        "free": free,
    }


def describe(p: dict, shape) -> str:
    """One line saying what was chosen and why."""
    n, d = shape
    o = p["orientation"]
    other = "cols" if o == "rows" else "rows"
    lead = "rows as given" if o == "rows" else f"the transpose ({d} x {n})"
    versus = f" against {p['cost'][other] / 1e9:.3g} G the other way" if other in p["cost"] else ""
    return (
        f"lin-RFM on ({n}, {d}): completing {lead}; est. {p['cost'][o] / 1e9:.3g} G "
        f"multiply-adds per sweep{versus}, {p['bytes'][o] / 2**30:.3g} GiB dense"
    )
