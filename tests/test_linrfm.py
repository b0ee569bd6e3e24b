"""lin-RFM: completion (exact recovery, honest model selection, input forms, bad input), the
GEMM-only matrix power, sparse regression and the `rfmfast complete` command."""

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from sklearn.exceptions import NotFittedError

from rfmfast.models.linrfm import LinRFMCompleter
from rfmfast.models.linrfm_regressor import LinRFMRegressor
from rfmfast.models.matrix_power import psd_power, sqrt_newton_schulz


@pytest.fixture(autouse=True)
def _one_thread():
    """These problems are small: one thread is fastest, and on shared CI cores a second thread
    mostly waits for the other jobs."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def low_rank(n, d, r, frac, seed=0):
    """Rank-r (n, d) matrix with unit mean square, and a random mask observing ``frac`` of it."""
    rng = np.random.default_rng(seed)
    Y = rng.standard_normal((n, r)) @ rng.standard_normal((r, d))
    Y *= np.sqrt(n * d) / np.linalg.norm(Y)
    mask = np.zeros(n * d, dtype=bool)
    mask[rng.choice(n * d, int(frac * n * d), replace=False)] = True
    return Y, mask.reshape(n, d)


def missing_err(X, Y, mask):
    X = np.asarray(X)
    return np.linalg.norm((X - Y)[~mask]) / np.linalg.norm(Y[~mask])


# ---- completion ---------------------------------------------------------------------------------
def test_exact_recovery_300x200_rank3():
    Y, mask = low_rank(300, 200, 3, 0.3)
    est = LinRFMCompleter(max_iter=60).fit(Y, mask)
    assert missing_err(est.completed_, Y, mask) <= 1e-3
    np.testing.assert_array_equal(est.completed_[mask], Y[mask])  # observed entries kept
    h = [r["holdout_rmse"] for r in est.history_]
    assert h[-1] < 1e-2 * h[0] and len(h) == est.n_iter_


def test_never_reads_missing_entries():
    """Poisoned missing entries (NaN, huge, or the truth) must not change a single number."""
    Y, mask = low_rank(60, 40, 2, 0.4, seed=1)
    runs = []
    for fill in (np.nan, 1e6, None):
        Z = Y.copy()
        if fill is not None:
            Z[~mask] = fill
        est = LinRFMCompleter(max_iter=15, patience=100).fit(Z, mask)
        runs.append((est.completed_, [r["holdout_rmse"] for r in est.history_], est.best_iter_))
    for X, hist, best in runs[1:]:
        np.testing.assert_array_equal(X, runs[0][0])
        assert hist == runs[0][1] and best == runs[0][2]
    assert np.isfinite(runs[0][0]).all()


def test_holdout_steers_ridge_and_stops():
    """With the held-out part of the observed entries poisoned, the schedule must react: the
    ridge and stopping come from those entries and nothing else."""
    Y, mask = low_rank(60, 40, 2, 0.4, seed=1)
    rows, cols = np.nonzero(mask)
    clean = LinRFMCompleter(max_iter=60).fit((rows, cols, Y[rows, cols]), shape=Y.shape)
    noisy_vals = Y[rows, cols] + np.random.default_rng(0).standard_normal(len(rows))
    noisy = LinRFMCompleter(max_iter=60).fit((rows, cols, noisy_vals), shape=Y.shape)
    assert [r["reg"] for r in clean.history_] != [r["reg"] for r in noisy.history_]
    assert noisy.reg_ > 10 * clean.reg_  # noisy data keep a larger ridge


def test_input_forms_agree():
    Y, mask = low_rank(50, 30, 2, 0.5, seed=2)
    rows, cols = np.nonzero(mask)
    kw = dict(max_iter=10, patience=100)
    ref = LinRFMCompleter(**kw).fit(Y, mask).completed_
    Z = Y.copy()
    Z[~mask] = np.nan
    perm = np.random.default_rng(0).permutation(len(rows))  # order of entries does not matter
    others = [
        LinRFMCompleter(**kw).fit(Z).completed_,
        LinRFMCompleter(**kw)
        .fit((rows[perm], cols[perm], Y[rows, cols][perm]), shape=Y.shape)
        .completed_,
        LinRFMCompleter(**kw)
        .fit(sp.csr_matrix((Y[rows, cols], (rows, cols)), shape=Y.shape))
        .completed_,
    ]
    for X in others:
        np.testing.assert_allclose(X, ref, rtol=0, atol=1e-12)
    T = LinRFMCompleter(**kw).fit(torch.as_tensor(Y), torch.as_tensor(mask)).completed_
    assert isinstance(T, torch.Tensor)
    np.testing.assert_allclose(T.numpy(), ref, rtol=0, atol=1e-12)


def test_predict_with_and_without_completed():
    Y, mask = low_rank(40, 30, 2, 0.5, seed=3)
    kw = dict(max_iter=8, bias="rowcol", mixed_precision=False)
    a = LinRFMCompleter(**kw).fit(Y, mask)
    b = LinRFMCompleter(max_completed_elems=0, block_elems=64, **kw).fit(Y, mask)
    assert b.completed_ is None
    r, c = np.nonzero(np.ones_like(mask))
    np.testing.assert_allclose(a.predict(r, c), a.completed_[r, c], rtol=0, atol=1e-12)
    np.testing.assert_allclose(b.predict(r, c), a.completed_[r, c], rtol=0, atol=1e-10)
    ro, co = np.nonzero(mask)
    np.testing.assert_allclose(b.predict(ro, co), Y[ro, co], rtol=0, atol=1e-10)


def test_small_blocks_same_result():
    """Many row-solve chunks and row chunks give the same answer as one block (in float64
    throughout: with mixed precision the float32 sweeps round differently per blocking)."""
    Y, mask = low_rank(70, 45, 2, 0.35, seed=4)
    kw = dict(max_iter=6, mixed_precision=False)
    one = LinRFMCompleter(**kw).fit(Y, mask).completed_
    many = LinRFMCompleter(block_elems=100, **kw).fit(Y, mask).completed_
    np.testing.assert_allclose(many, one, rtol=0, atol=1e-10)
    mixed = LinRFMCompleter(max_iter=6, block_elems=100).fit(Y, mask).completed_
    np.testing.assert_allclose(mixed, one, rtol=0, atol=1e-4)


def test_float32_runs():
    Y, mask = low_rank(80, 60, 2, 0.4, seed=5)
    est = LinRFMCompleter(dtype=torch.float32, max_iter=40).fit(Y, mask)
    assert est.completed_.dtype == np.float32
    assert missing_err(est.completed_, Y, mask) < 1e-2


@pytest.mark.parametrize("alpha", [0.25, 1.0])
def test_other_alpha_recovers(alpha):
    Y, mask = low_rank(80, 60, 2, 0.5, seed=6)
    est = LinRFMCompleter(alpha=alpha, max_iter=80).fit(Y, mask)
    assert missing_err(est.completed_, Y, mask) < 1e-2


def test_power_methods_agree():
    Y, mask = low_rank(50, 40, 2, 0.5, seed=7)
    kw = dict(alpha=0.25, max_iter=5, patience=100, mixed_precision=False)
    a = LinRFMCompleter(**kw).fit(Y, mask)
    b = LinRFMCompleter(power_method="eigh", **kw).fit(Y, mask)
    assert missing_err(a.completed_, b.completed_, mask) < 1e-6


def test_biases():
    """Row/column offsets: a pure-bias matrix is completed exactly with bias='rowcol'."""
    rng = np.random.default_rng(8)
    Y = 3.5 + rng.standard_normal(50)[:, None] + rng.standard_normal(40)[None, :]
    mask = rng.random(Y.shape) < 0.5
    est = LinRFMCompleter(bias="rowcol", bias_reg=0.0, max_iter=10).fit(Y, mask)
    assert missing_err(est.completed_, Y, mask) < 1e-3
    assert est.bias_ == "rowcol"
    # the offsets are those of the fitted (not held-out) entries: the mean of 95% of them
    assert abs(est.mu_ - Y[mask].mean()) < 0.05
    whole = LinRFMCompleter(bias="rowcol", bias_reg=0.0, holdout=0, max_iter=10).fit(Y, mask)
    assert abs(whole.mu_ - Y[mask].mean()) < 1e-12


def test_empty_rows_and_columns_are_predicted_by_bias():
    Y, mask = low_rank(40, 30, 2, 0.5, seed=9)
    mask[3, :] = False
    mask[:, 5] = False
    est = LinRFMCompleter(bias="global", max_iter=8).fit(Y, mask)
    np.testing.assert_allclose(est.completed_[3], est.mu_)
    np.testing.assert_allclose(est.completed_[:, 5], est.mu_)
    assert np.isfinite(est.completed_).all()


@pytest.mark.parametrize(
    "args, kwargs, exc, match",
    [
        (
            ((np.array([0, 5]), np.array([0, 1]), np.array([1.0, 2.0])),),
            {"shape": (3, 3)},
            ValueError,
            "out of range",
        ),
        (((np.array([0, -1]), np.array([0, 1]), np.array([1.0, 2.0])),), {}, ValueError, ">= 0"),
        (
            ((np.array([0, 0]), np.array([1, 1]), np.array([1.0, 2.0])),),
            {},
            ValueError,
            r"\(0, 1\) is given more than once",
        ),
        (
            ((np.array([0, 1]), np.array([0, 1]), np.array([1.0, np.nan])),),
            {},
            ValueError,
            "must be finite",
        ),
        (
            ((np.array([0.0, 1.0]), np.array([0, 1]), np.array([1.0, 2.0])),),
            {},
            TypeError,
            "integers",
        ),
        (((np.array([0]), np.array([0, 1]), np.array([1.0, 2.0])),), {}, ValueError, "one length"),
        (
            ((np.array([], dtype=int), np.array([], dtype=int), np.array([])),),
            {},
            ValueError,
            "no observed",
        ),
        ((np.ones((3, 3)), np.ones((3, 2), dtype=bool)), {}, ValueError, "mask has shape"),
        ((np.ones((3, 3)), np.ones((3, 3))), {}, TypeError, "mask must be boolean"),
        ((np.ones(3),), {}, ValueError, "2-D"),
        ((np.array([[1.0, np.inf], [np.nan, 2.0]]),), {}, ValueError, "must be finite"),
    ],
)
def test_bad_input(args, kwargs, exc, match):
    with pytest.raises(exc, match=match):
        LinRFMCompleter(max_iter=2).fit(*args, **kwargs)


@pytest.mark.parametrize(
    "param, value, match",
    [
        ("alpha", 0.0, "alpha"),
        ("reg", -1.0, "reg"),
        ("momentum", 1.0, "momentum"),
        ("holdout", 0.6, "holdout"),
        ("bias", "user", "bias"),
        ("power_method", "svd", "power_method"),
        ("max_iter", 0, "max_iter"),
        ("backend", "triton", "only the PyTorch"),
        ("backend", "gpu", "unknown"),
    ],
)
def test_bad_params(param, value, match):
    Y, mask = low_rank(10, 8, 1, 0.6)
    with pytest.raises(Exception, match=match):
        LinRFMCompleter(**{param: value}).fit(Y, mask)


def test_predict_checks():
    Y, mask = low_rank(10, 8, 1, 0.6)
    with pytest.raises(NotFittedError, match="fit"):
        LinRFMCompleter().predict([0], [0])
    est = LinRFMCompleter(max_iter=2).fit(Y, mask)
    with pytest.raises(ValueError, match="out of range"):
        est.predict(np.array([10]), np.array([0]))


def test_no_holdout_mode():
    Y, mask = low_rank(80, 60, 2, 0.4, seed=10)
    est = LinRFMCompleter(holdout=0, max_iter=200, tol=1e-9).fit(Y, mask)
    assert "change" in est.history_[0] and missing_err(est.completed_, Y, mask) < 1e-3


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu():
    Y, mask = low_rank(60, 40, 2, 0.4, seed=11)
    a = LinRFMCompleter(max_iter=10, device="cpu").fit(Y, mask).completed_
    b = LinRFMCompleter(max_iter=10, device="cuda").fit(Y, mask).completed_
    np.testing.assert_allclose(b, a, rtol=0, atol=1e-8)


# ---- matrix power -------------------------------------------------------------------------------
@pytest.mark.parametrize("p", [0.5, 0.25, 1.0, 1.5, 2.0, 0.75, 3.0])
@pytest.mark.parametrize("d, rank", [(1, 1), (7, 7), (130, 4)])
def test_psd_power_matches_eigh(p, d, rank):
    """Full rank, and low rank plus a 1e-6 ridge (eigenvalues spread over 7 decades)."""
    g = torch.Generator().manual_seed(d)
    B = torch.randn(d, rank, dtype=torch.float64, generator=g)
    A = B @ B.T + 1e-6 * torch.eye(d, dtype=torch.float64)
    ref = psd_power(A, p, method="eigh")
    got = psd_power(A, p)
    assert float((got - ref).norm() / ref.norm()) < 1e-9
    assert torch.equal(got, got.T)


def test_psd_power_singular_stays_finite():
    """Exactly singular A: the null space must not blow up (the coupled iteration is unstable
    there in floating point); the result is accurate in norm."""
    B = torch.randn(130, 4, dtype=torch.float64)
    A = B @ B.T
    for p in (0.5, 1.5):
        got, ref = psd_power(A, p), psd_power(A, p, method="eigh")
        assert torch.isfinite(got).all() and float((got - ref).norm() / ref.norm()) < 1e-6


def test_psd_power_rounded_exponent_and_errors():
    B = torch.randn(20, 20, dtype=torch.float64)
    A = B @ B.T + torch.eye(20, dtype=torch.float64)
    ref = psd_power(A, 0.3, method="eigh")
    assert float((psd_power(A, 0.3) - ref).norm() / ref.norm()) < 1e-4  # 16 fractional bits
    with pytest.raises(ValueError, match="> 0"):
        psd_power(A, 0.0)
    with pytest.raises(ValueError, match="square"):
        psd_power(A[:3], 0.5)
    with pytest.raises(ValueError, match="method"):
        psd_power(A, 0.5, method="svd")
    root, steps = sqrt_newton_schulz(A)
    assert steps > 1 and float((root @ root - A).norm() / A.norm()) < 1e-10


# ---- sparse regression --------------------------------------------------------------------------
def sparse_problem(m=50, d=200, k=5, seed=0):
    rng = np.random.default_rng(seed)
    A = rng.standard_normal((m, d))
    beta = np.zeros(d)
    beta[rng.choice(d, k, replace=False)] = rng.standard_normal(k) + np.sign(rng.standard_normal(k))
    return A, A @ beta, beta


@pytest.mark.parametrize("alpha", [0.25, 0.5])
def test_sparse_recovery_beats_min_norm(alpha):
    A, y, beta = sparse_problem()
    min_norm = np.linalg.pinv(A) @ y
    assert np.linalg.norm(min_norm - beta) / np.linalg.norm(beta) > 0.5  # least squares fails
    est = LinRFMRegressor(alpha=alpha).fit(A, y)
    assert np.linalg.norm(est.coef_ - beta) / np.linalg.norm(beta) < 1e-6
    np.testing.assert_allclose(est.predict(A), y, atol=1e-8)


def test_exponent_matches_irls():
    """One lin-RFM step equals an IRLS-l_p step with p = 2 - 4 alpha (the derived exponent)."""
    A, y, _ = sparse_problem(seed=1)
    for alpha in (0.25, 0.4, 0.5):
        p = 2 - 4 * alpha
        steps = 4
        ours = LinRFMRegressor(alpha=alpha, max_iter=steps, reg=0.0, tol=0.0).fit(A, y).coef_
        b, eps = np.linalg.pinv(A) @ y, 1.0
        for _ in range(steps - 1):  # IRLS: weights w = (b^2 + eps max b^2)^(p/2 - 1)
            w = (b**2 + eps * (b**2).max()) ** (p / 2 - 1)
            Winv = 1 / w
            b = Winv * (A.T @ np.linalg.solve((A * Winv) @ A.T, y))
            eps *= 0.5
        np.testing.assert_allclose(ours, b, rtol=1e-6, atol=1e-9)


def test_regressor_multi_output_and_errors():
    A, y, _ = sparse_problem(seed=2)
    est = LinRFMRegressor().fit(A, np.stack([y, 2 * y], 1))
    assert est.coef_.shape == (200, 2)
    np.testing.assert_allclose(est.coef_[:, 1], 2 * est.coef_[:, 0], rtol=1e-6, atol=1e-9)
    with pytest.raises(ValueError, match="NaN"):
        LinRFMRegressor().fit(np.full((3, 4), np.nan), np.zeros(3))
    with pytest.raises(ValueError, match="m = 3"):
        LinRFMRegressor().fit(np.ones((3, 4)), np.zeros(4))
    with pytest.raises(NotFittedError, match="fit"):
        LinRFMRegressor().predict(np.ones((2, 4)))


# ---- command line -------------------------------------------------------------------------------
def test_cli_complete(tmp_path, capsys):
    from rfmfast.cli import main

    rng = np.random.default_rng(0)
    U, V = rng.standard_normal((60, 2)), rng.standard_normal((2, 50))
    R = np.clip(np.round(3 + U @ V), 1, 5)
    obs = np.argwhere(rng.random(R.shape) < 0.4)
    path = tmp_path / "u.data"
    path.write_text("".join(f"{u + 1}\t{i + 1}\t{int(R[u, i])}\t0\n" for u, i in obs))
    out = tmp_path / "pred.csv"
    assert (
        main(
            ["complete", str(path), "--test-fraction", "0.1", "--out", str(out), "--max-iter", "20"]
        )
        == 0
    )
    text = capsys.readouterr().out
    assert "sweep    1" in text and "test RMSE" in text
    lines = out.read_text().splitlines()
    assert lines[0] == "user,item,rating,prediction" and len(lines) == 1 + round(0.1 * len(obs))
    rmse = float(text.split("test RMSE ")[1].split()[0])
    assert rmse < 1.0
