"""Thread counts: how many threads rfmfast's C++ kernels use, and torch's own ops on one thread
where threads cost more than they give.

rfmfast's kernels run on their own pool (csrc/cpu/pool.h), whose idle threads yield the core
and whose jobs never wait for a descheduled thread. torch's CPU ops run on GNU OpenMP, whose
threads spin while they wait: on a machine where other processes take the cores, a small
memory-bound torch op (a triangular solve with a few right-hand sides, a reduction over a
vector) on two threads can take twenty times as long as on one. `torch_single_thread` runs a
block's torch ops on one thread, and the kernels called inside it keep the caller's count;
`torch_kernel_threads` gives torch the count back for heavy linear algebra inside such a block.
"""

from __future__ import annotations

import functools
import threading
from contextlib import contextmanager

import torch

_local = threading.local()


def kernel_threads() -> int:
    """Threads for rfmfast's C++ kernels: torch.get_num_threads() (so OMP_NUM_THREADS and
    torch.set_num_threads both apply), or the count in force where a torch_single_thread block
    began."""
    n = getattr(_local, "threads", None)
    return n if n is not None else max(1, torch.get_num_threads())


@contextmanager
def torch_single_thread():
    """torch's CPU ops on one thread inside the block (torch.set_num_threads(1), restored on
    exit); rfmfast's kernels inside it keep kernel_threads() from before. torch's thread count
    is process-wide: another Python thread's torch ops also run on one thread meanwhile."""
    outer = getattr(_local, "threads", None)
    before = torch.get_num_threads()
    _local.threads = kernel_threads()
    if before != 1:
        torch.set_num_threads(1)
    try:
        yield
    finally:
        if before != 1:
            torch.set_num_threads(before)
        _local.threads = outer


@contextmanager
def torch_kernel_threads():
    """torch's CPU ops on kernel_threads() threads inside the block: inside a
    torch_single_thread block, heavy torch work that gains from threads (a LAPACK
    factorization, the m x m algebra of the iterative solvers) gets the caller's count back.
    Not capped by the load as the C++ pool's jobs are: LAPACK's and MKL's results depend on
    their thread count, and the same fit must give the same bits whatever else runs."""
    n, before = kernel_threads(), torch.get_num_threads()
    if n != before:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        if n != before:
            torch.set_num_threads(before)


def single_thread_glue(fn):
    """Decorator: fn runs inside torch_single_thread when its first argument is a CPU tensor
    (a solver whose torch work is glue around rfmfast's kernels)."""

    @functools.wraps(fn)
    def run(X, *args, **kwargs):
        if isinstance(X, torch.Tensor) and X.device.type == "cpu":
            with torch_single_thread():
                return fn(X, *args, **kwargs)
        return fn(X, *args, **kwargs)

    return run
