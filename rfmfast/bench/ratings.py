"""Benchmarks of matrix completion on rating data (CPU): LinRFMCompleter with its defaults side
by side, in one process, with a regularized bias-only model (the floor), ALS biased matrix
factorization, Surprise's SVD and SVD++, fancyimpute's SoftImpute and implicit's ALS.

Seconds are the wall time of one fit (a ridge search, where an implementation has one, is part
of its fit); test RMSE is taken on predictions clipped to the rating scale.

1. movielens  ML-100K (u.data; --data DIR or $RFMFAST_BENCH_DATA holding ml-100k/u.data, else
              ../shared/data), 5 seeded random 80/20 splits (split_ratings seeds 0..4; 1 split
              at the quick size). Per implementation: the mean test RMSE over the splits (value),
              its std and min/max (notes), the mean seconds per fit. Implementations: the
              bias-only model mu + user + item offsets (ridge from a small grid chosen on 5% of
              the training ratings), ALS biased MF rank 10 (ridge chosen likewise), Surprise SVD
              and SVDpp with their defaults (SVDpp with cache_ratings=True, which changes its
              speed, not its result), fancyimpute's SoftImpute (full size only), and
              LinRFMCompleter with its defaults (on the CPU). Published anchors on ML-100K 80/20
              (other splits, not measured here): GC-MC 0.910, GLocal-K 0.889; Surprise's own
              5-fold cross-validation: SVD 0.934, SVD++ 0.919.
2. top10      Ranking on the ML-100K split seed 0, where implicit's ALS (implicit feedback: it
              predicts no ratings, so it has no RMSE) applies: held-out items rated >= 4 are the
              relevant ones; precision@10 over the users with at least one relevant held-out
              item, each user's training items excluded from the top 10. Implementations: the
              most rated training items (popularity), implicit's AlternatingLeastSquares
              (64 factors, confidence = the rating), LinRFMCompleter with its defaults
              (``recommend`` where the estimator has it, else the top 10 of ``predict`` over all
              items). Value: precision@10; seconds: the fit.
3. wide       Synthetic ratings shaped like real ones (rfmfast.datasets.synthetic_ratings:
              power-law counts per user and per item, half stars 0.5..5): 700 users x 9,000
              items, 100,000 ratings, at least 20 per user (quick: 350 x 4,500 and 50,000, the
              same ratings per user and per item; tiny: 50 x 500 and 2,000), seeded 80/20 split.
              Test RMSE and seconds of the bias-only model, Surprise SVD, and LinRFMCompleter
              with its defaults on the matrix as given (users as rows) and on its transpose
              (items as rows); the notes give the sweeps run and orientation_ where it exists.
4. ratings_10m  (a benchmark of its own) MovieLens-10M-shaped synthetic ratings: 70,000 users x
              10,700 items, 10,000,000 ratings, rank 10, a 2% test set drawn from the observed
              entries. LinRFMCompleter(verbose=True) in float64 and float32 on the CPU, and in
              float32 on CUDA where a GPU is visible: seconds, test RMSE, the RMSE of its own
              bias model, sweeps, peak memory (peak_mem_mb: resident set sampled above the
              level at the start of the fit; notes: ru_maxrss before and after, the process
              peak); the bias-only model alongside.
Peers that are not installed (pip install 'rfmfast[bench]') are skipped with the reason.
"""

from __future__ import annotations

import os
import resource
import time
from pathlib import Path

import numpy as np

from . import baselines as B
from .runner import Benchmark, Case, Impl, PeakMemory

ML_SCALE = (1.0, 5.0)
HALF_STARS = (0.5, 5.0)
ML_ANCHORS = "published (other splits): GC-MC 0.910, GLocal-K 0.889; Surprise 5-fold SVD 0.934"
LINRFM = "rfmfast LinRFMCompleter (defaults)"


# ---- data and the plain models ------------------------------------------------------------
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
    """The bias model mu + row offset + column offset, each offset with ridge ``reg`` per row
    (column), by alternating exact updates. Returns (mu, row offsets (n,), column offsets (d,))."""
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


def rmse(pred, truth, scale=ML_SCALE):
    """RMSE of the predictions clipped to the rating scale (low, high)."""
    return float(np.sqrt(np.mean((np.clip(pred, *scale) - truth) ** 2)))


BIAS_REGS = (1.0, 2.5, 5.0, 10.0, 25.0, 50.0)


