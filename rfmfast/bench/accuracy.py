"""Accuracy benchmarks: every op on data far from the origin and on near-duplicate points
(`accuracy`), and the Triton backend's error per matmul precision (`precision`, CUDA).

accuracy: the inputs are X + c, Z + c (X, Z standard normal, n = 300, m = 257, d = 50), c in
{0, 1e2, 1e3, 1e4}, and "near-dup" Z = X + 4e-4 noise / sqrt(d), rounded once to the dtype; the
truth is the float64 reference on those same rounded inputs. Baseline: the plain-PyTorch
reference backend in the same dtype; rfmfast: the cpu backend (triton on CUDA). The rule:
rel_err_vs_baseline <= 2. metric: the largest absolute error (kernel_matrix).
precision: n = m = 256, d = 64, t = 8, q = 64, c = 3, bandwidth 10; each op's error against
float64 per precision next to plain PyTorch's on inputs rounded to that precision ("ieee": the
reference in float32; for kernel_matmul K and V are rounded too, as a PyTorch matmul in that
precision does).
"""

from __future__ import annotations

import torch

import rfmfast

from .ops import env
from .runner import Benchmark, Case, Impl, rel_err

OPS = ("kernel_matrix", "kernel_matmul", "kernel_grads", "agop")
KERNELS = ("laplace", "gaussian", "l1_laplace")
#: bandwidth of each kernel in the accuracy cases
BANDWIDTH = {"laplace": 10.0, "gaussian": 5.0, "l1_laplace": 10.0}
#: the precision table's kernels
PRECISION_KERNELS = ("laplace", "gaussian")


def _inputs(dtype, n=300, m=257, d=50, seed=0):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, d, generator=g, dtype=torch.float64)
    Z = torch.randn(m, d, generator=g, dtype=torch.float64)
    out = {
        f"offset {off:g}": ((X + off).to(dtype), (Z + off).to(dtype))
        for off in (0.0, 1e2, 1e3, 1e4)
    }
    Zn = X[:m] + 4e-4 * torch.randn(m, d, generator=g, dtype=torch.float64) / d**0.5
    out["near-dup 4e-4"] = (X.to(dtype), Zn.to(dtype))
    return out


def _call(op, X, Z, backend, kernel):
    g = torch.Generator().manual_seed(1)
    V = torch.randn(Z.shape[0], 3, generator=g, dtype=torch.float64).to(X.dtype).to(X.device)
    kw = dict(kernel=kernel, bandwidth=BANDWIDTH[kernel], backend=backend)
    if op == "kernel_matrix":
        return rfmfast.kernel_matrix(X, Z, **kw)
    if op == "kernel_matmul":
        return rfmfast.kernel_matmul(X, Z, V, **kw)
    if op == "kernel_grads":
        return rfmfast.kernel_grads(X, Z, V, **kw)
    return rfmfast.agop(X, Z, V, **kw)


def accuracy_cases(size, ctx):
    ours = "triton" if ctx.gpu else "cpu"
    dtypes = (torch.float32,) if size != "full" else (torch.float32, torch.float64)
    kernels = ("laplace",) if size == "tiny" else KERNELS
    ops = ("kernel_matrix", "agop") if size == "tiny" else OPS
    cases = []
    for dtype in dtypes:
        dt = str(dtype).split(".")[1]
        inputs = _inputs(dtype)
        names = {
            "tiny": ("offset 0", "offset 10000"),
            "quick": ("offset 0", "offset 10000", "near-dup 4e-4"),
        }.get(size, tuple(inputs))
        for name in names:
            for kernel in kernels:
                for op in ops:

                    def setup(ctx, name=name, op=op, kernel=kernel, inputs=inputs):
                        X, Z = (t.to(ctx.device) for t in inputs[name])
                        truth = _call(op, X.double(), Z.double(), "reference", kernel)
                        return {"X": X, "Z": Z, "truth": truth}

                    def run(backend, op=op, kernel=kernel):
                        return lambda data: _call(op, data["X"], data["Z"], backend, kernel)

                    def maxabs(out, data, op=op):
                        if op != "kernel_matrix":
                            return "", None
                        return "max_abs_err", float((out.double() - data["truth"]).abs().max())

                    err = lambda out, data: rel_err(out, data["truth"])  # noqa: E731
                    cases.append(
                        Case(
                            f"{op} {kernel} {dt} {name}",
                            dict(op=op, kernel=kernel, dtype=dt, inputs=name, n=300, m=257, d=50),
                            setup,
                            [
                                Impl(
                                    "reference backend (plain PyTorch)",
                                    "baseline",
                                    run("reference"),
                                    metric=maxabs,
                                    once=True,
                                ),
                                Impl(
                                    f"rfmfast {ours}",
                                    "rfmfast",
                                    run(ours),
                                    metric=maxabs,
                                    once=True,
                                ),
                            ],
                            error=err,
                        )
                    )
    return cases


