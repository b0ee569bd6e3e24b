"""kernel_grads and agop against the float64 reference and torch.autograd on every backend here:
ragged shapes, every kernel and M, queries new, training points or a mix (self-pairs), diag,
centering, float64 accumulation, chunks, non-contiguous inputs, bounded memory."""

import numpy as np
import pytest
import torch
from _cases import (
    DT_IDS,
    DTYPES,
    GRAD_SHAPES,
    KERNELS,
    M_KINDS,
    SMALL_GRAD_CASES,
    alpha,
    available,
    bandwidth,
    data,
    device,
    f64,
    feature_matrix,
    grad_points,
    needs,
    on,
    param,
    ref_agop,
    ref_grads,
    rel_err,
    rss_growth_mb,
    to,
)
from _tolerances import CENTERED_ONE_QUERY, FLOAT64_AGREE, FLOAT64_ROUNDING, TOL, tol

import rfmfast
from rfmfast.ops.kernel_matrix import reference as km_ref

pytestmark = pytest.mark.usefixtures("nan_outputs")
cpu_only = needs("cpu")
QUERY_IDS = {"new": "new_queries", "train": "train_queries", "mixed": "mixed_queries"}


def _inputs(backend, q, n, d, c, mkind, kind, dtype):
    """Q (q, d), X (n, d), alpha (n, c), M in dtype on the backend's device."""
    Q, X, a = grad_points(q, n, d, c, kind)
    return on(backend, Q.to(dtype), X.to(dtype), a.to(dtype), to(feature_matrix(mkind, d), dtype))


# (backend, q, n, d, c, kernel, M kind, dtype, queries): the compiled backend on GRAD_SHAPES with
# new or training-point queries (at most n of those); Triton on the small cases, queries a mix
GRAD_CASES = [
    param(
        "cpu",
        min(s.q, s.n) if kind == "train" else s.q,
        s.n,
        s.d,
        c,
        kernel,
        mkind,
        dtype,
        kind,
        id=f"{s.name}-{kernel}-{mkind}-{DT_IDS[dtype]}-c{c}-{QUERY_IDS[kind]}",
    )
    for s in GRAD_SHAPES
    for kernel in KERNELS
    for mkind in M_KINDS
    for dtype in DTYPES
    for c in (1, 10)
    for kind in ("new", "train")
] + [
    param(
        "triton",
        q,
        n,
        d,
        c,
        kernel,
        mkind,
        dtype,
        "mixed",
        id=f"{kernel}-{mkind}-{q}x{n}x{d}x{c}-{DT_IDS[dtype]}",
    )
    for kernel, mkind, (q, n, d, c) in SMALL_GRAD_CASES
    for dtype in DTYPES
]

AGOP_OPTIONS = [
    (diag, centering, acc)
    for acc in (None, "float64")
    for centering in (False, True)
    for diag in (False, True)
]
TRITON_AGOP_OPTIONS = [
    (False, False, None),
    (True, False, None),
    (False, True, "float64"),
    (True, True, None),
]


def _opt_id(diag, centering, acc):
    return f"{'diag' if diag else 'full'}-{'centered' if centering else 'raw'}-{acc or 'native'}"


# (backend, q, n, d, c, kernel, M kind, dtype, diag, centering, accumulate, queries)
AGOP_CASES = [
    param(
        "cpu",
        129,
        1003,
        64,
        10,
        kernel,
        mkind,
        dtype,
        diag,
        centering,
        acc,
        "train",
        id=f"{kernel}-{mkind}-{DT_IDS[dtype]}-{_opt_id(diag, centering, acc)}",
    )
    for kernel in KERNELS
    for mkind in M_KINDS
    for dtype in DTYPES
    for diag, centering, acc in AGOP_OPTIONS
] + [
    param(
        "triton",
        q,
        n,
        d,
        c,
        kernel,
        mkind,
        torch.float32,
        diag,
        centering,
        acc,
        "mixed",
        id=f"{kernel}-{mkind}-{q}x{n}x{d}x{c}-{_opt_id(diag, centering, acc)}",
    )
    for kernel, mkind, (q, n, d, c) in SMALL_GRAD_CASES
    for diag, centering, acc in TRITON_AGOP_OPTIONS
]