def bias_model(r, c, v, shape, held, scale, regs=BIAS_REGS):
    """The bias-only model with its ridge chosen from ``regs`` on the ``held`` training ratings,
    refitted on all of them. Returns (predict(r, c), the ridge)."""
    best = None
    for reg in regs:
        mu, rb, cb = biases(r[~held], c[~held], v[~held], shape, reg=reg)
        e = rmse(mu + rb[r[held]] + cb[c[held]], v[held], scale)
        best = min(best, (e, reg)) if best else (e, reg)
    mu, rb, cb = biases(r, c, v, shape, reg=best[1])
    return (lambda rr, cc: mu + rb[rr] + cb[cc]), best[1]


def _split(rows, cols, vals, shape, test, scale, seed=1):
    """One train/test split's arrays; ``held`` marks 5% of the training ratings (for the peers'
    ridge searches)."""
    tr = ~test
    return dict(
        r=rows[tr],
        c=cols[tr],
        v=vals[tr],
        rt=rows[test],
        ct=cols[test],
        vt=vals[test],
        shape=tuple(shape),
        scale=scale,
        held=np.random.default_rng(seed).random(int(tr.sum())) < 0.05,
    )


def _needs(*checks):
    """needs() that is the first failing check (each a callable () -> (ok, why))."""

    def needs():
        for check in checks:
            ok, why = check()
            if not ok:
                return ok, why
        return True, ""

    return needs


def needs_surprise():
    return B.has("surprise", "pip install scikit-surprise, or pip install 'rfmfast[bench]'")


def implicit_als():
    """implicit's CPU AlternatingLeastSquares class (implicit.cpu.als, else implicit.als)."""
    try:
        from implicit.cpu.als import AlternatingLeastSquares
    except ImportError:
        from implicit.als import AlternatingLeastSquares
    return AlternatingLeastSquares


def needs_implicit():
    ok, why = B.has("threadpoolctl", "pip install threadpoolctl")
    if not ok:
        return ok, why
    ok, why = B.has("implicit", "pip install implicit, or pip install 'rfmfast[bench]'")
    if ok:
        try:
            implicit_als()
        except Exception as e:  # noqa: BLE001 - any import failure means "not available here"
            return False, f"implicit's ALS does not import: {type(e).__name__}: {str(e)[:120]}"
    return ok, why


def _version(dist: str) -> str:
    import importlib.metadata

    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "?"


# ---- the fits: each returns (predict(r, c), seconds, a note) ------------------------------
def fit_bias(s):
    t0 = time.perf_counter()
    f, reg = bias_model(s["r"], s["c"], s["v"], s["shape"], s["held"], s["scale"])
    return f, time.perf_counter() - t0, f"ridge {reg:g}"


def fit_als(s, rank=10, lams=(0.05, 0.1, 0.2, 0.4, 0.8)):
    r, c, v, held, shape = s["r"], s["c"], s["v"], s["held"], s["shape"]
    t0 = time.perf_counter()
    best = None
    for lam in lams:
        f = als(r[~held], c[~held], v[~held], shape, rank=rank, lam=lam)
        e = rmse(f(r[held], c[held]), v[held], s["scale"])
        best = min(best, (e, lam)) if best else (e, lam)
    f = als(r, c, v, shape, rank=rank, lam=best[1])
    return f, time.perf_counter() - t0, f"ridge {best[1]:g}"


def fit_surprise(s, algo="SVD", seed=0):
    """Surprise's SVD or SVDpp with its defaults (the trainset is built from the integer ids
    inside the timed fit). SVDpp runs with cache_ratings=True: the same model, faster."""
    import surprise

    t0 = time.perf_counter()
    raw = list(zip(s["r"].tolist(), s["c"].tolist(), s["v"].tolist(), [None] * len(s["v"])))
    reader = surprise.Reader(rating_scale=s["scale"])
    train = surprise.Dataset(reader).construct_trainset(raw)
    kw = {"cache_ratings": True} if algo == "SVDpp" else {}
    model = getattr(surprise, algo)(random_state=seed, **kw).fit(train)
    sec = time.perf_counter() - t0

    def predict(rr, cc):
        return np.array([model.predict(u, i).est for u, i in zip(rr.tolist(), cc.tolist())])

    return predict, sec, ""


