"""Benchmark of RFM fits end to end: RFMRegressor / RFMClassifier against xrfm 0.4.5's RFM with
the same settings, and on scikit-learn's bundled datasets against tuned SVC / KernelRidge.

Settings of both RFMs: Laplace kernel, bandwidth 10, reg 1e-3, 5 iterations, AGOP on up to
20,000 training points, early stopping when the validation metric is worse than 1.1 x the best
(xrfm's default), the best iterate kept, float32. Synthetic target: X ~ N(0, 0.25 I) in
d = 50, y = x0 x1 1[x5 > 0]; n training, 2000 validation, 4000 test points. Each side gets a
small warm-up fit first. Rate: kernel entries of the solves per second, solves * n^2 / seconds.
Datasets: 60/20/20 train/validation/test split (seeded, stratified for classes), features
standardized on the training split (and the regression target); SVC (RBF) and KernelRidge
(Laplacian) tuned over 20 (gamma, C / alpha) pairs on the validation split, the time
including the grid.
On CUDA also RFMRegressor(device="cuda") with its defaults at n = 100,000 (full size).
"""

from __future__ import annotations

import numpy as np
import torch

from . import baselines as B
from .runner import Benchmark, Case, Impl

SETTINGS = dict(bandwidth=10.0, reg=1e-3, iters=5)


def low_rank(n, d, seed):
    rng = np.random.default_rng(seed)
    X = rng.normal(0.0, 0.5, (n, d)).astype(np.float32)
    return X, (X[:, 0] * X[:, 1] * (X[:, 5] > 0)).astype(np.float32)


def fit_xrfm(X, Y, Xv, Yv, metric, device):
    """xrfm's RFM with the shared settings; returns (model, solves run)."""
    from xrfm import RFM

    dev = torch.device(device)
    t = lambda a: torch.from_numpy(a).to(dev)  # noqa: E731
    m = RFM(
        kernel="laplace",
        bandwidth=SETTINGS["bandwidth"],
        iters=SETTINGS["iters"],
        device=str(dev),
        verbose=False,
        tuning_metric=metric,
    )
    Ms = m.fit((t(X), t(Y)), (t(Xv), t(Yv)), reg=SETTINGS["reg"], verbose=False, return_Ms=True)
    # return_Ms lists one M per completed iteration; +1 for the final solve
    return m, len(Ms) + 1


def xrfm_predict(m, X, device):
    out = m.predict(torch.from_numpy(X).to(torch.device(device)))
    return out.cpu().numpy() if hasattr(out, "cpu") else np.asarray(out)


def fit_ours(cls, X, y, Xv, yv, device):
    """rfmfast with the shared settings; returns (model, solves run)."""
    m = cls(
        kernel="laplace",
        early_stopping=1.1,
        agop_samples=20_000,
        dtype="float32",
        device=str(device),
        **SETTINGS,
    )
    m.fit(X, y, Xv, yv)
    return m, len(m.history_)


def _warm_xrfm(device):
    def warm(data):
        X, y = low_rank(500, 10, seed=7)
        fit_xrfm(X, y[:, None], X[:100], y[:100, None], "mse", device)

    return warm


def _warm_ours(device):
    def warm(data):
        from rfmfast import RFMRegressor

        X, y = low_rank(500, 10, seed=7)
        fit_ours(RFMRegressor, X, y, X[:100], y[:100], device)

    return warm


def _solves_work(n):
    return lambda out, data: out[1] * float(n) ** 2 / 1e6


