"""scikit-learn conformance: every estimator through scikit-learn's own estimator checks
(parametrize_with_checks, stated exceptions only), sample weights (the weighted ridge and the
weighted AGOP: integer weights are repeated rows, zero weights dropped rows, ones no weights),
predictions in the input's float dtype, feature names and tags, the messages of bad input, and
LinRFMCompleter's estimator protocol (clone, parameters, pickling).

LinRFMCompleter is not run through check_estimator: its fit(Y, mask) completes one matrix
from its observed entries; there are no (X, y) samples, which is what every check fits on (they
fail at once on "mask has shape (n,) but Y has shape (n, d)"), and predict(rows, cols) takes
matrix indices, not samples. What applies to it is tested directly below.
"""

from __future__ import annotations

import inspect
import pickle
import warnings

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from sklearn.base import clone
from sklearn.exceptions import DataConversionWarning, NotFittedError
from sklearn.utils.estimator_checks import parametrize_with_checks

from rfmfast.models.kernel_ridge import KernelRidge
from rfmfast.models.linrfm import LinRFMCompleter
from rfmfast.models.linrfm_regressor import LinRFMRegressor
from rfmfast.models.rfm import RFMClassifier, RFMRegressor

# ---- scikit-learn's estimator checks ---------------------------------------------------------
# Small iteration counts keep the checks fast (their data are tens of rows); device="cpu" keeps
# them off a GPU where one exists. Each kernel estimator is checked in its default float32 and
# in float64.
CHECKED = [
    RFMRegressor(iters=2, device="cpu"),
    RFMRegressor(iters=2, device="cpu", dtype="float64"),
    RFMClassifier(iters=2, device="cpu"),
    RFMClassifier(iters=2, device="cpu", dtype="float64"),
    KernelRidge(device="cpu"),
    KernelRidge(device="cpu", dtype="float64"),
    LinRFMRegressor(),  # float64, its default. Not float32: on the checks' overdetermined
    # problems its iteration runs to max_iter (tol 1e-10 is below float32's resolution) and the
    # last float32 digits vary from run to run (SIMD paths), so the checks' exact comparisons
    # (check_supervised_y_2d, check_fit_idempotent) would be flaky; its float32 output dtype is
    # tested in test_predictions_follow_the_input_float_dtype
]

FLOAT32_WEIGHTS = (
    "float32 arithmetic (the default dtype): weighted and repeated fits agree to ~1e-6 "
    "(float32 rounding), not the check's rtol 1e-7; the float64 instance passes it, and "
    "test_integer_weights_are_repeated_rows checks float32 to its tolerance"
)


def expected_failed_checks(est) -> dict[str, str]:
    """check name -> why it is expected to fail, for this instance (one line each)."""
    if isinstance(est, (RFMRegressor, RFMClassifier, KernelRidge)) and est.dtype == "float32":
        return {"check_sample_weight_equivalence_on_dense_data": FLOAT32_WEIGHTS}
    return {}


def _checks_decorator():
    params = inspect.signature(parametrize_with_checks).parameters
    if "expected_failed_checks" in params:  # scikit-learn >= 1.6
        return parametrize_with_checks(
            CHECKED, expected_failed_checks=expected_failed_checks, xfail_strict=True
        )
    # scikit-learn < 1.6: the same checks, the same expected failures marked by hand
    from sklearn.utils.estimator_checks import check_estimator

    cases = []
    for est in CHECKED:
        xfail = expected_failed_checks(est)
        for e, check in check_estimator(est, generate_only=True):
            name = getattr(check, "func", check).__name__
            marks = [pytest.mark.xfail(reason=xfail[name], strict=True)] if name in xfail else []
            cases.append(pytest.param(e, check, marks=marks, id=f"{e!r}-{name}"))
    return pytest.mark.parametrize("estimator, check", cases)