def fit_linrfm(s, transpose=False, **kw):
    """LinRFMCompleter with its defaults (plus ``kw``) on the CPU; ``transpose``: items as rows."""
    from rfmfast import LinRFMCompleter

    r, c = (s["c"], s["r"]) if transpose else (s["r"], s["c"])
    shape = s["shape"][::-1] if transpose else s["shape"]
    t0 = time.perf_counter()
    est = LinRFMCompleter(device="cpu", **kw).fit((r, c, s["v"]), shape=shape)
    sec = time.perf_counter() - t0
    predict = (lambda rr, cc: est.predict(cc, rr)) if transpose else est.predict
    return predict, sec, _linrfm_note(est), est


def _linrfm_note(est) -> str:
    note = f"{len(est.history_)} sweeps, best {est.best_iter_}"
    orient = getattr(est, "orientation_", None)
    return note + (f"; orientation_ {orient}" if orient is not None else "")


def _spread(errs) -> str:
    e = np.asarray(errs)
    if len(e) == 1:
        return "1 split"
    return (
        f"RMSE over {len(e)} splits: std {e.std(ddof=1):.4f}, min {e.min():.4f}, max {e.max():.4f}"
    )


def _rmse_row(fit, splits, extra=""):
    """measure(data, ctx) running ``fit`` on every split: value = mean test RMSE, seconds = the
    mean seconds per fit, the spread in notes."""

    def measure(data, ctx):
        errs, secs, notes = [], [], []
        for k, s in enumerate(data[splits]):
            f, sec, note, *_ = fit(s)
            errs.append(rmse(f(s["rt"], s["ct"]), s["vt"], s["scale"]))
            secs.append(sec)
            notes.append(note)
            if len(data[splits]) > 1:
                ctx.log(f"    split {k}: RMSE {errs[-1]:.4f}, {sec:.2f} s")
        per = float(np.mean(secs))
        n_train = float(np.mean([len(s["v"]) for s in data[splits]]))
        uniq = list(dict.fromkeys(n for n in notes if n))
        return {
            "seconds": per,
            "repeats": len(secs),
            "metric": "test_rmse",
            "value": float(np.mean(errs)),
            "rate": n_train / per,
            "rate_unit": "ratings/s",
            "notes": "; ".join(x for x in (_spread(errs), " / ".join(uniq), extra) if x),
        }

    return measure


# ---- 1. ML-100K, seeded splits ------------------------------------------------------------
def _ml_data(ctx, shared):
    """ML-100K and its seeded splits, loaded once for the ML cases."""
    if "data" not in shared:
        from rfmfast.datasets import load_movielens, split_ratings

        data = load_movielens(shared["path"])
        shared["data"] = data
        shared["splits"] = [
            _split(
                data.rows,
                data.cols,
                data.values,
                data.shape,
                split_ratings(len(data.values), 0.2, seed=seed),
                ML_SCALE,
            )
            for seed in shared["seeds"]
        ]
    return shared


def _ml_needs(shared):
    def needs():
        if shared["path"] is None:
            return False, (
                "MovieLens 100K not found: pass --data DIR (holding ml-100k/u.data) "
                "or set RFMFAST_BENCH_DATA"
            )
        return True, ""

    return needs


