"""Nystroem RFM: RFMRegressor / RFMClassifier(centers=...). With every training point a center
it is the exact iteration; on the RFM paper's low-rank target it learns M; each solve is the
Nystroem system with the current M, warm-started from the previous alpha; scikit-learn's
conventions, save / load, and bad centers refused before any work."""

import pickle

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.utils._param_validation import InvalidParameterError

import rfmfast.models.rfm as rfm_module
from rfmfast import KernelRidge, RFMClassifier, RFMRegressor
from rfmfast.cases import low_rank_data
from rfmfast.models import _io
from rfmfast.ops.kernel_matmul import kernel_matmul

BAD = "not an rfmfast model file \\(or corrupted\\)"


def rel(a, b):
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def small(n=300, d=6, seed=0):
    X, y = low_rank_data(n, d, seed=seed)
    return X, y


@pytest.fixture
def spy(monkeypatch):
    """Every nystroem_solve call of the estimators: its x0 and the alpha it returned."""
    calls = []
    real = rfm_module.nystroem_solve

    def recording(*args, **kwargs):
        alpha, info = real(*args, **kwargs)
        calls.append({"x0": kwargs.get("x0"), "alpha": alpha, "info": info, "M": kwargs.get("M")})
        return alpha, info

    monkeypatch.setattr(rfm_module, "nystroem_solve", recording)
    return calls


# --- the exact iteration where they must agree ----------------------------------------------


def test_every_training_point_a_center_is_the_exact_first_iteration():
    """centers = X (the same points in the same order): alpha and the predictions of
    iteration 0 are the exact solve's; after one M update (keep_best=False) M_ and alpha
    still are."""
    X, y = small()
    Xq = low_rank_data(50, 6, seed=1)[0]
    for iters in (0, 1):
        kw = dict(iters=iters, dtype="float64", keep_best=False)
        exact = RFMRegressor(solver="cholesky", **kw).fit(X, y)
        nys = RFMRegressor(centers=X, **kw).fit(X, y)
        assert exact.history_[0]["solver"] == "cholesky"
        assert [r["solver"] for r in nys.history_] == ["nystroem"] * (iters + 1)
        assert nys.alpha_.shape == exact.alpha_.shape == (300, 1)
        np.testing.assert_array_equal(nys.centers_, X)
        assert rel(nys.alpha_, exact.alpha_) < 1e-5, iters
        assert rel(nys.predict(Xq), exact.predict(Xq)) < 1e-7, iters
        assert rel(nys.M_, exact.M_) < 1e-7, iters
        for a, b in zip(nys.history_, exact.history_):
            assert abs(a["train_mse"] - b["train_mse"]) <= 1e-6 * b["train_mse"] + 1e-12


def test_the_last_solve_is_the_nystroem_system_with_the_last_M():
    """The kept iterate's alpha is KernelRidge's Nystroem solution with M_ and centers_."""
    X, y = small(400)
    model = RFMRegressor(centers=80, iters=2, keep_best=False, dtype="float64").fit(X, y)
    ref = KernelRidge(centers=model.centers_, M=model.M_, dtype="float64", tol=1e-11).fit(X, y)
    assert rel(model.alpha_, ref.alpha_) < 1e-5


# --- what a Nystroem fit holds and records --------------------------------------------------


def test_fitted_attributes_history_and_predictions():
    X, y = small(400)
    model = RFMRegressor(centers=60, iters=2, dtype="float64").fit(X, y)
    assert model.centers_.shape == (60, 6) and model.alpha_.shape == (60, 1)
    assert model.M_.shape == (6, 6) and len(model.history_) == 3
    rows = {tuple(r) for r in X}
    assert all(tuple(r) in rows for r in model.centers_)
    for row in model.history_:
        assert row["solver"] == "nystroem" and row["converged"] is True
        assert row["cg_iterations"] >= 1 and 0 <= row["residual"] <= 1e-8
        assert row["jitter"] == 0.0 and row["warning"] is None
    Xq = low_rank_data(30, 6, seed=2)[0]
    M = None if model.best_iter_ == 0 else torch.from_numpy(model.M_)
    want = kernel_matmul(
        torch.from_numpy(Xq), torch.from_numpy(model.centers_), torch.from_numpy(model.alpha_), M=M
    )[:, 0].numpy()
    np.testing.assert_allclose(model.predict(Xq), want, rtol=1e-12, atol=1e-14)
    t = model.predict(torch.from_numpy(Xq))
    assert isinstance(t, torch.Tensor) and t.shape == (30,)