def _synthetic(n, d, device):
    def setup(ctx):
        X, y = low_rank(n, d, seed=n)
        Xv, yv = low_rank(2000 if n > 1000 else 200, d, seed=101)
        Xt, yt = low_rank(4000 if n > 1000 else 400, d, seed=102)
        return {"X": X, "y": y, "Xv": Xv, "yv": yv, "Xt": Xt, "yt": yt}

    def xr(data):
        return fit_xrfm(
            data["X"], data["y"][:, None], data["Xv"], data["yv"][:, None], "mse", device
        )

    def xr_mse(out, data):
        p = xrfm_predict(out[0], data["Xt"], device)[:, 0]
        return "test_mse", float(np.mean((p - data["yt"]) ** 2))

    def ours(data):
        from rfmfast import RFMRegressor

        m, solves = fit_ours(RFMRegressor, data["X"], data["y"], data["Xv"], data["yv"], device)
        data["solver"] = "/".join(sorted({str(r.get("solver", "")) for r in m.history_}))
        return m, solves

    def ours_mse(out, data):
        return "test_mse", float(np.mean((out[0].predict(data["Xt"]) - data["yt"]) ** 2))

    def solver(data):
        return f"solver {data['solver']}" if data.get("solver") else ""

    impls = [
        Impl(
            "xrfm 0.4.5 RFM",
            "baseline",
            xr,
            needs=B.needs_xrfm,
            warmup=_warm_xrfm(device),
            metric=xr_mse,
            work=_solves_work(n),
            notes="LU solves (torch.linalg.solve)",
        ),
        Impl(
            "rfmfast RFMRegressor",
            "rfmfast",
            ours,
            warmup=_warm_ours(device),
            metric=ours_mse,
            work=_solves_work(n),
            notes=solver,
        ),
    ]
    return Case(
        f"low_rank_d{d} n={n}",
        dict(task="low_rank", n=n, d=d, dtype="float32", kernel="laplace", **SETTINGS),
        setup,
        impls,
        rate_unit="Mentries/s (solves * n^2 / s / 1e6)",
    )


