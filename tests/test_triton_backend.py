"""The Triton backend's own settings, against the float64 reference: reduced precision (tf32,
bf16) within 2x plain PyTorch's error, RFMFAST_TRITON_PRECISION and RFMFAST_TRITON_AGOP, the
two-stage AGOP, int64 offsets on a GPU, the refusal without GPU or interpreter, and every kernel
compiled for sm_90 on a machine without a GPU.

The ops themselves are checked on every backend in tests/test_<op>.py. Without a GPU the
kernels run in Triton's interpreter on CPU tensors (tests/conftest.py sets TRITON_INTERPRET=1);
with one they run on it. Outputs are pre-filled with NaN (the nan_outputs fixture).
"""

import os
import subprocess
import sys
import textwrap

import pytest
import torch

triton = pytest.importorskip("triton", reason="triton is not installed (pip install triton)")

# These imports stay after importorskip, so that without triton the module is skipped before
# the test helpers are imported (and the rfmfast imports stay after the availability skip).
from _cases import (  # noqa: E402
    HAS_CUDA,
    alpha,
    available,
    bandwidth,
    data,
    f64,
    feature_matrix,
    grad_points,
    on,
    queries,
    rel_err,
    shifted_points,
)
from _tolerances import REDUCED_PRECISION_FACTOR, TF32_AGOP_TOL, TOL, tol  # noqa: E402

if not available("triton"):
    pytest.skip("no CUDA device and TRITON_INTERPRET is not 1", allow_module_level=True)

import rfmfast  # noqa: E402
from rfmfast.ops._triton import common as TC  # noqa: E402
from rfmfast.ops.agop import reference as agop_ref  # noqa: E402
from rfmfast.ops.agop import triton as agop_tri  # noqa: E402
from rfmfast.ops.kernel_matmul import reference as kmm_ref  # noqa: E402
from rfmfast.ops.kernel_matmul import triton as kmm_tri  # noqa: E402
from rfmfast.ops.kernel_matrix import reference as km_ref  # noqa: E402
from rfmfast.ops.kernel_matrix import triton as km_tri  # noqa: E402

pytestmark = pytest.mark.usefixtures("nan_outputs")
F32 = torch.float32


def _values(m, t):
    return torch.randn(m, t, dtype=torch.float64)


# --- reduced precision: error at most about 2x plain PyTorch's in the same precision --------


def _plain_kernel_matmul(X, Z, V, kernel, precision, bandwidth):
    """What plain PyTorch computes in that precision: the distances from rounded points, and
    K @ V with both operands rounded (cuBLAS TF32 rounds both; bf16 keeps K in bf16)."""
    Xr, Zr = (f64(TC.round_to(t, precision)) for t in (X, Z))
    K = km_ref.kernel_matrix(Xr, Zr, kernel=kernel, bandwidth=bandwidth, M=None)
    K = f64(TC.round_to(K.float(), precision))
    return K @ f64(TC.round_to(V, precision))


@pytest.mark.parametrize("kernel", ["laplace", "gaussian"])
@pytest.mark.parametrize("precision", ["tf32", "bf16"])
def test_reduced_precision(kernel, precision):
    n, m, d = 70, 70, 33
    L = bandwidth(kernel, d)
    X0, Z0 = data(n, m, d)
    X, Z, V = on("triton", X0.float(), Z0.float(), _values(m, 3).float())
    ref = kmm_ref.kernel_matmul(f64(X), f64(Z), f64(V), kernel=kernel, bandwidth=L, M=None)
    out = kmm_tri.kernel_matmul(X, Z, V, kernel=kernel, bandwidth=L, M=None, precision=precision)
    plain = rel_err(_plain_kernel_matmul(X, Z, V, kernel, precision, L), ref)
    assert rel_err(out, ref) <= REDUCED_PRECISION_FACTOR * plain
    K = km_tri.kernel_matrix(X, Z, kernel=kernel, bandwidth=L, M=None, precision=precision)
    Kr = km_ref.kernel_matrix(f64(X), f64(Z), kernel=kernel, bandwidth=L, M=None)
    Kplain = km_ref.kernel_matrix(
        f64(TC.round_to(X, precision)),
        f64(TC.round_to(Z, precision)),
        kernel=kernel,
        bandwidth=L,
        M=None,
    )
    assert rel_err(K, Kr) <= REDUCED_PRECISION_FACTOR * rel_err(Kplain, Kr)
    Q, Xc, a = on("triton", *(t.float() for t in grad_points(17, 70, 33, 3, "mixed")))
    A = agop_tri.agop(Q, Xc, a, kernel=kernel, bandwidth=L, M=None, precision=precision)
    Aref = agop_ref.agop(f64(Q), f64(Xc), f64(a), kernel=kernel, bandwidth=L, M=None)
    Aplain = agop_ref.agop(
        *(f64(TC.round_to(t, precision)) for t in (Q, Xc, a)), kernel=kernel, bandwidth=L, M=None
    )
    assert rel_err(A, Aref) <= REDUCED_PRECISION_FACTOR * rel_err(Aplain, Aref)


