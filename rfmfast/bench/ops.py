"""Benchmarks of the ops: kernel_matrix, kernel_matmul, kernel_grads, agop (laplace, L = 10).

CPU: rfmfast's C++ backend against torch.cdist + exp, blocked PyTorch (plain, and tuned over
tile shapes), pykeops, Falkon and xrfm 0.4.5, with a floor built from torch's own GEMM and
elementwise rates. CUDA: the Triton backend in each matmul precision against blocked PyTorch,
eager and torch.compile'd, in float32 and TF32, and xrfm's GPU AGOP path.
Errors: relative Frobenius error against the float64 reference backend on the first 64 rows
(queries) of the same inputs.
"""

from __future__ import annotations

import contextlib
import os

import torch

import rfmfast

from . import baselines as B
from .runner import Benchmark, Case, Impl, rel_err

L = 10.0
SUB = 64  # rows / queries of the float64 check
PRECISIONS = ("ieee", "tf32", "bf16")
GROUP = {"ieee": "float32", "tf32": "tf32", "bf16": "tf32"}


def _randn(shape, seed, device, scale=1.0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(*shape, generator=g) * scale).to(device)


@contextlib.contextmanager
def env(name, value):
    """Set an environment variable for the duration (the Triton backend reads its precision
    and AGOP method from the environment at each call)."""
    old = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = old


@contextlib.contextmanager
def tf32(on: bool):
    old = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = on
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32 = old


def triton_impls(call, precisions=PRECISIONS, label="rfmfast triton", **kw):
    """One rfmfast Triton row per precision: call(data) runs with that precision."""

    def make(p):
        def fn(data):
            with env("RFMFAST_TRITON_PRECISION", p):
                return call(data)

        return Impl(f"{label}", "rfmfast", fn, precision=p, group=GROUP[p], **kw)

    return [make(p) for p in precisions]


# ---- kernel_matmul ----------------------------------------------------------------------
def _kmm_setup(n, d, t):
    def setup(ctx):
        X, Z = _randn((n, d), 0, ctx.device), _randn((n, d), 1, ctx.device)
        V = _randn((n, t), 2, ctx.device)
        ref = rfmfast.kernel_matmul(
            X[:SUB].double(), Z.double(), V.double(), bandwidth=L, backend="reference"
        )
        return {"X": X, "Z": Z, "V": V, "ref": ref}

    return setup


def _kmm_err(out, data):
    return rel_err(out[:SUB], data["ref"])


def _tuned(data):
    if "tiles" not in data:
        data["tiles"] = B.best_tiles(data["X"], data["Z"], data["V"], L)
    return B.matmul_blocked(data["X"], data["Z"], data["V"], L, *data["tiles"])


def _floor(data, ctx):
    g, e = B.floor_matmul(data["X"], data["Z"], data["V"], L, *data.get("tiles", (256, 4096)))
    return {
        "seconds": g + e,
        "notes": f"GEMM {g:.3g} s + sqrt/exp {e:.3g} s on "
        f"{data.get('tiles', (256, 4096))[0]}x{data.get('tiles', (256, 4096))[1]} tiles",
    }


def _keops(data):
    from pykeops.torch import LazyTensor

    x = LazyTensor(data["X"][:, None, :])
    z = LazyTensor(data["Z"][None, :, :])
    K = (-(((x - z) ** 2).sum(-1).sqrt()) / L).exp()
    return K @ data["V"]


def _falkon_mmv(data):
    if "falkon" not in data:
        data["falkon"] = B.falkon_kernel(L, data["X"].device)
    return data["falkon"].mmv(data["X"], data["Z"], data["V"])


