"""nystroem_matmul against a dense float64 computation, on every backend here that has the op:
ragged shapes, every kernel and kind of M, W absent and given, 1-D V, coincident pairs,
non-contiguous and numpy inputs, bad input, bounded memory."""

import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest
import torch
from _tolerances import FLOAT64_ROUNDING, TOL

import rfmfast
from rfmfast.backends import BACKENDS, BackendUnavailable, available_backends
from rfmfast.kernels import KERNELS
from rfmfast.ops.kernel_matrix import reference as km_ref

#: the backends that implement the op and can run here (the fused ones join when they land)
OP_BACKENDS = [
    b for b, rec in BACKENDS.items() if "nystroem_matmul" in rec.ops and available_backends()[b][0]
]
#: two chained products (K^T (K V + W)): one more chain of roundings than kernel_matmul
PRODUCT_FACTOR = 2
DTYPES = {"f64": torch.float64, "f32": torch.float32}
M_KINDS = ("none", "diag", "full", "lowrank")
# (n, m, d): one point or center, d = 1, d past a block, n or m past a block, m > n
SHAPES = [(1, 1, 1), (7, 129, 3), (129, 7, 64), (1003, 129, 1), (129, 1003, 5), (70, 17, 300)]


def device(backend):
    """Where the backend's inputs live: CUDA for a CUDA backend on a GPU machine, else CPU."""
    return "cuda" if "cuda" in BACKENDS[backend].devices and torch.cuda.is_available() else "cpu"


def points(n, m, d, seed=0):
    """float64 X (n, d), C (m, d) ~ N(0, (30 / sqrt d)^2 I): distances of about 40."""
    g = torch.Generator().manual_seed(seed + 1000 * n + 7 * m + d)
    s = 30.0 / d**0.5
    return (
        torch.randn(n, d, generator=g, dtype=torch.float64) * s,
        torch.randn(m, d, generator=g, dtype=torch.float64) * s,
    )


def bandwidth(kernel, d):
    """Kernel values of points() spread over (0, 1)."""
    return {"laplace": 10.0, "gaussian": 30.0, "l1_laplace": 20.0 * d**0.5}[kernel]


