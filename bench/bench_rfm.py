"""RFM fit end to end: rfmfast's RFMRegressor / RFMClassifier vs xrfm 0.4.5's RFM, same settings.

    python bench/bench_rfm.py                      # synthetic n in {4000, 8000, 20000}, d = 50,
                                                   # then the scikit-learn datasets
    python bench/bench_rfm.py --sizes 4000 --no-datasets

Synthetic target (MATH.md's low-rank target in d = 50): X ~ N(0, 0.5^2 I), y = x0 x1 1[x5 > 0];
n training points, 2000 validation points (best iterate, early stopping), 4000 test points.
Both sides: Laplace kernel, bandwidth 10, reg 1e-3, 5 iterations, AGOP on up to 20,000 training
points, early stopping when the validation MSE exceeds 1.1 x the best (xrfm's default), the best
iterate kept, float32, CPU. Baseline (xrfm) first, in the same process, after one small warm-up
fit of each; each size is measured ``--repeats`` times alternating xrfm / rfmfast (one time at
n >= 20000) and the fastest wall time of each is kept. cpu_s is the process CPU time of that run
(both threads; it is less sensitive than the wall time to other work on a shared machine).
Rate: kernel-matrix entries of the solves per second, (solves run) * n^2 / fit time.

Datasets bundled with scikit-learn (breast cancer, digits, wine: accuracy; diabetes: MSE in the
target's units): 60/20/20 train/validation/test split (seeded, stratified), features
standardized on train (and the regression target). RFM and xrfm: the settings above, validation
for the best iterate. SVC (RBF) / KernelRidge (Laplacian) with bandwidth and C / alpha tuned on
the validation split (time includes the whole grid), trained on the training split.
Rows are appended to bench/results/rfm.csv with the machine, versions and git commit.
"""
from __future__ import annotations

import argparse
import csv
import datetime
import os
import platform
import subprocess
import sys
import time

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
CSV = os.path.join(HERE, "results", "rfm.csv")
FIELDS = ["date", "commit", "machine", "cores", "torch", "rfmfast_backend", "xrfm", "task", "n",
          "d", "method", "solver", "fit_s", "cpu_s", "repeats", "metric", "value",
          "speedup_vs_xrfm", "cpu_speedup_vs_xrfm", "rate", "iters_run", "notes"]
SETTINGS = dict(bandwidth=10.0, reg=1e-3, iters=5)


def machine():
    import rfmfast
    from rfmfast.backends import choose

    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True, cwd=HERE).stdout.strip()
    try:
        import xrfm
        xv = getattr(xrfm, "__version__", None) or _dist_version("xrfm")
    except ImportError:
        xv = "missing"
    return {"date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M"),
            "commit": commit, "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
            "cores": os.cpu_count(), "torch": torch.__version__,
            "rfmfast_backend": choose("auto", torch.device("cpu"), "kernel_matrix"), "xrfm": xv,
            "rfmfast": rfmfast.__version__}


def _dist_version(name):
    from importlib.metadata import version

    return version(name)


def low_rank(n, d, seed):
    rng = np.random.default_rng(seed)
    X = rng.normal(0.0, 0.5, (n, d)).astype(np.float32)
    return X, (X[:, 0] * X[:, 1] * (X[:, 5] > 0)).astype(np.float32)


def fit_xrfm(X, Y, Xv, Yv, metric):
    """xrfm's RFM with the shared settings; returns (model, wall s, cpu s, solves run)."""
    from xrfm import RFM

    m = RFM(kernel="laplace", bandwidth=SETTINGS["bandwidth"], iters=SETTINGS["iters"],
            device="cpu", verbose=False, tuning_metric=metric)
    t0, c0 = time.perf_counter(), time.process_time()
    Ms = m.fit((torch.from_numpy(X), torch.from_numpy(Y)), (torch.from_numpy(Xv), torch.from_numpy(Yv)),
               reg=SETTINGS["reg"], verbose=False, return_Ms=True)
    # return_Ms lists one M per completed iteration; +1 for the final solve (+0 if it stopped early)
    return m, time.perf_counter() - t0, time.process_time() - c0, len(Ms) + 1