def test_centers_are_seeded_and_those_of_kernel_ridge():
    X, y = small(400)
    a = RFMRegressor(centers=50, iters=0, random_state=3).fit(X, y)
    b = RFMRegressor(centers=50, iters=1, random_state=3).fit(X, y)
    c = RFMRegressor(centers=50, iters=0, random_state=4).fit(X, y)
    k = KernelRidge(centers=50, random_state=3).fit(X, y)
    np.testing.assert_array_equal(a.centers_, b.centers_)
    np.testing.assert_array_equal(a.centers_, k.centers_)
    assert not np.array_equal(a.centers_, c.centers_)


def test_validation_hold_out_draws_centers_from_the_rows_left():
    X, y = small(400)
    model = RFMRegressor(centers=40, iters=1, validation_fraction=0.25).fit(X, y)
    assert model.centers_.shape == (40, 6)
    assert all(r["val_mse"] is not None for r in model.history_)
    with pytest.raises(
        ValueError,
        match="centers=350 is more than the 300 training points left after the validation hold-out",
    ):
        RFMRegressor(centers=350, validation_fraction=0.25).fit(X, y)


def test_warm_start_passes_the_previous_alpha(spy):
    X, y = small(400)
    model = RFMRegressor(centers=70, iters=3, keep_best=False).fit(X, y)
    assert len(spy) == 4
    assert spy[0]["x0"] is None and spy[0]["M"] is None
    for prev, call in zip(spy, spy[1:]):
        assert call["x0"] is prev["alpha"]  # the previous solve's alpha itself
        assert call["M"] is not None
    np.testing.assert_array_equal(model.alpha_, spy[-1]["alpha"].numpy())


def test_verbose_says_nystroem_and_reports_each_iteration(capsys):
    X, y = small(300)
    RFMRegressor(centers=50, iters=2, verbose=True).fit(X, y)
    out = capsys.readouterr().out
    assert "solver nystroem: m = 50 centers" in out
    assert "Nystroem: n = 300, m = 50 centers" in out  # the solver's own start line
    for t in range(3):
        assert f"iter {t}/2" in out
    assert out.count("cg ") >= 3


def test_classifier_with_centers():
    rng = np.random.default_rng(0)
    means = np.array([[2.0, 0, 0, 0], [0, 2.0, 0, 0], [0, 0, 2.0, 0]])
    lab = rng.integers(0, 3, 450)
    X = means[lab] + 0.6 * rng.standard_normal((450, 4))
    names = np.array(["a", "b", "c"])[lab]
    Xtr, ytr, Xte, yte = X[:300], names[:300], X[300:], names[300:]
    model = RFMClassifier(centers=60, iters=2, bandwidth=5.0).fit(Xtr, ytr)
    assert model.alpha_.shape == (60, 3) and model.centers_.shape == (60, 4)
    assert all(r["solver"] == "nystroem" for r in model.history_)
    assert float(np.mean(model.predict(Xte) == yte)) > 0.9
    P = model.predict_proba(Xte)
    np.testing.assert_allclose(P.sum(1), 1.0, rtol=1e-12)
    assert model.decision_function(Xte).shape == (150, 3)
    two = RFMClassifier(centers=30, iters=1).fit(Xtr, np.where(Xtr[:, 0] > 1, "yes", "no"))
    assert two.alpha_.shape == (30, 2) and two.decision_function(Xte).shape == (150,)


def test_learns_M_on_the_low_rank_target_small():
    """n = 3000, m = 400: M learned from the Nystroem predictor cuts the test error (measured,
    float32: 0.0238, 0.0138, 0.0094, 0.0081 for iterations 0..3)."""
    X, y = low_rank_data(4000, 20, seed=0, dtype=np.float32)
    model = RFMRegressor(centers=400, iters=3, keep_best=False).fit(
        X[:3000], y[:3000], X_val=X[3000:], y_val=y[3000:]
    )
    mses = [r["val_mse"] for r in model.history_]
    assert mses[-1] <= 0.6 * mses[0], mses


