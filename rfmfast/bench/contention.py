"""Benchmark of speed on a busy machine: each op and the RFM fit next to 0, 1 and 2 processes
that spin on the cores (`python -c "while True: pass"`, started before the case, killed after
it), on one thread and on N threads (N: torch's thread count, at least 2).

The property measured: with other work on the cores, N threads must never be slower than one
(speedup_vs_baseline >= 1, the baseline being the same call on one thread), and the RFM fit
keeps its ratio to xrfm's (xrfm 0.4.5 on N threads, a peer row of the same case). Laplace
kernel, L = 10, float32, X ~ N(0, 0.25 I); ops on n points in d = 50 (the solve and the fit in
d = 20, the fit with 5 iterations and the low-rank target of the RFM benchmark).
"""

from __future__ import annotations

import subprocess
import sys
import time
import weakref

import torch

import rfmfast

from . import baselines as B
from .runner import Benchmark, Case, Impl

L = 10.0
BUSY = (0, 1, 2)
SIZES = {  # n for the ops, the solve, the fit
    "tiny": dict(ops=300, solve=300, fit=300),
    "quick": dict(ops=4000, solve=2000, fit=2000),
    "full": dict(ops=10000, solve=4000, fit=4000),
}


class Busy:
    """k processes spinning on the cores, killed when this object goes (the case's data is
    dropped) or at exit."""

    def __init__(self, k: int):
        self.procs = [
            subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(k)
        ]
        self._done = weakref.finalize(self, Busy._kill, self.procs)
        if k:
            time.sleep(0.3)  # let them reach the cores

    @staticmethod
    def _kill(procs):
        for p in procs:
            p.kill()
            p.wait()


def _on_threads(k: int, fn):
    """fn(data) run with torch (and so rfmfast's kernels) on k threads."""

    def run(data):
        before = torch.get_num_threads()
        torch.set_num_threads(k)
        try:
            return fn(data)
        finally:
            torch.set_num_threads(before)

    return run


def _points(n, d, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g) * 0.5


def _ops(n):
    d = 50
    X = _points(n, d, n)
    V = torch.randn(n, 1, generator=torch.Generator().manual_seed(1))
    q = min(n, 2000)
    return {
        f"kernel_matmul n=m={n} d={d} t=1": (
            lambda data: rfmfast.kernel_matmul(X, X, V, kernel="laplace", bandwidth=L),
            2.0 * n * n,
        ),
        f"kernel_matrix n={n} d={d} (symmetric)": (
            lambda data: rfmfast.kernel_matrix(X, None, kernel="laplace", bandwidth=L),
            1.0 * n * n,
        ),
        f"agop q={q} n={n} d={d} c=1": (
            lambda data: rfmfast.agop(X[:q], X, V, kernel="laplace", bandwidth=L),
            1.0 * q * n,
        ),
    }


def _solve(n):
    from rfmfast.solvers import cholesky_solve

    X = _points(n, 20, n)
    y = (X[:, 0] * X[:, 1] * (X[:, 5] > 0))[:, None]
    return lambda data: cholesky_solve(X, y, bandwidth=L, reg=1e-3)


def _fit(n):
    from .rfm import fit_ours, fit_xrfm, low_rank

    X, y = low_rank(n, 20, seed=n)
    Xv, yv = low_rank(max(n // 4, 50), 20, seed=101)

    def ours(data):
        return fit_ours(rfmfast.RFMRegressor, X, y, Xv, yv, "cpu")

    def xr(data):
        return fit_xrfm(X, y[:, None], Xv, yv[:, None], "mse", "cpu")

    return ours, xr


def contention_cases(size, ctx):
    sz = SIZES[size]
    nt = max(2, torch.get_num_threads())
    work = _ops(sz["ops"])
    cases = []
    for k in BUSY:
        note = f"next to {k} busy process{'es' if k != 1 else ''}"
        params = dict(busy=k, threads=nt, dtype="float32")

        def setup(ctx, k=k):
            return {"busy": Busy(k)}

        for name, (fn, entries) in work.items():
            cases.append(
                Case(
                    f"{name}, busy {k}",
                    dict(params, workload=name),
                    setup,
                    [
                        Impl("1 thread", "baseline", _on_threads(1, fn), notes=note),
                        Impl(f"{nt} threads", "rfmfast", _on_threads(nt, fn), notes=note),
                    ],
                    work=entries / 1e9,
                    rate_unit="G kernel entries/s",
                )
            )
        solve = _solve(sz["solve"])
        cases.append(
            Case(
                f"cholesky_solve n={sz['solve']} d=20, busy {k}",
                dict(params, workload="cholesky_solve"),
                setup,
                [
                    Impl("1 thread", "baseline", _on_threads(1, solve), notes=note),
                    Impl(f"{nt} threads", "rfmfast", _on_threads(nt, solve), notes=note),
                ],
            )
        )
        ours, xr = _fit(sz["fit"])
        cases.append(
            Case(
                f"RFM fit n={sz['fit']} d=20 iters=5, busy {k}",
                dict(params, workload="rfm_fit"),
                setup,
                [
                    Impl(
                        "rfmfast RFMRegressor, 1 thread",
                        "baseline",
                        _on_threads(1, ours),
                        notes=note,
                    ),
                    Impl(
                        f"xrfm 0.4.5 RFM, {nt} threads",
                        "peer",
                        _on_threads(nt, xr),
                        needs=B.needs_xrfm,
                        notes=note,
                    ),
                    Impl(
                        f"rfmfast RFMRegressor, {nt} threads",
                        "rfmfast",
                        _on_threads(nt, ours),
                        notes=note,
                    ),
                ],
            )
        )
    return cases


BENCHMARKS = [
    Benchmark(
        "contention",
        "speed on a busy machine: one thread against N threads next to 0, 1, 2 busy processes",
        "G kernel entries/s (ops)",
        contention_cases,
        devices=("cpu",),
        device_note="it measures CPU threads next to busy CPU processes",
    ),
]
