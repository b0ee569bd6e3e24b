"""LinRFMCompleter as users of rating data meet it: defaults, orientation, ids, recommend."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from rfmfast import LinRFMCompleter
from rfmfast.datasets import load_movielens, split_ratings, synthetic_ratings
from rfmfast.models.linrfm_ids import IdMap
from rfmfast.models.linrfm_plan import sweep_cost

ML100K = Path(__file__).resolve().parents[2] / "shared" / "data" / "ml-100k" / "u.data"


def low_rank(n=300, d=200, r=3, frac=0.3, seed=0):
    rng = np.random.default_rng(seed)
    Y = rng.standard_normal((n, r)) @ rng.standard_normal((r, d))
    return Y, rng.random((n, d)) < frac


def missing_err(X, Y, mask):
    return np.linalg.norm((X - Y)[~mask]) / np.linalg.norm(Y[~mask])


def bias_only_rmse(rows, cols, vals, shape, rt, ct, vt):
    """The regularized offsets model (ridge chosen on 5% of the training ratings)."""
    rng = np.random.default_rng(1)
    held = rng.random(len(vals)) < 0.05

    def fit(r, c, v, lam):
        mu, rb, cb = v.mean(), np.zeros(shape[0]), np.zeros(shape[1])
        nr, nc = np.bincount(r, minlength=shape[0]), np.bincount(c, minlength=shape[1])
        for _ in range(15):
            rb = np.bincount(r, v - mu - cb[c], minlength=shape[0]) / (nr + lam)
            cb = np.bincount(c, v - mu - rb[r], minlength=shape[1]) / (nc + lam)
        return lambda a, b: mu + rb[a] + cb[b]

    errs = {}
    for lam in (1.0, 2.5, 5.0, 10.0, 25.0):
        f = fit(rows[~held], cols[~held], vals[~held], lam)
        errs[lam] = np.sqrt(np.mean((f(rows[held], cols[held]) - vals[held]) ** 2))
    f = fit(rows, cols, vals, min(errs, key=errs.get))
    return float(np.sqrt(np.mean((np.clip(f(rt, ct), 0.5, 5) - vt) ** 2)))


# ---- defaults ---------------------------------------------------------------------------------
def test_defaults_recover_an_exact_low_rank_matrix():
    Y, mask = low_rank()
    est = LinRFMCompleter().fit(Y, mask)
    assert est.bias_ == "none"  # offsets do not help on a zero-mean low-rank matrix
    assert missing_err(est.completed_, Y, mask) <= 1e-3
    wide = LinRFMCompleter().fit(Y.T.copy(), mask.T.copy())
    assert missing_err(wide.completed_, Y.T, mask.T) <= 1e-3


def test_defaults_on_rating_like_data_beat_the_offsets_model():
    R = synthetic_ratings(150, 1200, 12_000, min_per_user=20, rank=5, noise=0.4, seed=3)
    test = split_ratings(len(R.values), 0.2, seed=0)
    tr = ~test
    est = LinRFMCompleter().fit((R.rows[tr], R.cols[tr], R.values[tr]), shape=R.shape)
    assert est.bias_ == "rowcol"
    assert est.stop_reason_ in ("ridge_drop_failed", "patience")
    pred = np.clip(est.predict(R.rows[test], R.cols[test]), 0.5, 5)
    ours = float(np.sqrt(np.mean((pred - R.values[test]) ** 2)))
    floor = bias_only_rmse(
        R.rows[tr], R.cols[tr], R.values[tr], R.shape, R.rows[test], R.cols[test], R.values[test]
    )
    assert ours < 0.98 * floor, (ours, floor)


@pytest.mark.skipif(not ML100K.is_file(), reason=f"MovieLens 100K not found at {ML100K}")
def test_movielens_defaults():
    R = load_movielens(ML100K)
    test = split_ratings(len(R.values), 0.2, seed=0)
    tr = ~test
    est = LinRFMCompleter(device="cpu").fit((R.rows[tr], R.cols[tr], R.values[tr]), shape=R.shape)
    pred = np.clip(est.predict(R.rows[test], R.cols[test]), 1, 5)
    rmse = float(np.sqrt(np.mean((pred - R.values[test]) ** 2)))
    assert rmse < 0.915, rmse  # 5 splits average 0.908 (docs/linrfm.md); this split 0.906
    assert est.orientation_ == "cols"  # 1,682 items x 943 users is the cheaper way round


# ---- orientation ------------------------------------------------------------------------------
def test_both_orientations_give_the_same_completion():
    Y, mask = low_rank(120, 90, 2, 0.4, seed=2)
    a = LinRFMCompleter(orientation="rows").fit(Y, mask)
    b = LinRFMCompleter(orientation="cols").fit(Y, mask)
    assert (a.orientation_, b.orientation_) == ("rows", "cols")
    assert b.completed_.shape == Y.shape and b.P_.shape == (120, 120)
    assert missing_err(a.completed_, Y, mask) < 1e-3
    assert missing_err(b.completed_, Y, mask) < 1e-3
    assert missing_err(b.completed_, a.completed_, mask) < 1e-3
    r, c = np.nonzero(~mask)
    np.testing.assert_allclose(b.predict(r, c), b.completed_[r, c])
    np.testing.assert_array_equal(b.completed_[mask], Y[mask])  # observed come back exactly


def test_auto_orientation_follows_the_cost_model(capsys):
    R = synthetic_ratings(60, 900, 6000, min_per_user=20, seed=1)
    est = LinRFMCompleter(max_iter=3, verbose=True).fit((R.rows, R.cols, R.values), shape=R.shape)
    cost = est.plan_["cost"]
    assert est.orientation_ == min(cost, key=cost.get) == "cols"
    assert cost["rows"] == pytest.approx(
        sweep_cost(np.bincount(R.rows, minlength=60), 60, 900, 0.5)
    )
    out = capsys.readouterr().out
    assert "completing the transpose (900 x 60)" in out and "offsets: rowcol" in out
    tall = LinRFMCompleter(max_iter=3).fit((R.cols, R.rows, R.values), shape=(900, 60))
    assert tall.orientation_ == "rows"
    np.testing.assert_allclose(tall.completed_, est.completed_.T, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("orientation", ["rows", "cols"])
def test_predict_and_recommend_without_the_completed_matrix(orientation):
    R = synthetic_ratings(40, 300, 2500, min_per_user=20, seed=4)
    Y = (R.rows, R.cols, R.values)
    kw = dict(orientation=orientation, max_iter=4, block_elems=2000, mixed_precision=False)
    full = LinRFMCompleter(**kw).fit(Y, shape=R.shape)
    lean = LinRFMCompleter(max_completed_elems=0, **kw).fit(Y, shape=R.shape)
    assert lean.completed_ is None
    rng = np.random.default_rng(0)
    r, c = rng.integers(0, 40, 500), rng.integers(0, 300, 500)
    np.testing.assert_allclose(lean.predict(r, c), full.completed_[r, c], rtol=1e-10, atol=1e-10)
    users = np.array([0, 7, 7, 39])
    items_a, scores_a = full.recommend(users, k=5)
    items_b, scores_b = lean.recommend(users, k=5)
    np.testing.assert_array_equal(items_a, items_b)
    np.testing.assert_allclose(scores_a, scores_b, rtol=1e-10)


def test_callback_values_are_in_the_orientation_of_y():
    Y, mask = low_rank(30, 80, 2, 0.5, seed=5)
    r, c = np.nonzero(mask)
    seen = []

    def cb(rec, values):
        seen.append(np.abs(values(r, c) - Y[r, c]).max())
        return rec["sweep"] >= 3

    # holdout 0: every observed entry is fitted, and comes back as observed
    est = LinRFMCompleter(callback=cb, bias="none", holdout=0).fit(Y, mask)
    assert est.orientation_ == "cols" and est.stop_reason_ == "callback"
    assert max(seen) < 1e-5 * np.abs(Y).max()  # observed come back (float32 sweeps)


# ---- ids --------------------------------------------------------------------------------------
def ratings_table(seed=0):
    R = synthetic_ratings(50, 200, 3000, min_per_user=20, seed=seed)
    users = np.array([f"u{10 * i + 3}" for i in range(50)], dtype=object)
    items = np.arange(200) * 7 + 1000  # ints with gaps
    return R, pd.DataFrame(
        {"user": users[R.rows], "item": items[R.cols], "rating": R.values, "ts": 0}
    )


def test_ids_round_trip_through_a_dataframe():
    R, df = ratings_table()
    est = LinRFMCompleter(max_iter=4).fit(df)
    # rows/columns are the ids in sorted order: the same fit as on those positions
    u_ids, r = np.unique(df["user"].to_numpy(), return_inverse=True)
    i_ids, c = np.unique(df["item"].to_numpy(), return_inverse=True)
    ref = LinRFMCompleter(max_iter=4).fit((r, c, df["rating"].to_numpy()))
    assert list(est.row_ids_[:3]) == ["u103", "u113", "u123"]
    np.testing.assert_array_equal(est.row_ids_, u_ids)
    np.testing.assert_array_equal(est.col_ids_, np.arange(200) * 7 + 1000)
    np.testing.assert_array_equal(est.completed_, ref.completed_)
    got = est.predict(df["user"].to_numpy(), df["item"].to_numpy())
    np.testing.assert_allclose(got, df["rating"].to_numpy())  # observed come back
    assert est.n_unknown_ == 0
    # custom column names and a frame with other columns
    named = df.rename(columns={"user": "who", "item": "what", "rating": "stars"})
    est2 = LinRFMCompleter(max_iter=4).fit(named, columns=("who", "what", "stars"))
    np.testing.assert_allclose(est2.completed_, est.completed_)
    # a tuple of string ids is read as ids too
    est3 = LinRFMCompleter(max_iter=4).fit(
        (df["user"].to_numpy(), df["item"].to_numpy(), df["rating"].to_numpy())
    )
    np.testing.assert_allclose(est3.completed_, est.completed_)


def test_integer_ids_with_gaps_when_asked():
    R, df = ratings_table()
    est = LinRFMCompleter(max_iter=3).fit(
        (R.rows * 3 + 5, df["item"].to_numpy(), R.values), ids=True
    )
    assert est.shape_ == (50, 200) and est.row_ids_[0] == 5
    plain = LinRFMCompleter(max_iter=3).fit((R.rows, R.cols, R.values), shape=R.shape)
    np.testing.assert_allclose(est.completed_, plain.completed_)


def test_unknown_ids_are_answered_by_the_offsets_and_counted():
    _, df = ratings_table()
    est = LinRFMCompleter(max_iter=3).fit(df)
    assert est.bias_ == "rowcol"
    u0, i0 = est.row_ids_[0], est.col_ids_[0]
    out = est.predict(np.array(["nobody", u0, "x"], dtype=object), [i0, -5, -6])
    assert est.n_unknown_ == 3
    np.testing.assert_allclose(
        out,
        [
            est.mu_ + est.col_bias_[0],
            est.mu_ + est.row_bias_[0],
            est.mu_,
        ],
    )
    est.predict([u0], [i0])
    assert est.n_unknown_ == 0
    items, scores = est.recommend("nobody", k=3)
    top = np.argsort(-est.col_bias_, kind="stable")[:3]
    np.testing.assert_array_equal(items, est.col_ids_[top])
    assert est.n_unknown_ == 1


def test_recommend_excludes_seen_items_and_returns_ids():
    R, df = ratings_table()
    est = LinRFMCompleter(max_iter=4).fit(df)
    users = est.row_ids_[[0, 5, 5]]
    items, scores = est.recommend(users, k=10)
    assert items.shape == scores.shape == (3, 10)
    for u, its, sc in zip(users, items, scores):
        seen = set(df.loc[df["user"] == u, "item"])
        assert not seen & set(its)
        assert np.all(np.diff(sc) <= 0)
        row = est.completed_[list(est.row_ids_).index(u)]
        col = {c: j for j, c in enumerate(est.col_ids_)}
        np.testing.assert_allclose(sc, row[[col[i] for i in its]])
    one_items, one_scores = est.recommend(users[0], k=10)
    np.testing.assert_array_equal(one_items, items[0])
    with_seen, _ = est.recommend(users[0], k=200, exclude_seen=False)
    assert len(set(with_seen)) == 200
    _, tail = est.recommend(users[0], k=200)
    n_seen = int((df["user"] == users[0]).sum())
    assert np.isneginf(tail[-n_seen:]).all() and np.isfinite(tail[: 200 - n_seen]).all()
    with pytest.raises(ValueError, match="k must be an integer in"):
        est.recommend(users[0], k=0)
    with pytest.raises(ValueError, match="k must be an integer in"):
        est.recommend(users[0], k=201)


def test_recommend_after_a_refit_excludes_the_new_seen_items():
    Y, mask = low_rank(40, 30, 2, 0.5, seed=8)
    est = LinRFMCompleter(max_iter=3).fit(Y, mask)
    est.recommend(0, k=3)
    other = ~mask
    other[:, 0] = True  # every row sees column 0 now
    items, _ = est.fit(Y, other).recommend(np.arange(40), k=3)
    assert not (items == 0).any()
    for i in range(40):
        assert not other[i, items[i]].any()


def test_recommend_with_positions():
    Y, mask = low_rank(40, 30, 2, 0.5, seed=6)
    est = LinRFMCompleter(max_iter=5).fit(Y, mask)
    items, scores = est.recommend(3, k=4)
    masked = np.where(mask[3], -np.inf, est.completed_[3])
    np.testing.assert_array_equal(items, np.argsort(-masked, kind="stable")[:4])
    with pytest.raises(ValueError, match="out of range"):
        est.recommend(40)


# ---- bad tables -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "frame, kwargs, match",
    [
        (pd.DataFrame({"a": [1], "b": [2], "c": [3.0], "d": [0]}), {}, "say which hold"),
        (
            pd.DataFrame({"user": [1], "item": [2], "rating": [3.0]}),
            {"columns": ("user", "x", "rating")},
            r"columns \['x'\] are not",
        ),  # noqa: E501
        (
            pd.DataFrame({"user": [1, 2], "item": [2, 3], "rating": [3.0, np.nan]}),
            {},
            "rating at row 1",
        ),  # noqa: E501
        (
            pd.DataFrame({"user": ["a", "a"], "item": [2, 2], "rating": [3.0, 4.0]}),
            {},
            "'a' rated item 2 more than once",
        ),  # noqa: E501
        (
            pd.DataFrame({"user": ["a", None], "item": [2, 3], "rating": [3.0, 4.0]}),
            {},
            "user id at position 1 is missing",
        ),  # noqa: E501
        (
            pd.DataFrame({"user": [1.0, np.nan], "item": [2, 3], "rating": [3.0, 4.0]}),
            {},
            "user id at position 1 is missing",
        ),  # noqa: E501
        (
            pd.DataFrame({"user": ["a", 1], "item": [2, 3], "rating": [3.0, 4.0]}),
            {},
            "one sortable kind",
        ),  # noqa: E501
        (pd.DataFrame({"user": [], "item": [], "rating": []}), {}, "empty"),
        (pd.DataFrame({"user": ["a"], "item": [2], "rating": ["good"]}), {}, "must hold numbers"),
        (
            pd.DataFrame({"user": ["a"], "item": [2], "rating": [3.0]}),
            {"shape": (1, 1)},
            "do not apply",
        ),  # noqa: E501
    ],
)
def test_bad_tables_are_refused_before_work(frame, kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        LinRFMCompleter().fit(frame, **kwargs)


def test_float_positions_point_to_ids():
    with pytest.raises(TypeError, match="ids=True"):
        LinRFMCompleter().fit((np.array([0.0, 1.0]), np.array([0, 1]), np.array([1.0, 2.0])))
    with pytest.raises(ValueError, match="columns applies to a DataFrame"):
        LinRFMCompleter().fit((np.array([0, 1]), np.array([0, 1]), np.ones(2)), columns=("a",))


def test_dataframe_of_positions_with_ids_false():
    Y, mask = low_rank(30, 20, 2, 0.5, seed=7)
    r, c = np.nonzero(mask)
    df = pd.DataFrame({"user": r, "item": c, "rating": Y[r, c]})
    a = LinRFMCompleter(max_iter=3).fit(df, ids=False)
    b = LinRFMCompleter(max_iter=3).fit(Y, mask)
    assert a.row_ids_ is None
    np.testing.assert_allclose(a.completed_, b.completed_)


def test_idmap_encodes_unknown_and_other_kinds():
    m, pos = IdMap.fit(np.array(["b", "a", "b"], dtype=object), "user")
    np.testing.assert_array_equal(pos, [1, 0, 1])
    np.testing.assert_array_equal(m.encode(["a", "zz", "b"]), [0, -1, 1])
    np.testing.assert_array_equal(m.encode([3, 4]), [-1, -1])  # ints against string ids
    np.testing.assert_array_equal(m.decode([1, 0]), ["b", "a"])


def test_gram_panels_match_the_full_product():
    import torch

    from rfmfast.models.linrfm_rows import gram_mirror_, gram_update_

    X = torch.randn(53, 23, dtype=torch.float64)
    G = torch.zeros(23, 23, dtype=torch.float64)
    for r0 in range(0, 53, 20):  # row chunks, ragged panels of 7 columns
        gram_update_(G, X[r0 : r0 + 20], panel=7)
    gram_mirror_(G, panel=7)
    torch.testing.assert_close(G, X.T @ X, rtol=1e-12, atol=1e-12)


# ---- mixed precision --------------------------------------------------------------------------
def test_mixed_precision_sweeps_and_the_float64_answer():
    """float32 sweeps while the ridge keeps the row systems well conditioned, float64 once it is
    small; the exact completion is that of float64 throughout, and the answer is float64."""
    Y, mask = low_rank()
    mixed = LinRFMCompleter().fit(Y, mask)
    full = LinRFMCompleter(mixed_precision=False).fit(Y, mask)
    kinds = [h["dtype"] for h in mixed.history_]
    assert kinds[0] == "float32" and kinds[-1] == "float64"
    d = Y.shape[1] if mixed.orientation_ == "rows" else Y.shape[0]
    for h in mixed.history_:  # the rule: (1 + d / reg) eps32 <= 1e-3
        small = (1 + d / h["reg"]) * np.finfo(np.float32).eps <= 1e-3
        assert h["dtype"] == ("float32" if small else "float64")
    assert {h["dtype"] for h in full.history_} == {"float64"}
    assert mixed.completed_.dtype == np.float64 and mixed.P_.dtype == torch.float64
    assert missing_err(mixed.completed_, Y, mask) <= 1e-3
    assert missing_err(full.completed_, Y, mask) <= 1e-3
    f32 = LinRFMCompleter(dtype="float32", max_iter=3).fit(Y, mask)
    assert {h["dtype"] for h in f32.history_} == {"float32"}


def test_mixed_precision_on_ratings_changes_nothing_that_matters():
    R = synthetic_ratings(150, 1200, 12_000, min_per_user=20, rank=5, noise=0.4, seed=3)
    test = split_ratings(len(R.values), 0.2, seed=0)
    tr = ~test
    Y = (R.rows[tr], R.cols[tr], R.values[tr])
    a = LinRFMCompleter().fit(Y, shape=R.shape)
    b = LinRFMCompleter(mixed_precision=False).fit(Y, shape=R.shape)
    assert {h["dtype"] for h in a.history_} == {"float32"}
    assert a.n_iter_ == b.n_iter_ and a.best_iter_ == b.best_iter_
    pa, pb = a.predict(R.rows[test], R.cols[test]), b.predict(R.rows[test], R.cols[test])
    np.testing.assert_allclose(pa, pb, rtol=0, atol=1e-4)