def fit_ours(cls, X, y, Xv, yv):
    """rfmfast with the shared settings; returns (model, wall s, cpu s, solves run)."""
    m = cls(kernel="laplace", early_stopping=1.1, agop_samples=20_000, dtype="float32", **SETTINGS)
    t0, c0 = time.perf_counter(), time.process_time()
    m.fit(X, y, Xv, yv)
    return m, time.perf_counter() - t0, time.process_time() - c0, len(m.history_)


def warm_up():
    """One small fit of each, so that neither pays one-time start-up costs in the timings."""
    from rfmfast import RFMRegressor

    X, y = low_rank(500, 10, seed=7)
    fit_xrfm(X, y[:, None], X[:100], y[:100, None], "mse")
    fit_ours(RFMRegressor, X, y, X[:100], y[:100])


def synthetic(sizes, d, repeats, rows, info):
    from rfmfast import RFMRegressor

    Xv, yv = low_rank(2000, d, seed=101)
    Xt, yt = low_rank(4000, d, seed=102)
    for n in sizes:
        X, y = low_rank(n, d, seed=n)
        reps = 1 if n >= 20000 else repeats
        xruns, oruns = [], []
        for _ in range(reps):      # alternate, baseline first
            xm, xs, xc, xit = fit_xrfm(X, y[:, None], Xv, yv[:, None], "mse")
            xmse = float(np.mean((xm.predict(torch.from_numpy(Xt)).numpy()[:, 0] - yt) ** 2))
            xruns.append((xmse, xs, xc, xit))
            del xm
            om, os_, oc, oit = fit_ours(RFMRegressor, X, y, Xv, yv)
            omse = float(np.mean((om.predict(Xt) - yt) ** 2))
            solver = "/".join(sorted({r["solver"] for r in om.history_}))
            oruns.append((omse, os_, oc, oit))
            del om
        xb, ob = min(xruns, key=lambda r: r[1]), min(oruns, key=lambda r: r[1])
        for method, (mse, s, c, it), sol in (("xrfm", xb, "lu"), ("rfmfast", ob, solver)):
            rows.append(dict(info, task="low_rank_d50", n=n, d=d, method=method, solver=sol,
                             fit_s=f"{s:.3f}", cpu_s=f"{c:.3f}", repeats=reps, metric="test_mse",
                             value=f"{mse:.6f}", speedup_vs_xrfm=f"{xb[1] / s:.2f}",
                             cpu_speedup_vs_xrfm=f"{xb[2] / c:.2f}", iters_run=it,
                             rate=f"{it * n * n / s / 1e6:.1f} Mentries/s"))
            print(f"n={n:6d} {method:8s} ({sol}) fit {s:8.2f} s (cpu {c:8.2f} s)  test MSE "
                  f"{mse:.5f}  solves {it}  speedup vs xrfm {xb[1] / s:.2f}x "
                  f"(cpu {xb[2] / c:.2f}x)", flush=True)


