"""The C++ kernels reached through their params structs: the kernel-code table, and every op of
rfmfast._C on a small ragged case against float64 numpy, on every instruction-set variant."""

from __future__ import annotations

import numpy as np
import pytest

_C = pytest.importorskip("rfmfast._C", reason="C++ extension not built")

ISAS = _C.available_isas().split(",")
TOL = {np.float32: 1e-5, np.float64: 1e-12}
L, RESOLVE, EPS, NT = 3.0, 1.0 / 16.0, 1e-10, 2


def test_kernel_codes():
    assert _C.kernel_codes() == {"laplace": 0, "gaussian": 1, "l1_laplace": 2}


@pytest.fixture(params=ISAS)
def isa(request):
    before = _C.isa()
    _C.set_isa(request.param)
    yield request.param
    _C.set_isa(before)


def fn(name, dt):
    return getattr(_C, f"{name}_{'f64' if dt == np.float64 else 'f32'}")


def rel(a, b):
    return np.linalg.norm(np.asarray(a, np.float64) - b) / max(np.linalg.norm(b), 1e-300)


def ref_kernel(X, Z, kind):
    if kind == 2:
        return np.exp(-np.abs(X[:, None] - Z[None]).sum(-1) / L)
    d2 = ((X[:, None] - Z[None]) ** 2).sum(-1)
    return np.exp(-np.sqrt(d2) / L) if kind == 0 else np.exp(-d2 / (2 * L * L))


@pytest.mark.parametrize("dt", [np.float32, np.float64])
@pytest.mark.parametrize("kind", [0, 1, 2])
def test_every_op_matches_float64(isa, dt, kind):
    g = np.random.default_rng(kind)
    n, m, d, c = 37, 45, 7, 2
    X, Z = (g.standard_normal((k, d)).astype(dt) for k in (n, m))
    S = (0.5 + g.random(d)).astype(dt)  # a diagonal factor of M (s_mode 1)
    mu = Z.mean(0).astype(dt)
    Xt, xn = fn("prepare", dt)(X, mu, S, 1, NT)
    Zt, zn = fn("prepare", dt)(Z, mu, S, 1, NT)
    x64, z64 = ((A.astype(np.float64) - mu) * S for A in (X, Z))
    assert rel(Xt, x64) < TOL[dt] and rel(xn, (x64**2).sum(1)) < TOL[dt]
    Zp = fn("pack_points", dt)(Zt)
    K = ref_kernel(x64, z64, kind)
    out = np.full((n, m), np.nan, dt)
    fn("kernel_matrix", dt)(Xt, xn, Zp, zn, m, kind, L, X, Z, S, 1, RESOLVE, 0, out, NT)
    assert rel(out, K) < TOL[dt]
    for t in (2, 9):  # row dot products with V^T, and the value GEMM on packed V
        V = g.standard_normal((m, t)).astype(dt)
        Vp, Vt = (None, np.ascontiguousarray(V.T)) if t <= 4 else (fn("pack_values", dt)(V), None)
        KV = np.full((n, t), np.nan, dt)
        fn("kernel_matmul", dt)(Xt, xn, Zp, zn, m, kind, L, X, Z, S, 1, RESOLVE, Vp, Vt, t, KV, NT)
        assert rel(KV, K @ V) < TOL[dt]
    alpha = g.standard_normal((m, c)).astype(dt)
    diff = x64[:, None] - z64[None]  # (n, m, d), mapped coordinates
    if kind == 2:
        H = np.full((n, c, d), np.nan, dt)
        fn("l1_grads", dt)(Xt, Zt, Zp, alpha, L, -1.0 / L, H, NT)
        ref = -1.0 / L * np.einsum("ij,jc,ijk->ick", K, alpha, np.sign(diff))
    else:
        s = -1.0 / L if kind == 0 else -1.0 / L**2
        A = K / np.sqrt((diff**2).sum(-1)) if kind == 0 else K
        Vg = fn("pack_grad_values", dt)((Z - mu).astype(dt), alpha)
        H = np.full((n, c, d), np.nan, dt)
        fn("kernel_grads", dt)(
            Xt,
            xn,
            (X - mu).astype(dt),
            Zp,
            zn,
            X,
            Z,
            S,
            1,
            alpha,
            kind,
            L,
            s,
            EPS,
            RESOLVE,
            Vg,
            H,
            NT,
        )
        # the gradient in centered original coordinates, before M: s sum_j A_ij a_jc (q_i - x_j)
        ref = s * np.einsum("ij,jc,ijk->ick", A, alpha, (X[:, None] - Z[None]).astype(np.float64))
    assert rel(H, ref) < 10 * TOL[dt]


@pytest.mark.parametrize("dt", [np.float32, np.float64])
def test_dense_ops_match_float64(isa, dt):
    g = np.random.default_rng(0)
    Y = g.standard_normal((61, 70))
    A = Y @ Y.T / 70 + np.eye(61)
    L_ = A.astype(dt)
    assert fn("cholesky", dt)(L_, NT) == 0
    assert rel(np.tril(L_), np.linalg.cholesky(A)) < 10 * TOL[dt]
    C = A.astype(dt)
    fn("gemm_nt", dt)(C, Y[:, :5].astype(dt), Y[:, 5:10].astype(dt), False, NT)
    assert rel(C, A - Y[:, :5] @ Y[:, 5:10].T) < 10 * TOL[dt]
