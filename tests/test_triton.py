"""Triton backends against the float64 reference.

On a machine without a GPU the kernels run in Triton's interpreter on CPU tensors
(tests/conftest.py sets TRITON_INTERPRET=1 before anything imports them); with a GPU they run
on it. Ragged shapes (n, m in {1, 17, 70}, d in {1, 5, 33}, c in {1, 3}), every kernel, M
None / diagonal / full (and low-rank), float32 and float64. Outputs are pre-filled with NaN:
the backends' torch.empty is patched to return NaN-filled tensors, so an element a kernel
forgets to write fails rel_err's finiteness check.
"""
import os
import subprocess
import sys
import textwrap

import pytest
import torch

triton = pytest.importorskip("triton", reason="triton is not installed (pip install triton)")

from conftest import TOL, rel_err  # noqa: E402

HAS_CUDA = torch.cuda.is_available()
if not HAS_CUDA and os.environ.get("TRITON_INTERPRET") != "1":
    pytest.skip("no CUDA device and TRITON_INTERPRET is not 1", allow_module_level=True)

import rfmfast  # noqa: E402
from rfmfast.ops._triton import common as TC  # noqa: E402
from rfmfast.ops.agop import reference as agop_ref  # noqa: E402
from rfmfast.ops.agop import triton as agop_tri  # noqa: E402
from rfmfast.ops.kernel_matmul import reference as kmm_ref  # noqa: E402
from rfmfast.ops.kernel_matmul import triton as kmm_tri  # noqa: E402
from rfmfast.ops.kernel_matrix import reference as km_ref  # noqa: E402
from rfmfast.ops.kernel_matrix import triton as km_tri  # noqa: E402

DEV = "cuda" if HAS_CUDA else "cpu"
KERNELS = ("laplace", "gaussian", "l1_laplace")
MS = ("none", "diag", "full", "lowrank")
BW = 4.0


class _NanTorch:
    """torch, except that empty() returns NaN-filled tensors."""

    def __getattr__(self, name):
        return getattr(torch, name)

    @staticmethod
    def empty(*args, **kwargs):
        return torch.empty(*args, **kwargs).fill_(float("nan"))


@pytest.fixture(autouse=True)
def _nan_outputs(monkeypatch):
    from rfmfast.ops._triton import matrix as tri_matrix, product as tri_product

    for mod in (tri_matrix, tri_product, agop_tri):     # where the triton outputs are allocated
        monkeypatch.setattr(mod, "torch", _NanTorch())


