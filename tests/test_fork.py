"""A child forked after parallel work runs torch's and rfmfast's ops instead of hanging."""

import multiprocessing
import os
import signal
import sys
import time

import pytest
import torch

import rfmfast
from rfmfast.backends import available_backends

pytestmark = [
    pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork on this platform"),
    # Python >= 3.12 warns on every fork of a process with threads: that is the point.
    pytest.mark.filterwarnings("ignore:.*use of fork\\(\\) may lead to deadlocks"),
]

DEADLINE_S = 60.0  # a healthy child takes well under a second; a hung one never finishes
N = 3000  # points: enough for every op below to run a parallel region
CPP = available_backends()["cpu"][0]
OPTS = dict(kernel="laplace", bandwidth=3.0, backend="cpu" if CPP else "auto")


@pytest.fixture
def parent_ran_parallel_ops():
    """Two threads in the parent, and one parallel op of each kind run before the fork."""
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    g = torch.Generator().manual_seed(0)
    X = torch.randn(N, 8, generator=g)
    V = torch.randn(N, 2, generator=g)
    expected = rfmfast.kernel_matmul(X, X, V, **OPTS)
    (X @ X.T).sum()
    yield X, V, expected
    torch.set_num_threads(before)


def child_work(op, X, V, expected):
    """What the child runs; 0 when its result is right and it is single-threaded."""
    if op == "rfmfast":
        got = rfmfast.kernel_matmul(X, X, V, **OPTS)
        ok = torch.allclose(got, expected, rtol=1e-4, atol=1e-4)
    else:
        ok = bool(torch.isfinite((X @ X.T).exp_().sum()))
    return 0 if ok and torch.get_num_threads() == 1 else 3


def _os_fork_child(op, X, V, expected):
    code = 1
    try:
        code = child_work(op, X, V, expected)
    finally:
        os._exit(code)  # never back into pytest


def _mp_child(op, X, V, expected):
    sys.exit(child_work(op, X, V, expected))


def wait_or_kill(pid):
    """The child's exit code, or None (the child is killed) once DEADLINE_S has passed."""
    end = time.monotonic() + DEADLINE_S
    while time.monotonic() < end:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.02)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    return None


needs_cpp = pytest.mark.skipif(not CPP, reason="rfmfast's C++ extension is not built here")


@pytest.mark.parametrize("op", [pytest.param("rfmfast", marks=needs_cpp), "torch"])
def test_os_fork_child_runs_ops(parent_ran_parallel_ops, op):
    pid = os.fork()
    if pid == 0:
        _os_fork_child(op, *parent_ran_parallel_ops)
    code = wait_or_kill(pid)
    assert code is not None, f"the forked child hung in its first {op} op (killed)"
    assert code == 0, f"the forked child exited with {code} (3: wrong result or threads != 1)"


@pytest.mark.parametrize("op", [pytest.param("rfmfast", marks=needs_cpp), "torch"])
def test_multiprocessing_fork_worker_runs_ops(parent_ran_parallel_ops, op):
    proc = multiprocessing.get_context("fork").Process(
        target=_mp_child, args=(op, *parent_ran_parallel_ops)
    )
    proc.start()
    proc.join(DEADLINE_S)
    if proc.is_alive():
        proc.kill()
        proc.join()
        pytest.fail(f"the 'fork' worker hung in its first {op} op (killed)")
    assert proc.exitcode == 0, f"the worker exited with {proc.exitcode}"


def test_parent_keeps_its_threads(parent_ran_parallel_ops):
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    assert wait_or_kill(pid) == 0
    assert torch.get_num_threads() == 2
