"""kernel_matmul against the float64 reference on every backend here: ragged shapes, t = 1 (row
dots) and t > 4 (GEMM), coincident pairs, wide and non-contiguous values, bounded memory."""

import numpy as np
import pytest
import torch
from _cases import (
    DT_IDS,
    DTYPES,
    KERNELS,
    M_KINDS,
    SHAPES,
    SMALL_CASES,
    backends,
    bandwidth,
    data,
    device,
    feature_matrix,
    matrix_points,
    needs,
    on,
    param,
    ref_kernel_matrix,
    rel_err,
    rss_growth_mb,
    to,
)
from _tolerances import FLOAT64_ROUNDING, TOL

import rfmfast

pytestmark = pytest.mark.usefixtures("nan_outputs")
cpu_only = needs("cpu")

# (backend, n, m, d, kernel, M kind, dtype, t, coincident pairs): the compiled backend on
# SHAPES with t = 1 and 33; Triton on the small cases, half the pairs coincident, t = 3 past 40
# points
PRODUCT_CASES = [
    param(
        "cpu",
        s.n,
        s.m,
        s.d,
        kernel,
        mkind,
        dtype,
        t,
        0,
        id=f"{s.name}-{kernel}-{mkind}-{DT_IDS[dtype]}-t{t}",
    )
    for s in SHAPES
    for kernel in KERNELS
    for mkind in M_KINDS
    for dtype in DTYPES
    for t in (1, 33)
] + [
    param(
        "triton",
        n,
        m,
        d,
        kernel,
        mkind,
        dtype,
        3 if n + m > 40 else 1,
        min(m, n) // 2,
        id=f"{kernel}-{mkind}-{n}x{m}x{d}-{DT_IDS[dtype]}",
    )
    for kernel, mkind, (n, m, d) in SMALL_CASES
    for dtype in DTYPES
]


@pytest.mark.parametrize("backend, n, m, d, kernel, mkind, dtype, t, coincident", PRODUCT_CASES)
def test_matches_reference(backend, n, m, d, kernel, mkind, dtype, t, coincident):
    X, Z = matrix_points(n, m, d, coincident)
    V = torch.randn(m, t, dtype=torch.float64)
    Xd, Zd, Vd, M = on(
        backend, X.to(dtype), Z.to(dtype), V.to(dtype), to(feature_matrix(mkind, d), dtype)
    )
    out = rfmfast.kernel_matmul(
        Xd, Zd, Vd, kernel=kernel, bandwidth=bandwidth(kernel, d), M=M, backend=backend
    )
    assert out.shape == (n, t) and out.dtype == dtype and out.device.type == device(backend)
    ref = ref_kernel_matrix(n, m, d, kernel, mkind, coincident=coincident) @ V
    assert rel_err(out, ref) < TOL[backend, dtype]


@pytest.mark.parametrize("backend", backends())
def test_wide_values_and_vector(backend):
    """t past one block of value columns (several column programs), non-contiguous V, and a
    vector V."""
    n, m, d = 33, 70, 33
    X, Z = data(n, m, d)
    V = torch.randn(300, m, dtype=torch.float64).T  # (m, 300), not contiguous
    Xd, Zd, Vd = on(backend, X.float(), Z.float(), V.float())
    assert not Vd.is_contiguous()
    for kernel, cols in (("laplace", slice(None)), ("gaussian", 5)):
        out = rfmfast.kernel_matmul(
            Xd, Zd, Vd[:, cols], kernel=kernel, bandwidth=bandwidth(kernel, d), backend=backend
        )
        ref = ref_kernel_matrix(n, m, d, kernel, "none") @ V[:, cols]
        assert out.shape == ref.shape
        assert rel_err(out, ref) < TOL[backend, torch.float32], kernel


@pytest.mark.parametrize("kernel", KERNELS)
def test_reference_equals_matrix_product(kernel):
    d = 64
    X, Z = data(129, 1003, d)
    V = torch.randn(1003, 3, dtype=torch.float64)
    out = rfmfast.kernel_matmul(X, Z, V, kernel=kernel, backend="reference")
    ref = rfmfast.kernel_matrix(X, Z, kernel=kernel, backend="reference") @ V
    assert rel_err(out, ref) < FLOAT64_ROUNDING


@cpu_only
def test_vector_and_numpy_and_strided():
    X, Z = data(1003, 129, 1)
    v = torch.randn(258, dtype=torch.float64)[::2]  # strided (m,)
    out = rfmfast.kernel_matmul(X, Z, v, backend="cpu")
    assert out.shape == (1003,)
    ref = ref_kernel_matrix(1003, 129, 1, "laplace", "none") @ v
    assert rel_err(out, ref) < TOL["cpu", torch.float64]
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
            getattr(_C, f"kernel_matmul_{sfx}")(
                Xt, xn, Zp, zn, m, 0, 10.0, Xo, Zo, None, 0, 1 / 16, Vp, Vt, t, out, 2
            )
            assert np.isfinite(out).all(), (n, m, d, t, dtype)


@cpu_only
def test_memory_never_n_by_m():
    """n = m = 30000: the kernel matrix would take 3.6 GB; the op must stay far below that."""
    grown_mb = rss_growth_mb(
        "X = torch.randn(30000, 8); V = torch.randn(30000, 1)",
        "rfmfast.kernel_matmul(X[:10], X, V, backend='cpu')",
        "rfmfast.kernel_matmul(X, X, V, backend='cpu')",
    )
    assert grown_mb < 100, f"peak memory grew by {grown_mb:.0f} MB"