@_checks_decorator()
def test_sklearn_estimator_checks(estimator, check):
    with warnings.catch_warnings():
        # the checks' tiny problems: cg / AGOP notes are expected, not what is checked
        warnings.simplefilter("ignore", category=RuntimeWarning)
        check(estimator)


# ---- data --------------------------------------------------------------------------------------
def regression(n=40, d=5, seed=0, outputs=None):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d))
    y = X[:, 0] * X[:, 1] + np.sin(X[:, 2])
    if outputs:
        y = np.stack([y * (k + 1) + k for k in range(outputs)], 1)
    return X, y


def classification(n=45, d=4, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d))
    y = np.digitize(X[:, 0] + 0.5 * X[:, 1], [-0.5, 0.5])  # 3 classes
    return X, y


def _tight(dtype="float32"):
    """CG's tolerance for comparisons to the solver's precision: 1e-12 in float64; in float32
    2e-5, above the rounding floor these small problems reach (the default 1e-3 is too loose
    for the comparisons)."""
    return 1e-12 if dtype == "float64" else 2e-5


KERNEL_ESTIMATORS = {
    "KernelRidge": lambda **k: KernelRidge(device="cpu", **k),
    "KernelRidge-cg": lambda dtype="float32": KernelRidge(
        device="cpu", solver="cg", tol=_tight(dtype), dtype=dtype
    ),
    "KernelRidge-nystroem": lambda dtype="float32": KernelRidge(
        device="cpu", centers=12, tol=_tight(dtype), dtype=dtype
    ),
    "RFMRegressor": lambda **k: RFMRegressor(iters=3, device="cpu", **k),
    "RFMRegressor-diag-centering": lambda **k: RFMRegressor(
        iters=3, device="cpu", diag=True, centering=True, **k
    ),
    "RFMRegressor-grokking": lambda **k: RFMRegressor(
        iters=2,
        device="cpu",
        kernel="gaussian",
        bandwidth=2.5,
        reg=1e-2,
        agop_power=0.5,
        normalize=None,
        centering=True,
        **k,
    ),
    "RFMRegressor-cg": lambda **k: RFMRegressor(iters=2, device="cpu", solver="cg", **k),
    "RFMRegressor-nystroem": lambda **k: RFMRegressor(iters=2, device="cpu", centers=12, **k),
    "RFMClassifier": lambda **k: RFMClassifier(iters=3, device="cpu", **k),
}


def _outputs(model, X):
    if hasattr(model, "predict_proba"):
        return model.predict_proba(X)
    return model.predict(X)


def _data_for(name, seed=0):
    return classification(seed=seed) if "Classifier" in name else regression(seed=seed)


# ---- sample weights ----------------------------------------------------------------------------
@pytest.mark.parametrize("dtype, tol", [("float64", 1e-7), ("float32", 2e-3)])
@pytest.mark.parametrize("name", list(KERNEL_ESTIMATORS))
def test_integer_weights_are_repeated_rows(name, dtype, tol):
    """fit(X, y, sample_weight=w) with integer w (zeros included) predicts what the fit on the
    rows repeated w times predicts, to the solver's tolerance; AGOP and solve both."""
    X, y = _data_for(name)
    w = np.random.default_rng(1).integers(0, 4, len(X))
    w[:3] = [0, 2, 3]
    if "nystroem" in name:  # centers drawn from rows differ between the two fits: give them
        make = KERNEL_ESTIMATORS[name]
        C = X[w > 0][:12]
        est = lambda: make(dtype=dtype).set_params(centers=C)  # noqa: E731
    else:
        est = lambda: KERNEL_ESTIMATORS[name](dtype=dtype)  # noqa: E731
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        rep = est().fit(np.repeat(X, w, 0), np.repeat(y, w, 0))
        wtd = est().fit(X, y, sample_weight=w)
    a, b = _outputs(rep, X), _outputs(wtd, X)
    scale = max(1.0, float(np.abs(a).max()))
    assert np.abs(a - b).max() <= tol * scale, (name, np.abs(a - b).max())
    if hasattr(rep, "M_"):
        assert np.abs(rep.M_ - wtd.M_).max() <= tol * max(1.0, np.abs(rep.M_).max())


