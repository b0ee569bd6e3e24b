"""RFMRegressor / RFMClassifier: no silent failure (diverged solves, zero AGOPs, overflow), the
feature-name contract, scikit-learn scoring of binary classifiers, progress, every kind of valid
input accepted and every parameter checked. Small sizes."""

import re
import warnings

import numpy as np
import pandas as pd
import pytest
import scipy.sparse
from sklearn.calibration import CalibratedClassifierCV
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import cross_val_score

from rfmfast import RFMClassifier, RFMRegressor
from rfmfast.solvers import auto, cg


def lowrank(n=80, d=4, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(0, 0.5, (n, d))
    return X, X[:, 0] * X[:, 1] + 0.3 * X[:, 2]


def conflicting(n=60, dup=10, d=4):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(n, d))
    return np.vstack([X, X[:dup]]), rng.normal(size=n + dup)


def binary(n=120, d=4, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    y = np.where(X[:, 0] + 0.5 * rng.normal(size=n) > 0, "yes", "no")
    return X, y


# ---- 4: a diverged CG is never an answer --------------------------------------------------
def test_diverged_cg_warns_and_is_recorded_in_the_history():
    X, y = conflicting()
    with pytest.warns(ConvergenceWarning, match="cg did not converge"):
        m = RFMRegressor(solver="cg", reg=0.0, iters=1).fit(X, y)
    assert all(r["converged"] is False and "did not converge" in r["warning"] for r in m.history_)
    assert np.abs(m.predict(X)).max() < 100 * np.abs(y).max()  # it was 4.7e8


def test_auto_cg_that_diverges_without_room_for_cholesky_raises(monkeypatch):
    from rfmfast.models import rfm as rfm_mod

    X, y = conflicting()
    monkeypatch.setattr(rfm_mod, "choose_solver", lambda *a, **k: ("cg", "cg: forced"))
    monkeypatch.setattr(auto, "available_memory", lambda device: 0)
    with pytest.warns(ConvergenceWarning), pytest.raises(np.linalg.LinAlgError, match="diverged"):
        RFMRegressor(reg=0.0, iters=1).fit(X, y)


# ---- 5: feature names ----------------------------------------------------------------------
def test_feature_names_are_kept_and_checked():
    X, y = lowrank()
    cols = ["a", "b", "c", "d"]
    df = pd.DataFrame(X, columns=cols)
    m = RFMRegressor(iters=1).fit(df, y)
    assert list(m.feature_names_in_) == cols and m.n_features_in_ == 4
    np.testing.assert_array_equal(m.predict(df), m.predict(df[cols]))
    with pytest.raises(
        ValueError,
        match=r"(?s)same order as they were in fit.*Out of place: "
        r"\['b', 'a'\]",
    ):
        m.predict(df[["b", "a", "c", "d"]])
    with pytest.raises(ValueError, match="unseen at fit time:\n- e\n.*missing:\n- d\n"):
        m.predict(df.rename(columns={"d": "e"}))
    with pytest.raises(ValueError, match="missing:\n- d\n"):
        m.predict(df[["a", "b", "c"]])
    with pytest.warns(UserWarning, match="does not have valid feature names"):
        m.predict(X)
    with pytest.raises(ValueError, match="X_val: The feature names should match"):
        RFMRegressor(iters=1).fit(df, y, df[["d", "c", "b", "a"]], y)
    plain = RFMRegressor(iters=1).fit(X, y)
    assert not hasattr(plain, "feature_names_in_")
    with pytest.warns(UserWarning, match="fitted without feature names"):
        plain.predict(df)


# ---- 7: the AGOP collapses to zero ---------------------------------------------------------
def test_zero_agop_warns_stops_and_keeps_a_nonzero_M():
    X, y = lowrank()
    with pytest.warns(
        ConvergenceWarning,
        match=r"AGOP of iteration 0 is zero.*bandwidth 0\.001 "
        r"is far below.*try a larger bandwidth",
    ):
        m = RFMRegressor(bandwidth=1e-3, iters=3).fit(X, y)
    assert len(m.history_) == 1 and "AGOP" in m.history_[0]["warning"]
    assert np.abs(m.M_).max() > 0  # the identity of iteration 0


# ---- 9: binary classifiers and scikit-learn's scoring ------------------------------------
def test_binary_decision_function_and_probabilities_follow_sklearn():
    X, y = binary()
    clf = RFMClassifier(iters=1).fit(X, y)
    s = clf.decision_function(X)
    assert s.shape == (120,)
    np.testing.assert_array_equal(clf.predict(X), clf.classes_[(s > 0).astype(int)])
    P = clf.predict_proba(X)
    assert P.shape == (120, 2) and np.allclose(P.sum(1), 1) and (P > 0).all()
    order = np.argsort(s)
    assert (np.diff(P[order, 1]) >= 0).all()  # ordered like the scores
    assert len(np.unique(P[:, 1])) == len(np.unique(s))  # no ties the scores do not have
    auc = cross_val_score(RFMClassifier(iters=1), X, y, cv=3, scoring="roc_auc")
    assert np.isfinite(auc).all() and auc.mean() > 0.8
    cal = CalibratedClassifierCV(RFMClassifier(iters=1), cv=3).fit(X, y)
    Pc = cal.predict_proba(X)
    assert Pc.shape == (120, 2) and np.allclose(Pc.sum(1), 1)


def test_multiclass_scores_stay_two_dimensional():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 90)
    X = rng.normal(size=(90, 4)) + 2.0 * np.eye(3, 4)[y]
    clf = RFMClassifier(iters=1).fit(X, y)
    S, P = clf.decision_function(X), clf.predict_proba(X)
    assert S.shape == P.shape == (90, 3) and np.allclose(P.sum(1), 1)
    np.testing.assert_array_equal(P.argmax(1), S.argmax(1))