@pytest.mark.slow
def test_learns_M_on_the_low_rank_target_n20000_m2000():
    """The RFM paper's low-rank target, X ~ N(0, 0.25 I), d = 20, y = x0 x1 1[x5 > 0], at
    n = 20,000 with m = 2,000 centers: the final test MSE is at most half that of the M = I
    model (iteration 0). Measured (float32, seed 0): 0.01126, 0.00491, 0.00221, 0.00174,
    0.00162, 0.00158 for iterations 0..5."""
    X, y = low_rank_data(25_000, 20, seed=0, dtype=np.float32)
    Xtr, ytr, Xte, yte = X[:20_000], y[:20_000], X[20_000:], y[20_000:]
    # the test set as validation data only records the test MSE: keep_best=False keeps the last
    model = RFMRegressor(centers=2000, keep_best=False).fit(Xtr, ytr, X_val=Xte, y_val=yte)
    mses = [r["val_mse"] for r in model.history_]
    assert len(mses) == 6 and model.best_iter_ == 5
    final = float(np.mean((model.predict(Xte) - yte) ** 2))
    assert abs(final - mses[-1]) <= 1e-6 * mses[-1]
    assert final <= 0.5 * mses[0], mses


# --- scikit-learn's conventions and save / load ---------------------------------------------


def test_get_params_and_clone_include_centers():
    model = RFMRegressor(centers=40, reg=1e-2)
    assert model.get_params()["centers"] == 40
    assert clone(model).get_params()["centers"] == 40
    assert RFMRegressor().get_params()["centers"] is None
    C = np.zeros((5, 3))
    c2 = clone(RFMClassifier(centers=C))
    assert np.array_equal(c2.get_params()["centers"], C)
    assert "centers=40" in repr(model)


@pytest.mark.parametrize("kind", ["int", "array", "reversed", "tensor"])
def test_save_and_load_keep_the_centers(tmp_path, kind):
    X, y = small(300)
    spec = {
        "int": 50,
        "array": X[::6].copy(),
        "reversed": X[::-6],
        "tensor": torch.from_numpy(X[::6].copy()),
    }[kind]
    model = RFMRegressor(centers=spec, iters=1, dtype="float64").fit(X, y)
    path = tmp_path / "m.pt"
    model.save(path)
    back = RFMRegressor.load(path)
    np.testing.assert_array_equal(back.predict(X), model.predict(X))
    np.testing.assert_array_equal(back.centers_, model.centers_)
    got = back.get_params()["centers"]
    if kind == "int":
        assert got == 50
    else:
        assert isinstance(got, np.ndarray) and np.array_equal(got, np.asarray(spec))
    back.fit(X, y)  # the loaded parameters fit again
    np.testing.assert_array_equal(back.centers_, model.centers_)
    clf = RFMClassifier(centers=40, iters=1).fit(X, y > 0)
    clf.save(path)
    np.testing.assert_array_equal(RFMClassifier.load(path).predict(X), clf.predict(X))


def _rewrite(path, edit):
    blob = _io.load(path, "rfmfast.rfm/1")
    edit(blob)
    _io.save(path, blob)


@pytest.mark.parametrize(
    "edit, what",
    [
        (lambda b: b["params"].update(centers=49), "centers"),
        (lambda b: b["params"].update(centers=True), "centers"),
        (lambda b: b["params"].update(centers="x"), "centers"),
        (lambda b: b["params"].update(centers=torch.zeros(49, 6, dtype=torch.float64)), "centers"),
        (lambda b: b["params"].update(centers=torch.zeros(50, 6, dtype=torch.float32)), "centers"),
        (
            lambda b: b["params"].update(centers=torch.full((50, 6), np.nan, dtype=torch.float64)),
            "centers",
        ),
    ],
)
def test_inconsistent_centers_in_a_file_are_refused(tmp_path, edit, what):
    X, y = small(300)
    RFMRegressor(centers=50, iters=0, dtype="float64").fit(X, y).save(tmp_path / "m.pt")
    _rewrite(tmp_path / "m.pt", edit)
    with pytest.raises(ValueError, match=f"{BAD}.*{what}"):
        RFMRegressor.load(tmp_path / "m.pt")


def test_a_file_without_the_centers_parameter_loads_as_exact(tmp_path):
    X, y = small(100)
    model = RFMRegressor(iters=1, dtype="float64").fit(X, y)
    model.save(tmp_path / "m.pt")
    _rewrite(tmp_path / "m.pt", lambda b: b["params"].pop("centers"))
    back = RFMRegressor.load(tmp_path / "m.pt")
    assert back.get_params()["centers"] is None
    np.testing.assert_array_equal(back.predict(X), model.predict(X))


