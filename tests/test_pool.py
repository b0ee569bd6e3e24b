"""rfmfast's own worker pool (csrc/cpu/pool.h): the same results on any number of threads, from
several Python threads at once, next to a busy process, and in a forked child.

No timing is asserted here (the contention benchmark, `rfmfast bench --only contention`,
measures it); these tests make sure that sharing work out never changes or loses any of it.
"""

import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch

import rfmfast

_C = pytest.importorskip("rfmfast._C", reason="C++ extension not built")

OPTS = dict(kernel="laplace", bandwidth=3.0, backend="cpu")
THREADS = [1, 2, 3, 7]  # 3 and 7: more threads than this machine's cores


@pytest.fixture
def threads():
    """torch.set_num_threads for the test, restored after it."""
    before = torch.get_num_threads()
    yield torch.set_num_threads
    torch.set_num_threads(before)


def _data(n=1500, d=7, t=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, d, generator=g) + 50.0  # far from the origin: the distance rule's path
    X[1] = X[0] + 1e-4  # a near-duplicate pair
    V = torch.randn(n, t, generator=g)
    M = torch.eye(d) + 0.2 * torch.ones(d, d)
    return X, V, M


def _kernel_ops(X, V, M):
    return {
        "kernel_matrix": rfmfast.kernel_matrix(X, X, M=M, **OPTS),
        "kernel_matmul": rfmfast.kernel_matmul(X, X, V, M=M, **OPTS),
        "kernel_matmul t=1": rfmfast.kernel_matmul(X[:777], X, V[:, :1], **OPTS),
        "agop": rfmfast.agop(X[:500], X, V, M=M, **OPTS),
        "nystroem_matmul": rfmfast.nystroem_matmul(X, X[:301], V[:301], M=M, **OPTS),
    }


def test_every_thread_count_gives_the_same_results(threads):
    """Rows are independent in the kernel ops: the same bits whatever the split; the Nystroem
    product and the AGOP sum over rows per thread, so theirs agree to rounding."""
    X, V, M = _data()
    threads(1)
    ref = _kernel_ops(X, V, M)
    for k in THREADS[1:]:
        threads(k)
        got = _kernel_ops(X, V, M)
        for name, r in ref.items():
            if name in ("agop", "nystroem_matmul"):
                tol = 1e-6 * float(r.abs().max())
                torch.testing.assert_close(got[name], r, rtol=1e-5, atol=tol)
            else:
                assert torch.equal(got[name], r), f"{name} differs with {k} threads"


@pytest.mark.parametrize("n", [1, 47, 600, 2049])
def test_cholesky_is_the_same_on_any_number_of_threads(n):
    """Each entry of the factor is summed in the same order whatever thread computes it."""
    rng = np.random.default_rng(n)
    B = rng.standard_normal((n, n + 3))
    A = (B @ B.T / n + np.eye(n)).astype(np.float32)
    ref = A.copy()
    assert _C.cholesky_f32(ref, 1) == 0
    for k in THREADS[1:]:
        got = A.copy()
        assert _C.cholesky_f32(got, k) == 0
        np.testing.assert_array_equal(np.tril(got), np.tril(ref))


def test_python_threads_calling_kernels_at_once(threads):
    """Kernels called from several Python threads at once (each asking for two threads) all
    finish with the right results: a call that finds the pool busy runs on its own thread."""
    threads(2)
    X, V, M = _data(n=900)
    expected = [rfmfast.kernel_matmul(X, X, V * (i + 1), M=M, **OPTS) for i in range(8)]

    def work(i):
        return rfmfast.kernel_matmul(X, X, V * (i + 1), M=M, **OPTS)

    with ThreadPoolExecutor(max_workers=4) as ex:
        got = list(ex.map(work, range(8)))
    for g, e in zip(got, expected):
        assert torch.equal(g, e)


def test_right_results_next_to_busy_processes(threads):
    """Next to two processes that spin on the cores, every op still completes with the same
    results (no job is lost or waits forever for a descheduled worker)."""
    X, V, M = _data(n=1200)
    threads(1)
    ref = _kernel_ops(X, V, M)
    busy = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(2)]
    try:
        time.sleep(0.2)
        threads(2)
        for _ in range(3):
            got = _kernel_ops(X, V, M)
            assert torch.equal(got["kernel_matmul"], ref["kernel_matmul"])
            assert torch.equal(got["kernel_matrix"], ref["kernel_matrix"])
    finally:
        for p in busy:
            p.kill()
            p.wait()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork on this platform")
@pytest.mark.filterwarnings("ignore:.*use of fork\\(\\) may lead to deadlocks")
def test_forked_child_gets_a_fresh_pool():
    """After the parent's kernels ran on two threads, a forked child's kernels run on two
    threads too: the child builds its own workers instead of waiting for the parent's."""
    rng = np.random.default_rng(0)
    B = rng.standard_normal((800, 800))
    A = (B @ B.T / 800 + np.eye(800)).astype(np.float32)
    ref = A.copy()
    assert _C.cholesky_f32(ref, 2) == 0
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            got = A.copy()
            code = 0 if _C.cholesky_f32(got, 2) == 0 and np.array_equal(got, ref) else 3
        finally:
            os._exit(code)
    end = time.monotonic() + 60
    while time.monotonic() < end:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            assert os.waitstatus_to_exitcode(status) == 0
            return
        time.sleep(0.02)
    os.kill(pid, 9)
    os.waitpid(pid, 0)
    pytest.fail("the forked child's two-thread Cholesky did not finish in 60 s")