def kernel_matmul_cases(size, ctx):
    if ctx.gpu:
        n, d, t = {"tiny": (128, 32, 4), "quick": (50_000, 64, 8), "full": (200_000, 64, 8)}[size]
        rows = B.gpu_rows(n, n)
        while n % rows:  # equal blocks: one torch.compile graph
            rows -= 1
        comp = {}

        def compiled(data):
            if "run" not in comp:
                comp["run"] = B.compiled_matmul(L)
            return comp["run"](data["X"], data["Z"], data["V"], rows)

        impls = []
        for on, p in ((False, "float32"), (True, "tf32")):
            impls.append(
                Impl(
                    "blocked torch eager",
                    "baseline",
                    lambda data, on=on: _with_tf32(
                        on, B.matmul_blocked, data["X"], data["Z"], data["V"], L, rows, n
                    ),
                    precision=p,
                    group=p,
                    notes=f"{rows}-row blocks",
                )
            )
            impls.append(
                Impl(
                    "blocked torch torch.compile",
                    "baseline",
                    lambda data, on=on: _with_tf32(on, compiled, data),
                    precision=p,
                    group=p,
                    notes=f"{rows}-row blocks",
                    needs=lambda: (not ctx.dry_run, "dry run: torch.compile is not run"),
                )
            )
        impls += triton_impls(
            lambda data: rfmfast.kernel_matmul(
                data["X"], data["Z"], data["V"], bandwidth=L, backend="triton"
            )
        )
        return [
            Case(
                f"laplace n=m={n} d={d} t={t}",
                dict(kernel="laplace", n=n, m=n, d=d, t=t, bandwidth=L, dtype="float32"),
                _kmm_setup(n, d, t),
                impls,
                work=float(n) * n,
                rate_unit="kernel entries/s (n*m/s)",
                error=_kmm_err,
            )
        ]
    n, d = {"tiny": (200, 16), "quick": (4000, 50), "full": (20_000, 50)}[size]
    cases = []
    for t in (1,) if size == "tiny" else (1, 16):
        impls = [
            Impl(
                "plain blocked torch (cdist)",
                "baseline",
                lambda data: B.matmul_plain(data["X"], data["Z"], data["V"], L),
            ),
            Impl(
                "tuned blocked torch",
                "baseline",
                _tuned,
                notes=lambda data: (
                    f"tiles {data['tiles'][0]}x{data['tiles'][1]}, the fastest "
                    f"of {len(B.CPU_TILES)}"
                    if "tiles" in data
                    else ""
                ),
            ),
            Impl(
                "pykeops",
                "baseline",
                _keops,
                needs=B.needs_pykeops,
                notes="LazyTensor reduction; compiled on first use (the warm-up)",
            ),
            Impl("falkon LaplacianKernel.mmv", "baseline", _falkon_mmv, needs=B.needs_falkon),
            Impl("floor: tiled GEMM + sqrt/exp", "floor", measure=_floor),
            Impl(
                "rfmfast cpu",
                "rfmfast",
                lambda data: rfmfast.kernel_matmul(
                    data["X"], data["Z"], data["V"], bandwidth=L, backend="cpu"
                ),
            ),
        ]
        cases.append(
            Case(
                f"laplace n=m={n} d={d} t={t}",
                dict(kernel="laplace", n=n, m=n, d=d, t=t, bandwidth=L, dtype="float32"),
                _kmm_setup(n, d, t),
                impls,
                work=float(n) * n,
                rate_unit="kernel entries/s (n*m/s)",
                error=_kmm_err,
            )
        )
    return cases


def _with_tf32(on, fn, *args):
    with tf32(on):
        return fn(*args)


# ---- kernel_matrix ----------------------------------------------------------------------
def _km_setup(n, d, sym):
    def setup(ctx):
        X = _randn((n, d), 0, ctx.device)
        Z = X.clone() if sym else _randn((n, d), 1, ctx.device)
        ref = rfmfast.kernel_matrix(X[:SUB].double(), Z.double(), bandwidth=L, backend="reference")
        return {"X": X, "Z": Z, "ref": ref}

    return setup


def _km_err(out, data):
    return rel_err(out[:SUB], data["ref"])


def _falkon_km(data):
    if "falkon" not in data:
        data["falkon"] = B.falkon_kernel(L, data["X"].device)
    return data["falkon"](data["X"], data["Z"])