@pytest.mark.parametrize("name", list(KERNEL_ESTIMATORS))
def test_unit_weights_are_no_weights(name):
    X, y = _data_for(name)
    plain = KERNEL_ESTIMATORS[name]().fit(X, y)
    ones = KERNEL_ESTIMATORS[name]().fit(X, y, sample_weight=np.ones(len(X)))
    np.testing.assert_array_equal(_outputs(plain, X), _outputs(ones, X))
    one = KERNEL_ESTIMATORS[name]().fit(X, y, sample_weight=1.0)  # a number: n copies of it
    np.testing.assert_array_equal(_outputs(plain, X), _outputs(one, X))


def test_equal_weights_are_a_scaled_ridge():
    """Weights c everywhere minimise c sum (f - y)^2 + reg ||f||^2: the fit with reg / c."""
    X, y = regression()
    a = KernelRidge(device="cpu", dtype="float64", reg=0.1).fit(
        X, y, sample_weight=np.full(40, 4.0)
    )
    b = KernelRidge(device="cpu", dtype="float64", reg=0.025).fit(X, y)
    np.testing.assert_allclose(a.predict(X), b.predict(X), rtol=1e-12)


@pytest.mark.parametrize("name", ["KernelRidge", "RFMRegressor", "RFMClassifier"])
def test_zero_weights_are_dropped_rows(name):
    X, y = _data_for(name)
    w = np.ones(len(X))
    w[::4] = 0
    a = KERNEL_ESTIMATORS[name](dtype="float64").fit(X, y, sample_weight=w)
    b = KERNEL_ESTIMATORS[name](dtype="float64").fit(X[w > 0], y[w > 0])
    np.testing.assert_allclose(_outputs(a, X), _outputs(b, X), rtol=1e-10, atol=1e-12)
    assert len(a.centers_) == int((w > 0).sum())


def test_weighted_ridge_solves_the_weighted_system():
    """The exact weighted solve is (K + reg W^{-1}) alpha = y (dense float64 reference)."""
    from rfmfast.ops.kernel_matrix import reference as km_ref

    X, y = regression(n=30)
    w = np.random.default_rng(3).uniform(0.2, 3.0, 30)
    for solver in ("cholesky", "cg"):
        m = KernelRidge(device="cpu", dtype="float64", reg=0.05, solver=solver, tol=1e-12)
        m.fit(X, y, sample_weight=w)
        Xt = torch.as_tensor(X)
        K = km_ref.kernel_matrix(Xt, Xt, kernel="laplace", bandwidth=10.0, M=None).numpy()
        alpha = np.linalg.solve(K + np.diag(0.05 / w), y)
        np.testing.assert_allclose(m.predict(X), K @ alpha, rtol=1e-8, atol=1e-10)


def test_solvers_take_weights():
    from rfmfast.solvers import kernel_solve

    X, y = regression(n=25)
    w = np.linspace(0.5, 2.0, 25)
    a = kernel_solve(X, y, reg=0.1, solver="cholesky", weights=w)
    b = kernel_solve(X, y, reg=0.1, solver="cg", tol=1e-12, weights=w)
    np.testing.assert_allclose(a, b, rtol=1e-7, atol=1e-9)
    for bad, match in [
        (np.zeros(25), "positive"),
        (np.ones(24), r"\(n,\) = \(25,\)"),
        (np.full(25, np.nan), "NaN"),
    ]:
        with pytest.raises(ValueError, match=match):
            kernel_solve(X, y, reg=0.1, weights=bad)


