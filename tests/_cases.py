"""The tests' cases: rfmfast.cases (shapes, M kinds, points) cached, the backends to run, and
float64 references computed once."""

from __future__ import annotations

import functools

import pytest
import torch

from rfmfast import cases as vocabulary
from rfmfast.backends import available_backends
from rfmfast.cases import (  # noqa: F401  (re-exported: the tests import them from here)
    ALL_M_KINDS,
    GRAD_SHAPES,
    KERNELS,
    M_KINDS,
    SHAPES,
    SHIFTED_CASES,
    SMALL_CASES,
    SMALL_GRAD_CASES,
    SMALL_SYMMETRIC,
    bandwidth,
    low_rank_data,
    low_rank_target,
    queries,
    shifted_points,
    with_coincident,
)
from rfmfast.ops.agop import reference as agop_ref
from rfmfast.ops.kernel_matrix import reference as km_ref

DTYPES = (torch.float64, torch.float32)

# --- backends ---------------------------------------------------------------------------------

#: the backends an op test runs on, where available (the reference is the truth)
OP_BACKENDS = ("cpu", "triton")
HAS_CUDA = torch.cuda.is_available()


def available(backend: str) -> bool:
    return available_backends()[backend][0]


def needs(backend: str):
    """Skip unless the backend can run here (the reason says why not)."""
    ok, why = available_backends()[backend]
    return pytest.mark.skipif(not ok, reason=f"{backend} backend unavailable: {why}")


def backends(*names: str, with_reference: bool = False):
    """pytest params of the backends, each skipped where it is unavailable."""
    names = names or OP_BACKENDS
    if with_reference:
        names = names + ("reference",)
    return [pytest.param(b, id=b, marks=needs(b)) for b in names]


def device(backend: str) -> str:
    """Where the backend's inputs live: CUDA for triton on a GPU machine, else the CPU (Triton in
    its interpreter)."""
    return "cuda" if backend == "triton" and HAS_CUDA else "cpu"


def on(backend: str, *ts):
    """The tensors on the backend's device (None stays None)."""
    dev = device(backend)
    return [None if t is None else t.to(dev) for t in ts]


# --- cached inputs ------------------------------------------------------------------------------
# The cached tensors are shared between tests: never modify them in place.


@functools.cache
def data(n: int, m: int, d: int, seed: int = 0):
    """float64 X (n, d), Z (m, d) of rfmfast.cases.points."""
    return vocabulary.points(n, m, d, seed)


@functools.cache
def feature_matrix(kind: str, d: int, seed=None):
    return vocabulary.feature_matrix(kind, d, seed)


@functools.cache
def alpha(n: int, c: int):
    return vocabulary.coefficients(n, c)


def ids(cases):
    return [c[0] for c in cases]


def small_ids(cases):
    """kernel-M-n x m x d ids of SMALL_CASES and SMALL_GRAD_CASES."""
    return [f"{k}-{M}-{'x'.join(map(str, s))}" for k, M, s in cases]


def to(x, dtype):
    return None if x is None else x.to(dtype)


def f64(t):
    return None if t is None else t.to(device="cpu", dtype=torch.float64)


def rel_err(a, b) -> float:
    """Relative Frobenius error of a against b (b the float64 truth)."""
    a = torch.as_tensor(a).to(device="cpu", dtype=torch.float64)
    b = torch.as_tensor(b).to(device="cpu", dtype=torch.float64)
    assert a.shape == b.shape, (a.shape, b.shape)
    assert bool(torch.isfinite(a).all()), "non-finite entries (unwritten NaN-filled output?)"
    den = float(b.norm())
    return float((a - b).norm()) / (den if den > 0 else 1.0)


# --- float64 references, computed once -------------------------------------------------------


def matrix_points(n, m, d, coincident=0):
    """X (n, d), Z (m, d) of data(), the first `coincident` rows of Z copies of X's."""
    X, Z = data(n, m, d)
    return (X, with_coincident(X, Z, coincident)) if coincident else (X, Z)


@functools.cache
def ref_kernel_matrix(n, m, d, kernel, mkind, symmetric=False, coincident=0):
    """The float64 K(X, Z) (n, m) of matrix_points(), or K(X, X) (n, n) if symmetric."""
    X, Z = matrix_points(n, m, d, coincident)
    Z = X if symmetric else Z
    return km_ref.kernel_matrix(
        X,
        Z,
        kernel=kernel,
        bandwidth=bandwidth(kernel, d),
        M=feature_matrix(mkind, d),
        triangle="symmetric" if symmetric else "full",
    )


def grad_points(q, n, d, c, kind):
    """Q (q, d) by rfmfast.cases.queries, centers X (n, d), alpha (n, c), all float64."""
    X, Z = data(n, q, d)
    return queries(X, Z, q, kind), X, alpha(n, c)


@functools.cache
def ref_grads(q, n, d, c, kernel, mkind, kind):
    Q, X, a = grad_points(q, n, d, c, kind)
    return agop_ref.kernel_grads(
        Q, X, a, kernel=kernel, bandwidth=bandwidth(kernel, d), M=feature_matrix(mkind, d)
    )


@functools.cache
def ref_agop(q, n, d, c, kernel, mkind, kind, diag, centering):
    """(1/q) G^T G over the reference gradients G (q c, d) (centered: minus each output's mean
    gradient), or its diagonal."""
    G = ref_grads(q, n, d, c, kernel, mkind, kind)
    if centering:
        G = G - G.mean(0, keepdim=True)
    Gf = G.reshape(-1, d)
    A = Gf.T @ Gf / q
    return A.diagonal() if diag else A


def rss_growth_mb(setup: str, warm: str, run: str) -> float:
    """Peak resident memory growth (MB) of `run` in a fresh interpreter, after `setup` and a
    small warm-up call `warm`. Runs outside the source tree so the installed package (with its
    compiled module) is imported."""
    import subprocess
    import sys
    import tempfile

    code = (
        f"import resource, torch, rfmfast\n{setup}\n{warm}\n"
        "base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        f"{run}\n"
        "print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) / 1024)\n"
    )
    r = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=tempfile.gettempdir()
    )
    assert r.returncode == 0, r.stderr
    return float(r.stdout.strip().splitlines()[-1])


DT_IDS = {torch.float64: "f64", torch.float32: "f32"}


def param(backend: str, *values, id: str):
    """One case of a backend-parametrized test: id "<backend>-<id>", skipped where the backend
    is unavailable (so `-k triton` selects the Triton cases)."""
    return pytest.param(backend, *values, id=f"{backend}-{id}", marks=needs(backend))
