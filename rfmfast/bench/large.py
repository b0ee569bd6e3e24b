"""Benchmarks of the large solves: the Nystroem product, Nystroem kernel ridge, Nystroem RFM.

nystroem_matmul: K(C, X) @ (K(X, C) @ V + W), laplace L = 10, float32, against a blocked
PyTorch (torch.cdist + exp_ on row blocks, both products by GEMM: one kernel evaluation per
pair, as the fused op), the same product by two rfmfast.kernel_matmul passes, and Falkon's own
fused dmmv (a peer). Rate: kernel entries per second, n m / s.

krr: KernelRidge(centers=m) against Falkon 0.9.0 (its CPU build) with the same number of
centers, penalty (reg / n) and CG iterations (20), on the low-rank target of the RFM paper
(X ~ N(0, 0.25 I) in d = 20, y = x0 x1 1[x5 > 0]); metric: test MSE. Rate: kernel entries per
second over the CG products, n m * 20 / s.

nystroem_rfm: RFMRegressor(centers=m) against KernelRidge(centers=m) (the same Nystroem model
with M = I), same target and reg; notes: the test MSE of each solve. (No peer has a Nystroem
RFM.)
"""

from __future__ import annotations

import numpy as np
import torch

import rfmfast

from . import baselines as B
from .runner import Benchmark, Case, Impl, rel_err

L = 10.0
ITERS = 20  # CG iterations of both KRR solvers
TRUTH_MAX = 2e8  # n m up to which the float64 product is computed for the error column


def low_rank(n, d, seed):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, d, generator=g) * 0.5
    return X, (X[:, 0] * X[:, 1] * (X[:, 5] > 0))


# ---- nystroem_matmul -------------------------------------------------------------------------
def blocked_torch(X, C, V, W, rows=2048):
    """K(C, X) (K(X, C) V + W) in row blocks: K_b = exp(-cdist(X_b, C) / L), two GEMMs each."""
    out = torch.zeros(C.shape[0], V.shape[1], dtype=X.dtype)
    for i in range(0, X.shape[0], rows):
        Kb = torch.cdist(X[i : i + rows], C).div_(-L).exp_()
        U = Kb @ V
        U += W[i : i + rows]
        out.addmm_(Kb.T, U)
    return out


def falkon_dmmv(X, C, V, W):
    """Falkon's fused K(X, C)^T (K(X, C) V + W) (its CPU path, no KeOps)."""
    return B.falkon_kernel(L, X.device).dmmv(X, C, V, W)


def _nys_setup(n, m, d, t):
    def setup(ctx):
        X, _ = low_rank(n, d, seed=n)
        g = torch.Generator().manual_seed(1)
        C = X[torch.randperm(n, generator=g)[:m]].clone()
        data = {
            "X": X.to(ctx.device),
            "C": C.to(ctx.device),
            "V": torch.randn(m, t, generator=g).to(ctx.device),
            "W": torch.randn(n, t, generator=g).to(ctx.device),
        }
        if n * m <= TRUTH_MAX:  # the float64 truth (plain PyTorch, exact distances)
            data["truth"] = rfmfast.nystroem_matmul(
                *(data[k].double().cpu() for k in "XCVW"), bandwidth=L, backend="reference"
            )
        return data

    return setup


def _nys_err(out, data):
    if "truth" not in data:
        raise ValueError("no float64 truth at this size (see the quick rows)")
    return rel_err(out, data["truth"])


def nystroem_cases(size, ctx):
    shapes = {
        "tiny": [(300, 40, 6, 1)],
        "quick": [(20_000, 1000, 20, 1)],
        "full": [(200_000, 5000, 20, 1), (200_000, 5000, 20, 10)],
    }[size]
    if ctx.gpu:
        shapes = {"tiny": [(300, 40, 6, 1)], "quick": [(1_000_000, 10_000, 28, 1)]}.get(
            size, [(10_000_000, 100_000, 28, 1)]
        )
    out = []
    for n, m, d, t in shapes:
        impls = []
        if not ctx.gpu:
            impls.append(
                Impl(
                    "blocked PyTorch (cdist + exp_, two GEMMs per block)",
                    "baseline",
                    lambda data: blocked_torch(data["X"], data["C"], data["V"], data["W"]),
                    notes="2048 rows per block",
                )
            )
            impls.append(
                Impl(
                    "falkon 0.9.0 dmmv",
                    "peer",
                    lambda data: falkon_dmmv(data["X"], data["C"], data["V"], data["W"]),
                    needs=B.needs_falkon,
                )
            )
        impls += [
            Impl(
                "rfmfast two kernel_matmul passes",
                "rfmfast",
                lambda data: rfmfast.kernel_matmul(
                    data["C"],
                    data["X"],
                    rfmfast.kernel_matmul(data["X"], data["C"], data["V"], bandwidth=L) + data["W"],
                    bandwidth=L,
                ),
                notes="two kernel evaluations per pair",
            ),
            Impl(
                "rfmfast nystroem_matmul",
                "rfmfast",
                lambda data: rfmfast.nystroem_matmul(
                    data["X"], data["C"], data["V"], data["W"], bandwidth=L
                ),
                notes="fused: one kernel evaluation per pair",
            ),
        ]
        out.append(
            Case(
                f"laplace n={n} m={m} d={d} t={t}",
                dict(kernel="laplace", n=n, m=m, d=d, t=t, bandwidth=L, dtype="float32"),
                _nys_setup(n, m, d, t),
                impls,
                work=n * m / 1e9,
                rate_unit="G kernel entries/s (n m / s)",
                error=_nys_err,
            )
        )
    return out


