"""kernel_matrix against the float64 reference on every backend here: ragged shapes, every kernel
and M, symmetric and lower triangles, NaN-filled and out= buffers, non-contiguous inputs."""

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
    SMALL_SYMMETRIC,
    backends,
    bandwidth,
    data,
    device,
    feature_matrix,
    needs,
    on,
    param,
    ref_kernel_matrix,
    rel_err,
    to,
)
from _tolerances import FLOAT64_ROUNDING, TOL

import rfmfast

pytestmark = pytest.mark.usefixtures("nan_outputs")
cpu_only = needs("cpu")

# (backend, n, m, d, kernel, M kind, dtype): the compiled backend on SHAPES, Triton (in its
# interpreter without a GPU) on the small cases
MATRIX_CASES = [
    param(
        "cpu", s.n, s.m, s.d, kernel, mkind, dtype, id=f"{s.name}-{kernel}-{mkind}-{DT_IDS[dtype]}"
    )
    for s in SHAPES
    for kernel in KERNELS
    for mkind in M_KINDS
    for dtype in DTYPES
] + [
    param(
        "triton", n, m, d, kernel, mkind, dtype, id=f"{kernel}-{mkind}-{n}x{m}x{d}-{DT_IDS[dtype]}"
    )
    for kernel, mkind, (n, m, d) in SMALL_CASES
    for dtype in DTYPES
]

# (backend, n, m, d, kernel, M kind, dtype): K(X, X), X (n, d) of data(n, m, d)
SYMMETRIC_CASES = [
    param(
        "cpu", s.n, s.m, s.d, kernel, mkind, dtype, id=f"{s.name}-{kernel}-{mkind}-{DT_IDS[dtype]}"
    )
    for s in SHAPES
    for kernel in KERNELS
    for mkind in M_KINDS
    for dtype in DTYPES
] + [
    param("triton", n, n, d, kernel, mkind, torch.float32, id=f"{kernel}-{mkind}-{n}x{n}x{d}")
    for mkind, n, d in SMALL_SYMMETRIC
    for kernel in KERNELS
]


@pytest.mark.parametrize("backend, n, m, d, kernel, mkind, dtype", MATRIX_CASES)
def test_matches_reference(backend, n, m, d, kernel, mkind, dtype):
    X, Z = data(n, m, d)
    X, Z, M = on(backend, X.to(dtype), Z.to(dtype), to(feature_matrix(mkind, d), dtype))
    K = rfmfast.kernel_matrix(
        X, Z, kernel=kernel, bandwidth=bandwidth(kernel, d), M=M, backend=backend
    )
    assert K.dtype == dtype and K.shape == (n, m) and K.device.type == device(backend)
    assert rel_err(K, ref_kernel_matrix(n, m, d, kernel, mkind)) < TOL[backend, dtype]


@pytest.mark.parametrize("backend, n, m, d, kernel, mkind, dtype", SYMMETRIC_CASES)
def test_symmetric(backend, n, m, d, kernel, mkind, dtype):
    """Z=None computes one triangle and mirrors it: exactly symmetric, unit diagonal."""
    X, _ = data(n, m, d)
    X, M = on(backend, X.to(dtype), to(feature_matrix(mkind, d), dtype))
    K = rfmfast.kernel_matrix(
        X, kernel=kernel, bandwidth=bandwidth(kernel, d), M=M, backend=backend
    )
    assert rel_err(K, ref_kernel_matrix(n, m, d, kernel, mkind, True)) < TOL[backend, dtype]
    assert torch.equal(K, K.T), "the mirrored triangle must be exact"
    assert bool((K.diagonal() == 1).all()), "a point's distance to itself must be exactly 0"


@pytest.mark.parametrize("kernel", KERNELS)
def test_reference_float32_close_to_float64(kernel):
    X, Z = data(129, 7, 64)
    d = 64
    M = feature_matrix("full", d)
    K32 = rfmfast.kernel_matrix(
        X.float(),
        Z.float(),
        kernel=kernel,
        M=M.float(),
        bandwidth=bandwidth(kernel, d),
        backend="reference",
    )
    K64 = rfmfast.kernel_matrix(
        X, Z, kernel=kernel, M=M, bandwidth=bandwidth(kernel, d), backend="reference"
    )
    assert rel_err(K32, K64) < TOL["reference", torch.float32]