def kernel_matrix_cases(size, ctx):
    if ctx.gpu:
        shapes = {"tiny": [(128, 32)], "quick": [(20_000, 64)], "full": [(50_000, 64)]}[size]
    else:
        shapes = {
            "tiny": [(200, 16)],
            "quick": [(3000, 50), (1500, 300)],
            "full": [(20_000, 50), (8000, 300)],
        }[size]
    cases = []
    for n, d in shapes:
        for sym in (False, True):
            p = dict(kernel="laplace", n=n, m=n, d=d, bandwidth=L, dtype="float32", symmetric=sym)
            name = f"laplace n=m={n} d={d}" + (" sym" if sym else "")
            if ctx.gpu:
                impls = [
                    Impl(
                        "torch.cdist + exp_",
                        "baseline",
                        lambda data, on=on: _with_tf32(on, B.cdist_exp, data["X"], data["Z"], L),
                        precision=pp,
                        group=pp,
                    )
                    for on, pp in ((False, "float32"), (True, "tf32"))
                ]
                impls += triton_impls(
                    lambda data, sym=sym: rfmfast.kernel_matrix(
                        data["X"], None if sym else data["Z"], bandwidth=L, backend="triton"
                    ),
                    precisions=("ieee", "tf32"),
                )
            elif sym:
                impls = [
                    Impl(
                        "torch.cdist(X, X) + exp_",
                        "baseline",
                        lambda data: B.cdist_exp(data["X"], data["X"], L),
                    ),
                    Impl(
                        "rfmfast cpu (Z=None, symmetric)",
                        "rfmfast",
                        lambda data: rfmfast.kernel_matrix(data["X"], bandwidth=L, backend="cpu"),
                    ),
                ]
            else:
                impls = [
                    Impl(
                        "torch.cdist + exp_ (Z given)",
                        "baseline",
                        lambda data: B.cdist_exp(data["X"], data["Z"], L),
                    ),
                    Impl("falkon LaplacianKernel", "baseline", _falkon_km, needs=B.needs_falkon),
                    Impl(
                        "rfmfast cpu (Z given)",
                        "rfmfast",
                        lambda data: rfmfast.kernel_matrix(
                            data["X"], data["Z"], bandwidth=L, backend="cpu"
                        ),
                    ),
                ]
            cases.append(
                Case(
                    name,
                    p,
                    _km_setup(n, d, sym),
                    impls,
                    work=float(n) * n,
                    rate_unit="kernel entries/s (n*m/s)",
                    error=_km_err,
                )
            )
    return cases


# ---- kernel_grads -----------------------------------------------------------------------
def _kg_setup(q, n, d, c):
    def setup(ctx):
        X = _randn((n, d), 0, ctx.device)
        alpha = _randn((n, c), 1, ctx.device)
        Q = X[:q].clone()  # queries among the centers, as in RFM
        ref = rfmfast.kernel_grads(
            Q[:SUB].double(), X.double(), alpha.double(), bandwidth=L, backend="reference"
        )
        return {"X": X, "Q": Q, "alpha": alpha, "ref": ref}

    return setup


def _kg_err(out, data):
    return rel_err(out[:SUB], data["ref"])