# ---- krr -------------------------------------------------------------------------------------
def _krr_setup(n, d, n_test):
    def setup(ctx):
        X, y = low_rank(n, d, seed=n)
        Xt, yt = low_rank(n_test, d, seed=n + 1)
        return {"X": X, "y": y[:, None], "Xt": Xt, "yt": yt}

    return setup


def _mse(pred, data):
    p = torch.as_tensor(np.asarray(pred)).reshape(-1).double()
    return "test_mse", float(((p - data["yt"].double()) ** 2).mean())


def krr_cases(size, ctx):
    shapes = {"tiny": [(400, 6, 50)], "quick": [(20_000, 20, 1000)], "full": [(200_000, 20, 5000)]}
    out = []
    for n, d, m in shapes[size]:
        n_test = 100 if size == "tiny" else 20_000
        reg = 1e-6 * n  # Falkon's penalty 1e-6

        def ours(data, m=m, reg=reg):
            est = rfmfast.KernelRidge(
                kernel="laplace", bandwidth=L, reg=reg, centers=m, max_iter=ITERS, tol=1e-12
            )
            import warnings

            with warnings.catch_warnings():  # max_iter is the point: same iterations as Falkon
                warnings.simplefilter("ignore")
                est.fit(data["X"], data["y"])
            data["ours_iters"] = est.solve_info_.iterations
            return est

        def falkon(data, m=m, reg=reg):
            return B.falkon_fit(data["X"], data["y"], L, reg, m, maxiter=ITERS)

        impls = [
            Impl(
                f"falkon 0.9.0 (M={m}, penalty {reg / n:g}, {ITERS} iterations)",
                "baseline",
                falkon,
                needs=B.needs_falkon,
                metric=lambda o, data: _mse(o.predict(data["Xt"]), data),
                once=n >= 200_000,
                notes="FalkonOptions(use_cpu=True, keops_active='no'), float32",
            ),
            Impl(
                f"rfmfast KernelRidge(centers={m})",
                "rfmfast",
                ours,
                metric=lambda o, data: _mse(o.predict(data["Xt"]), data),
                once=n >= 200_000,
                notes=lambda data: f"{data.get('ours_iters', '?')} CG iterations, float32",
            ),
        ]
        out.append(
            Case(
                f"laplace n={n} d={d} m={m}",
                dict(kernel="laplace", n=n, d=d, m=m, bandwidth=L, penalty=1e-6, maxiter=ITERS),
                _krr_setup(n, d, n_test),
                impls,
                work=n * m * ITERS / 1e9,
                rate_unit=f"G kernel entries/s (n m {ITERS} / s)",
            )
        )
    return out


# ---- nystroem_rfm ----------------------------------------------------------------------------
def rfm_cases(size, ctx):
    shapes = {
        "tiny": [(600, 6, 60, 2)],
        "quick": [(10_000, 20, 1000, 3)],
        "full": [(1_000_000, 20, 5000, 5)],
    }[size]
    out = []
    for n, d, m, iters in shapes:
        n_test = 100 if size == "tiny" else 20_000

        def fit(data, iters, m=m, n=n):
            mses = []

            def record(row):
                mses.append(row.get("val_mse", float("nan")))

            est = rfmfast.RFMRegressor(
                kernel="laplace",
                bandwidth=L,
                reg=1e-3,
                iters=iters,
                centers=m,
                keep_best=False,
                device=str(ctx.device),
                verbose=bool(n >= 200_000 and not ctx.quiet),
            )
            # the test set is passed as validation data only to record the MSE per iteration:
            # keep_best=False and no early stopping, so it does not choose anything
            est.fit(data["X"], data["y"], data["Xt"], data["yt"], callback=record)
            data.setdefault("mse", {})[iters] = mses
            return est

        def mse_notes(data, iters=iters):
            ms = data.get("mse", {}).get(iters, [])
            return "test MSE per solve (M = I first): " + ", ".join(f"{v:.5f}" for v in ms)

        def krr(data, m=m):
            return rfmfast.KernelRidge(kernel="laplace", bandwidth=L, reg=1e-3, centers=m).fit(
                data["X"], data["y"]
            )

        impls = [
            Impl(
                f"rfmfast KernelRidge(centers={m}): M = I",
                "baseline",
                krr,
                metric=lambda o, data: _mse(o.predict(data["Xt"]), data),
                once=n >= 200_000,
                notes="the Nystroem kernel ridge model without feature learning",
            ),
            Impl(
                f"rfmfast RFMRegressor(centers={m}, iters={iters})",
                "rfmfast",
                lambda data, iters=iters: fit(data, iters),
                metric=lambda o, data: _mse(o.predict(data["Xt"]), data),
                once=n >= 200_000,
                notes=mse_notes,
            ),
        ]
        out.append(
            Case(
                f"laplace n={n} d={d} m={m} iters={iters}",
                dict(kernel="laplace", n=n, d=d, m=m, iters=iters, bandwidth=L, reg=1e-3),
                _krr_setup(n, d, n_test),
                impls,
            )
        )
    return out


BENCHMARKS = [
    Benchmark(
        "nystroem_matmul",
        "the Nystroem product K(C, X) (K(X, C) V + W), laplace",
        "G kernel entries/s = n m / seconds",
        nystroem_cases,
    ),
    Benchmark(
        "krr",
        "Nystroem kernel ridge: KernelRidge(centers=m) vs Falkon, same centers and iterations",
        "G kernel entries/s = n m 20 / seconds (the CG products)",
        krr_cases,
    ),
    Benchmark(
        "nystroem_rfm",
        "Nystroem RFM: RFMRegressor(centers=m), the test MSE per iteration",
        "",
        rfm_cases,
    ),
]