@pytest.mark.parametrize("backend, q, n, d, c, kernel, mkind, dtype, kind", GRAD_CASES)
def test_grads_match_reference(backend, q, n, d, c, kernel, mkind, dtype, kind):
    Q, X, a, M = _inputs(backend, q, n, d, c, mkind, kind, dtype)
    G = rfmfast.kernel_grads(
        Q, X, a, kernel=kernel, bandwidth=bandwidth(kernel, d), M=M, backend=backend
    )
    assert G.shape == (q, c, d) and G.dtype == dtype and G.device.type == device(backend)
    ref = ref_grads(q, n, d, c, kernel, mkind, kind)
    assert rel_err(G, ref) < tol(backend, dtype, "kernel_grads")


@pytest.mark.parametrize(
    "backend, q, n, d, c, kernel, mkind, dtype, diag, centering, accumulate, kind", AGOP_CASES
)
def test_agop_matches_reference(
    backend, q, n, d, c, kernel, mkind, dtype, diag, centering, accumulate, kind
):
    Q, X, a, M = _inputs(backend, q, n, d, c, mkind, kind, dtype)
    A = rfmfast.agop(
        Q,
        X,
        a,
        kernel=kernel,
        bandwidth=bandwidth(kernel, d),
        M=M,
        diag=diag,
        centering=centering,
        accumulate=accumulate,
        backend=backend,
    )
    ref = ref_agop(q, n, d, c, kernel, mkind, kind, diag, centering)
    assert A.shape == ref.shape and A.dtype == dtype
    if q == 1 and centering:  # one query: the centered AGOP is exactly zero
        bound = CENTERED_ONE_QUERY * (1 + float(ref.abs().max()))
        assert float(A.abs().max()) <= bound
        return
    assert rel_err(A, ref) < tol(backend, dtype, "agop")


@pytest.mark.parametrize("mkind", M_KINDS)
@pytest.mark.parametrize("kernel", KERNELS)
def test_reference_grads_match_autograd(kernel, mkind):
    """The gradient formulas equal torch.autograd through the reference kernel matrix."""
    q, n, d, c = 7, 129, 5, 3
    X, Z = data(n, q, d)
    a = alpha(n, c)
    M = feature_matrix(mkind, d)
    Qv = Z.clone().requires_grad_(True)
    F = km_ref.kernel_matrix(Qv, X, kernel=kernel, bandwidth=bandwidth(kernel, d), M=M) @ a
    auto = torch.stack(
        [torch.autograd.grad(F[:, j].sum(), Qv, retain_graph=True)[0] for j in range(c)], 1
    )
    G = rfmfast.kernel_grads(
        Z, X, a, kernel=kernel, bandwidth=bandwidth(kernel, d), M=M, backend="reference"
    )
    assert rel_err(G, auto) < TOL["reference", torch.float64]
    if available("cpu"):
        Gc = rfmfast.kernel_grads(
            Z, X, a, kernel=kernel, bandwidth=bandwidth(kernel, d), M=M, backend="cpu"
        )
        assert rel_err(Gc, auto) < TOL["cpu", torch.float64]


@cpu_only
def test_laplace_self_pair_contributes_nothing():
    """Queries that are training points: the zero-distance center is dropped (docs/math.md, the
    distance rule), so the gradient equals the one computed without that center."""
    X, _ = data(129, 1, 4)
    a = alpha(129, 2)
    G = rfmfast.kernel_grads(X[:5], X, a, backend="cpu")
    for i in range(5):
        keep = torch.arange(129) != i
        Gi = rfmfast.kernel_grads(X[i : i + 1], X[keep], a[keep], backend="reference")
        assert rel_err(G[i : i + 1], Gi) < FLOAT64_AGREE