def _movielens_case(size, ctx, shared):
    seeds = list(range(5)) if size == "full" else [0]
    shared.setdefault("seeds", seeds)
    has_data = _ml_needs(shared)

    def soft(s):
        SoftImpute, ver = load_softimpute()
        r, c, v, held, shape = s["r"], s["c"], s["v"], s["held"], s["shape"]
        t0 = time.perf_counter()
        mu, rb, cb = biases(r, c, v, shape)

        def run(rr, cc, vv, shrink):
            M = np.full(shape, np.nan)
            M[rr, cc] = vv - mu - rb[rr] - cb[cc]
            return SoftImpute(shrinkage_value=shrink, max_iters=100, verbose=False).fit_transform(M)

        M0 = np.zeros(shape)
        M0[r, c] = v - mu - rb[r] - cb[c]
        top = float(np.linalg.norm(M0, 2))
        best = None
        for frac in (1 / 50, 1 / 20, 1 / 10):  # 1/50 of the top singular value is its default
            X = run(r[~held], c[~held], v[~held], top * frac)
            e = rmse(mu + rb[r[held]] + cb[c[held]] + X[r[held], c[held]], v[held])
            best = min(best, (e, frac)) if best else (e, frac)
        X = run(r, c, v, top * best[1])
        sec = time.perf_counter() - t0
        return (
            lambda rr, cc: mu + rb[rr] + cb[cc] + X[rr, cc],
            sec,
            f"fancyimpute {ver}, on the bias residual; shrinkage top_sv*{best[1]:.3g}",
        )

    impls = [
        Impl(
            "bias-only (mu + user + item)",
            "floor",
            measure=_rmse_row(fit_bias, "splits", f"ridge from {len(BIAS_REGS)} on 5% held out"),
            needs=has_data,
        ),
        Impl(
            "ALS biased MF rank 10",
            "peer",
            measure=_rmse_row(fit_als, "splits", "ridge from 5 on 5% held out, search timed"),
            needs=has_data,
        ),
        Impl(
            "Surprise SVD (defaults)",
            "peer",
            measure=_rmse_row(fit_surprise, "splits", "Surprise 5-fold: 0.934"),
            needs=_needs(has_data, needs_surprise),
        ),
        Impl(
            "Surprise SVDpp (defaults)",
            "peer",
            measure=_rmse_row(
                lambda s: fit_surprise(s, "SVDpp"),
                "splits",
                "cache_ratings; Surprise 5-fold: 0.919",
            ),
            needs=_needs(has_data, needs_surprise),
        ),
    ]
    if size == "full":
        impls.append(
            Impl(
                "fancyimpute SoftImpute",
                "peer",
                measure=_rmse_row(soft, "splits", "shrinkage from 3 on 5% held out, search timed"),
                needs=_needs(has_data, lambda: B.has("fancyimpute", "pip install fancyimpute")),
            )
        )
    impls.append(
        Impl(
            LINRFM,
            "rfmfast",
            measure=_rmse_row(lambda s: fit_linrfm(s), "splits", ML_ANCHORS),
            needs=has_data,
        )
    )
    n = len(seeds)
    return Case(
        f"ML-100K, {n} seeded random 80/20 split{'s' if n > 1 else ''}",
        dict(problem="movielens", test_fraction=0.2, seeds=seeds),
        lambda ctx: _ml_data(ctx, shared),
        impls,
    )


# ---- 2. top-10 ranking on ML-100K ----------------------------------------------------------
def relevant_items(s, threshold=4.0):
    """{user: set of held-out items rated >= threshold}, for the users that have one."""
    keep = s["vt"] >= threshold
    rel: dict[int, set] = {}
    for u, i in zip(s["rt"][keep].tolist(), s["ct"][keep].tolist()):
        rel.setdefault(u, set()).add(i)
    return rel


def precision_at_k(top, users, rel, k=10) -> float:
    """Mean over ``users`` of |top-k row ∩ relevant| / k."""
    return float(
        np.mean([len(rel[u].intersection(t[:k].tolist())) / k for u, t in zip(users, top)])
    )


