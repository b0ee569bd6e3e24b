"""A forked child runs single-threaded, so that its first op does not hang (an at-fork handler).

GNU OpenMP (libgomp, torch's thread pool) keeps its worker threads after a process's first
parallel region. fork() copies only the calling thread: in the child the pool's threads are
gone but libgomp still counts on them, and the child's first parallel torch op waits forever.
This is what happens to an ``os.fork()`` child or a ``multiprocessing`` "fork" worker after the
parent ran any parallel torch op. (rfmfast's C++ kernels run on a pool of their own, which a
child rebuilds with new threads: csrc/cpu/pool.h.)

Importing rfmfast registers ``after_in_child``: the child calls ``torch.set_num_threads(1)``,
as PyTorch's DataLoader workers do. With one thread, libgomp runs each parallel region on the
calling thread and never touches the stale pool, so torch's ops and rfmfast's (which take
their thread count from ``torch.get_num_threads()``) run, single-threaded.

The child stays single-threaded unless it raises the thread count itself, and that is not safe
once the parent has run a parallel region: with ``torch.set_num_threads(k)``, k > 1, the
child's next parallel region hangs again. Workers that need several threads each should be
started with multiprocessing's "spawn" or "forkserver" context instead of "fork".
"""

import os
import sys


def _single_threaded_child() -> None:
    # torch absent from sys.modules: the parent ran no torch or rfmfast op, nothing to do.
    torch = sys.modules.get("torch")
    set_num_threads = getattr(torch, "set_num_threads", None)
    if set_num_threads is not None:
        set_num_threads(1)


if hasattr(os, "register_at_fork"):  # POSIX; where there is no fork there is nothing to fix
    os.register_at_fork(after_in_child=_single_threaded_child)