def datasets(rows, info):
    from sklearn import datasets as skd
    from sklearn.kernel_ridge import KernelRidge
    from sklearn.model_selection import train_test_split
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC

    from rfmfast import RFMClassifier, RFMRegressor

    tasks = [("breast_cancer", skd.load_breast_cancer, True), ("digits", skd.load_digits, True),
             ("wine", skd.load_wine, True), ("diabetes", skd.load_diabetes, False)]
    for name, loader, clf in tasks:
        X, y = loader(return_X_y=True)
        strat = y if clf else None
        Xa, Xt, ya, yt = train_test_split(X, y, test_size=0.2, random_state=0, stratify=strat)
        X, Xv, y, yv = train_test_split(Xa, ya, test_size=0.25, random_state=0,
                                        stratify=ya if clf else None)
        sc = StandardScaler().fit(X)
        X, Xv, Xt = (sc.transform(a).astype(np.float32) for a in (X, Xv, Xt))
        n, d = X.shape
        res = []
        if clf:
            classes = np.unique(y)
            onehot = lambda lab: (lab[:, None] == classes[None]).astype(np.float32)
            xm, xs, xc, xit = fit_xrfm(X, onehot(y), Xv, onehot(yv), "accuracy")
            xacc = float((classes[xm.predict(torch.from_numpy(Xt)).numpy().argmax(1)] == yt).mean())
            res.append(("xrfm", xs, xc, xacc, xit))
            om, os_, oc, oit = fit_ours(RFMClassifier, X, y, Xv, yv)
            res.append(("rfmfast", os_, oc, float((om.predict(Xt) == yt).mean()), oit))
            grid = [dict(gamma=g / d, C=C) for g in (0.1, 0.3, 1, 3, 10) for C in (0.1, 1, 10, 100)]
            t0, c0 = time.perf_counter(), time.process_time()
            best = max(grid, key=lambda p: SVC(**p).fit(X, y).score(Xv, yv))
            svc = SVC(**best).fit(X, y)
            res.append((f"SVC rbf tuned ({len(grid)} fits)", time.perf_counter() - t0,
                        time.process_time() - c0, float(svc.score(Xt, yt)), None))
            metric = "test_accuracy"
        else:
            mu, sd = y.mean(), y.std()
            z = lambda a: ((a - mu) / sd).astype(np.float32)
            xm, xs, xc, xit = fit_xrfm(X, z(y)[:, None], Xv, z(yv)[:, None], "mse")
            xp = xm.predict(torch.from_numpy(Xt)).numpy()[:, 0] * sd + mu
            res.append(("xrfm", xs, xc, float(np.mean((xp - yt) ** 2)), xit))
            om, os_, oc, oit = fit_ours(RFMRegressor, X, z(y), Xv, z(yv))
            res.append(("rfmfast", os_, oc, float(np.mean((om.predict(Xt) * sd + mu - yt) ** 2)),
                        oit))
            grid = [dict(kernel="laplacian", gamma=g / d, alpha=a)
                    for g in (0.03, 0.1, 0.3, 1, 3) for a in (1e-3, 1e-2, 1e-1, 1)]
            t0, c0 = time.perf_counter(), time.process_time()
            val_mse = lambda p: float(np.mean((KernelRidge(**p).fit(X, z(y)).predict(Xv) - z(yv)) ** 2))
            best = min(grid, key=val_mse)
            kr = KernelRidge(**best).fit(X, z(y))
            res.append((f"KernelRidge laplacian tuned ({len(grid)} fits)", time.perf_counter() - t0,
                        time.process_time() - c0, float(np.mean((kr.predict(Xt) * sd + mu - yt) ** 2)),
                        None))
            metric = "test_mse"
        xs, xc = res[0][1], res[0][2]
        for method, s, c, val, it in res:
            rows.append(dict(info, task=name, n=n, d=d, method=method, fit_s=f"{s:.3f}",
                             cpu_s=f"{c:.3f}", repeats=1, solver="",
                             metric=metric, value=f"{val:.4f}", speedup_vs_xrfm=f"{xs / s:.2f}",
                             cpu_speedup_vs_xrfm=f"{xc / c:.2f}",
                             iters_run=it if it is not None else "",
                             rate=f"{it * n * n / s / 1e6:.1f} Mentries/s" if it else ""))
            print(f"{name:14s} n={n:5d} d={d:3d} {method:36s} fit {s:7.3f} s  {metric} {val:.4f}",
                  flush=True)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[4000, 8000, 20000])
    ap.add_argument("--d", type=int, default=50)
    ap.add_argument("--repeats", type=int, default=2, help="runs per size below n = 20000")
    ap.add_argument("--no-datasets", action="store_true")
    ap.add_argument("--no-synthetic", action="store_true")
    ap.add_argument("--notes", default="CPU shared with other work while measuring")
    ap.add_argument("--out", default=CSV)
    args = ap.parse_args(argv)
    try:
        import xrfm  # noqa: F401
    except ImportError:
        sys.exit("this benchmark compares against xrfm: pip install xrfm==0.4.5 (--no-deps; needs tqdm)")
    info = machine()
    info.pop("rfmfast")
    info["notes"] = args.notes
    print(info, flush=True)
    rows = []
    warm_up()
    if not args.no_synthetic:
        synthetic(args.sizes, args.d, args.repeats, rows, info)
    if not args.no_datasets:
        datasets(rows, info)
    new = not os.path.exists(args.out)
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "a", newline="") as f:
        w = csv.DictWriter(f, fieldnames=FIELDS)
        if new:
            w.writeheader()
        w.writerows(rows)
    print(f"appended {len(rows)} rows to {args.out}")


if __name__ == "__main__":
    main()