# ---- precision (Triton) -----------------------------------------------------------------
def round_to(x, precision):
    """x rounded to tf32 (10-bit mantissa, to nearest even) or bfloat16, as float32."""
    x = x.float().contiguous()
    if precision == "bf16":
        return x.to(torch.bfloat16).float()
    if precision == "tf32":
        i = x.view(torch.int32)
        i = (i + 0x0FFF + ((i >> 13) & 1)) & ~0x1FFF
        return i.view(torch.float32)
    return x


def precision_cases(size, ctx):
    n, d, t, q, c, L = 256, 64, 8, 64, 3, 10.0
    precisions = ("ieee", "tf32", "bf16")

    def setup(ctx):
        g = torch.Generator().manual_seed(6)
        X = torch.randn(n, d, generator=g).to(ctx.device)
        Z = torch.randn(n, d, generator=g).to(ctx.device)
        V = torch.randn(n, t, generator=g).to(ctx.device)
        alpha = torch.randn(n, c, generator=g).to(ctx.device)
        return {"X": X, "Z": Z, "V": V, "alpha": alpha, "Q": X[:q].clone()}

    def rnd(u, p):
        return u if p == "ieee" else round_to(u, p).double()

    def plain(op, kernel, p):
        def fn(data):
            X, Z, V, Q, a = (data[k] for k in ("X", "Z", "V", "Q", "alpha"))
            if op == "kernel_matrix":
                return rfmfast.kernel_matrix(
                    rnd(X, p), rnd(Z, p), kernel=kernel, bandwidth=L, backend="reference"
                )
            if op == "kernel_matmul":
                K = rfmfast.kernel_matrix(
                    rnd(X, p), rnd(Z, p), kernel=kernel, bandwidth=L, backend="reference"
                )
                if p != "ieee":
                    K = rnd(K.float(), p)
                return K @ rnd(V, p)
            return rfmfast.agop(
                rnd(Q, p), rnd(X, p), rnd(a, p), kernel=kernel, bandwidth=L, backend="reference"
            )

        return fn

    def ours(op, kernel, p):
        def fn(data):
            X, Z, V, Q, a = (data[k] for k in ("X", "Z", "V", "Q", "alpha"))
            with env("RFMFAST_TRITON_PRECISION", p):
                if op == "kernel_matrix":
                    return rfmfast.kernel_matrix(X, Z, kernel=kernel, bandwidth=L, backend="triton")
                if op == "kernel_matmul":
                    return rfmfast.kernel_matmul(
                        X, Z, V, kernel=kernel, bandwidth=L, backend="triton"
                    )
                return rfmfast.agop(Q, X, a, kernel=kernel, bandwidth=L, backend="triton")

        return fn

    def truth(op, kernel, data):
        X, Z, V, Q, a = (data[k].double() for k in ("X", "Z", "V", "Q", "alpha"))
        if op == "kernel_matrix":
            return rfmfast.kernel_matrix(X, Z, kernel=kernel, bandwidth=L, backend="reference")
        if op == "kernel_matmul":
            return rfmfast.kernel_matmul(X, Z, V, kernel=kernel, bandwidth=L, backend="reference")
        return rfmfast.agop(Q, X, a, kernel=kernel, bandwidth=L, backend="reference")

    cases = []
    for kernel in PRECISION_KERNELS:
        for op in ("kernel_matrix", "kernel_matmul", "agop"):

            def setup_op(ctx, op=op, kernel=kernel):
                data = setup(ctx)
                data["truth"] = truth(op, kernel, data)
                return data

            impls = []
            for p in precisions:
                impls.append(
                    Impl(
                        f"plain PyTorch in {p}",
                        "baseline",
                        plain(op, kernel, p),
                        precision=p,
                        group=p,
                        once=True,
                    )
                )
                impls.append(
                    Impl(
                        "rfmfast triton",
                        "rfmfast",
                        ours(op, kernel, p),
                        precision=p,
                        group=p,
                        once=True,
                    )
                )
            cases.append(
                Case(
                    f"{op} {kernel}",
                    dict(op=op, kernel=kernel, n=n, d=d, t=t, q=q, c=c, bandwidth=L),
                    setup_op,
                    impls,
                    error=lambda out, data: rel_err(out, data["truth"]),
                )
            )
    return cases


BENCHMARKS = [
    Benchmark(
        "accuracy",
        "accuracy far from the origin and on near-duplicates: every op, "
        "against the float64 reference on the same inputs",
        "none (errors: relative Frobenius against float64)",
        accuracy_cases,
        chart="rel_err",
        max_repeats=1,
    ),
    Benchmark(
        "precision",
        "Triton's error per matmul precision, next to plain PyTorch's in that precision",
        "none (errors: relative Frobenius against float64)",
        precision_cases,
        devices=("cuda",),
        chart="rel_err",
        max_repeats=1,
        device_note="the matmul precisions are those of the Triton backend (CUDA; "
        "--dry-run runs it in Triton's interpreter)",
    ),
]