def test_reduced_precision_many_coordinates():
    """r > 128: the tensor-core distance GEMM loops over 32-wide k-steps."""
    n, m, d = 17, 40, 140
    L = bandwidth("gaussian", d)
    X0, Z0 = data(n, m, d)
    X, Z, V = on("triton", X0.float(), Z0.float(), _values(m, 2).float())
    ref = kmm_ref.kernel_matmul(f64(X), f64(Z), f64(V), kernel="gaussian", bandwidth=L, M=None)
    for precision in ("tf32", "bf16"):
        out = kmm_tri.kernel_matmul(
            X, Z, V, kernel="gaussian", bandwidth=L, M=None, precision=precision
        )
        plain = rel_err(_plain_kernel_matmul(X, Z, V, "gaussian", precision, L), ref)
        assert rel_err(out, ref) <= REDUCED_PRECISION_FACTOR * plain, precision


def test_precision_from_environment(monkeypatch):
    n, m, d = 17, 70, 33
    L = bandwidth("laplace", d)
    X0, Z0 = data(n, m, d)
    X, Z, V = on("triton", X0.float(), Z0.float(), _values(m, 3).float())
    want = kmm_tri.kernel_matmul(X, Z, V, kernel="laplace", bandwidth=L, M=None, precision="bf16")
    monkeypatch.setenv("RFMFAST_TRITON_PRECISION", "bf16")
    got = rfmfast.kernel_matmul(X, Z, V, kernel="laplace", bandwidth=L, backend="triton")
    assert torch.equal(got, want)
    monkeypatch.setenv("RFMFAST_TRITON_PRECISION", "fp8")
    with pytest.raises(ValueError, match="RFMFAST_TRITON_PRECISION"):
        rfmfast.kernel_matmul(X, Z, V, kernel="laplace", bandwidth=L, backend="triton")
    with pytest.raises(ValueError, match="precision"):
        kmm_tri.kernel_matmul(X, Z, V, kernel="laplace", bandwidth=L, M=None, precision="half")


# --- the AGOP's two algorithms ------------------------------------------------------------------


@pytest.mark.parametrize(
    "kernel,mkind,shape",
    [("laplace", "full", (17, 70, 33, 3)), ("gaussian", "none", (70, 40, 33, 1))],
)
def test_agop_two_stage(kernel, mkind, shape, monkeypatch):
    """RFMFAST_TRITON_AGOP=two_stage (weight matrix per query chunk, then a matmul), with
    chunks of 16 queries: gradients and AGOP against the reference, in ieee and tf32."""
    monkeypatch.setenv("RFMFAST_TRITON_AGOP", "two_stage")
    monkeypatch.setattr(agop_tri, "_TWO_STAGE_ENTRIES", 1)
    q, n, d, c = shape
    # unit-normal points at bandwidth 4: distances of a few bandwidths, where tf32's rounding of
    # the distances stays below TF32_AGOP_TOL
    L = 4.0
    X0, Z0 = shifted_points("0", n, q, d)
    Q0, a0 = queries(X0, Z0, q, "mixed"), alpha(n, c)
    M0 = feature_matrix(mkind, d)
    Q, X, a, M = on(
        "triton", Q0.float(), X0.float(), a0.float(), None if M0 is None else M0.float()
    )
    G = agop_tri.kernel_grads(Q, X, a, kernel=kernel, bandwidth=L, M=M)
    Gref = agop_ref.kernel_grads(Q0, X0, a0, kernel=kernel, bandwidth=L, M=M0)
    assert rel_err(G, Gref) < tol("triton", F32, "kernel_grads")
    Aref = agop_ref.agop(Q0, X0, a0, kernel=kernel, bandwidth=L, M=M0, centering=True)
    A = agop_tri.agop(Q, X, a, kernel=kernel, bandwidth=L, M=M, centering=True)
    assert rel_err(A, Aref) < tol("triton", F32, "agop")
    At = agop_tri.agop(Q, X, a, kernel=kernel, bandwidth=L, M=M, centering=True, precision="tf32")
    assert rel_err(At, Aref) < TF32_AGOP_TOL
    monkeypatch.setenv("RFMFAST_TRITON_AGOP", "fast")
    with pytest.raises(ValueError, match="RFMFAST_TRITON_AGOP"):
        agop_tri.agop(Q, X, a, kernel=kernel, bandwidth=L, M=M)