# ---- 12: verbose reaches the solver ------------------------------------------------------
def test_verbose_shows_the_solvers_progress(capsys, monkeypatch):
    monkeypatch.setattr(cg, "PROGRESS_EVERY_S", 0.0)
    X, y = lowrank(150)
    m = RFMRegressor(iters=1, solver="cg", verbose=True).fit(X, y)
    out = capsys.readouterr().out
    steps = [ln for ln in out.splitlines() if ln.startswith("  cg iteration")]
    assert len(steps) == sum(r["cg_iterations"] for r in m.history_) > 0
    assert all("s/iteration" in ln and ("left" in ln or "tol reached" in ln) for ln in steps)
    assert any("iter 0/1" in ln and "s left" in ln for ln in out.splitlines())  # the fit's
    RFMRegressor(iters=1, solver="cholesky", verbose=True).fit(X, y)
    assert "cholesky: solved in" in capsys.readouterr().out


# ---- 13: valid input that used to be refused -------------------------------------------
@pytest.mark.parametrize("kind", ["object", "string", "str", "category"])
def test_pandas_label_dtypes(kind, tmp_path):
    X, y = binary()
    want = RFMClassifier(iters=1).fit(X, y).predict(X)
    ys = pd.Series(y.astype(object)) if kind == "object" else pd.Series(y, dtype=kind)
    clf = RFMClassifier(iters=1).fit(X, ys)
    assert list(clf.classes_) == ["no", "yes"] and clf.classes_.dtype.kind == "U"
    np.testing.assert_array_equal(clf.predict(X), want)
    clf.save(tmp_path / "m.pt")  # plain string classes_ round-trip
    np.testing.assert_array_equal(RFMClassifier.load(tmp_path / "m.pt").predict(X), want)
    with pytest.raises(ValueError, match="missing labels"):
        RFMClassifier(iters=1).fit(X, ys.where(np.arange(len(ys)) != 3))


def test_nullable_and_mixed_frames():
    X, y = lowrank()
    want = RFMRegressor(iters=1).fit(X, y).predict(X)
    df = pd.DataFrame(
        {
            "a": pd.array(X[:, 0], dtype="Float64"),
            "b": pd.array(np.round(X[:, 1] * 10), dtype="Int64"),
            "c": X[:, 2] > 0,
            "d": np.arange(80),
        }
    )
    ref = pd.DataFrame(
        {"a": X[:, 0], "b": np.round(X[:, 1] * 10), "c": (X[:, 2] > 0) * 1.0, "d": np.arange(80.0)}
    )
    m = RFMRegressor(iters=1).fit(df, pd.Series(y, dtype="Float64"))
    np.testing.assert_allclose(m.predict(df), RFMRegressor(iters=1).fit(ref, y).predict(ref))
    bad = df.copy()
    bad.loc[5, "b"] = pd.NA
    with pytest.raises(ValueError, match=r"missing values \(NaN or NA\) in column\(s\) \['b'\]"):
        RFMRegressor(iters=1).fit(bad, y)
    with pytest.raises(ValueError, match=r"non-numeric or complex column\(s\) \['e'\]"):
        RFMRegressor(iters=1).fit(df.assign(e="x"), y)
    with pytest.raises(ValueError, match=r"complex column\(s\) \['e'\]"):
        RFMRegressor(iters=1).fit(df.assign(e=1j), y)
    obj = np.array(X.tolist(), dtype=object)
    np.testing.assert_allclose(RFMRegressor(iters=1).fit(obj, y).predict(obj), want)


