"""kernel_grads and agop against the float64 reference and torch.autograd."""
import numpy as np
import pytest
import torch

import rfmfast
from rfmfast.backends import available_backends
from rfmfast.ops.kernel_matrix import reference as km_ref

from _cases import (KERNELS, M_KINDS, alpha, bandwidth, data, feature_matrix, ref_grads,
                    rss_growth_mb, to)
from conftest import TOL, rel_err

cpu_only = pytest.mark.skipif(not available_backends()["cpu"][0], reason="C++ extension not built")

# (name, q, n, d): q queries, n centers
GRAD_SHAPES = [
    ("1q_1n_d1", 1, 1, 1),
    ("7q_129n_d3", 7, 129, 3),
    ("129q_7n_d64", 129, 7, 64),
    ("129q_1003n_d64", 129, 1003, 64),
    ("7q_129n_d300", 7, 129, 300),
    ("1003q_129n_d3", 1003, 129, 3),
]
SHAPE_IDS = [s[0] for s in GRAD_SHAPES]


def _inputs(q, n, d, c, mkind, train, dtype):
    X, Z = data(n, q, d)
    Q = X[:q] if train else Z
    return Q.to(dtype), X.to(dtype), alpha(n, c).to(dtype), to(feature_matrix(mkind, d), dtype)


@cpu_only
@pytest.mark.parametrize("train", [False, True], ids=["new_queries", "train_queries"])
@pytest.mark.parametrize("c", [1, 10])
@pytest.mark.parametrize("dtype", (torch.float64, torch.float32), ids=str)
@pytest.mark.parametrize("mkind", M_KINDS)
@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("shape", GRAD_SHAPES, ids=SHAPE_IDS)
def test_grads_cpu_matches_reference(shape, kernel, mkind, dtype, c, train):
    _, q, n, d = shape
    q = min(q, n) if train else q  # training-point queries: at most n of them
    Q, X, a, M = _inputs(q, n, d, c, mkind, train, dtype)
    G = rfmfast.kernel_grads(Q, X, a, kernel=kernel, bandwidth=bandwidth(kernel, d), M=M,
                             backend="cpu")
    assert G.shape == (q, c, d) and G.dtype == dtype
    ref = ref_grads(q, n, d, c, kernel, mkind, train)
    assert rel_err(G, ref) < 10 * TOL["cpu", dtype]


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
    auto = torch.stack([torch.autograd.grad(F[:, j].sum(), Qv, retain_graph=True)[0]
                        for j in range(c)], 1)
    G = rfmfast.kernel_grads(Z, X, a, kernel=kernel, bandwidth=bandwidth(kernel, d), M=M,
                             backend="reference")
    assert rel_err(G, auto) < 1e-12
    if available_backends()["cpu"][0]:
        Gc = rfmfast.kernel_grads(Z, X, a, kernel=kernel, bandwidth=bandwidth(kernel, d), M=M,
                                  backend="cpu")
        assert rel_err(Gc, auto) < 1e-10


@cpu_only
def test_laplace_self_pair_contributes_nothing():
    """Queries that are training points: the zero-distance center is dropped (MATH.md), so the
    gradient equals the one computed without that center."""
    X, _ = data(129, 1, 4)
    a = alpha(129, 2)
    G = rfmfast.kernel_grads(X[:5], X, a, backend="cpu")
    for i in range(5):
        keep = torch.arange(129) != i
        Gi = rfmfast.kernel_grads(X[i:i + 1], X[keep], a[keep], backend="reference")
        assert rel_err(G[i:i + 1], Gi) < 1e-12


@cpu_only
@pytest.mark.parametrize("accumulate", [None, "float64"])
@pytest.mark.parametrize("centering", [False, True])
@pytest.mark.parametrize("diag", [False, True])
@pytest.mark.parametrize("dtype", (torch.float64, torch.float32), ids=str)
@pytest.mark.parametrize("mkind", M_KINDS)
@pytest.mark.parametrize("kernel", KERNELS)
def test_agop_cpu_matches_reference(kernel, mkind, dtype, diag, centering, accumulate):
    q, n, d, c = 129, 1003, 64, 10
    Q, X, a, M = _inputs(q, n, d, c, mkind, True, dtype)
    A = rfmfast.agop(Q, X, a, kernel=kernel, bandwidth=bandwidth(kernel, d), M=M, diag=diag,
                     centering=centering, accumulate=accumulate, backend="cpu")
    G = ref_grads(q, n, d, c, kernel, mkind, True)
    if centering:
        G = G - G.mean(0, keepdim=True)
    Gf = G.reshape(-1, d)
    ref = Gf.T @ Gf / q
    if diag:
        ref = ref.diagonal()
    assert A.shape == ref.shape and A.dtype == dtype
    assert rel_err(A, ref) < 10 * TOL["cpu", dtype]


@cpu_only
def test_agop_in_chunks_equals_one_pass(monkeypatch):
    """The AGOP over query chunks (bounded memory) sums exactly what one pass would."""
    from rfmfast.ops.agop import cpu as agop_cpu

    Q, X, a, M = _inputs(129, 1003, 64, 3, "full", True, torch.float64)
    whole = rfmfast.agop(Q, X, a, M=M, centering=True, backend="cpu")
    monkeypatch.setattr(agop_cpu, "AGOP_CHUNK_BYTES", 1)  # 64 queries per chunk
    chunked = rfmfast.agop(Q, X, a, M=M, centering=True, backend="cpu")
    assert rel_err(chunked, whole) < 1e-13


@cpu_only
def test_non_contiguous_inputs():
    Q, X, a, M = _inputs(7, 129, 64, 10, "full", False, torch.float64)
    Qs = torch.stack([Q, -Q], 2).reshape(7, -1)[:, ::2]
    Xs = X.T.contiguous().T
    a_s = a.T.contiguous().T
    assert not (Qs.is_contiguous() or Xs.is_contiguous() or a_s.is_contiguous())
    G = rfmfast.kernel_grads(Qs, Xs, a_s, M=M, backend="cpu")
    assert rel_err(G, rfmfast.kernel_grads(Q, X, a, M=M, backend="reference")) < 1e-10
    A = rfmfast.agop(Qs, Xs, a_s, M=M, backend="cpu")
    assert rel_err(A, rfmfast.agop(Q, X, a, M=M, backend="reference")) < 1e-10


@cpu_only
def test_vector_alpha_and_numpy():
    Q, X, a, _ = _inputs(7, 129, 3, 1, "none", False, torch.float64)
    g = rfmfast.kernel_grads(Q, X, a[:, 0], backend="cpu")
    assert g.shape == (7, 3)
    gn = rfmfast.kernel_grads(Q.numpy(), X.numpy(), a[:, 0].numpy(), backend="cpu")
    assert isinstance(gn, np.ndarray) and np.allclose(gn, g.numpy())
    A = rfmfast.agop(Q.numpy(), X.numpy(), a.numpy(), diag=True, backend="cpu")
    assert isinstance(A, np.ndarray) and A.shape == (3,)


@cpu_only
def test_agop_memory_bounded():
    """q = n = 8000, d = 64, c = 4: q x n x d floats would be 16 GB and q x n 256 MB."""
    grown_mb = rss_growth_mb("X = torch.randn(8000, 64); a = torch.randn(8000, 4)",
                             "rfmfast.agop(X[:10], X[:10], a[:10], backend='cpu')",
                             "rfmfast.agop(X, X, a, M=torch.eye(64), backend='cpu')")
    assert grown_mb < 120, f"peak memory grew by {grown_mb:.0f} MB"