def feature_matrix(kind, d):
    g = torch.Generator().manual_seed(d)
    if kind == "none":
        return None
    if kind == "diag":
        return torch.rand(d, generator=g, dtype=torch.float64) + 0.1
    if kind == "full":
        A = torch.randn(d, max(1, d // 2), generator=g, dtype=torch.float64)
        return A @ A.T / d + 0.01 * torch.eye(d, dtype=torch.float64)
    A = torch.randint(-3, 4, (d, max(1, d // 3)), generator=g).to(torch.float64) / 4
    return A @ A.T / max(1, d // 3)  # lowrank


def dense(X, C, V, W, kernel, M):
    """The float64 truth: K(C, X) @ (K(X, C) @ V + W) from the dense kernel matrix."""
    K = km_ref.kernel_matrix(X, C, kernel=kernel, bandwidth=bandwidth(kernel, X.shape[1]), M=M)
    return K.T @ (K @ V + (0 if W is None else W))


def rel_err(a, b):
    a = torch.as_tensor(a).to(device="cpu", dtype=torch.float64)
    assert a.shape == b.shape and bool(torch.isfinite(a).all())
    return float((a - b).norm()) / max(float(b.norm()), 1e-300)


def on(backend, dtype, *ts):
    return [None if t is None else t.to(device=device(backend), dtype=dtype) for t in ts]


CASES = [
    pytest.param(b, n, m, d, kernel, mkind, dt, id=f"{b}-{n}x{m}x{d}-{kernel}-{mkind}-{dt}")
    for b in OP_BACKENDS
    for (n, m, d) in SHAPES
    for kernel in KERNELS
    for mkind in M_KINDS
    for dt in DTYPES
]


@pytest.mark.parametrize("backend, n, m, d, kernel, mkind, dt", CASES)
def test_matches_dense(backend, n, m, d, kernel, mkind, dt):
    """W absent and given (t = 3), and coincident pairs (C's first rows are X's)."""
    dtype = DTYPES[dt]
    X, C = points(n, m, d)
    C[: min(n, m) // 2] = X[: min(n, m) // 2]
    g = torch.Generator().manual_seed(n + m)
    V = torch.randn(m, 3, generator=g, dtype=torch.float64)
    W = torch.randn(n, 3, generator=g, dtype=torch.float64)
    M = feature_matrix(mkind, d)
    Xd, Cd, Vd, Wd, Md = on(backend, dtype, X, C, V, W, M)
    # the truth from the rounded inputs: what the op is asked to compute
    X, C, V, W = (t.to(dtype).double() for t in (X, C, V, W))
    M = None if M is None else M.to(dtype).double()
    tol = PRODUCT_FACTOR * TOL[backend, dtype]
    for w, wd in ((None, None), (W, Wd)):
        out = rfmfast.nystroem_matmul(
            Xd, Cd, Vd, wd, kernel=kernel, bandwidth=bandwidth(kernel, d), M=Md, backend=backend
        )
        assert out.shape == (m, 3) and out.dtype == dtype and out.device.type == device(backend)
        assert rel_err(out, dense(X, C, V, w, kernel, M)) < tol, ("W", w is not None)


@pytest.mark.parametrize("backend", OP_BACKENDS)
def test_vector_noncontiguous_and_numpy(backend):
    """1-D V (and W) give 1-D output; strided inputs; numpy in, numpy out."""
    n, m, d = 301, 40, 6
    X, C = points(n, m, d)
    Xs = (torch.randn(2 * n, d, dtype=torch.float64) * 10)[::2]  # strided rows
    v = torch.randn(2 * m, dtype=torch.float64)[::2]  # strided (m,)
    w = torch.randn(n, dtype=torch.float64)
    Vt = torch.randn(5, m, dtype=torch.float64).T  # (m, 5), not contiguous
    Xd, Xsd, Cd, vd, wd, Vtd = on(backend, torch.float64, X, Xs, C, v, w, Vt)
    tol = PRODUCT_FACTOR * TOL[backend, torch.float64]
    for vv, ww in ((vd, None), (vd, wd)):
        out = rfmfast.nystroem_matmul(Xd, Cd, vv, ww, backend=backend)
        assert out.shape == (m,)
        ref = dense(X, C, v[:, None], None if ww is None else w[:, None], "laplace", None)
        assert rel_err(out, ref[:, 0]) < tol
    out = rfmfast.nystroem_matmul(Xsd, Cd, Vtd, backend=backend)
    assert not Xsd.is_contiguous() and not Vtd.is_contiguous()
    assert rel_err(out, dense(Xs, C, Vt, None, "laplace", None)) < tol
    if device(backend) == "cpu":
        outn = rfmfast.nystroem_matmul(X.numpy(), C.numpy(), v.numpy(), w.numpy(), backend=backend)
        assert isinstance(outn, np.ndarray) and outn.shape == (m,)
        ref = rfmfast.nystroem_matmul(X, C, v, w, backend=backend)
        assert np.allclose(outn, ref.numpy(), rtol=1e-12, atol=0)


@pytest.mark.parametrize("kernel", KERNELS)
def test_reference_equals_two_kernel_matmuls(kernel):
    """The reference's one pass equals K(C, X) @ (K(X, C) @ V + W) by two kernel_matmul calls."""
    n, m, d = 1003, 129, 7
    X, C = points(n, m, d)
    V, W = torch.randn(m, 2, dtype=torch.float64), torch.randn(n, 2, dtype=torch.float64)
    bw = bandwidth(kernel, d)
    out = rfmfast.nystroem_matmul(X, C, V, W, kernel=kernel, bandwidth=bw, backend="reference")
    KV = rfmfast.kernel_matmul(X, C, V, kernel=kernel, bandwidth=bw, backend="reference")
    ref = rfmfast.kernel_matmul(C, X, KV + W, kernel=kernel, bandwidth=bw, backend="reference")
    assert rel_err(out, ref) < FLOAT64_ROUNDING


def _bad(**over):
    X, C = points(20, 5, 3)
    args = dict(
        X=X,
        C=C,
        V=torch.randn(5, 2, dtype=torch.float64),
        W=torch.randn(20, 2, dtype=torch.float64),
    )
    args.update(over)
    kw = {k: args.pop(k) for k in ("kernel", "bandwidth", "M", "backend") if k in args}
    return args, kw


@pytest.mark.parametrize(
    "over, err, match",
    [
        (dict(C=torch.randn(5, 4, dtype=torch.float64)), ValueError, "C has d = 4"),
        (dict(V=torch.randn(6, 2, dtype=torch.float64)), ValueError, "C has 5 rows but V has 6"),
        (dict(W=torch.randn(19, 2, dtype=torch.float64)), ValueError, "X has 20 rows but W has 19"),
        (dict(W=torch.randn(20, 3, dtype=torch.float64)), ValueError, r"W must be \(20, 2\)"),
        (dict(V=torch.randn(5, dtype=torch.float64)), ValueError, r"W must be \(20,\)"),
        (
            dict(W=torch.full((20, 2), float("nan"), dtype=torch.float64)),
            ValueError,
            "W contains NaN",
        ),
        (dict(V=torch.randn(5, 2)), TypeError, "dtype"),
        (dict(W=torch.randn(20, 2)), TypeError, "dtype"),
        (dict(W=[[1.0, 2.0]] * 20), TypeError, "W must be a torch.Tensor or numpy.ndarray"),
        (dict(W=torch.randn(20, 2, 1, dtype=torch.float64)), ValueError, "W must be 1-D or 2-D"),
        (
            dict(C=torch.randn(5, 3, dtype=torch.float64) * 1e200),
            ValueError,
            "C has values up to .* overflow",
        ),
        (dict(kernel="rbf"), ValueError, "rbf"),
        (dict(bandwidth=0.0), ValueError, "bandwidth"),
        (dict(M=torch.eye(4, dtype=torch.float64)), ValueError, "M has shape"),
        (dict(backend="nope"), ValueError, "unknown backend 'nope'"),
    ],
)
def test_bad_input(over, err, match):
    args, kw = _bad(**over)
    with pytest.raises(err, match=match):
        rfmfast.nystroem_matmul(args["X"], args["C"], args["V"], args["W"], **kw)


def test_backend_without_the_op_says_so():
    """An explicitly requested backend that lacks the op says which op."""
    lacking = [
        b
        for b, rec in BACKENDS.items()
        if "nystroem_matmul" not in rec.ops
        and available_backends()[b][0]
        and device(b) == "cpu"
        and b != "triton"
    ]
    if not lacking:
        pytest.skip("every available CPU backend implements nystroem_matmul")
    X, C = points(20, 5, 3)
    with pytest.raises(BackendUnavailable, match="no implementation of nystroem_matmul"):
        rfmfast.nystroem_matmul(X, C, torch.randn(5, 1, dtype=torch.float64), backend=lacking[0])


def _rss_growth_mb(setup: str, run: str) -> float:
    """Peak resident memory growth (MB) of `run` in a fresh interpreter importing the rfmfast
    these tests import, after `setup` and a small warm-up."""
    code = (
        f"import resource, torch, rfmfast\n{setup}\n"
        "base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        f"{run}\n"
        "print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) / 1024)\n"
    )
    root = str(pathlib.Path(rfmfast.__file__).parent.parent)
    env = dict(os.environ, PYTHONPATH=root + os.pathsep + os.environ.get("PYTHONPATH", ""))
    r = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=root
    )
    assert r.returncode == 0, r.stderr
    return float(r.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("backend", [b for b in OP_BACKENDS if device(b) == "cpu"])
def test_memory_never_n_by_m(backend):
    """n = 200,000, m = 500: K(X, C) would take 800 MB in float64; the op holds blocks only."""
    grown = _rss_growth_mb(
        "X = torch.randn(200000, 4, dtype=torch.float64); C = X[:500].clone(); "
        "V = torch.randn(500, 2, dtype=torch.float64); "
        f"rfmfast.nystroem_matmul(X[:5000], C, V, backend={backend!r})",
        f"rfmfast.nystroem_matmul(X, C, V, backend={backend!r})",
    )
    assert grown < 200, f"peak memory grew by {grown:.0f} MB"


@pytest.mark.skipif("cpu" not in OP_BACKENDS, reason="the C++ extension is not built")
@pytest.mark.parametrize("offset", [0.0, 1e4])
@pytest.mark.parametrize("t", [1, 2, 4, 5, 9, 33])
def test_every_cpu_code_path_and_value_width(t, offset):
    """Every instruction-set variant this CPU runs, both value paths (row dot products up to
    SMALL_T columns, the value GEMM past it) and odd widths, on a ragged case whose panel width
    is not a multiple of the register block; float32 and float64; W given; near-duplicate
    pairs, and the data far from the origin."""
    from rfmfast import _C

    n, m, d = 203, 133, 7
    X, C = points(n, m, d)
    C[:5] = X[:5]
    C[5:9] = X[5:9] + 1e-3
    X, C = X + offset, C + offset
    g = torch.Generator().manual_seed(t)
    V = torch.randn(m, t, generator=g, dtype=torch.float64)
    W = torch.randn(n, t, generator=g, dtype=torch.float64)
    M = feature_matrix("full", d)
    base = _C.isa()
    try:
        for isa in _C.available_isas().split(","):
            _C.set_isa(isa)
            for kernel in KERNELS:
                for dtype in DTYPES.values():
                    Xd, Cd, Vd, Wd, Md = (u.to(dtype) for u in (X, C, V, W, M))
                    out = rfmfast.nystroem_matmul(
                        Xd,
                        Cd,
                        Vd,
                        Wd,
                        kernel=kernel,
                        bandwidth=bandwidth(kernel, d),
                        M=Md,
                        backend="cpu",
                    )
                    ref = dense(*(u.double() for u in (Xd, Cd, Vd, Wd)), kernel, Md.double())
                    tol = PRODUCT_FACTOR * TOL["cpu", dtype]
                    assert rel_err(out, ref) < tol, (isa, kernel, dtype)
    finally:
        _C.set_isa(base)
