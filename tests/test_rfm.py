"""RFMRegressor / RFMClassifier: the iteration against the ops, sklearn conventions, inputs,
save/load, and clear errors. Small sizes: the whole file runs in seconds."""

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.base import clone
from sklearn.exceptions import ConvergenceWarning, NotFittedError
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import rfmfast
from rfmfast import RFMClassifier, RFMRegressor
from rfmfast.cases import low_rank_data


def lowrank(n, d=8, seed=0):
    return low_rank_data(n, d, seed)


def blobs(n=120, d=5, k=3, seed=0, labels=("a", "b", "c")):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    X = rng.normal(0, 1, (n, d)) + 2.0 * np.eye(k, d)[y]
    return X, np.array(labels)[y]


@pytest.mark.parametrize("convention", ["xrfm", "grokking"])
def test_one_iteration_equals_the_ops(convention):
    """M_ after one update is normalize(agop(X, X, alpha_0) ** power), alpha_0 the first solve."""
    X, y = lowrank(150)
    if convention == "xrfm":
        kw = dict(kernel="laplace", bandwidth=10.0, reg=1e-3, agop_power=1.0, normalize="max")
    else:
        kw = dict(
            kernel="gaussian",
            bandwidth=2.5,
            reg=1e-3,
            agop_power=0.5,
            normalize=None,
            centering=True,
        )
    m = RFMRegressor(iters=1, keep_best=False, dtype="float64", solver="cholesky", **kw).fit(X, y)
    opts = dict(kernel=kw["kernel"], bandwidth=kw["bandwidth"])
    a0 = rfmfast.kernel_solve(X, y[:, None], reg=1e-3, solver="cholesky", **opts)
    A = rfmfast.agop(X, X, a0, centering=kw.get("centering", False), **opts)
    if convention == "xrfm":
        M = A / A.max()
        assert m.M_.max() == pytest.approx(1.0)
    else:
        w, V = np.linalg.eigh(A)
        M = (V * np.sqrt(np.clip(w, 0, None))) @ V.T
    assert np.abs(m.M_ - M).max() <= 1e-8 * np.abs(M).max()
    a1 = rfmfast.kernel_solve(X, y[:, None], reg=1e-3, M=m.M_, solver="cholesky", **opts)
    assert np.abs(m.alpha_ - a1).max() <= 1e-6 * np.abs(a1).max()
    assert len(m.history_) == 2 and m.best_iter_ == 1


def test_learns_low_rank_target_and_keeps_best_iterate():
    X, y = lowrank(500, seed=1)
    Xv, yv = lowrank(300, seed=2)
    m = RFMRegressor(iters=3).fit(X, y, Xv, yv)
    val = [r["val_mse"] for r in m.history_]
    assert m.best_iter_ == int(np.argmin(val))
    assert val[m.best_iter_] < 0.8 * val[0]  # features learned
    pred = m.predict(Xv)
    assert pred.shape == (300,) and np.mean((pred - yv) ** 2) == pytest.approx(min(val), rel=1e-4)
    assert m.M_.shape == (8, 8) and m.alpha_.shape == (500, 1)


def test_diag_and_agop_sample_are_seeded():
    X, y = lowrank(200)
    fit = lambda seed: RFMRegressor(
        iters=1, diag=True, agop_samples=50, random_state=seed, keep_best=False
    ).fit(X, y)
    a, b, c = fit(0), fit(0), fit(1)
    assert a.M_.shape == (8,)
    np.testing.assert_array_equal(a.M_, b.M_)
    assert not np.array_equal(a.M_, c.M_)


def test_validation_split_and_early_stopping():
    X, y = lowrank(300)
    m = RFMRegressor(iters=4, validation_fraction=0.25, early_stopping=1.0).fit(X, y)
    assert m.alpha_.shape == (225, 1)
    val = [r["val_mse"] for r in m.history_]
    # with ratio 1.0 the fit stops at the first iterate worse than the best so far
    for t in range(1, len(val)):
        if val[t] > min(val[:t]):
            assert t == len(val) - 1
    if len(val) < 5:
        assert val[-1] > min(val[:-1])
    m2 = RFMRegressor(iters=4, validation_fraction=0.25, early_stopping=1.0).fit(X, y)
    np.testing.assert_array_equal(m.M_, m2.M_)