def make_M(kind, d, dtype):
    if kind == "none":
        return None
    if kind == "diag":
        return torch.rand(d, dtype=dtype, device=DEV) + 0.1
    k = d if kind == "full" else max(1, d // 3)
    # small-integer entries: A A^T is exact (so exactly PSD) in float32 and float64 alike
    A = torch.randint(-3, 4, (d, k), dtype=torch.float64) / 4
    scale = 2.0 ** -int(torch.tensor(float(k)).log2().ceil())
    return (A @ A.T * scale).to(dtype=dtype, device=DEV)


def data(*shapes, dtype):
    return [torch.randn(*s, dtype=dtype, device=DEV) for s in shapes]


def f64(t):
    return None if t is None else t.to(device="cpu", dtype=torch.float64)


def tol(dtype):
    return TOL[("triton", dtype)]


# (kernel, M, (n, m, d)): ragged sizes; d = 1 and 5 take the difference-first tiles (r <= 8),
# d = 33 the GEMM tiles (more than one 16-wide k-step in the interpreter; lowrank: r = 11)
CASES = [("laplace", "none", (1, 70, 1)), ("laplace", "diag", (17, 70, 5)),
         ("laplace", "full", (70, 17, 33)), ("laplace", "lowrank", (70, 1, 33)),
         ("laplace", "full", (17, 17, 5)),
         ("gaussian", "none", (17, 17, 1)), ("gaussian", "diag", (70, 17, 33)),
         ("gaussian", "full", (17, 70, 33)), ("gaussian", "lowrank", (1, 70, 33)),
         ("l1_laplace", "none", (70, 1, 33)), ("l1_laplace", "diag", (17, 70, 33)),
         ("l1_laplace", "full", (70, 17, 5)), ("l1_laplace", "lowrank", (17, 17, 33))]


@pytest.mark.parametrize("kernel,Mk,shape", CASES,
                         ids=[f"{k}-{M}-{n}x{m}x{d}" for k, M, (n, m, d) in CASES])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
def test_kernel_matrix(kernel, Mk, shape, dtype):
    n, m, d = shape
    X, Z = data((n, d), (m, d), dtype=dtype)
    M = make_M(Mk, d, dtype)
    K = rfmfast.kernel_matrix(X, Z, kernel=kernel, bandwidth=BW, M=M, backend="triton")
    ref = km_ref.kernel_matrix(f64(X), f64(Z), kernel=kernel, bandwidth=BW, M=f64(M))
    assert K.dtype == dtype and K.device == X.device
    assert rel_err(K.cpu(), ref) < tol(dtype)


@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("Mk,n,d", [("full", 70, 33), ("diag", 17, 5), ("lowrank", 70, 33),
                                    ("none", 1, 1)])
def test_kernel_matrix_symmetric(kernel, Mk, n, d):
    (X,) = data((n, d), dtype=torch.float32)
    M = make_M(Mk, d, torch.float32)
    K = rfmfast.kernel_matrix(X, kernel=kernel, bandwidth=BW, M=M, backend="triton")
    ref = km_ref.kernel_matrix(f64(X), f64(X), kernel=kernel, bandwidth=BW, M=f64(M))
    assert rel_err(K.cpu(), ref) < tol(torch.float32)
    assert torch.equal(K, K.T), "the mirrored triangle must be exact"
    assert bool((K.diagonal() == 1).all())


@pytest.mark.parametrize("kernel,Mk,shape", CASES,
                         ids=[f"{k}-{M}-{n}x{m}x{d}" for k, M, (n, m, d) in CASES])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
def test_kernel_matmul(kernel, Mk, shape, dtype):
    n, m, d = shape
    t = 3 if n + m > 40 else 1
    X, Z, V = data((n, d), (m, d), (m, t), dtype=dtype)
    Z[: min(m, n) // 2] = X[: min(m, n) // 2]          # coincident pairs
    M = make_M(Mk, d, dtype)
    out = rfmfast.kernel_matmul(X, Z, V, kernel=kernel, bandwidth=BW, M=M, backend="triton")
    ref = kmm_ref.kernel_matmul(f64(X), f64(Z), f64(V), kernel=kernel, bandwidth=BW, M=f64(M))
    assert out.shape == (n, t)
    assert rel_err(out.cpu(), ref) < tol(dtype)


def test_kernel_matmul_wide_values_and_vector():
    """t past one BLOCK_T (several column programs), non-contiguous V, and a vector V."""
    X, Z = data((33, 33), (70, 33), dtype=torch.float32)
    V = torch.randn(300, 70, device=DEV).T                  # (70, 300), not contiguous
    out = rfmfast.kernel_matmul(X, Z, V, kernel="laplace", bandwidth=BW, backend="triton")
    ref = kmm_ref.kernel_matmul(f64(X), f64(Z), f64(V), kernel="laplace", bandwidth=BW, M=None)
    assert rel_err(out.cpu(), ref) < tol(torch.float32)
    v = rfmfast.kernel_matmul(X, Z, V[:, 5], kernel="gaussian", bandwidth=BW, backend="triton")
    refv = kmm_ref.kernel_matmul(f64(X), f64(Z), f64(V[:, 5:6]), kernel="gaussian",
                                 bandwidth=BW, M=None)[:, 0]
    assert rel_err(v.cpu(), refv) < tol(torch.float32)


# (kernel, M, (q, n, d, c)); queries partly drawn from the centers (the self-pair of MATH.md)
GCASES = [("laplace", "none", (17, 70, 1, 1)), ("laplace", "diag", (70, 17, 5, 1)),
          ("laplace", "full", (17, 70, 33, 3)), ("laplace", "lowrank", (70, 70, 33, 1)),
          ("laplace", "full", (1, 17, 5, 3)),
          ("gaussian", "none", (1, 17, 1, 3)), ("gaussian", "diag", (17, 70, 33, 3)),
          ("gaussian", "full", (70, 17, 5, 1)), ("gaussian", "lowrank", (17, 70, 33, 3)),
          ("l1_laplace", "none", (17, 70, 1, 1)), ("l1_laplace", "diag", (70, 70, 33, 1)),
          ("l1_laplace", "full", (17, 70, 33, 3)), ("l1_laplace", "lowrank", (70, 17, 5, 3))]


def grad_data(q, n, d, c, dtype):
    X, alpha = data((n, d), (n, c), dtype=dtype)
    Q = torch.randn(q, d, dtype=dtype, device=DEV)
    k = min(q, n) - min(q, n) // 3
    Q[:k] = X[torch.randperm(n, device=DEV)[:k]]
    return Q, X, alpha


@pytest.mark.parametrize("kernel,Mk,shape", GCASES,
                         ids=[f"{k}-{M}-{q}x{n}x{d}x{c}" for k, M, (q, n, d, c) in GCASES])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
def test_kernel_grads(kernel, Mk, shape, dtype):
    q, n, d, c = shape
    Q, X, alpha = grad_data(q, n, d, c, dtype)
    M = make_M(Mk, d, dtype)
    G = rfmfast.kernel_grads(Q, X, alpha, kernel=kernel, bandwidth=BW, M=M, backend="triton")
    ref = agop_ref.kernel_grads(f64(Q), f64(X), f64(alpha), kernel=kernel, bandwidth=BW,
                                M=f64(M))
    assert G.shape == (q, c, d)
    assert rel_err(G.cpu(), ref) < tol(dtype)


@pytest.mark.parametrize("kernel,Mk,shape", GCASES,
                         ids=[f"{k}-{M}-{q}x{n}x{d}x{c}" for k, M, (q, n, d, c) in GCASES])
def test_agop(kernel, Mk, shape):
    q, n, d, c = shape
    Q, X, alpha = grad_data(q, n, d, c, torch.float32)
    M = make_M(Mk, d, torch.float32)
    for diag, centering, acc in [(False, False, None), (True, False, None),
                                 (False, True, "float64"), (True, True, None)]:
        A = rfmfast.agop(Q, X, alpha, kernel=kernel, bandwidth=BW, M=M, diag=diag,
                         centering=centering, accumulate=acc, backend="triton")
        ref = agop_ref.agop(f64(Q), f64(X), f64(alpha), kernel=kernel, bandwidth=BW, M=f64(M),
                            diag=diag, centering=centering)
        assert A.shape == ((d,) if diag else (d, d))
        if q == 1 and centering:           # one query: the centered AGOP is exactly zero
            assert float(A.abs().max()) <= 1e-6 * (1 + float(ref.abs().max()))
            continue
        assert rel_err(A.cpu(), ref) < 2 * tol(torch.float32), (diag, centering)


def test_agop_chunks(monkeypatch):
    """Queries split in several chunks, with centering: the shifted sums must add up."""
    monkeypatch.setattr(agop_tri, "_CHUNK_ENTRIES", 1)     # chunk = 128 queries
    Q, X, alpha = grad_data(300, 40, 33, 3, torch.float32)
    Q = Q + 3.0                                             # a large mean gradient to remove
    for diag in (False, True):
        A = agop_tri.agop(Q, X, alpha, kernel="laplace", bandwidth=BW, M=None, diag=diag,
                          centering=True)
        ref = agop_ref.agop(f64(Q), f64(X), f64(alpha), kernel="laplace", bandwidth=BW, M=None,
                            diag=diag, centering=True)
        assert rel_err(A.cpu(), ref) < 2 * tol(torch.float32)


# --- reduced precision: error at most about 2x plain PyTorch's in the same precision --------

def _plain_kernel_matmul(X, Z, V, kernel, precision, bandwidth=BW):
    """What plain PyTorch computes in that precision: the distances from rounded points, and
    K @ V with both operands rounded (cuBLAS TF32 rounds both; bf16 keeps K in bf16)."""
    Xr, Zr = (f64(TC.round_to(t, precision)) for t in (X, Z))
    K = km_ref.kernel_matrix(Xr, Zr, kernel=kernel, bandwidth=bandwidth, M=None)
    K = f64(TC.round_to(K.float(), precision))
    return K @ f64(TC.round_to(V, precision))


@pytest.mark.parametrize("kernel", ["laplace", "gaussian"])
@pytest.mark.parametrize("precision", ["tf32", "bf16"])
def test_reduced_precision(kernel, precision):
    X, Z, V = data((70, 33), (70, 33), (70, 3), dtype=torch.float32)
    ref = kmm_ref.kernel_matmul(f64(X), f64(Z), f64(V), kernel=kernel, bandwidth=BW, M=None)
    out = kmm_tri.kernel_matmul(X, Z, V, kernel=kernel, bandwidth=BW, M=None,
                                precision=precision)
    plain = rel_err(_plain_kernel_matmul(X, Z, V, kernel, precision), ref)
    assert rel_err(out.cpu(), ref) <= 2 * plain
    K = km_tri.kernel_matrix(X, Z, kernel=kernel, bandwidth=BW, M=None, precision=precision)
    Kr = km_ref.kernel_matrix(f64(X), f64(Z), kernel=kernel, bandwidth=BW, M=None)
    Kplain = km_ref.kernel_matrix(f64(TC.round_to(X, precision)), f64(TC.round_to(Z, precision)),
                                  kernel=kernel, bandwidth=BW, M=None)
    assert rel_err(K.cpu(), Kr) <= 2 * rel_err(Kplain, Kr)
    Q, Xc, alpha = grad_data(17, 70, 33, 3, torch.float32)
    A = agop_tri.agop(Q, Xc, alpha, kernel=kernel, bandwidth=BW, M=None, precision=precision)
    Aref = agop_ref.agop(f64(Q), f64(Xc), f64(alpha), kernel=kernel, bandwidth=BW, M=None)
    Aplain = agop_ref.agop(*(f64(TC.round_to(t, precision)) for t in (Q, Xc, alpha)),
                           kernel=kernel, bandwidth=BW, M=None)
    assert rel_err(A.cpu(), Aref) <= 2 * rel_err(Aplain, Aref)


def test_precision_from_environment(monkeypatch):
    X, Z, V = data((17, 33), (70, 33), (70, 3), dtype=torch.float32)
    want = kmm_tri.kernel_matmul(X, Z, V, kernel="laplace", bandwidth=BW, M=None, precision="bf16")
    monkeypatch.setenv("RFMFAST_TRITON_PRECISION", "bf16")
    got = rfmfast.kernel_matmul(X, Z, V, kernel="laplace", bandwidth=BW, backend="triton")
    assert torch.equal(got, want)
    monkeypatch.setenv("RFMFAST_TRITON_PRECISION", "fp8")
    with pytest.raises(ValueError, match="RFMFAST_TRITON_PRECISION"):
        rfmfast.kernel_matmul(X, Z, V, kernel="laplace", bandwidth=BW, backend="triton")
    with pytest.raises(ValueError, match="precision"):
        kmm_tri.kernel_matmul(X, Z, V, kernel="laplace", bandwidth=BW, M=None, precision="half")


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
    env = {k: v for k, v in os.environ.items()
           if k not in ("TRITON_INTERPRET", "RFMFAST_BACKEND")}
    env["CUDA_VISIBLE_DEVICES"] = ""
    res = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         timeout=120)
    assert res.returncode == 0, res.stderr
    assert "RAISED" in res.stdout and "TRITON_INTERPRET" in res.stdout, res.stdout


@pytest.mark.gpu
@pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA device (int64 offsets past 2^31)")
def test_int64_offsets_gpu():
    """kernel_matrix with n m > 2^31 entries: sampled entries against the reference."""
    n = 47_000
    (X,) = data((n, 8), dtype=torch.float32)
    K = rfmfast.kernel_matrix(X, kernel="laplace", bandwidth=BW, backend="triton")
    assert K.numel() > 2 ** 31
    idx = torch.tensor([0, 1, n // 2, n - 2, n - 1], device=DEV)
    ref = km_ref.kernel_matrix(f64(X[idx]), f64(X), kernel="laplace", bandwidth=BW, M=None)
    assert rel_err(K[idx].cpu(), ref) < tol(torch.float32)
    del K
    torch.cuda.empty_cache()


@pytest.mark.parametrize("kernel", ["laplace", "gaussian"])
def test_coincident_pairs_far_from_the_mean(kernel):
    """A point given twice (as a query and as a center) is at distance 0 even where the
    GEMM's rounding residual |x|^2 + |x|^2 - 2 x.x is large (points far from the mean)."""
    (X,) = data((40, 33), dtype=torch.float32)
    X[::3] *= 30.0
    Xq = X.clone()
    K = km_tri.kernel_matrix(Xq, X, kernel=kernel, bandwidth=BW, M=None)
    assert bool((K.diagonal() == 1).all())
    alpha = torch.randn(40, 2, device=DEV)
    G = agop_tri.kernel_grads(Xq, X, alpha, kernel=kernel, bandwidth=BW, M=None)
    ref = agop_ref.kernel_grads(f64(Xq), f64(X), f64(alpha), kernel=kernel, bandwidth=BW,
                                M=None)
    assert rel_err(G.cpu(), ref) < tol(torch.float32)


def test_reduced_precision_many_coordinates():
    """r > 128: the tensor-core distance GEMM loops over 32-wide k-steps."""
    X, Z, V = data((17, 140), (40, 140), (40, 2), dtype=torch.float32)
    ref = kmm_ref.kernel_matmul(f64(X), f64(Z), f64(V), kernel="gaussian", bandwidth=20.0, M=None)
    for precision in ("tf32", "bf16"):
        out = kmm_tri.kernel_matmul(X, Z, V, kernel="gaussian", bandwidth=20.0, M=None,
                                    precision=precision)
        plain = rel_err(_plain_kernel_matmul(X, Z, V, "gaussian", precision, bandwidth=20.0), ref)
        assert rel_err(out.cpu(), ref) <= 2 * plain


_COMPILE_CHECK = r'''
import os, sys
import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource
from rfmfast.ops.agop import triton as AG
from rfmfast.ops.kernel_matmul import triton as KMM
from rfmfast.ops.kernel_matrix import triton as KM

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
'''


@pytest.mark.skipif(HAS_CUDA, reason="with a GPU the other tests compile and run every kernel")
def test_kernels_compile_for_hopper():
    """Every kind of kernel compiles for sm_90 (H100/H200) with Triton's bundled ptxas, on a
    machine without a GPU: code generation errors show up in CI, not on the GPU machine."""
    ptxas = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin")
    if not os.path.isdir(ptxas):
        pytest.skip("this triton build has no bundled NVIDIA toolchain")
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["TRITON_DEFAULT_FP_FUSION"] = env.get("TRITON_DEFAULT_FP_FUSION", "1")
    res = subprocess.run([sys.executable, "-c", _COMPILE_CHECK], env=env, capture_output=True,
                         text=True, timeout=600)
    assert res.returncode == 0 and "ALL COMPILED" in res.stdout, res.stdout + res.stderr[-3000:]


@pytest.mark.parametrize("kernel,Mk,shape", [("laplace", "full", (17, 70, 33, 3)),
                                             ("gaussian", "none", (70, 40, 33, 1))])
def test_agop_two_stage(kernel, Mk, shape, monkeypatch):
    """RFMFAST_TRITON_AGOP=two_stage (weight matrix per query chunk, then a matmul), with
    chunks of 16 queries: gradients and AGOP against the reference, in ieee and tf32."""
    monkeypatch.setenv("RFMFAST_TRITON_AGOP", "two_stage")
    monkeypatch.setattr(agop_tri, "_TWO_STAGE_ENTRIES", 1)
    q, n, d, c = shape
    Q, X, alpha = grad_data(q, n, d, c, torch.float32)
    M = make_M(Mk, d, torch.float32)
    G = agop_tri.kernel_grads(Q, X, alpha, kernel=kernel, bandwidth=BW, M=M)
    Gref = agop_ref.kernel_grads(f64(Q), f64(X), f64(alpha), kernel=kernel, bandwidth=BW,
                                 M=f64(M))
    assert rel_err(G.cpu(), Gref) < tol(torch.float32)
    Aref = agop_ref.agop(f64(Q), f64(X), f64(alpha), kernel=kernel, bandwidth=BW, M=f64(M),
                         centering=True)
    A = agop_tri.agop(Q, X, alpha, kernel=kernel, bandwidth=BW, M=M, centering=True)
    assert rel_err(A.cpu(), Aref) < 2 * tol(torch.float32)
    At = agop_tri.agop(Q, X, alpha, kernel=kernel, bandwidth=BW, M=M, centering=True,
                       precision="tf32")
    assert rel_err(At.cpu(), Aref) < 1e-3
    monkeypatch.setenv("RFMFAST_TRITON_AGOP", "fast")
    with pytest.raises(ValueError, match="RFMFAST_TRITON_AGOP"):
        agop_tri.agop(Q, X, alpha, kernel=kernel, bandwidth=BW, M=M)


def test_agop_method_auto_chooses_by_value_matrix_size(monkeypatch):
    monkeypatch.delenv("RFMFAST_TRITON_AGOP", raising=False)
    assert agop_tri.agop_method() == "auto"
    assert agop_tri.use_two_stage(200_000, 10, 100)            # V: 0.81 GB in float32
    assert not agop_tri.use_two_stage(200_000, 10, 100, 8)     # 1.6 GB in float64: fused
    assert not agop_tri.use_two_stage(1_000_000, 10, 100)      # V: 4 GB: fused
    monkeypatch.setenv("RFMFAST_TRITON_AGOP", "fused")
    assert not agop_tri.use_two_stage(10, 1, 1)
    monkeypatch.setenv("RFMFAST_TRITON_AGOP", "two_stage")
    assert agop_tri.use_two_stage(1_000_000, 10, 100)
