"""kernel_matmul against the float64 reference: ragged shapes, t = 1 (row dots) and t > 4 (GEMM)."""
import numpy as np
import pytest
import torch

import rfmfast
from rfmfast.backends import available_backends

from _cases import (KERNELS, M_KINDS, SHAPES, bandwidth, data, feature_matrix, ids,
                    ref_kernel_matrix, rss_growth_mb, to)
from conftest import TOL, rel_err

cpu_only = pytest.mark.skipif(not available_backends()["cpu"][0], reason="C++ extension not built")


@cpu_only
@pytest.mark.parametrize("t", [1, 33])
@pytest.mark.parametrize("dtype", (torch.float64, torch.float32), ids=str)
@pytest.mark.parametrize("mkind", M_KINDS)
@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("shape", SHAPES, ids=ids(SHAPES))
def test_cpu_matches_reference(shape, kernel, mkind, dtype, t):
    name, n, m, d = shape
    X, Z = data(n, m, d)
    V = torch.randn(m, t, dtype=torch.float64)
    out = rfmfast.kernel_matmul(X.to(dtype), Z.to(dtype), V.to(dtype), kernel=kernel,
                                bandwidth=bandwidth(kernel, d), M=to(feature_matrix(mkind, d), dtype),
                                backend="cpu")
    assert out.shape == (n, t) and out.dtype == dtype
    assert rel_err(out, ref_kernel_matrix(name, kernel, mkind, False) @ V) < TOL["cpu", dtype]


@pytest.mark.parametrize("kernel", KERNELS)
def test_reference_equals_matrix_product(kernel):
    d = 64
    X, Z = data(129, 1003, d)
    V = torch.randn(1003, 3, dtype=torch.float64)
    out = rfmfast.kernel_matmul(X, Z, V, kernel=kernel, backend="reference")
    assert rel_err(out, rfmfast.kernel_matrix(X, Z, kernel=kernel, backend="reference") @ V) < 1e-13


@cpu_only
def test_vector_and_numpy_and_strided():
    X, Z = data(1003, 129, 1)
    v = torch.randn(258, dtype=torch.float64)[::2]  # strided (m,)
    out = rfmfast.kernel_matmul(X, Z, v, backend="cpu")
    assert out.shape == (1003,)
    assert rel_err(out, ref_kernel_matrix("1003x129_d1", "laplace", "none", False) @ v) < 1e-10
    outn = rfmfast.kernel_matmul(X.numpy(), Z.numpy(), v.numpy(), backend="cpu")
    assert isinstance(outn, np.ndarray) and np.allclose(outn, out.numpy())


@cpu_only
@pytest.mark.parametrize("t", [1, 4, 5, 33])
def test_nan_prefilled_output_fully_written(t):
    from rfmfast import _C

    for n, m, d in [(1, 1, 1), (7, 129, 3), (1003, 129, 5), (97, 600, 300)]:
        X, Z = data(n, m, d)
        V = np.random.default_rng(0).standard_normal((m, t))
        for dtype, sfx in ((np.float32, "f32"), (np.float64, "f64")):
            prep = getattr(_C, f"prepare_{sfx}")
            Xo, Zo = X.numpy().astype(dtype), Z.numpy().astype(dtype)
            Xt, xn = prep(Xo, None, None, 0, 2)
            Zt, zn = prep(Zo, None, None, 0, 2)
            Zp = getattr(_C, f"pack_points_{sfx}")(Zt)
            Vd = V.astype(dtype)
            if t <= 4:
                Vp, Vt = None, np.ascontiguousarray(Vd.T)
            else:
                Vp, Vt = getattr(_C, f"pack_values_{sfx}")(Vd), None
            out = np.full((n, t), np.nan, dtype=dtype)
            getattr(_C, f"kernel_matmul_{sfx}")(Xt, xn, Zp, zn, m, 0, 10.0, Xo, Zo, None, 0,
                                               1 / 16, Vp, Vt, t, out, 2)
            assert np.isfinite(out).all(), (n, m, d, t, dtype)


@cpu_only
def test_memory_never_n_by_m():
    """n = m = 30000: the kernel matrix would take 3.6 GB; the op must stay far below that."""
    grown_mb = rss_growth_mb("X = torch.randn(30000, 8); V = torch.randn(30000, 1)",
                             "rfmfast.kernel_matmul(X[:10], X, V, backend='cpu')",
                             "rfmfast.kernel_matmul(X, X, V, backend='cpu')")
    assert grown_mb < 100, f"peak memory grew by {grown_mb:.0f} MB"