def test_agop_method_auto_chooses_by_value_matrix_size(monkeypatch):
    monkeypatch.delenv("RFMFAST_TRITON_AGOP", raising=False)
    assert agop_tri.agop_method() == "auto"
    assert agop_tri.use_two_stage(200_000, 10, 100)  # V: 0.81 GB in float32
    assert not agop_tri.use_two_stage(200_000, 10, 100, 8)  # 1.6 GB in float64: fused
    assert not agop_tri.use_two_stage(1_000_000, 10, 100)  # V: 4 GB: fused
    monkeypatch.setenv("RFMFAST_TRITON_AGOP", "fused")
    assert not agop_tri.use_two_stage(10, 1, 1)
    monkeypatch.setenv("RFMFAST_TRITON_AGOP", "two_stage")
    assert agop_tri.use_two_stage(1_000_000, 10, 100)


# --- where it runs --------------------------------------------------------------------------


def test_unavailable_without_gpu_or_interpreter():
    """backend="triton" with no GPU and no TRITON_INTERPRET raises BackendUnavailable."""
    code = textwrap.dedent("""
        import numpy as np, rfmfast
        from rfmfast.backends import BackendUnavailable
        try:
            rfmfast.kernel_matmul(np.ones((3, 2)), np.ones((4, 2)), np.ones(4), backend="triton")
        except BackendUnavailable as e:
            print("RAISED", e)
    """)
    env = {k: v for k, v in os.environ.items() if k not in ("TRITON_INTERPRET", "RFMFAST_BACKEND")}
    env["CUDA_VISIBLE_DEVICES"] = ""
    res = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )
    assert res.returncode == 0, res.stderr
    assert "RAISED" in res.stdout and "TRITON_INTERPRET" in res.stdout, res.stdout