def test_pickle_round_trip():
    X, y = small(200)
    model = RFMRegressor(centers=30, iters=1).fit(X, y)
    back = pickle.loads(pickle.dumps(model))
    np.testing.assert_array_equal(back.predict(X), model.predict(X))


# --- bad centers: refused before any work ---------------------------------------------------


@pytest.mark.parametrize(
    "centers, error, match",
    [
        (301, ValueError, "centers=301 is more than the 300 training points"),
        (0, InvalidParameterError, "'centers' parameter of RFMRegressor"),
        (-3, InvalidParameterError, "'centers' parameter of RFMRegressor"),
        (2.5, InvalidParameterError, "'centers' parameter of RFMRegressor"),
        (True, InvalidParameterError, "'centers' parameter of RFMRegressor"),
        ("many", InvalidParameterError, "'centers' parameter of RFMRegressor"),
        (np.zeros((10, 3)), ValueError, "centers has 3 features but X has 6"),
        (np.zeros((0, 6)), ValueError, "centers is empty"),
        (np.zeros(6), ValueError, "centers must be 2-D"),
        (np.full((10, 6), np.nan), ValueError, "centers contains NaN or inf"),
        (np.where(np.eye(10, 6) > 0, np.inf, 0.0), ValueError, "centers contains NaN or inf"),
        (np.full((10, 6), 1e300), ValueError, "centers values exceed float32's range"),
    ],
)
def test_bad_centers_are_refused_before_any_work(monkeypatch, centers, error, match):
    X, y = small(300)

    def no_work(*args, **kwargs):
        raise AssertionError("work started before the centers were checked")

    for name in ("nystroem_solve", "cholesky_solve", "cg_solve", "agop", "kernel_matmul"):
        monkeypatch.setattr(rfm_module, name, no_work)
    with pytest.raises(error, match=match):
        RFMRegressor(centers=centers).fit(X, y)


def test_centers_with_the_exact_solver_are_refused():
    X, y = small(100)
    with pytest.raises(ValueError, match="solver='cholesky' is the exact solve"):
        RFMRegressor(centers=20, solver="cholesky").fit(X, y)
    assert (
        RFMRegressor(centers=20, solver="cg", iters=0).fit(X, y).history_[0]["solver"] == "nystroem"
    )


# --- the GPU ----------------------------------------------------------------------------------


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_gives_the_cpus_answers():
    X, y = small(2000, 10)
    kw = dict(centers=300, iters=2, dtype="float64", keep_best=False)
    cpu = RFMRegressor(device="cpu", **kw).fit(X, y)
    gpu = RFMRegressor(device="cuda", **kw).fit(X, y)
    assert gpu._alpha_t.device.type == "cuda" and gpu._X_t.device.type == "cuda"
    assert all(r["solver"] == "nystroem" and r["converged"] for r in gpu.history_)
    np.testing.assert_array_equal(gpu.centers_, cpu.centers_)
    assert rel(gpu.M_, cpu.M_) < 1e-6
    Xq = low_rank_data(200, 10, seed=5)[0]
    assert rel(gpu.predict(Xq), cpu.predict(Xq)) < 1e-6


def test_float32_M_rounded_below_psd_is_widened_for_float64_factors():
    """A float32 M whose smallest eigenvalue float32 rounding put just below zero (as an AGOP
    computed in float32 can be) is accepted by the float64 factors (the ops' float64 check is
    1e-10 relative): its negative eigenvalues are set to zero, a change within float32's
    rounding."""
    from rfmfast.solvers.nystroem import nystroem_solve, widen_M

    g = torch.Generator().manual_seed(0)
    Q = torch.linalg.qr(torch.randn(6, 6, generator=g, dtype=torch.float64))[0]
    w = torch.tensor([1.0, 0.5, 0.2, 0.1, 1e-3, -3e-9], dtype=torch.float64)
    M = ((Q * w) @ Q.T).float()
    W = widen_M(M)
    assert W.dtype == torch.float64
    assert float(torch.linalg.eigvalsh(W).min()) >= -1e-12
    assert float((W - M.double()).abs().max()) < 1e-7
    X = torch.randn(400, 6, generator=g)
    y = X[:, :1] * X[:, 1:2]
    alpha, info = nystroem_solve(X, y, X[:50], M=M, bandwidth=3.0, reg=1e-3)
    assert bool(torch.isfinite(alpha).all())