@pytest.mark.parametrize("diag", [False, True])
@pytest.mark.parametrize("centering", [False, True])
def test_weighted_agop_is_the_agop_of_repeated_queries(diag, centering):
    from rfmfast.models._rfm_utils import weighted_agop
    from rfmfast.ops.agop import agop

    rng = np.random.default_rng(0)
    Q = torch.as_tensor(rng.standard_normal((20, 6)))
    Z = torch.as_tensor(rng.standard_normal((15, 6)))
    alpha = torch.as_tensor(rng.standard_normal((15, 2)))
    w = torch.as_tensor(rng.integers(1, 4, 20), dtype=torch.float64)
    opts = dict(kernel="laplace", bandwidth=3.0, M=None, diag=diag, centering=centering)
    A = weighted_agop(Q, Z, alpha, w, backend="auto", **opts)
    B = agop(Q.repeat_interleave(w.long(), 0), Z, alpha, **opts)
    torch.testing.assert_close(A, B, rtol=1e-10, atol=1e-12)


def test_classifier_classes_with_weights():
    X, y = classification()
    w = np.ones(len(y))
    lone = np.flatnonzero(y == 2)
    w[lone[1:]] = 0  # class 2: one row of positive weight
    with pytest.raises(ValueError, match="only one sample of positive weight"):
        RFMClassifier(iters=1, device="cpu").fit(X, y, sample_weight=w)
    w[lone[0]] = 2.0  # ... of weight 2: as two repeated rows
    RFMClassifier(iters=1, device="cpu").fit(X, y, sample_weight=w)
    w[lone] = 0  # class 2 has no weight: it is not a class of this fit
    m = RFMClassifier(iters=1, device="cpu").fit(X, y, sample_weight=w)
    assert m.classes_.tolist() == [0, 1]
    with pytest.raises(ValueError, match="single class"):
        RFMClassifier(iters=1, device="cpu").fit(X, y, sample_weight=(y == 1).astype(float))


def test_weights_with_a_validation_hold_out():
    X, y = regression(n=60)
    w = np.random.default_rng(0).uniform(0.5, 2.0, 60)
    m = RFMRegressor(iters=2, device="cpu", validation_fraction=0.25).fit(X, y, sample_weight=w)
    assert all(r["val_mse"] is not None for r in m.history_)


@pytest.mark.parametrize(
    "w, match",
    [
        (-np.ones(40), "negative"),
        (np.ones(39), "39 entries but X has 40 rows"),
        (np.ones((40, 2)), "1-D"),
        (np.zeros(40), "all zero"),
        (np.r_[np.nan, np.ones(39)], "NaN"),
        (np.array(["a"] * 40), "numeric"),
    ],
)
@pytest.mark.parametrize("cls", [KernelRidge, RFMRegressor])
def test_bad_sample_weights(cls, w, match):
    X, y = regression()
    with pytest.raises(ValueError, match=match):
        cls(device="cpu").fit(X, y, sample_weight=w)


def test_sample_weight_kinds():
    """Lists, pandas Series and torch tensors of weights are accepted alike."""
    pd = pytest.importorskip("pandas")
    X, y = regression()
    w = np.arange(40) % 3 + 1.0
    ref = KernelRidge(device="cpu").fit(X, y, sample_weight=w).predict(X)
    for kind in (list(w), pd.Series(w), torch.as_tensor(w), w.astype(np.float32)):
        got = KernelRidge(device="cpu").fit(X, y, sample_weight=kind).predict(X)
        np.testing.assert_array_equal(got, ref)


# ---- predictions in the input's float dtype ----------------------------------------------------
def _fitted():
    Xr, yr = regression()
    Xc, yc = classification()
    return [
        (RFMRegressor(iters=1, device="cpu").fit(Xr, yr), Xr, ["predict"]),
        (RFMRegressor(iters=1, device="cpu", dtype="float64").fit(Xr, yr), Xr, ["predict"]),
        (KernelRidge(device="cpu").fit(Xr, yr), Xr, ["predict"]),
        (LinRFMRegressor().fit(Xr, yr), Xr, ["predict"]),
        (LinRFMRegressor(dtype="float32").fit(Xr, yr), Xr, ["predict"]),
        (
            RFMClassifier(iters=1, device="cpu").fit(Xc, yc),
            Xc,
            ["decision_function", "predict_proba"],
        ),
    ]