@pytest.mark.gpu
@pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA device (int64 offsets past 2^31)")
def test_int64_offsets_gpu():
    """kernel_matrix with n m > 2^31 entries: sampled entries against the reference."""
    n, d = 47_000, 8
    L = bandwidth("laplace", d)
    (X,) = on("triton", data(n, 1, d)[0].float())
    K = rfmfast.kernel_matrix(X, kernel="laplace", bandwidth=L, backend="triton")
    assert K.numel() > 2**31
    idx = torch.tensor([0, 1, n // 2, n - 2, n - 1], device=X.device)
    ref = km_ref.kernel_matrix(f64(X[idx]), f64(X), kernel="laplace", bandwidth=L, M=None)
    assert rel_err(K[idx], ref) < TOL["triton", F32]
    del K
    torch.cuda.empty_cache()


_COMPILE_CHECK = r"""
import os, sys
import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource
from rfmfast.ops.agop import triton as AG
from rfmfast.ops._triton import matrix as KM
from rfmfast.ops._triton import product as KMM

def compile_one(fn, ptrs, ints, const, dt, cfg):
    sig = {a: "*" + dt for a in ptrs}
    sig.update({a: "i32" for a in ints})
    const = dict(const, **cfg.kwargs)
    sig.update({k: "constexpr" for k in const})
    triton.compile(ASTSource(fn, sig, const), target=GPUTarget("cuda", 90, 32),
                   options={"num_warps": cfg.num_warps, "num_stages": cfg.num_stages})

kmm = (["p_ptr", "y_ptr", "pn_ptr", "yn_ptr", "v_ptr", "x_ptr", "a_ptr", "out_ptr",
        "consts_ptr", "xo_ptr", "zo_ptr", "s_ptr"], ["q", "n", "r", "t", "d", "c", "dx"])
base = dict(INTERP=False, DIRECT=False, WEIGHT=False, VALUES_FROM_X=False, P_RESIDENT=False)
for mode, kernel, prec, dt, extra in [
        ("ieee", 0, 0, "fp32", {}), ("tc", 0, 1, "fp32", {"P_RESIDENT": True}),
        ("tc", 1, 2, "fp32", {}), ("ieee", 1, 0, "fp64", {}),
        ("ieee_wide", 0, 0, "fp32", {"WEIGHT": True, "VALUES_FROM_X": True}),
        ("tc_wide", 0, 1, "fp32", {"WEIGHT": True, "VALUES_FROM_X": True, "P_RESIDENT": True}),
        ("direct", 2, 0, "fp32", {"DIRECT": True}), ("direct", 0, 0, "fp64", {"DIRECT": True})]:
    const = dict(base, KERNEL=kernel, PREC=prec, BLOCK_K=4 if mode == "direct" else 64,
                 S_MODE=(0, 2, 1)[kernel], **extra)
    if not mode.endswith("wide"):
        const["BLOCK_T"] = 16
    compile_one(KMM._fused_kmm, *kmm, const, dt, KMM._CONFIGS[mode][0])
    print("kernel_matmul", mode, kernel, prec, dt, "ok", flush=True)
km = (["p_ptr", "y_ptr", "pn_ptr", "yn_ptr", "out_ptr", "consts_ptr", "xo_ptr", "zo_ptr",
       "s_ptr"], ["q", "n", "r", "d"])
for mode, kernel, prec, dt, sym in [("ieee", 0, 0, "fp32", True), ("tc", 1, 2, "fp32", False),
                                    ("tc", 0, 1, "fp32", False), ("direct", 2, 0, "fp64", True)]:
    const = dict(KERNEL=kernel, DIRECT=mode == "direct", SYMMETRIC=sym, PREC=prec, INTERP=False,
                 WEIGHT=not sym, BLOCK_K=4 if mode == "direct" else 32, S_MODE=(2, 0, 1)[kernel])
    compile_one(KM._kernel_matrix, *km, const, dt, KM._CONFIGS[mode][0])
    print("kernel_matrix", mode, kernel, dt, "ok", flush=True)
ag = (["p_ptr", "y_ptr", "pn_ptr", "yn_ptr", "a_ptr", "h_ptr", "consts_ptr", "xo_ptr", "zo_ptr",
       "s_ptr"], ["q", "n", "r", "c", "d"])
for kernel, dt, s_mode in [(0, "fp32", 1), (2, "fp32", 2), (1, "fp64", 0)]:
    compile_one(AG._direct_grads.fn, *ag, dict(KERNEL=kernel, BLOCK_K=4, BLOCK_R=8,
                                               S_MODE=s_mode), dt, AG._DIRECT_CONFIGS[0])
    print("direct_grads", kernel, dt, "ok", flush=True)
ng = (["p_ptr", "y_ptr", "pn_ptr", "yn_ptr", "xo_ptr", "zo_ptr", "s_ptr", "a_ptr", "h_ptr",
       "consts_ptr"], ["q", "n", "r", "d", "c", "ro"])
for kernel, dt, s_mode, direct, mapped, prec in [(0, "fp32", 2, False, False, 0),
                                                 (1, "fp32", 0, False, False, 1),
                                                 (2, "fp32", 2, True, True, 0),
                                                 (0, "fp64", 1, True, True, 0)]:
    compile_one(AG._near_grads.fn, *ng, dict(KERNEL=kernel, S_MODE=s_mode, DIRECT=direct,
                                             MAPPED=mapped, PREC=prec, INTERP=False,
                                             BLOCK_K=4 if direct else 32, BLOCK_R=8), dt,
                AG._DIRECT_CONFIGS[0])
    print("near_grads", kernel, dt, s_mode, "ok", flush=True)
print("ALL COMPILED")
"""


@pytest.mark.skipif(HAS_CUDA, reason="with a GPU the other tests compile and run every kernel")
def test_kernels_compile_for_hopper():
    """Every kind of kernel compiles for sm_90 (H100/H200) with Triton's bundled ptxas, on a
    machine without a GPU: code generation errors show up in CI, not on the GPU machine."""
    ptxas = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin")
    if not os.path.isdir(ptxas):
        pytest.skip("this triton build has no bundled NVIDIA toolchain")
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["TRITON_DEFAULT_FP_FUSION"] = env.get("TRITON_DEFAULT_FP_FUSION", "1")
    res = subprocess.run(
        [sys.executable, "-c", _COMPILE_CHECK], env=env, capture_output=True, text=True, timeout=600
    )
    assert res.returncode == 0 and "ALL COMPILED" in res.stdout, res.stdout + res.stderr[-3000:]