def _gpu_defaults(n, device, d=50):
    """RFMRegressor(device='cuda') with its defaults, no validation data (the GPU target)."""

    def setup(ctx):
        g = torch.Generator().manual_seed(5)
        X = (torch.randn(n + n // 10, d, generator=g) * 0.5).numpy()
        y = X[:, 0] * X[:, 1] * (X[:, 5] > 0)
        return {"X": X[:n], "y": y[:n], "Xt": X[n:], "yt": y[n:]}

    def fit(data):
        from rfmfast import RFMRegressor

        m = RFMRegressor(device=device)
        m.fit(data["X"], data["y"])
        return m, len(m.history_)

    def mse(out, data):
        return "test_mse", float(((out[0].predict(data["Xt"]) - data["yt"]) ** 2).mean())

    return Case(
        f"low_rank_d{d} n={n} defaults",
        dict(task="low_rank", n=n, d=d, defaults=True),
        setup,
        [
            Impl(
                "rfmfast RFMRegressor (defaults)",
                "rfmfast",
                fit,
                once=True,
                metric=mse,
                work=_solves_work(n),
                notes="first fit in the process: Triton compilation included",
            )
        ],
        rate_unit="Mentries/s (solves * n^2 / s / 1e6)",
    )


DATASETS = ("breast_cancer", "digits", "wine", "diabetes")


def _dataset(name, device):
    clf = name != "diabetes"

    def setup(ctx):
        from sklearn import datasets as skd
        from sklearn.model_selection import train_test_split
        from sklearn.preprocessing import StandardScaler

        X, y = getattr(skd, f"load_{name}")(return_X_y=True)
        Xa, Xt, ya, yt = train_test_split(
            X, y, test_size=0.2, random_state=0, stratify=y if clf else None
        )
        X, Xv, y, yv = train_test_split(
            Xa, ya, test_size=0.25, random_state=0, stratify=ya if clf else None
        )
        sc = StandardScaler().fit(X)
        X, Xv, Xt = (sc.transform(a).astype(np.float32) for a in (X, Xv, Xt))
        data = {"X": X, "Xv": Xv, "Xt": Xt, "y": y, "yv": yv, "yt": yt}
        if clf:
            data["classes"] = np.unique(y)
        else:
            data["mu"], data["sd"] = float(y.mean()), float(y.std())
        return data

    def z(data, a):
        return ((a - data["mu"]) / data["sd"]).astype(np.float32)

    def onehot(data, lab):
        return (lab[:, None] == data["classes"][None]).astype(np.float32)

    def xr(data):
        if clf:
            return fit_xrfm(
                data["X"],
                onehot(data, data["y"]),
                data["Xv"],
                onehot(data, data["yv"]),
                "accuracy",
                device,
            )
        return fit_xrfm(
            data["X"],
            z(data, data["y"])[:, None],
            data["Xv"],
            z(data, data["yv"])[:, None],
            "mse",
            device,
        )

    def xr_metric(out, data):
        p = xrfm_predict(out[0], data["Xt"], device)
        if clf:
            return "test_accuracy", float((data["classes"][p.argmax(1)] == data["yt"]).mean())
        p = p[:, 0] * data["sd"] + data["mu"]
        return "test_mse", float(np.mean((p - data["yt"]) ** 2))

    def ours(data):
        from rfmfast import RFMClassifier, RFMRegressor

        if clf:
            return fit_ours(RFMClassifier, data["X"], data["y"], data["Xv"], data["yv"], device)
        return fit_ours(
            RFMRegressor, data["X"], z(data, data["y"]), data["Xv"], z(data, data["yv"]), device
        )

    def ours_metric(out, data):
        p = out[0].predict(data["Xt"])
        if clf:
            return "test_accuracy", float((p == data["yt"]).mean())
        return "test_mse", float(np.mean((p * data["sd"] + data["mu"] - data["yt"]) ** 2))

    def tuned(data):
        from sklearn.kernel_ridge import KernelRidge
        from sklearn.svm import SVC

        X, d = data["X"], data["X"].shape[1]
        if clf:
            grid = [dict(gamma=g / d, C=C) for g in (0.1, 0.3, 1, 3, 10) for C in (0.1, 1, 10, 100)]
            best = max(grid, key=lambda p: SVC(**p).fit(X, data["y"]).score(data["Xv"], data["yv"]))
            return SVC(**best).fit(X, data["y"]), None
        yz, yvz = z(data, data["y"]), z(data, data["yv"])
        grid = [
            dict(kernel="laplacian", gamma=g / d, alpha=a)
            for g in (0.03, 0.1, 0.3, 1, 3)
            for a in (1e-3, 1e-2, 1e-1, 1)
        ]
        best = min(
            grid,
            key=lambda p: float(
                np.mean((KernelRidge(**p).fit(X, yz).predict(data["Xv"]) - yvz) ** 2)
            ),
        )
        return KernelRidge(**best).fit(X, yz), None

    def tuned_metric(out, data):
        p = out[0].predict(data["Xt"])
        if clf:
            return "test_accuracy", float((p == data["yt"]).mean())
        return "test_mse", float(np.mean((p * data["sd"] + data["mu"] - data["yt"]) ** 2))

    impls = [
        Impl(
            "xrfm 0.4.5 RFM",
            "baseline",
            xr,
            needs=B.needs_xrfm,
            metric=xr_metric,
            warmup=_warm_xrfm(device),
        ),
        Impl(
            "rfmfast " + ("RFMClassifier" if clf else "RFMRegressor"),
            "rfmfast",
            ours,
            metric=ours_metric,
            warmup=_warm_ours(device),
        ),
    ]
    if device == "cpu":
        impls.append(
            Impl(
                "SVC rbf tuned (20 fits)" if clf else "KernelRidge laplacian tuned (20 fits)",
                "peer",
                tuned,
                needs=B.needs_sklearn,
                metric=tuned_metric,
                notes="bandwidth and C / alpha chosen on the validation split",
            )
        )
    return Case(
        f"{name} (scikit-learn)",
        dict(task=name, dtype="float32", kernel="laplace", **SETTINGS),
        setup,
        impls,
    )


def cases(size, ctx):
    device = str(ctx.device)
    if ctx.gpu:
        ns = {"tiny": [120], "quick": [20_000], "full": [20_000]}[size]
        out = [_synthetic(n, 16 if size == "tiny" else 50, device) for n in ns]
        if size != "tiny":
            out.append(_gpu_defaults(100_000 if size == "full" else 20_000, device))
        else:
            out.append(_gpu_defaults(120, device))
        return out
    ns = {"tiny": [200], "quick": [2000], "full": [4000, 8000, 20_000]}[size]
    out = [_synthetic(n, 16 if size == "tiny" else 50, device) for n in ns]
    out += [_dataset(name, device) for name in (("wine",) if size == "tiny" else DATASETS)]
    return out


BENCHMARKS = [
    Benchmark(
        "rfm",
        "RFM fit end to end: rfmfast against xrfm 0.4.5 (and tuned "
        "SVC / KernelRidge on scikit-learn's datasets)",
        "Mentries/s = (kernel ridge solves run) * n^2 / seconds / 1e6",
        cases,
    )
]