def test_predictions_follow_the_input_float_dtype():
    for model, X, methods in _fitted():
        for method in methods:
            f = getattr(model, method)
            assert f(X).dtype == np.float64, (model, method)
            assert f(X.astype(np.float32)).dtype == np.float32, (model, method)
            assert f(np.rint(X).astype(int)).dtype == np.float64, (model, method)
            assert f(X.tolist()).dtype == np.float64, (model, method)
            assert f(torch.as_tensor(X, dtype=torch.float32)).dtype == torch.float32
            assert f(torch.as_tensor(X)).dtype == torch.float64
        # float64 output of a float32 model is its float32 result, widened
        out64, out32 = (
            getattr(model, methods[0])(X),
            getattr(model, methods[0])(X.astype(np.float32)),
        )
        np.testing.assert_allclose(out64, out32, rtol=1e-4, atol=1e-5)


def test_float32_dataframe_gives_float32():
    pd = pytest.importorskip("pandas")
    X, y = regression()
    m = KernelRidge(device="cpu").fit(X, y)
    frame = pd.DataFrame(X.astype(np.float32))
    assert m.predict(frame).dtype == np.float32
    assert m.predict(pd.DataFrame(X)).dtype == np.float64


# ---- attributes, tags, messages ----------------------------------------------------------------
def _all_estimators():
    return [
        RFMRegressor(iters=1, device="cpu"),
        RFMClassifier(iters=1, device="cpu"),
        KernelRidge(device="cpu"),
        LinRFMRegressor(),
    ]


def _xy(est):
    return classification() if isinstance(est, RFMClassifier) else regression()


@pytest.mark.parametrize("est", _all_estimators(), ids=lambda e: type(e).__name__)
def test_feature_names_and_counts(est):
    pd = pytest.importorskip("pandas")
    X, y = _xy(est)
    cols = [f"f{i}" for i in range(X.shape[1])]
    m = clone(est).fit(pd.DataFrame(X, columns=cols), y)
    assert m.n_features_in_ == X.shape[1]
    assert list(m.feature_names_in_) == cols
    with pytest.raises(ValueError, match="Feature names unseen at fit time"):
        m.predict(pd.DataFrame(X, columns=[c.upper() for c in cols]))
    m = clone(est).fit(X, y)
    assert not hasattr(m, "feature_names_in_")
    with pytest.raises(
        ValueError, match=f"X has 2 features, but {type(est).__name__} is expecting"
    ):
        m.predict(X[:, :2])


@pytest.mark.parametrize("est", _all_estimators(), ids=lambda e: type(e).__name__)
def test_bad_input_messages(est):
    X, y = _xy(est)
    cases = [
        (lambda: clone(est).fit(X, None), ValueError, "requires y to be passed"),
        (lambda: clone(est).fit(X[:, 0], y), ValueError, "Reshape your data"),
        (lambda: clone(est).fit(X[:0], y[:0]), ValueError, r"0 sample\(s\)"),
        (lambda: clone(est).fit(X[:, :0], y), ValueError, r"0 feature\(s\)"),
        (lambda: clone(est).fit(X + 1j, y), ValueError, "Complex data not supported"),
        (lambda: clone(est).fit(sp.csr_matrix(X), y), TypeError, "sparse input is not supported"),
        (lambda: clone(est).fit(X, y[:-1]), ValueError, "rows|m = "),
    ]
    for run, exc, match in cases:
        with pytest.raises(exc, match=match):
            run()
    m = clone(est).fit(X.astype(object), y)  # numeric object arrays are converted
    np.testing.assert_allclose(m.predict(X.astype(object)), m.predict(X))
    with pytest.raises(NotFittedError):
        clone(est).predict(X)