def kernel_grads_cases(size, ctx):
    if ctx.gpu:
        q, n, d, c = {
            "tiny": (32, 128, 16, 3),
            "quick": (5000, 50_000, 100, 10),
            "full": (20_000, 200_000, 100, 10),
        }[size]
    else:
        q, n, d, c = {
            "tiny": (64, 300, 16, 3),
            "quick": (500, 4000, 50, 10),
            "full": (2000, 20_000, 50, 10),
        }[size]
    impls = [
        Impl(
            "xrfm 0.4.5 LaplaceKernel.get_function_grads",
            "baseline",
            lambda data: B.xrfm_grads(data["X"], data["Q"], data["alpha"], L),
            needs=B.needs_xrfm,
            notes="query batches of 10,000",
        ),
        Impl(
            "blocked torch (K/distance GEMMs)",
            "baseline",
            lambda data: B.grads_blocked(data["Q"], data["X"], data["alpha"], L),
        ),
    ]
    if ctx.gpu:
        impls += triton_impls(
            lambda data: rfmfast.kernel_grads(
                data["Q"], data["X"], data["alpha"], bandwidth=L, backend="triton"
            ),
            precisions=("ieee", "tf32"),
        )
        for i in impls[:2]:
            i.precision = i.group = "float32"
    else:
        impls.append(
            Impl(
                "rfmfast cpu",
                "rfmfast",
                lambda data: rfmfast.kernel_grads(
                    data["Q"], data["X"], data["alpha"], bandwidth=L, backend="cpu"
                ),
            )
        )
    return [
        Case(
            f"laplace q={q} n={n} d={d} c={c}",
            dict(kernel="laplace", q=q, n=n, d=d, c=c, bandwidth=L, dtype="float32"),
            _kg_setup(q, n, d, c),
            impls,
            work=2.0 * q * n * (c * d + c) / 1e9,
            rate_unit="GFLOP/s (2 q n (c d + c) / s)",
            error=_kg_err,
        )
    ]