def test_sklearn_conventions():
    X, y = lowrank(80)
    m = RFMRegressor(bandwidth=5.0, iters=1)
    assert m.get_params()["bandwidth"] == 5.0
    m.set_params(reg=1e-2)
    c = clone(m)
    assert c.get_params() == m.get_params() and not hasattr(c, "alpha_")
    pipe = make_pipeline(StandardScaler(), RFMRegressor(iters=1)).fit(X, y)
    assert pipe.score(X, y) > 0.9
    gs = GridSearchCV(RFMRegressor(iters=1), {"bandwidth": [1.0, 10.0]}, cv=2).fit(X, y)
    assert gs.best_params_["bandwidth"] in (1.0, 10.0)
    Xc, yc = blobs()
    clf = RFMClassifier(iters=1).fit(Xc, yc)
    assert clf.score(Xc, yc) > 0.9 and list(clf.classes_) == ["a", "b", "c"]
    P = clf.predict_proba(Xc)
    assert P.shape == (120, 3) and np.allclose(P.sum(1), 1) and (P >= 0).all()
    assert (clf.classes_[P.argmax(1)] == clf.predict(Xc)).all()


def test_numpy_torch_pandas_inputs_agree():
    X, y = lowrank(100)
    a = RFMRegressor(iters=1).fit(X, y)
    b = RFMRegressor(iters=1).fit(torch.from_numpy(X), torch.from_numpy(y))
    cols = [f"f{i}" for i in range(8)]
    c = RFMRegressor(iters=1).fit(pd.DataFrame(X, columns=cols), pd.Series(y))
    pa = a.predict(X)
    pb = b.predict(torch.from_numpy(X))
    assert isinstance(pb, torch.Tensor)
    np.testing.assert_array_equal(pa, pb.numpy())
    np.testing.assert_array_equal(pa, c.predict(pd.DataFrame(X, columns=cols)))
    Xc, yc = blobs(labels=(0, 1, 2))
    p1 = RFMClassifier(iters=1).fit(Xc, torch.from_numpy(yc)).predict(Xc)
    p2 = RFMClassifier(iters=1).fit(Xc, pd.Series(yc)).predict(Xc)
    np.testing.assert_array_equal(p1, p2)


def test_cg_solver_matches_cholesky():
    X, y = lowrank(200)
    a = RFMRegressor(iters=1, solver="cholesky", dtype="float64").fit(X, y)
    b = RFMRegressor(iters=1, solver="cg", dtype="float64").fit(X, y)
    assert b.history_[0]["solver"] == "cg" and b.history_[0]["cg_iterations"] > 0
    pa, pb = a.predict(X), b.predict(X)
    assert np.abs(pa - pb).max() <= 1e-5 * np.abs(pa).max()


@pytest.mark.parametrize("cls", [RFMRegressor, RFMClassifier])
def test_save_load_round_trip_is_exact(cls, tmp_path):
    X, y = lowrank(120) if cls is RFMRegressor else blobs()
    m = cls(iters=2, diag=cls is RFMClassifier).fit(X, y, X[:30], y[:30])
    path = tmp_path / "model.pt"
    m.save(path)
    m2 = cls.load(path)
    np.testing.assert_array_equal(m.predict(X), m2.predict(X))
    np.testing.assert_array_equal(m.M_, m2.M_)
    assert m2.history_ == m.history_ and m2.best_iter_ == m.best_iter_
    assert m2.get_params() == m.get_params()
    if cls is RFMClassifier:
        np.testing.assert_array_equal(m.predict_proba(X), m2.predict_proba(X))
        assert m2.classes_.dtype == m.classes_.dtype
        with pytest.raises(ValueError, match="RFMClassifier"):
            RFMRegressor.load(path)