def test_classifier_label_messages():
    X, y = classification()
    with pytest.warns(DataConversionWarning, match="column-vector y"):
        RFMClassifier(iters=1, device="cpu").fit(X, y[:, None])
    with pytest.raises(ValueError, match="Unknown label type: continuous"):
        RFMClassifier(iters=1, device="cpu").fit(X, y + 0.5)


def test_tags():
    for est in (RFMRegressor(), KernelRidge(), LinRFMRegressor()):
        assert est._more_tags() == {"multioutput": True}  # scikit-learn < 1.6
    try:
        from sklearn.utils import get_tags  # scikit-learn >= 1.6
    except ImportError:
        return
    for est in (RFMRegressor(), KernelRidge(), LinRFMRegressor()):
        assert get_tags(est).target_tags.multi_output
    assert not get_tags(RFMClassifier()).target_tags.multi_output
    for est in _all_estimators():
        assert not get_tags(est).input_tags.sparse


@pytest.mark.parametrize("cls", [RFMRegressor, KernelRidge, LinRFMRegressor])
def test_regressors_take_two_dimensional_y(cls):
    X, y = regression(outputs=3)
    kw = {} if cls is LinRFMRegressor else {"device": "cpu"}
    m = cls(**kw).fit(X, y)
    assert m.predict(X).shape == (40, 3)


# ---- LinRFMRegressor as a scikit-learn regressor -----------------------------------------------
def test_linrfm_regressor_is_a_regressor():
    X, y = regression()
    est = LinRFMRegressor(max_iter=20)
    assert est.get_params()["dtype"] == "float64"  # a string default, not a torch dtype
    twin = clone(est).set_params(alpha=0.5)
    assert twin.alpha == 0.5 and est.alpha == 0.25
    m = est.fit(X, np.rint(y).astype(int))  # integer y
    assert m.predict(X).dtype == np.float64
    assert -np.inf < m.score(X, np.rint(y)) <= 1.0  # RegressorMixin: R^2
    old = LinRFMRegressor(dtype=torch.float64).fit(X, y)  # torch dtypes: still accepted
    np.testing.assert_array_equal(old.coef_, LinRFMRegressor(dtype="float64").fit(X, y).coef_)
    assert LinRFMRegressor(dtype=torch.float32).fit(X, y).coef_.dtype == np.float32
    roundtrip = pickle.loads(pickle.dumps(m))
    np.testing.assert_array_equal(roundtrip.predict(X), m.predict(X))


# ---- LinRFMCompleter: the protocol that applies to fit(Y, mask) --------------------------------
def _low_rank(n=12, d=9, seed=0):
    rng = np.random.default_rng(seed)
    Y = rng.standard_normal((n, 2)) @ rng.standard_normal((2, d))
    return Y, rng.random((n, d)) < 0.7


def test_completer_protocol():
    est = LinRFMCompleter(max_iter=5, holdout=0.1, bias="global")
    params = est.get_params()
    assert params["max_iter"] == 5 and params["bias"] == "global"
    twin = clone(est)
    assert twin is not est and twin.get_params() == params
    assert twin.set_params(max_iter=3) is twin and twin.max_iter == 3 and est.max_iter == 5
    with pytest.raises(ValueError, match="Invalid parameter 'nope'"):
        est.set_params(nope=1)
    with pytest.raises(NotFittedError):
        est.predict([0], [0])
    Y, mask = _low_rank()
    fitted = est.fit(Y, mask)
    rows, cols = np.nonzero(~mask)
    back = pickle.loads(pickle.dumps(fitted))
    np.testing.assert_array_equal(back.predict(rows, cols), fitted.predict(rows, cols))
    np.testing.assert_array_equal(back.completed_, fitted.completed_)
    # a clone of a fitted completer is unfitted, with the same parameters
    fresh = clone(fitted)
    assert not hasattr(fresh, "coef_") and fresh.get_params() == fitted.get_params()
    refit = fresh.fit(Y, mask)
    np.testing.assert_array_equal(refit.completed_, fitted.completed_)