# ---- agop -------------------------------------------------------------------------------
def _agop_setup(q, n, d, c, seed=0):
    def setup(ctx):
        X = _randn((n, d), seed, ctx.device, scale=3 / d**0.5)
        alpha = _randn((n, c), seed + 1, ctx.device)
        Q = (
            X[
                torch.randperm(n, generator=torch.Generator().manual_seed(seed + 2))[:q].to(
                    ctx.device
                )
            ]
            if q < n
            else X
        )
        A = torch.randn(d, d, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
        M64 = (A @ A.T / d).to(ctx.device)
        M = M64.float()
        ref = rfmfast.agop(
            Q[:SUB].double(), X.double(), alpha.double(), M=M64, bandwidth=L, backend="reference"
        )
        return {"X": X, "Q": Q, "alpha": alpha, "M": M, "sqrtM": B.sqrt_psd(M), "ref": ref}

    return setup


def _sub_err(f):
    """Error of an AGOP implementation f(data, Q) on the first queries (the AGOP of a subset)."""
    return lambda out, data: rel_err(f(data, data["Q"][:SUB]), data["ref"])


def _agop_floor(q, n, d, c):
    def measure(data, ctx):
        rate = B.gemm_rate(n, c * d + c, device=ctx.device)
        dist = B.gemm_rate(n, d, device=ctx.device)
        s = 2.0 * q * n * (c * d + c) / rate + 2.0 * q * n * d / dist
        return {
            "seconds": s,
            "notes": f"GEMM {rate / 1e9:.0f} GFLOP/s (value shape), "
            f"{dist / 1e9:.0f} (distance shape)",
        }

    return measure


def agop_cases(size, ctx):
    if ctx.gpu:
        q, n, d, c = {
            "tiny": (32, 128, 16, 3),
            "quick": (5000, 50_000, 100, 10),
            "full": (20_000, 200_000, 100, 10),
        }[size]
        batch = {}

        def b(data):
            if "b" not in batch:
                batch["b"] = B.xrfm_gpu_batch(q, ctx.device)
            return batch["b"]

        def xr(data, Qs):
            return B.xrfm_agop(data["X"], Qs, data["alpha"], data["sqrtM"], L, b(data))

        def re(data, Qs):
            return B.xrfm_agop_reimpl(data["X"], Qs, data["alpha"], data["sqrtM"], L, b(data))

        impls = [
            Impl(
                "xrfm 0.4.5 LaplaceKernel.get_agop",
                "baseline",
                lambda data: xr(data, data["Q"]),
                needs=B.needs_xrfm,
                error=_sub_err(xr),
                precision="float32",
                notes=lambda data: f"sample batch {b(data)} (xRFM's rule)",
            ),
            Impl(
                "xrfm-0.4.5 get_agop path re-implemented in PyTorch",
                "baseline",
                lambda data: re(data, data["Q"]),
                error=_sub_err(re),
                precision="float32",
            ),
        ]
        for method in ("auto", "fused", "two_stage"):
            for p in PRECISIONS:

                def tri(data, Qs, method=method, p=p):
                    with env("RFMFAST_TRITON_AGOP", method), env("RFMFAST_TRITON_PRECISION", p):
                        return rfmfast.agop(
                            Qs, data["X"], data["alpha"], M=data["M"], bandwidth=L, backend="triton"
                        )

                impls.append(
                    Impl(
                        f"rfmfast triton ({method})",
                        "rfmfast",
                        lambda data, tri=tri: tri(data, data["Q"]),
                        error=_sub_err(tri),
                        precision=p,
                    )
                )
        return [
            Case(
                f"laplace n={n} q={q} d={d} c={c} full M",
                dict(kernel="laplace", q=q, n=n, d=d, c=c, M="full", bandwidth=L, dtype="float32"),
                _agop_setup(q, n, d, c),
                impls,
                work=float(q) * n,
                rate_unit="(query, center) pairs/s (q*n/s)",
            )
        ]
    shapes = {
        "tiny": [(150, 16, 3, True)],
        "quick": [(2000, 100, 10, False), (500, 100, 10, True)],
        "full": [(20_000, 100, 10, False), (2000, 100, 10, True)],
    }[size]
    cases = []
    for n, d, c, with_ref in shapes:
        q = n

        def xr(data, Qs):
            return B.xrfm_agop(data["X"], Qs, data["alpha"], data["sqrtM"], L)

        def ours(data, Qs, backend="cpu"):
            return rfmfast.agop(
                Qs, data["X"], data["alpha"], M=data["M"], bandwidth=L, backend=backend
            )

        impls = [
            Impl(
                "xrfm 0.4.5 LaplaceKernel.get_agop",
                "baseline",
                lambda data: xr(data, data["Q"]),
                needs=B.needs_xrfm,
                error=_sub_err(xr),
                once=size == "full" and n >= 10_000,
                notes="query batches of 10,000 as its fit_M",
            )
        ]
        if with_ref:
            impls.append(
                Impl(
                    "rfmfast reference (plain torch)",
                    "reference",
                    lambda data: ours(data, data["Q"], "reference"),
                    once=True,
                    error=_sub_err(lambda data, Qs: ours(data, Qs, "reference")),
                )
            )
        impls += [
            Impl(
                "floor: value+distance GEMM at torch's rate",
                "floor",
                measure=_agop_floor(q, n, d, c),
            ),
            Impl(
                "rfmfast cpu", "rfmfast", lambda data: ours(data, data["Q"]), error=_sub_err(ours)
            ),
        ]
        cases.append(
            Case(
                f"laplace q=n={n} d={d} c={c} full M",
                dict(kernel="laplace", q=q, n=n, d=d, c=c, M="full", bandwidth=L, dtype="float32"),
                _agop_setup(q, n, d, c),
                impls,
                work=2.0 * q * n * (c * d + c) / 1e9,
                rate_unit="GFLOP/s (2 q n (c d + c) / s)",
            )
        )
    return cases


BENCHMARKS = [
    Benchmark(
        "kernel_matrix",
        "kernel_matrix: K(X, Z), laplace",
        "kernel entries/s = n m / seconds",
        kernel_matrix_cases,
    ),
    Benchmark(
        "kernel_matmul",
        "kernel_matmul: K(X, Z) @ V, laplace, K never stored",
        "kernel entries/s = n m / seconds",
        kernel_matmul_cases,
    ),
    Benchmark(
        "kernel_grads",
        "kernel_grads: gradients of K(., X) alpha at the queries, laplace",
        "GFLOP/s = 2 q n (c d + c) / seconds (the value GEMM's flops)",
        kernel_grads_cases,
    ),
    Benchmark(
        "agop",
        "agop: average gradient outer product, laplace, full M",
        "CPU: GFLOP/s = 2 q n (c d + c) / seconds; CUDA: (query, center) pairs/s = q n / seconds",
        agop_cases,
    ),
]