@cpu_only
def test_agop_in_chunks_equals_one_pass(monkeypatch):
    """The AGOP over query chunks (bounded memory) sums exactly what one pass would."""
    from rfmfast.ops.agop import cpu as agop_cpu

    Q, X, a, M = _inputs("cpu", 129, 1003, 64, 3, "full", "train", torch.float64)
    whole = rfmfast.agop(Q, X, a, M=M, centering=True, backend="cpu")
    monkeypatch.setattr(agop_cpu, "AGOP_CHUNK_BYTES", 1)  # 64 queries per chunk
    chunked = rfmfast.agop(Q, X, a, M=M, centering=True, backend="cpu")
    assert rel_err(chunked, whole) < FLOAT64_ROUNDING


@needs("triton")
def test_triton_agop_in_chunks(monkeypatch):
    """Queries split in several chunks, with centering: the shifted sums must add up."""
    from rfmfast.ops.agop import reference as agop_ref
    from rfmfast.ops.agop import triton as agop_tri

    monkeypatch.setattr(agop_tri, "_CHUNK_ENTRIES", 1)  # chunk = 128 queries
    q, n, d, c = 300, 40, 33, 3
    Q, X, a = grad_points(q, n, d, c, "mixed")
    Q = Q + 3.0  # a large mean gradient to remove
    L = bandwidth("laplace", d)
    Qd, Xd, ad = on("triton", Q.float(), X.float(), a.float())
    for diag in (False, True):
        A = agop_tri.agop(
            Qd, Xd, ad, kernel="laplace", bandwidth=L, M=None, diag=diag, centering=True
        )
        ref = agop_ref.agop(
            f64(Q), f64(X), f64(a), kernel="laplace", bandwidth=L, M=None, diag=diag, centering=True
        )
        assert rel_err(A, ref) < tol("triton", torch.float32, "agop"), diag


@cpu_only
def test_non_contiguous_inputs():
    Q, X, a, M = _inputs("cpu", 7, 129, 64, 10, "full", "new", torch.float64)
    Qs = torch.stack([Q, -Q], 2).reshape(7, -1)[:, ::2]
    Xs = X.T.contiguous().T
    a_s = a.T.contiguous().T
    assert not (Qs.is_contiguous() or Xs.is_contiguous() or a_s.is_contiguous())
    G = rfmfast.kernel_grads(Qs, Xs, a_s, M=M, backend="cpu")
    ref = rfmfast.kernel_grads(Q, X, a, M=M, backend="reference")
    assert rel_err(G, ref) < TOL["cpu", torch.float64]
    A = rfmfast.agop(Qs, Xs, a_s, M=M, backend="cpu")
    ref = rfmfast.agop(Q, X, a, M=M, backend="reference")
    assert rel_err(A, ref) < TOL["cpu", torch.float64]


@cpu_only
def test_vector_alpha_and_numpy():
    Q, X, a, _ = _inputs("cpu", 7, 129, 3, 1, "none", "new", torch.float64)
    g = rfmfast.kernel_grads(Q, X, a[:, 0], backend="cpu")
    assert g.shape == (7, 3)
    gn = rfmfast.kernel_grads(Q.numpy(), X.numpy(), a[:, 0].numpy(), backend="cpu")
    assert isinstance(gn, np.ndarray) and np.allclose(gn, g.numpy())
    A = rfmfast.agop(Q.numpy(), X.numpy(), a.numpy(), diag=True, backend="cpu")
    assert isinstance(A, np.ndarray) and A.shape == (3,)


@cpu_only
def test_agop_memory_bounded():
    """q = n = 8000, d = 64, c = 4: q x n x d floats would be 16 GB and q x n 256 MB."""
    grown_mb = rss_growth_mb(
        "X = torch.randn(8000, 64); a = torch.randn(8000, 4)",
        "rfmfast.agop(X[:10], X[:10], a[:10], backend='cpu')",
        "rfmfast.agop(X, X, a, M=torch.eye(64), backend='cpu')",
    )
    assert grown_mb < 120, f"peak memory grew by {grown_mb:.0f} MB"