def top_k_of_scores(scores_fn, users, seen, n_items, k=10, chunk_elems=1 << 22):
    """Top k items per user from ``scores_fn(user block) -> (q, n_items)``, seen items excluded
    (``seen``: CSR user x item matrix)."""
    out = []
    step = max(1, chunk_elems // n_items)
    for a in range(0, len(users), step):
        u = users[a : a + step]
        S = np.array(scores_fn(u), dtype=np.float64)
        sub = seen[u].tocoo()
        S[sub.row, sub.col] = -np.inf
        part = np.argpartition(-S, k - 1, axis=1)[:, :k]
        order = np.argsort(-np.take_along_axis(S, part, 1), axis=1, kind="stable")
        out.append(np.take_along_axis(part, order, 1))
    return np.concatenate(out)


def _top10_case(size, ctx, shared):
    shared.setdefault("seeds", [0])
    has_data = _ml_needs(shared)
    k = 10

    def setup(ctx):
        import scipy.sparse as sp

        _ml_data(ctx, shared)
        s = shared["splits"][0]
        if "rank" not in shared:
            rel = relevant_items(s)
            seen = sp.csr_matrix((s["v"], (s["r"], s["c"])), shape=s["shape"])
            shared["rank"] = dict(s, rel=rel, users=np.array(sorted(rel)), seen=seen)
        return shared["rank"]

    def row(top, data, sec, note):
        p = precision_at_k(top, data["users"], data["rel"], k)
        return {
            "seconds": sec,
            "metric": f"precision@{k}",
            "value": p,
            "rate": len(data["v"]) / sec,
            "rate_unit": "ratings/s",
            "notes": f"{len(data['users'])} users with a relevant held-out item; " + note,
        }

    def m_pop(data, ctx):
        t0 = time.perf_counter()
        pop = np.bincount(data["c"], minlength=data["shape"][1]).astype(np.float64)
        sec = time.perf_counter() - t0
        n_items = data["shape"][1]
        top = top_k_of_scores(
            lambda u: np.broadcast_to(pop, (len(u), n_items)), data["users"], data["seen"], n_items
        )
        return row(top, data, sec, "most rated training items")

    def m_implicit(data, ctx):
        from threadpoolctl import threadpool_limits

        ALS = implicit_als()
        users = data["users"]
        with threadpool_limits(1, "blas"):  # implicit's advice: it runs its own threads
            t0 = time.perf_counter()
            model = ALS(factors=64, random_state=0)
            model.fit(data["seen"], show_progress=False)
            sec = time.perf_counter() - t0
            top, _ = model.recommend(
                users, data["seen"][users], N=k, filter_already_liked_items=True
            )
        return row(
            top, data, sec, f"implicit {_version('implicit')}, 64 factors, confidence = rating"
        )

    def m_ours(data, ctx):
        _, sec, note, est = fit_linrfm(data)
        users = data["users"]
        if hasattr(est, "recommend"):
            top, _ = est.recommend(users, k=k, exclude_seen=True)
            how = "recommend(exclude_seen=True)"
        else:
            n_items = data["shape"][1]
            items = np.arange(n_items)

            def scores(u):
                return est.predict(np.repeat(u, n_items), np.tile(items, len(u))).reshape(
                    len(u), n_items
                )

            top = top_k_of_scores(scores, users, data["seen"], n_items, k)
            how = "top 10 of predict over all items"
        return row(np.asarray(top), data, sec, f"{how}; {note}")

    return Case(
        f"ML-100K split seed 0: top-{k} ranking (held-out ratings >= 4 relevant)",
        dict(problem="top10", test_fraction=0.2, seed=0, k=k, relevant=">=4"),
        setup,
        [
            Impl("popularity (most rated)", "floor", measure=m_pop, needs=has_data),
            Impl(
                "implicit AlternatingLeastSquares",
                "peer",
                measure=m_implicit,
                needs=_needs(has_data, needs_implicit),
            ),
            Impl(LINRFM, "rfmfast", measure=m_ours, needs=has_data),
        ],
    )


# ---- 3. wide real-shaped synthetic ----------------------------------------------------------
WIDE = {"tiny": (50, 500, 2_000), "quick": (350, 4_500, 50_000), "full": (700, 9_000, 100_000)}


def _wide_case(size):
    n, d, nnz = WIDE[size]
    shared: dict = {}

    def setup(ctx):
        if "splits" not in shared:
            from rfmfast.datasets import split_ratings, synthetic_ratings

            data = synthetic_ratings(n, d, nnz, min_per_user=20, seed=0)
            test = split_ratings(len(data.values), 0.2, seed=0)
            s = _split(data.rows, data.cols, data.values, data.shape, test, HALF_STARS)
            shared["splits"] = [s]
        return shared

    return Case(
        f"synthetic {n} users x {d} items, {nnz} half-star ratings, 80/20",
        dict(problem="wide", users=n, items=d, ratings=nnz, min_per_user=20, seed=0),
        setup,
        [
            Impl(
                "bias-only (mu + user + item)",
                "floor",
                measure=_rmse_row(fit_bias, "splits"),
            ),
            Impl(
                "Surprise SVD (defaults)",
                "peer",
                measure=_rmse_row(fit_surprise, "splits"),
                needs=needs_surprise,
            ),
            Impl(
                LINRFM + " as given",
                "rfmfast",
                measure=_rmse_row(lambda s: fit_linrfm(s), "splits", "users as rows"),
            ),
            Impl(
                LINRFM + " transposed",
                "rfmfast",
                measure=_rmse_row(
                    lambda s: fit_linrfm(s, transpose=True), "splits", "items as rows"
                ),
            ),
        ],
    )


# ---- 4. ten million ratings ----------------------------------------------------------------
def _maxrss_mib() -> float:
    """The process's peak resident set so far, MiB (ru_maxrss is KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _ten_million_case(shared, dtype, device="cpu", _shape=(70_000, 10_700, 10_000_000)):
    """The 10M case for one dtype and device (the data built once in ``shared`` for all of
    them); ``_shape`` (users, items, ratings) is for checks of the case at a small size."""
    n, d, nnz = _shape

    def setup(ctx):
        if "splits" not in shared:
            from rfmfast.datasets import split_ratings, synthetic_ratings

            data = synthetic_ratings(n, d, nnz, rank=10, min_per_user=20, seed=0)
            test = split_ratings(len(data.values), 0.02, seed=0)
            s = _split(data.rows, data.cols, data.values, data.shape, test, HALF_STARS)
            del data
            shared["splits"] = [s]
        return shared

    def needs():
        if device == "cuda":
            import torch

            if not torch.cuda.is_available():
                return False, "CUDA is unavailable here (torch.cuda.is_available() is False)"
        return True, ""

    def m_ours(data, ctx):
        from rfmfast import LinRFMCompleter

        s = data["splits"][0]
        before = _maxrss_mib()
        pm = PeakMemory(ctx)
        with pm:
            t0 = time.perf_counter()
            est = LinRFMCompleter(verbose=True, dtype=dtype, device=device).fit(
                (s["r"], s["c"], s["v"]), shape=s["shape"]
            )
            sec = time.perf_counter() - t0
        after = _maxrss_mib()
        rt, ct = s["rt"], s["ct"]
        own_bias = est.mu_ + np.asarray(est.row_bias_)[rt] + np.asarray(est.col_bias_)[ct]
        return {
            "seconds": sec,
            "metric": "test_rmse",
            "value": rmse(est.predict(rt, ct), s["vt"], s["scale"]),
            "rate": len(s["v"]) / sec,
            "rate_unit": "ratings/s",
            "peak_mem_mb": pm.mb,
            "notes": f"{_linrfm_note(est)}; its bias model's RMSE "
            f"{rmse(own_bias, s['vt'], s['scale']):.4f}; ru_maxrss {before:.0f} MiB before, "
            f"{after:.0f} MiB after (the process peak)",
        }

    impls = [
        Impl(
            f"rfmfast LinRFMCompleter (verbose=True) on {device}",
            "rfmfast",
            measure=m_ours,
            needs=needs,
            precision=dtype,
        )
    ]
    if dtype == "float64" and device == "cpu":
        impls.insert(
            0, Impl("bias-only (mu + user + item)", "floor", measure=_rmse_row(fit_bias, "splits"))
        )
    return Case(
        f"synthetic {n} users x {d} items, {nnz} ratings (MovieLens-10M shape), 98/2, "
        f"{dtype} {device}",
        dict(
            problem="ten_million",
            users=n,
            items=d,
            ratings=nnz,
            rank=10,
            test_fraction=0.02,
            dtype=dtype,
            device=device,
        ),
        setup,
        impls,
    )


def cases(size, ctx):
    shared = {"path": find_ml100k(ctx.data_dir)}
    out = []
    if size != "tiny":
        out += [_movielens_case(size, ctx, shared), _top10_case(size, ctx, shared)]
    out.append(_wide_case(size))
    return out


TEN_MILLION = {
    "tiny": (300, 400, 20_000),
    "quick": (3_000, 2_000, 200_000),
    "full": (70_000, 10_700, 10_000_000),
}


def ten_million_cases(size, ctx):
    """The MovieLens-10M shape at full size (tiny and quick: smaller matrices of that kind,
    for checking the harness), float32 and float64 on the CPU, and float32 on CUDA where a
    GPU is visible."""
    big: dict = {}
    shape = TEN_MILLION[size]
    dtypes = ("float32",) if size == "tiny" else ("float32", "float64")
    out = [_ten_million_case(big, dt, _shape=shape) for dt in dtypes]
    import torch

    if torch.cuda.is_available():  # listed only where it can run
        out.append(_ten_million_case(big, "float32", "cuda", _shape=shape))
    return out


BENCHMARKS = [
    Benchmark(
        "ratings",
        "matrix completion on ratings: lin-RFM against a bias-only model, ALS, Surprise "
        "SVD / SVD++, SoftImpute (test RMSE) and implicit's ALS (precision@10)",
        "ratings/s (training ratings / seconds of one fit)",
        cases,
        devices=("cpu",),
        device_note="the rating benchmarks run on the CPU",
    ),
    Benchmark(
        "ratings_10m",
        "matrix completion at ten million ratings (MovieLens-10M shape): lin-RFM's time, "
        "memory and RMSE against the bias-only model, CPU and CUDA",
        "ratings/s (training ratings / seconds of one fit)",
        ten_million_cases,
        devices=("cpu",),
        device_note="the CPU cases run on --device cpu; the CUDA case needs a visible GPU",
    ),
]