@cpu_only
def test_every_cpu_code_path(monkeypatch):
    """Each compiled instruction-set variant this CPU can run gives the same answer."""
    from rfmfast import _C

    n, m, d = 7, 1003, 300
    X, Z = data(n, m, d)
    base = _C.isa()
    try:
        for isa in _C.available_isas().split(","):
            _C.set_isa(isa)
            for kernel in KERNELS:
                for dtype in DTYPES:
                    K = rfmfast.kernel_matrix(
                        X.to(dtype),
                        Z.to(dtype),
                        kernel=kernel,
                        bandwidth=bandwidth(kernel, d),
                        backend="cpu",
                    )
                    ref = ref_kernel_matrix(n, m, d, kernel, "none")
                    assert rel_err(K, ref) < TOL["cpu", dtype], (isa, kernel, dtype)
    finally:
        _C.set_isa(base)


@cpu_only
@pytest.mark.parametrize("symmetric", [False, True])
def test_nan_prefilled_output_fully_written(symmetric):
    """The C++ kernel writes every element of a NaN-filled output (ragged sizes)."""
    from rfmfast import _C

    for n, m, d in [(1, 1, 1), (7, 129, 3), (1003, 129, 5), (97, 97, 300)]:
        X, Z = data(n, m, d)
        Z = X if symmetric else Z
        for dtype, sfx in ((np.float32, "f32"), (np.float64, "f64")):
            prep = getattr(_C, f"prepare_{sfx}")
            Xo, Zo = X.numpy().astype(dtype), Z.numpy().astype(dtype)
            Xt, xn = prep(Xo, None, None, 0, 2)
            Zt, zn = (Xt, xn) if symmetric else prep(Zo, None, None, 0, 2)
            Zp = getattr(_C, f"pack_points_{sfx}")(Zt)
            out = np.full((X.shape[0], Z.shape[0]), np.nan, dtype=dtype)
            getattr(_C, f"kernel_matrix_{sfx}")(
                Xt, xn, Zp, zn, Z.shape[0], 0, 10.0, Xo, Zo, None, 0, 1 / 16, symmetric, out, 2
            )
            assert np.isfinite(out).all(), (n, m, d, dtype)


@cpu_only
def test_non_contiguous_and_numpy():
    X, Z = data(129, 1003, 64)
    Xn = X.T.contiguous().T  # same values, column-major strides
    Zs = torch.stack([Z, -Z], 2).reshape(Z.shape[0], -1)[:, ::2]  # strided view of Z
    assert not Xn.is_contiguous() and not Zs.is_contiguous()
    K = rfmfast.kernel_matrix(Xn, Zs, backend="cpu")
    assert torch.equal(Zs, Z)
    ref = rfmfast.kernel_matrix(X, Z, backend="reference")
    assert rel_err(K, ref) < TOL["cpu", torch.float64]
    Kn = rfmfast.kernel_matrix(X.numpy(), Z.numpy(), backend="cpu")
    assert isinstance(Kn, np.ndarray) and Kn.dtype == np.float64


def test_reference_exact_self_distance():
    """The reference computes differences first: zero distances are exact."""
    X, _ = data(129, 7, 64)
    K = rfmfast.kernel_matrix(X, backend="reference")
    assert bool((K.diagonal() == 1).all())


@pytest.mark.parametrize("kernel", ["l1_laplace", "laplace"])
@pytest.mark.parametrize("seed", range(4))
def test_factor_of_low_rank_M_ignores_eigensolver_noise(kernel, seed):
    """A rank-k M: its factor annihilates M's null space to rounding (1e-14), not to the
    ~1e-8 that square roots of noise eigenvalues would leave (they differ between LAPACK and
    cuSOLVER, which once made CPU and GPU l1_laplace results differ by 4e-9 in float64)."""
    from rfmfast.kernels import mahalanobis_factor

    d, k = 33, 11
    g = torch.Generator().manual_seed(seed)
    A = torch.randint(-3, 4, (d, k), generator=g).double() / 4
    M = A @ A.T  # exact in float64: rank k, PSD
    Q, _ = torch.linalg.qr(A, mode="complete")
    null = Q[:, k:]  # M null = 0
    S = mahalanobis_factor(M, kernel)
    assert float((S @ null).norm() / S.norm()) < FLOAT64_ROUNDING


