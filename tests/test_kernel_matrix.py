"""kernel_matrix against the float64 reference, on ragged shapes, every kernel and M."""
import numpy as np
import pytest
import torch

import rfmfast
from rfmfast.backends import available_backends

from _cases import KERNELS, M_KINDS, SHAPES, bandwidth, data, feature_matrix, ids, ref_kernel_matrix, to
from conftest import TOL, rel_err

cpu_only = pytest.mark.skipif(not available_backends()["cpu"][0],
                              reason="C++ extension not built")
DTYPES = (torch.float64, torch.float32)


@cpu_only
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("mkind", M_KINDS)
@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("shape", SHAPES, ids=ids(SHAPES))
def test_cpu_matches_reference(shape, kernel, mkind, dtype):
    name, n, m, d = shape
    X, Z = data(n, m, d)
    M = feature_matrix(mkind, d)
    K = rfmfast.kernel_matrix(X.to(dtype), Z.to(dtype), kernel=kernel, bandwidth=bandwidth(kernel, d),
                              M=to(M, dtype), backend="cpu")
    assert K.dtype == dtype and K.shape == (n, m)
    assert rel_err(K, ref_kernel_matrix(name, kernel, mkind, False)) < TOL["cpu", dtype]


@cpu_only
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("mkind", M_KINDS)
@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("shape", SHAPES, ids=ids(SHAPES))
def test_symmetric(shape, kernel, mkind, dtype):
    """Z=None computes one triangle and mirrors it: exactly symmetric, unit diagonal."""
    name, n, m, d = shape
    X, _ = data(n, m, d)
    M = feature_matrix(mkind, d)
    K = rfmfast.kernel_matrix(X.to(dtype), kernel=kernel, bandwidth=bandwidth(kernel, d),
                              M=to(M, dtype), backend="cpu")
    assert rel_err(K, ref_kernel_matrix(name, kernel, mkind, True)) < TOL["cpu", dtype]
    assert torch.equal(K, K.T)
    assert bool((K.diagonal() == 1).all()), "a point's distance to itself must be exactly 0"


@pytest.mark.parametrize("kernel", KERNELS)
def test_reference_float32_close_to_float64(kernel):
    X, Z = data(129, 7, 64)
    d = 64
    M = feature_matrix("full", d)
    K32 = rfmfast.kernel_matrix(X.float(), Z.float(), kernel=kernel, M=M.float(),
                                bandwidth=bandwidth(kernel, d), backend="reference")
    K64 = rfmfast.kernel_matrix(X, Z, kernel=kernel, M=M, bandwidth=bandwidth(kernel, d),
                                backend="reference")
    assert rel_err(K32, K64) < TOL["reference", torch.float32]


@cpu_only
def test_every_cpu_code_path(monkeypatch):
    """Each compiled instruction-set variant this CPU can run gives the same answer."""
    from rfmfast import _C

    d = 300
    X, Z = data(7, 1003, d)
    base = _C.isa()
    try:
        for isa in _C.available_isas().split(","):
            _C.set_isa(isa)
            for kernel in KERNELS:
                for dtype in DTYPES:
                    K = rfmfast.kernel_matrix(X.to(dtype), Z.to(dtype), kernel=kernel,
                                              bandwidth=bandwidth(kernel, d), backend="cpu")
                    ref = ref_kernel_matrix("7x1003_d300", kernel, "none", False)
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
            Xt, xn = prep(X.numpy().astype(dtype), None, 0, 2)
            Zt, zn = (Xt, xn) if symmetric else prep(Z.numpy().astype(dtype), None, 0, 2)
            Zp = getattr(_C, f"pack_points_{sfx}")(Zt)
            out = np.full((X.shape[0], Z.shape[0]), np.nan, dtype=dtype)
            getattr(_C, f"kernel_matrix_{sfx}")(Xt, xn, Zp, zn, Z.shape[0], 0, 10.0, symmetric,
                                               out, 2)
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