def test_sparse_complex_and_missing_y_get_clear_errors():
    X, y = lowrank()
    with pytest.raises(TypeError, match=r"sparse input is not supported.*toarray\(\)"):
        RFMRegressor(iters=1).fit(scipy.sparse.csr_matrix(X), y)
    with pytest.raises(ValueError, match="complex"):
        RFMRegressor(iters=1).fit(X + 1j, y)
    with pytest.raises(ValueError, match="requires y to be passed"):
        RFMRegressor(iters=1).fit(X, None)
    with pytest.raises(ValueError, match="requires y to be passed"):
        RFMClassifier(iters=1).fit(X, None)
    with pytest.raises(ValueError, match="mixes label types"):
        RFMClassifier(iters=1).fit(X, np.array([1, "a"] * 40, dtype=object))


# ---- 15: overflow is named as overflow -------------------------------------------------
def test_overflow_messages_name_the_cause():
    X, y = lowrank()
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        with pytest.raises(ValueError, match=r"overflowed float32.*dtype='float64' or rescale y"):
            RFMRegressor(iters=1).fit(X, y * 1e30)
    with pytest.raises(ValueError, match=r"X values exceed float32's range \(max 3\.4e\+38"):
        RFMRegressor(iters=1).fit(X * 1e39, y)
    with pytest.raises(ValueError, match=r"y values exceed float32's range.*dtype='float64'"):
        RFMRegressor(iters=1).fit(X, y * 1e39)
    m = RFMRegressor(iters=1).fit(X, y)
    with pytest.raises(ValueError, match="X values exceed float32's range"):
        m.predict(X * 1e39)
    RFMRegressor(iters=1, dtype="float64").fit(X, y * 1e30)  # float64 has the range


# ---- 17: every parameter checked, in one place ------------------------------------------
BAD_PARAMS = [
    ("bandwidth", "10"),
    ("bandwidth", True),
    ("bandwidth", 0.0),
    ("bandwidth", float("inf")),
    ("reg", -1.0),
    ("reg", True),
    ("reg", "0"),
    ("iters", -1),
    ("iters", 2.0),
    ("iters", True),
    ("diag", "no"),
    ("diag", 1),
    ("centering", "yes"),
    ("keep_best", None),
    ("agop_power", 0.0),
    ("agop_power", False),
    ("normalize", "sum"),
    ("agop_samples", 0),
    ("agop_samples", True),
    ("solver", "lu"),
    ("validation_fraction", 1.5),
    ("validation_fraction", True),
    ("early_stopping", 0.5),
    ("early_stopping", "1.1"),
    ("kernel", "rbf"),
    ("backend", "gpu"),
    ("dtype", "float16"),
    ("device", 3),
    ("random_state", -1),
    ("random_state", 1.5),
    ("verbose", -1),
    ("verbose", "loud"),
]


@pytest.mark.parametrize("cls", [RFMRegressor, RFMClassifier])
@pytest.mark.parametrize("name,value", BAD_PARAMS)
def test_bad_parameters_are_refused_before_any_work(cls, name, value, monkeypatch):
    from rfmfast.models import _inputs

    monkeypatch.setattr(_inputs, "features", lambda *a, **k: pytest.fail("work started"))
    X, y = binary(40)
    with pytest.raises(ValueError, match=re.escape(f"'{name}' parameter of {cls.__name__}")):
        cls(**{name: value}).fit(X, y)


def test_every_parameter_has_a_constraint_and_numpy_numbers_pass():
    for cls in (RFMRegressor, RFMClassifier):
        assert set(cls._parameter_constraints) == set(cls().get_params())
    X, y = lowrank()
    RFMRegressor(
        bandwidth=np.float32(5),
        iters=np.int64(1),
        reg=np.float64(1e-3),
        agop_samples=np.int32(50),
        diag=np.bool_(True),
    ).fit(X, y)


# ---- the whole scikit-learn estimator contract ------------------------------------------
from sklearn.utils.estimator_checks import parametrize_with_checks  # noqa: E402


@parametrize_with_checks(
    [RFMRegressor(iters=1, dtype="float64"), RFMClassifier(iters=1, dtype="float64")]
)
def test_scikit_learn_estimator_checks(estimator, check):
    check(estimator)
