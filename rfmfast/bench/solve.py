"""Benchmark of the kernel ridge solve (K(X, X) + reg I) alpha = y, laplace, L = 10, reg 1e-3.

Baselines build K with torch.cdist + exp and solve by LU (torch.linalg.solve, as xrfm does) or
by LAPACK's / cuSOLVER's Cholesky; Falkon (Nystroem KRR, preconditioned CG) is a peer that
solves an approximation. rfmfast: kernel_solve with solver="cholesky" and solver="cg".
Data: the low-rank target of the RFM paper, X ~ N(0, 0.25 I), y = x0 x1 1[x5 > 0], float32.
Error: relative error of the test predictions against the exact float64 solution (computed
where n <= 8000); metric: test MSE.
"""

from __future__ import annotations

import torch

import rfmfast

from . import baselines as B
from .runner import Benchmark, Case, Impl, rel_err

L, REG = 10.0, 1e-3


def low_rank(n, d, seed, device="cpu"):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, d, generator=g) * 0.5
    return X.to(device), (X[:, 0] * X[:, 1] * (X[:, 5] > 0)).to(device)


def _setup(n, d, n_test):
    def setup(ctx):
        X, y = low_rank(n, d, seed=n, device=ctx.device)
        Xt, yt = low_rank(n_test, d, seed=n + 1, device=ctx.device)
        data = {"X": X, "y": y[:, None], "Xt": Xt, "yt": yt}
        if n <= 8000:
            K = rfmfast.kernel_matrix(X.double(), bandwidth=L)
            K.diagonal().add_(REG)
            a = torch.linalg.solve(K, data["y"].double())
            del K
            data["truth"] = rfmfast.kernel_matmul(Xt.double(), X.double(), a, bandwidth=L)
        return data

    return setup


def _predict(out, data):
    kind, v = out
    if kind == "model":
        return v.predict(data["Xt"]).reshape(-1, 1)
    return rfmfast.kernel_matmul(data["Xt"], data["X"], v, bandwidth=L)


def _err(out, data):
    if "truth" not in data:
        raise ValueError("no float64 solution at this size")
    return rel_err(_predict(out, data), data["truth"])


def _mse(out, data):
    return "test_mse", float(
        ((_predict(out, data)[:, 0].double() - data["yt"].double()) ** 2).mean()
    )


def _ours(solver, rank):
    def fn(data):
        return (
            "alpha",
            rfmfast.kernel_solve(
                data["X"], data["y"], bandwidth=L, reg=REG, solver=solver, rank=rank
            ),
        )

    return fn


def cases(size, ctx):
    if ctx.gpu:
        sizes = {"tiny": [120], "quick": [20_000], "full": [50_000]}[size]
    else:
        sizes = {"tiny": [200], "quick": [2000], "full": [8000, 20_000]}[size]
    d = 16 if size == "tiny" else 50
    n_test = 100 if size == "tiny" else 2000
    out = []
    for n in sizes:
        rank = min(1000, n // 4)
        centers = min(n // 2, 2000 if size == "full" else 1000)
        impls = [
            Impl(
                "torch.linalg.solve (LU), as xrfm",
                "baseline",
                lambda data: ("alpha", B.krr_lu(data["X"], data["y"], L, REG)),
                notes="K by torch.cdist + exp_",
            ),
            Impl(
                "torch.linalg.cholesky_ex + cholesky_solve",
                "baseline",
                lambda data: ("alpha", B.krr_cholesky(data["X"], data["y"], L, REG)),
                notes="K by torch.cdist + exp_; LAPACK (cuSOLVER on CUDA)",
            ),
        ]
        if not ctx.gpu:
            impls.append(
                Impl(
                    f"falkon (Nystroem, {centers} centers)",
                    "peer",
                    lambda data, m=centers: (
                        "model",
                        B.falkon_fit(data["X"], data["y"], L, REG, m),
                    ),
                    needs=B.needs_falkon,
                    notes="an approximation: 20 CG iterations",
                )
            )
        impls += [
            Impl("rfmfast kernel_solve cholesky", "rfmfast", _ours("cholesky", rank)),
            Impl(
                "rfmfast kernel_solve cg",
                "rfmfast",
                _ours("cg", rank),
                notes=f"Nystroem-preconditioned CG, rank {rank}",
            ),
        ]
        for i in impls:
            i.metric = _mse
        out.append(
            Case(
                f"laplace n={n} d={d} reg=1e-3",
                dict(
                    kernel="laplace", n=n, d=d, reg=REG, bandwidth=L, dtype="float32", n_test=n_test
                ),
                _setup(n, d, n_test),
                impls,
                work=n**3 / 3 / 1e9,
                rate_unit="GFLOP/s (n^3/3 / s: a Cholesky's flops)",
                error=_err,
            )
        )
    return out


BENCHMARKS = [
    Benchmark(
        "solve",
        "kernel ridge solve (K + reg I) alpha = y, laplace",
        "GFLOP/s = n^3 / 3 / seconds (a Cholesky's flops, for every method)",
        cases,
    )
]