@pytest.mark.parametrize("backend", backends(with_reference=True))
def test_out_buffer_is_written_in_place(backend):
    """out= (NaN-filled) gets exactly the values of a call without it: full and symmetric, and
    numpy in, numpy out (where the backend takes CPU tensors)."""
    g = torch.Generator().manual_seed(3)
    X, Z = torch.randn(37, 5, generator=g), torch.randn(23, 5, generator=g)
    M = torch.diag(torch.rand(5, generator=g) + 0.5)
    Xd, Zd, Md = on(backend, X, Z, M)
    want = rfmfast.kernel_matrix(Xd, Zd, bandwidth=2.0, M=Md, backend=backend)
    out = torch.full((37, 23), float("nan"), device=Xd.device)
    got = rfmfast.kernel_matrix(Xd, Zd, bandwidth=2.0, M=Md, backend=backend, out=out)
    assert got is out and torch.equal(out, want)
    sym = torch.full((37, 37), float("nan"), device=Xd.device)
    rfmfast.kernel_matrix(Xd, bandwidth=2.0, M=Md, backend=backend, out=sym)
    assert torch.equal(sym, rfmfast.kernel_matrix(Xd, bandwidth=2.0, M=Md, backend=backend))
    if device(backend) != "cpu":
        return  # numpy arrays are CPU tensors
    outn = np.full((37, 23), np.nan, dtype=np.float32)  # numpy in, numpy out
    assert (
        rfmfast.kernel_matrix(
            X.numpy(), Z.numpy(), bandwidth=2.0, M=M.numpy(), backend=backend, out=outn
        )
        is outn
    )
    np.testing.assert_array_equal(outn, want.numpy())


def test_out_buffer_bad_input():
    X = torch.randn(4, 3)
    for bad, err in [
        (torch.empty(4, 5), ValueError),
        (torch.empty(4, 4, dtype=torch.float64), ValueError),
        (torch.empty(4, 8)[:, ::2], ValueError),
        (np.empty((4, 4), np.float32), TypeError),
    ]:
        with pytest.raises(err, match="out"):
            rfmfast.kernel_matrix(X, X, out=bad)


@cpu_only
@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("n, d", [(1, 3), (7, 3), (129, 300), (1003, 5)])
def test_cpu_lower_fill_writes_the_lower_triangle_exactly(kernel, n, d):
    """The Cholesky solve's fill: every entry j <= i as in the full matrix, nothing else read."""
    g = torch.Generator().manual_seed(n + d)
    X = torch.randn(n, d, generator=g)
    M = torch.rand(d, generator=g) + 0.5
    full = rfmfast.kernel_matrix(
        X, X, kernel=kernel, bandwidth=bandwidth(kernel, d), M=M, backend="cpu"
    )
    out = np.full((n, n), np.nan, dtype=np.float32)
    got = rfmfast.kernel_matrix(
        X,
        kernel=kernel,
        bandwidth=bandwidth(kernel, d),
        M=M,
        backend="cpu",
        triangle="lower",
        out=torch.from_numpy(out),
    )
    assert got.data_ptr() == out.ctypes.data
    low = torch.from_numpy(out).tril()
    assert not bool(torch.isnan(low).any())
    assert torch.equal(low, full.tril())


def test_out_buffer_read_only_numpy_is_refused():
    X = np.random.default_rng(0).normal(size=(4, 3)).astype(np.float32)
    out = np.zeros((4, 4), np.float32)
    out.setflags(write=False)
    with pytest.raises(ValueError, match="read-only"):
        rfmfast.kernel_matrix(X, X, out=out)