def test_verbose_prints_per_iteration_metrics(capsys):
    X, y = lowrank(60)
    RFMRegressor(iters=2, verbose=True).fit(X, y, X[:20], y[:20])
    out = capsys.readouterr().out
    assert "solver cholesky" in out
    for t in range(3):
        assert f"iter {t}/2" in out
    assert "train_mse" in out and "val_mse" in out


def test_clear_errors():
    X, y = lowrank(50)
    with pytest.raises(NotFittedError):
        RFMRegressor().predict(X)
    Xn = X.copy()
    Xn[4, 1] = np.nan
    with pytest.raises(ValueError, match="NaN or inf"):
        RFMRegressor().fit(Xn, y)
    Xi = X.copy()
    Xi[0, 0] = np.inf
    with pytest.raises(ValueError, match="NaN or inf"):
        RFMRegressor().fit(Xi, y)
    yn = y.copy()
    yn[0] = np.nan
    with pytest.raises(ValueError, match="NaN or inf"):
        RFMRegressor().fit(X, yn)
    with pytest.raises(ValueError, match="rows"):
        RFMRegressor().fit(X, y[:-1])
    m = RFMRegressor(iters=0).fit(X, y)
    with pytest.raises(ValueError, match="8 features"):
        m.predict(X[:, :5])
    with pytest.raises(ValueError, match="NaN or inf"):
        m.predict(Xn)
    Xc, yc = blobs()
    yc = yc.copy()
    yc[0] = "lonely"
    with pytest.raises(ValueError, match="only one sample"):
        RFMClassifier().fit(Xc, yc)
    with pytest.raises(ValueError, match="single class"):
        RFMClassifier().fit(Xc, np.zeros(len(Xc)))
    with pytest.raises(ValueError, match="both X_val and y_val"):
        RFMRegressor().fit(X, y, X_val=X)
    with pytest.raises(ValueError, match="normalize"):
        RFMRegressor(normalize="sum").fit(X, y)
    with pytest.raises(ValueError, match="kernel"):
        RFMRegressor(kernel="rbf").fit(X, y)
    with pytest.raises(ValueError, match="2-D"):
        RFMRegressor().fit(X[:, 0], y)


def test_auto_solver_uses_cg_and_falls_back_to_cholesky(monkeypatch, capsys):
    from rfmfast.models import rfm as rfm_mod

    X, y = lowrank(300)
    monkeypatch.setattr(rfm_mod, "choose_solver", lambda n, reg, *a, **k: ("cg", "cg: forced"))
    m = RFMRegressor(iters=1, dtype="float64").fit(X, y)
    assert all(r["solver"] == "cg" and r["cg_iterations"] > 0 for r in m.history_)
    real = rfm_mod.cg_solve
    monkeypatch.setattr(rfm_mod, "cg_solve", lambda *a, **k: real(*a, max_iter=1, rank=10, **k))
    with pytest.warns(ConvergenceWarning, match="did not converge"):
        m2 = RFMRegressor(iters=1, dtype="float64", verbose=True).fit(X, y)
    assert all(r["solver"] == "cholesky" for r in m2.history_)
    assert "did not converge" in capsys.readouterr().out
    ref = RFMRegressor(iters=1, dtype="float64", solver="cholesky").fit(X, y)
    np.testing.assert_allclose(m2.predict(X), ref.predict(X), rtol=1e-10, atol=1e-12)


def test_grokking_recipe_cli(tmp_path, capsys):
    from rfmfast.cli import main

    out = tmp_path / "grok.png"
    assert (
        main(
            [
                "grokking",
                "--op",
                "x*y",
                "--p",
                "11",
                "--iters",
                "2",
                "--train-fraction",
                "0.8",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    text = capsys.readouterr().out
    assert "x*y mod 11" in text and "test acc" in text
    assert len([ln for ln in text.splitlines() if ln.strip()[:1].isdigit()]) == 3  # iters 0..2
    assert out.stat().st_size > 1000 and out.read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(ValueError, match="unknown op"):
        from rfmfast.recipes.grokking import modular_data

        modular_data("x/y", 7)
