"""Which Cholesky factors a CPU matrix under backend="auto": rfmfast's own (C++, recursive, on
its packed GEMM) or LAPACK's (torch.linalg.cholesky_ex), chosen by timing both on this machine.

Which is faster depends on the CPU and on the BLAS torch ships: on AMD EPYC (Zen 3, AVX2) the
own factorization measured 1.14-1.27x faster than MKL's at n = 2,000-8,000; on an Intel
Sapphire Rapids the two are within 10% either way (docs/benchmarks.md). So nothing is assumed:
the first factorization of a size class (n below 1,536, below 3,072, and beyond) times both on a
probe matrix of that class's size (best of two each, interleaved), once per instruction-set
path, dtype and thread count in the process, and the own one is used only where it was at least
MARGIN faster. Ties go to LAPACK. The probe costs four factorizations of its size (about 0.5 s
at the largest class on two AVX2 cores) and one probe matrix of memory (at most 3,072^2
entries, a quarter of the n x n matrix or less), once; cholesky_solve times it before it builds
its matrix, so that the two never coexist.

RFMFAST_CHOLESKY=own or lapack skips the timing and forces one (auto: the default).
"""

from __future__ import annotations

import os
import time

import numpy as np
import torch

#: the own factorization is chosen only when it takes at most this fraction of LAPACK's time
MARGIN = 0.97
#: (largest n of the class, probe size); below SMALL the own one is used without timing
CLASSES = ((1535, 768), (3071, 1536), (None, 3072))
SMALL = 64

_cache: dict[tuple, tuple[str, float, float]] = {}


def _probe_size(n: int) -> int:
    for top, size in CLASSES:
        if top is None or n <= top:
            return size
    raise AssertionError("unreachable")


def _probe(size: int, npdt) -> np.ndarray:
    A = np.full((size, size), 0.5 / size, dtype=npdt)
    A[np.diag_indices(size)] += 1.0  # positive definite; the time does not depend on values
    return A


def _time(factor, size: int, npdt) -> float:
    A = _probe(size, npdt)
    t0 = time.perf_counter()
    factor(A)
    return time.perf_counter() - t0


def decide(own_seconds: float, lapack_seconds: float) -> str:
    """ "own" or "lapack" from the two timings: the own factorization only where it is at least
    1 - MARGIN faster (tested in tests/test_cholesky.py)."""
    return "own" if own_seconds <= MARGIN * lapack_seconds else "lapack"


def measure(size: int, dtype: torch.dtype, own, lapack) -> tuple[str, float, float]:
    """(choice, own seconds, LAPACK seconds) for a size x size probe: best of two each.
    own, lapack: callables factoring a C-contiguous numpy array in place."""
    npdt = np.float64 if dtype == torch.float64 else np.float32
    t_own, t_lapack = [], []
    for _ in range(2):  # one probe matrix at a time
        t_own.append(_time(own, size, npdt))
        t_lapack.append(_time(lapack, size, npdt))
    return decide(min(t_own), min(t_lapack)), min(t_own), min(t_lapack)


def choose(n: int, dtype: torch.dtype, isa: str, threads: int, own, lapack) -> str:
    """ "own" or "lapack" for an n x n factorization (see the module doc); own, lapack as in
    measure."""
    forced = os.environ.get("RFMFAST_CHOLESKY", "auto").strip().lower()
    if forced in ("own", "lapack"):
        return forced
    if forced not in ("", "auto"):
        raise ValueError(f"RFMFAST_CHOLESKY must be auto, own or lapack, got {forced!r}")
    if n < SMALL:
        return "own"
    size = _probe_size(n)
    key = (isa, str(dtype), threads, size)
    if key not in _cache:
        _cache[key] = measure(size, dtype, own, lapack)
    return _cache[key][0]


def measurements() -> dict[tuple, tuple[str, float, float]]:
    """What was timed in this process: (isa, dtype, threads, probe size) -> (choice, own
    seconds, LAPACK seconds)."""
    return dict(_cache)
