"""Benchmarks of lin-RFM (CPU): LinRFMCompleter against the algorithm written plainly in numpy,
against ALS / SoftImpute / Surprise on MovieLens 100K, at a million observed entries, and the
matrix power it needs (Newton-Schulz against torch.linalg.eigh).

1. reference  The public reference's own problem: 500 x 500, rank 5, 10,000 observed entries,
              alpha = 1/2. Baseline: that algorithm as a plain numpy loop over rows, with the
              reference's ridge 5e-2 lowered to 1e-3 once the error on the *missing* entries is
              below 0.1 (the truth as oracle). rfmfast: LinRFMCompleter with its defaults (ridge
              and stopping from 5% held-out observed entries). Seconds: time to the target on
              the missing entries (relative squared error 1e-3, the reference's own stop; and
              relative error 1e-3), truth checks not timed; a baseline that does not reach it
              within the cap has status timeout and seconds = the cap (a lower bound).
2. movielens  ML-100K (u.data; --data DIR or $RFMFAST_BENCH_DATA holding ml-100k/u.data), seeded
              random 80/20 split, test RMSE (predictions clipped to 1..5): ALS (biased matrix
              factorization, rank 10, ridge chosen on 5% of the training ratings), fancyimpute's
              SoftImpute and Surprise's SVD when installed, LinRFMCompleter bias none / global /
              rowcol.
3. million    6,000 x 4,000, rank 10, 1,000,000 observed entries (full size only): time to
              relative error 1e-2 on 200,000 sampled missing entries, median time per sweep.
4. power      G^(2 alpha) by Newton-Schulz (GEMM only) against torch.linalg.eigh, G a
              rank-20-plus-noise Gram matrix.
The numbers in the docs were measured with one thread on each side (--threads 1).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import torch

from . import baselines as B
from .runner import Benchmark, Case, Impl, rel_err


# ---- 1. the reference problem -----------------------------------------------------------
def reference_problem(d=500, r=5, num_obs=10_000, seed=6):
    """As the reference builds it: Y = U V / sqrt(r) scaled to ||Y||_F = d (unit mean square)."""
    rng = np.random.default_rng(seed)
    Y = rng.standard_normal((d, r)) @ rng.standard_normal((r, d)) / np.sqrt(r)
    Y = Y / np.linalg.norm(Y) * d
    mask = np.zeros(d * d, dtype=bool)
    mask[:num_obs] = True
    rng.shuffle(mask)
    return Y, mask.reshape(d, d)


def numpy_reference_loop(Y, mask, targets, time_cap, reg=5e-2):
    """The reference algorithm (alpha = 1/2) as a plain numpy loop over rows; its ridge schedule
    uses the missing entries' error (the oracle). Returns ({target: (seconds, sweeps)}, sweeps
    run, seconds spent)."""
    n, d = Y.shape
    M = np.eye(d)
    X = np.zeros((n, d))
    miss = ~mask
    truth = Y[miss]
    tn = np.linalg.norm(truth)
    hit, elapsed, sweep = {}, 0.0, 0
    while elapsed < time_cap and len(hit) < len(targets):
        t0 = time.perf_counter()
        for i in range(n):
            idx = np.nonzero(mask[i])[0]
            a = np.linalg.solve(M[np.ix_(idx, idx)] + reg * np.eye(len(idx)), Y[i, idx])
            row = a @ M[idx, :]
            row[idx] = Y[i, idx]
            X[i] = row
        M = X.T @ X / n
        elapsed += time.perf_counter() - t0
        sweep += 1
        rel = np.linalg.norm(X[miss] - truth) / tn  # monitoring and the oracle schedule
        if rel**2 < 1e-1:
            reg = min(reg, 1e-3)
        for name, (kind, level) in targets.items():
            value = rel**2 if kind == "sq" else rel
            if name not in hit and value <= level:
                hit[name] = (elapsed, sweep)
    return hit, sweep, elapsed


def rfmfast_to_targets(Y, mask, targets, time_cap, **kw):
    """LinRFMCompleter's time to each target on the missing entries (monitoring not timed);
    returns ({target: (seconds, sweeps)}, the estimator)."""
    from rfmfast import LinRFMCompleter

    miss_r, miss_c = np.nonzero(~mask)
    truth = Y[miss_r, miss_c]
    tn = np.linalg.norm(truth)
    hit, state = {}, {"cb": 0.0, "t0": None}

    def cb(rec, values):
        c0 = time.perf_counter()
        rel = np.linalg.norm(values(miss_r, miss_c) - truth) / tn
        wall = c0 - state["t0"] - state["cb"]
        for name, (kind, level) in targets.items():
            value = rel**2 if kind == "sq" else rel
            if name not in hit and value <= level:
                hit[name] = (wall, rec["sweep"])
        state["cb"] += time.perf_counter() - c0
        return len(hit) == len(targets) or wall > time_cap

    state["t0"] = time.perf_counter()
    est = LinRFMCompleter(callback=cb, max_iter=5000, patience=50, **kw).fit(Y, mask)
    return hit, est


def _reference_cases(size):
    d, r, obs = (60, 2, 1000) if size == "tiny" else (500, 5, 10_000)
    if size == "full":
        targets = {"rel_sq_err<=1e-3": ("sq", 1e-3), "rel_err<=1e-3": ("rel", 1e-3)}
        cap = 420.0
    else:
        targets = {"rel_sq_err<=1e-1": ("sq", 1e-1)}
        cap = 5.0 if size == "tiny" else 20.0
    shared: dict = {}

    def setup(ctx):
        if "Y" not in shared:
            shared["Y"], shared["mask"] = reference_problem(d, r, obs)
        return shared

    def base(name):
        def measure(data, ctx):
            if "base" not in data:
                data["base"] = numpy_reference_loop(data["Y"], data["mask"], targets, cap)
            hit, sweeps, spent = data["base"]
            per = f"{spent / max(sweeps, 1) * 1e3:.1f} ms/sweep"
            if name in hit:
                return {
                    "seconds": hit[name][0],
                    "metric": "sweeps",
                    "value": hit[name][1],
                    "rate": hit[name][1] / hit[name][0],
                    "rate_unit": "sweeps/s",
                    "notes": per,
                }
            return {
                "seconds": spent,
                "status": "timeout",
                "metric": "sweeps",
                "value": sweeps,
                "notes": f"not reached in {spent:.1f} s ({sweeps} sweeps): seconds is a "
                f"lower bound; {per}",
            }

        return measure

    def ours(name):
        def measure(data, ctx):
            if "ours" not in data:
                data["ours"] = rfmfast_to_targets(data["Y"], data["mask"], targets, cap)
            hit, est = data["ours"]
            per = float(np.mean([h["seconds"] for h in est.history_]))
            if name not in hit:
                return {"status": "timeout", "notes": f"not reached ({len(est.history_)} sweeps)"}
            s, sw = hit[name]
            note = f"{per * 1e3:.1f} ms/sweep; held-out selection"
            b = data.get("base")
            if b and name not in b[0]:
                note += f"; > {b[2] / s:.1f}x the baseline, which did not reach it"
            return {
                "seconds": s,
                "metric": "sweeps",
                "value": sw,
                "rate": sw / s,
                "rate_unit": "sweeps/s",
                "notes": note,
            }

        return measure

    return [
        Case(
            f"{d}x{d} rank {r}, {obs} observed, alpha=1/2: time to {name}",
            dict(
                problem="reference",
                d=d,
                rank=r,
                observed=obs,
                target=name,
                cap_s=cap,
                dtype="float64",
            ),
            setup,
            [
                Impl("numpy row loop (oracle schedule)", "baseline", measure=base(name)),
                Impl("rfmfast LinRFMCompleter (held-out)", "rfmfast", measure=ours(name)),
            ],
        )
        for name in targets
    ]


# ---- 2. MovieLens 100K ------------------------------------------------------------------
def find_ml100k(data_dir: str | None) -> Path | None:
    """ml-100k/u.data under --data, $RFMFAST_BENCH_DATA, or ../shared/data from the working
    directory or the source tree."""
    import rfmfast

    roots = [
        data_dir,
        os.environ.get("RFMFAST_BENCH_DATA"),
        Path.cwd().parent / "shared" / "data",
        Path(rfmfast.__file__).resolve().parent.parent.parent / "shared" / "data",
    ]
    for r in roots:
        if r is None:
            continue
        for cand in (Path(r) / "ml-100k" / "u.data", Path(r) / "u.data"):
            if cand.is_file():
                return cand
    return None


def biases(rows, cols, vals, shape, reg=10.0, iters=10):
    n, d = shape
    mu = vals.mean()
    rb, cb = np.zeros(n), np.zeros(d)
    nr, nc = np.bincount(rows, minlength=n), np.bincount(cols, minlength=d)
    for _ in range(iters):
        rb = np.bincount(rows, vals - mu - cb[cols], minlength=n) / (nr + reg)
        cb = np.bincount(cols, vals - mu - rb[rows], minlength=d) / (nc + reg)
    return mu, rb, cb


def als(rows, cols, vals, shape, rank, lam, iters=15, seed=0):
    """Biased matrix factorization by alternating least squares, ridge ``lam`` per rating.
    Returns predict(r, c)."""
    n, d = shape
    mu, rb, cb = biases(rows, cols, vals, shape)
    res = vals - mu - rb[rows] - cb[cols]
    rng = np.random.default_rng(seed)
    U = 0.1 * rng.standard_normal((n, rank))
    V = 0.1 * rng.standard_normal((d, rank))
    by_row = np.split(
        np.argsort(rows, kind="stable"), np.cumsum(np.bincount(rows, minlength=n))[:-1]
    )
    by_col = np.split(
        np.argsort(cols, kind="stable"), np.cumsum(np.bincount(cols, minlength=d))[:-1]
    )
    eye = np.eye(rank)
    for _ in range(iters):
        for i, e in enumerate(by_row):
            if len(e):
                F = V[cols[e]]
                U[i] = np.linalg.solve(F.T @ F + lam * len(e) * eye, F.T @ res[e])
        for j, e in enumerate(by_col):
            if len(e):
                F = U[rows[e]]
                V[j] = np.linalg.solve(F.T @ F + lam * len(e) * eye, F.T @ res[e])
    return lambda r, c: mu + rb[r] + cb[c] + np.einsum("ij,ij->i", U[r], V[c])


def load_softimpute():
    """fancyimpute's SoftImpute; its package __init__ imports cvxpy (for another solver), so when
    that is missing the soft_impute module is loaded on its own. fancyimpute 0.7.0 passes
    ``force_all_finite`` to scikit-learn's check_array, which newer scikit-learn renamed
    ``ensure_all_finite``: the keyword is translated."""
    import importlib
    import importlib.metadata
    import importlib.util
    import sys
    import types

    spec = importlib.util.find_spec("fancyimpute")
    if spec is None:
        return None, None
    try:
        import fancyimpute  # noqa: F401
    except ImportError:
        pkg = types.ModuleType("fancyimpute")
        pkg.__path__ = list(spec.submodule_search_locations)
        sys.modules["fancyimpute"] = pkg
    from sklearn.utils import check_array

    def check_array_compat(X, *args, force_all_finite=None, **kw):
        if force_all_finite is not None:
            kw["ensure_all_finite"] = force_all_finite
        return check_array(X, *args, **kw)

    for name in ("fancyimpute.solver", "fancyimpute.soft_impute"):
        importlib.import_module(name).check_array = check_array_compat
    from fancyimpute.soft_impute import SoftImpute

    return SoftImpute, importlib.metadata.version("fancyimpute")


def rmse(pred, truth):
    return float(np.sqrt(np.mean((np.clip(pred, 1, 5) - truth) ** 2)))


def _movielens_case(size, ctx):
    path = find_ml100k(ctx.data_dir)
    shared: dict = {}

    def setup(ctx):
        from rfmfast.datasets import load_movielens, split_ratings

        data = load_movielens(path)
        test = split_ratings(len(data.values), 0.2, seed=0)
        tr = ~test
        shared.update(
            r=data.rows[tr],
            c=data.cols[tr],
            v=data.values[tr],
            rt=data.rows[test],
            ct=data.cols[test],
            vt=data.values[test],
            shape=data.shape,
            held=np.random.default_rng(1).random(int(tr.sum())) < 0.05,
        )
        return shared

    def needs_data():
        if path is None:
            return False, (
                "MovieLens 100K not found: pass --data DIR (holding ml-100k/u.data) "
                "or set RFMFAST_BENCH_DATA"
            )
        return True, ""

    def m_als(data, ctx):
        r, c, v, held, shape = data["r"], data["c"], data["v"], data["held"], data["shape"]
        t0 = time.perf_counter()
        best = None
        for lam in (0.05, 0.1, 0.2, 0.4, 0.8):
            f = als(r[~held], c[~held], v[~held], shape, rank=10, lam=lam)
            e = rmse(f(r[held], c[held]), v[held])
            best = min(best, (e, lam)) if best else (e, lam)
        f = als(r, c, v, shape, rank=10, lam=best[1])
        s = time.perf_counter() - t0
        return {
            "seconds": s,
            "metric": "test_rmse",
            "value": rmse(f(data["rt"], data["ct"]), data["vt"]),
            "rate": len(v) / s,
            "rate_unit": "ratings/s",
            "notes": f"ridge {best[1]} chosen on 5% held-out training ratings; time "
            "includes the search (5 ridges)",
        }

    def m_soft(data, ctx):
        SoftImpute, ver = load_softimpute()
        r, c, v, held, shape = data["r"], data["c"], data["v"], data["held"], data["shape"]
        t0 = time.perf_counter()
        mu, rb, cb = biases(r, c, v, shape)

        def soft(rr, cc, vv, shrink):
            M = np.full(shape, np.nan)
            M[rr, cc] = vv - mu - rb[rr] - cb[cc]
            return SoftImpute(shrinkage_value=shrink, max_iters=100, verbose=False).fit_transform(M)

        M0 = np.zeros(shape)
        M0[r, c] = v - mu - rb[r] - cb[c]
        top = float(np.linalg.norm(M0, 2))
        best = None
        for frac in (1 / 50, 1 / 20, 1 / 10):  # 1/50 of the top singular value is its default
            X = soft(r[~held], c[~held], v[~held], top * frac)
            e = rmse(mu + rb[r[held]] + cb[c[held]] + X[r[held], c[held]], v[held])
            best = min(best, (e, frac)) if best else (e, frac)
        X = soft(r, c, v, top * best[1])
        s = time.perf_counter() - t0
        rt, ct = data["rt"], data["ct"]
        return {
            "seconds": s,
            "metric": "test_rmse",
            "value": rmse(mu + rb[rt] + cb[ct] + X[rt, ct], data["vt"]),
            "rate": len(v) / s,
            "rate_unit": "ratings/s",
            "notes": f"fancyimpute {ver}, on the bias residual; shrinkage top_sv*{best[1]:.3g} "
            "chosen on held-out ratings (3 tried), time includes the search",
        }

    def m_surprise(data, ctx):
        import pandas as pd  # noqa: F401 - Surprise's dataframe loader
        from surprise import SVD, Dataset, Reader

        r, c, v = data["r"], data["c"], data["v"]
        t0 = time.perf_counter()
        df = pd.DataFrame({"u": r, "i": c, "r": v})
        train = Dataset.load_from_df(df, Reader(rating_scale=(1, 5))).build_full_trainset()
        algo = SVD(random_state=0).fit(train)
        s = time.perf_counter() - t0
        pred = np.array([algo.predict(u, i).est for u, i in zip(data["rt"], data["ct"])])
        return {
            "seconds": s,
            "metric": "test_rmse",
            "value": rmse(pred, data["vt"]),
            "rate": len(v) / s,
            "rate_unit": "ratings/s",
            "notes": "SVD with its defaults",
        }

    def m_ours(bias):
        def measure(data, ctx):
            from rfmfast import LinRFMCompleter

            t0 = time.perf_counter()
            est = LinRFMCompleter(bias=bias).fit(
                (data["r"], data["c"], data["v"]), shape=data["shape"]
            )
            s = time.perf_counter() - t0
            return {
                "seconds": s,
                "metric": "test_rmse",
                "value": rmse(est.predict(data["rt"], data["ct"]), data["vt"]),
                "rate": est.n_iter_ / s,
                "rate_unit": "sweeps/s",
                "notes": f"{est.n_iter_} sweeps, best {est.best_iter_}; held-out selection",
            }

        return measure

    impls = [Impl("ALS biased MF rank 10", "peer", measure=m_als, needs=needs_data)]
    if size == "full":
        impls.append(
            Impl(
                "fancyimpute SoftImpute",
                "peer",
                measure=m_soft,
                needs=lambda: (
                    needs_data()
                    if path is None
                    else B.has("fancyimpute", "pip install fancyimpute")
                ),
            )
        )
    impls.append(
        Impl(
            "Surprise SVD",
            "peer",
            measure=m_surprise,
            needs=lambda: (
                needs_data()
                if path is None
                else B.has("surprise", "pip install scikit-surprise pandas")
            ),
        )
    )
    for bias in ("none", "global", "rowcol") if size == "full" else ("rowcol",):
        impls.append(
            Impl(
                f"rfmfast LinRFMCompleter bias={bias}",
                "rfmfast",
                measure=m_ours(bias),
                needs=needs_data,
            )
        )
    return Case(
        "ML-100K, seeded random 80/20",
        dict(problem="movielens", test_fraction=0.2, seed=0),
        setup,
        impls,
    )


# ---- 3. a million observed entries --------------------------------------------------------
def _million_case(dtype, time_cap=600.0):
    n, d, r, nobs = 6000, 4000, 10, 1_000_000

    def setup(ctx):
        rng = np.random.default_rng(0)
        U, V = rng.standard_normal((n, r)), rng.standard_normal((r, d))
        idx = rng.choice(n * d, nobs, replace=False)
        rows, cols = idx // d, idx % d
        vals = np.einsum("ij,ij->i", U[rows], V.T[cols])
        scale = 1 / np.sqrt(np.mean(vals**2))
        vals *= scale
        m = np.setdiff1d(rng.integers(0, n * d, 300_000), idx)[:200_000]
        mr, mc = m // d, m % d
        truth = np.einsum("ij,ij->i", U[mr], V.T[mc]) * scale
        return dict(rows=rows, cols=cols, vals=vals, mr=mr, mc=mc, truth=truth)

    def measure(data, ctx):
        from rfmfast import LinRFMCompleter

        tn = np.linalg.norm(data["truth"])
        log, state = [], {"cb": 0.0, "t0": None, "hit": None}

        def cb(rec, values):
            c0 = time.perf_counter()
            rel = float(np.linalg.norm(values(data["mr"], data["mc"]) - data["truth"]) / tn)
            wall = c0 - state["t0"] - state["cb"]
            log.append((rec["sweep"], rec["seconds"], rel, wall))
            ctx.log(
                f"    sweep {rec['sweep']}: rel err {rel:.3e}, {rec['seconds']:.2f} s, "
                f"total {wall:.1f} s"
            )
            if rel <= 1e-2 and state["hit"] is None:
                state["hit"] = (wall, rec["sweep"])
            state["cb"] += time.perf_counter() - c0
            return state["hit"] is not None or wall > time_cap

        state["t0"] = time.perf_counter()
        LinRFMCompleter(callback=cb, dtype=dtype, max_iter=1000).fit(
            (data["rows"], data["cols"], data["vals"]), shape=(n, d)
        )
        per = float(np.median([s for _, s, _, _ in log]))
        trace = ", ".join(f"{e:.3g} after {s}" for s, _, e, _ in log[:: max(1, len(log) // 8)])
        hit = state["hit"]
        out = {
            "rate": nobs / per / 1e6,
            "rate_unit": "M observed entries/s per sweep",
            "metric": "sweeps to rel err<=1e-2",
            "notes": f"median sweep {per:.2f} s; rel "
            f"err on 200,000 sampled missing entries: {trace}",
        }
        if hit:
            out.update(seconds=hit[0], value=hit[1])
        else:
            out.update(seconds=log[-1][3], value=log[-1][0], status="timeout")
        return out

    name = str(dtype).replace("torch.", "")
    return Case(
        f"6000x4000 rank 10, 1e6 observed, {name}",
        dict(problem="million", n=n, d=d, rank=r, observed=nobs, dtype=name),
        setup,
        [Impl("rfmfast LinRFMCompleter", "rfmfast", measure=measure)],
    )


# ---- 4. the matrix power ----------------------------------------------------------------
def _psd_power():
    try:
        from rfmfast.models.matrix_power import psd_power
    except ImportError as e:
        return None, f"rfmfast's matrix power is not importable here ({e})"
    return psd_power, ""


def _power_cases(size):
    ds = {"tiny": (40,), "quick": (300,), "full": (500, 1000, 2000)}[size]
    alphas = (0.25,) if size == "tiny" else (0.25, 1.0, 0.75)
    cases = []
    for d in ds:
        for alpha in alphas:
            p = 2 * alpha

            def setup(ctx, d=d, p=p):
                g = torch.Generator().manual_seed(d)
                X = torch.randn(2 * d, 20, dtype=torch.float64, generator=g) @ torch.randn(
                    20, d, dtype=torch.float64, generator=g
                )
                X += 0.01 * torch.randn(2 * d, d, dtype=torch.float64, generator=g)
                G = X.T @ X / (2 * d)  # a completion-like Gram matrix: rank 20 plus a tail
                f, _ = _psd_power()
                return {"G": G, "ref": f(G, p, method="eigh") if f else None}

            def needs():
                f, why = _psd_power()
                return (f is not None), why

            def run(method, p=p):
                def fn(data):
                    f, _ = _psd_power()
                    return f(data["G"], p, method=method)

                return fn

            err = lambda out, data: rel_err(out, data["ref"])  # noqa: E731
            cases.append(
                Case(
                    f"d={d}, alpha={alpha} (G^{p:g})",
                    dict(problem="power", d=d, alpha=alpha, dtype="float64"),
                    setup,
                    [
                        Impl("torch.linalg.eigh", "baseline", run("eigh"), needs=needs),
                        Impl(
                            "Newton-Schulz (GEMM only)",
                            "rfmfast",
                            run("newton_schulz"),
                            needs=needs,
                            error=err,
                        ),
                    ],
                    work=d**3 / 1e9,
                    rate_unit="d^3/ns (d^3 / s / 1e9)",
                )
            )
    return cases


def cases(size, ctx):
    out = _reference_cases(size)
    if size != "tiny":
        out.append(_movielens_case(size, ctx))
    if size == "full":
        out += [_million_case(torch.float64), _million_case(torch.float32)]
    return out + _power_cases(size)


BENCHMARKS = [
    Benchmark(
        "linrfm",
        "lin-RFM: matrix completion against the plain algorithm, "
        "ALS / SoftImpute / Surprise, a million entries, the matrix power",
        "per case (stated in rate_unit): sweeps/s, ratings/s, M observed "
        "entries/s per sweep, d^3/ns",
        cases,
        devices=("cpu",),
        device_note="lin-RFM's benchmarks are CPU benchmarks",
    )
]
