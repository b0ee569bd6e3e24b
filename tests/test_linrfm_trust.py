"""lin-RFM on edge inputs (zero, constant, tiny and huge values, ambiguous forms, sizes that cannot
fit) and its parameters (validated like scikit-learn's, bools never numbers)."""

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from sklearn.base import clone

from rfmfast.models.linrfm import LinRFMCompleter
from rfmfast.models.linrfm_regressor import LinRFMRegressor
from rfmfast.models.linrfm_rows import _cholesky_solve_batched


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def low_rank(n=30, d=20, r=2, frac=0.5, seed=0):
    rng = np.random.default_rng(seed)
    Y = rng.standard_normal((n, r)) @ rng.standard_normal((r, d))
    return Y, rng.random((n, d)) < frac


# ---- values --------------------------------------------------------------------------------------
@pytest.mark.parametrize("bias", ["none", "global", "rowcol"])
@pytest.mark.parametrize("holdout", [0.05, 0.0])
def test_all_zero_ratings_complete_to_zero(bias, holdout):
    _, mask = low_rank()
    est = LinRFMCompleter(bias=bias, holdout=holdout, max_iter=5).fit(np.zeros(mask.shape), mask)
    np.testing.assert_array_equal(est.completed_, 0.0)
    assert est.history_ == [] and est.n_iter_ == 0
    np.testing.assert_array_equal(est.predict([0, 1], [2, 3]), [0.0, 0.0])


@pytest.mark.parametrize("bias", ["global", "rowcol"])
def test_constant_ratings_with_a_bias_complete_to_the_constant(bias):
    _, mask = low_rank()
    est = LinRFMCompleter(bias=bias, max_iter=5).fit(np.full(mask.shape, 3.5), mask)
    np.testing.assert_allclose(est.completed_, 3.5, rtol=1e-15)


@pytest.mark.parametrize("scale", [1e-200, 1e-160, 1e200])
@pytest.mark.parametrize("holdout", [0.05, 0.0])
def test_tiny_and_huge_ratings_scale_the_answer(scale, holdout):
    """The iteration is homogeneous in the values: scaled data, scaled completion."""
    Y, mask = low_rank()
    kw = dict(max_iter=15, holdout=holdout, bias="rowcol", mixed_precision=False)
    ref = LinRFMCompleter(**kw).fit(Y, mask)
    got = LinRFMCompleter(**kw).fit(Y * scale, mask)
    np.testing.assert_allclose(got.completed_ / scale, ref.completed_, rtol=1e-9, atol=1e-9)
    assert got.n_iter_ == ref.n_iter_
    if holdout:
        np.testing.assert_allclose(
            [r["holdout_rmse"] / scale for r in got.history_],
            [r["holdout_rmse"] for r in ref.history_],
            rtol=1e-9,
        )


def test_float32_range_is_checked():
    Y, mask = low_rank()
    with pytest.raises(ValueError, match="float32.*dtype='float64'"):
        LinRFMCompleter(dtype="float32").fit(Y * 1e50, mask)
    est = LinRFMCompleter(dtype=torch.float32, max_iter=10).fit(Y * 1e-30, mask)
    assert np.isfinite(est.completed_).all() and np.abs(est.completed_).max() > 1e-31


def test_rowcol_bias_without_ridge_and_an_empty_row_stays_finite():
    Y, mask = low_rank()
    mask[4] = False
    est = LinRFMCompleter(bias="rowcol", bias_reg=0.0, max_iter=5).fit(Y, mask)
    assert np.isfinite(est.completed_).all() and est.row_bias_[4] == 0.0


def test_row_solve_keeps_a_tiny_ridge():
    """(S + lam I) a = y with S = 0 must give y / lam, however small lam is."""
    S = torch.zeros(1, 1, 1, dtype=torch.float64)
    one = torch.ones(1, 1, dtype=torch.float64)
    a = _cholesky_solve_batched(S, one, one, 1e-20)
    assert float(a) == pytest.approx(1e20, rel=1e-12)


# ---- input forms ---------------------------------------------------------------------------------
def test_nested_list_is_a_dense_matrix():
    Y = [[1.0, 2.0], [3.0, 4.0], [5.0, float("nan")]]
    est = LinRFMCompleter(max_iter=3).fit(Y)
    assert est.completed_.shape == (3, 2)
    np.testing.assert_array_equal(est.completed_[:, 0], [1.0, 3.0, 5.0])


def test_list_of_three_arrays_is_ambiguous():
    r, c, v = np.array([0, 1]), np.array([0, 1]), np.array([1.0, 2.0])
    with pytest.raises(TypeError, match="ambiguous"):
        LinRFMCompleter().fit([r, c, v])


@pytest.mark.parametrize("shape", [(3.5, 4), (3.0, 4), (True, 4), (3,), "34", (-3, 4), None])
def test_shape_must_be_two_integers(shape):
    r, c, v = np.array([0, 1]), np.array([0, 1]), np.array([1.0, 2.0])
    if shape is None:
        LinRFMCompleter(max_iter=2).fit((r, c, v), shape=(np.int64(3), 4))
        return
    with pytest.raises(ValueError, match="shape must be a pair of integers"):
        LinRFMCompleter(max_iter=2).fit((r, c, v), shape=shape)


def test_shape_must_agree_with_dense_and_sparse_y():
    Y, mask = low_rank(6, 5)
    with pytest.raises(ValueError, match="disagrees with the dense Y"):
        LinRFMCompleter().fit(Y, mask, shape=(7, 5))
    with pytest.raises(ValueError, match="disagrees with the sparse Y"):
        LinRFMCompleter().fit(sp.csr_matrix(Y), shape=(6, 9))


def test_indices_beyond_int64_are_out_of_range():
    rows = np.array([2**64 - 1], dtype=np.uint64)
    with pytest.raises(ValueError, match="beyond any matrix shape"):
        LinRFMCompleter().fit((rows, np.array([0]), np.array([1.0])))


@pytest.mark.parametrize(
    "rows, shape", [(np.array([0, 2]), (3, 10**12)), (np.array([0, 2**62]), None)]
)
def test_sizes_that_cannot_fit_are_refused_before_work(rows, shape):
    with pytest.raises(MemoryError, match=r"needs about .* GiB"):
        LinRFMCompleter().fit((rows, np.array([0, 1]), np.array([1.0, 2.0])), shape=shape)


def test_predict_edge_queries():
    Y, mask = low_rank()
    est = LinRFMCompleter(max_iter=3).fit(Y, mask)
    assert est.predict([], []).shape == (0,)
    np.testing.assert_array_equal(
        est.predict(np.array([1], dtype=np.uint8), [2]), est.completed_[1, 2]
    )
    with pytest.raises(TypeError, match="integers"):
        est.predict([0.5], [1])


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the machine without CUDA")
def test_cuda_without_cuda_says_so():
    Y, mask = low_rank()
    with pytest.raises(ValueError, match="no CUDA device"):
        LinRFMCompleter(device="cuda").fit(Y, mask)
    with pytest.raises(ValueError, match="no CUDA device"):
        LinRFMRegressor(device="cuda").fit(np.eye(3), np.ones(3))


def test_unknown_device_name():
    Y, mask = low_rank()
    with pytest.raises(ValueError, match="device must be"):
        LinRFMCompleter(device="gpu").fit(Y, mask)


# ---- the regressor -------------------------------------------------------------------------------
def sparse_problem(m=30, d=80, k=3, seed=0):
    rng = np.random.default_rng(seed)
    A = rng.standard_normal((m, d))
    beta = np.zeros(d)
    beta[rng.choice(d, k, replace=False)] = 1.0 + rng.random(k)
    return A, A @ beta, beta


@pytest.mark.parametrize("sx, sy", [(1e-200, 1.0), (1e200, 1.0), (1.0, 1e-200), (1.0, 1e250)])
def test_regressor_scales(sx, sy):
    A, y, beta = sparse_problem()
    est = LinRFMRegressor().fit(A * sx, y * sy)
    np.testing.assert_allclose(est.coef_ * sx / sy, beta, rtol=1e-6, atol=1e-9)


def test_regressor_coefficients_that_overflow_are_refused():
    A, y, _ = sparse_problem()
    with pytest.raises(ValueError, match="overflow"):
        LinRFMRegressor().fit(A * 1e-200, y * 1e200)


def test_regressor_inputs():
    A, y, _ = sparse_problem()
    est = LinRFMRegressor().fit(A.astype(np.float32) > 0, y)  # bool / int features are numbers
    assert est.predict(np.ones((2, 80), dtype=int)).shape == (2,)
    with pytest.raises(ValueError, match=r"m = 30, got shape \(29,\)"):
        LinRFMRegressor().fit(A, list(y[:-1]))
    # scikit-learn's conventions (tests/test_sklearn_checks.py): ValueErrors
    with pytest.raises(ValueError, match="must be numeric"):
        LinRFMRegressor().fit(np.array([["a", "b"]]), [1.0])
    with pytest.raises(ValueError, match="Complex data not supported"):
        LinRFMRegressor().fit(A + 1j, y)


# ---- parameters ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "param, value",
    [
        ("tol", -1e-3),
        ("patience", -1),
        ("patience", 0),
        ("patience", 2.0),
        ("block_elems", 0),
        ("max_completed_elems", -1),
        ("max_iter", True),
        ("max_iter", 2.5),
        ("reg", "1.0"),
        ("alpha", True),
        ("alpha", float("nan")),
        ("reg", float("inf")),
        ("momentum", np.bool_(True)),
        ("plateau", 0),
        ("reg_step", 1.0),
        ("min_gain", 1.0),
        ("bias_reg", -1.0),
        ("verbose", 1),
        ("random_state", -1),
        ("random_state", 1.5),
        ("dtype", "float16"),
        ("dtype", torch.float16),
        ("callback", 3),
        ("device", 0),
        ("holdout", True),
        ("reg_min", 0.0),
    ],
)
def test_completer_params(param, value):
    Y, mask = low_rank(8, 6)
    with pytest.raises(ValueError, match=f"'{param}' parameter of LinRFMCompleter"):
        LinRFMCompleter(**{param: value}).fit(Y, mask)


def test_completer_param_relations():
    Y, mask = low_rank(8, 6)
    with pytest.raises(ValueError, match="reg_min must be <= reg"):
        LinRFMCompleter(reg=1e-3, reg_min=1e-2).fit(Y, mask)


@pytest.mark.parametrize(
    "param, value",
    [
        ("max_iter", 0),
        ("max_iter", True),
        ("tol", -1.0),
        ("reg", -1.0),
        ("eps", "1"),
        ("eps_decay", 1.0),
        ("eps_min", -1.0),
        ("alpha", 0),
        ("dtype", "int64"),
        ("device", 3.0),
    ],
)
def test_regressor_params(param, value):
    with pytest.raises(ValueError, match=f"'{param}' parameter of LinRFMRegressor"):
        LinRFMRegressor(**{param: value}).fit(np.eye(3), np.ones(3))


@pytest.mark.parametrize("cls", [LinRFMCompleter, LinRFMRegressor])
def test_scikit_learn_estimator_protocol(cls):
    est = cls(max_iter=7, dtype=torch.float32)
    params = est.get_params()
    assert params["max_iter"] == 7 and params["dtype"] is torch.float32
    assert cls().get_params()["dtype"] == "float64"
    twin = clone(est)
    assert twin is not est and twin.get_params() == params
    assert est.set_params(tol=0.5) is est and est.tol == 0.5
    assert "max_iter=7" in repr(est)


def test_string_and_torch_dtypes_agree():
    Y, mask = low_rank()
    a = LinRFMCompleter(dtype="float32", max_iter=5).fit(Y, mask).completed_
    b = LinRFMCompleter(dtype=torch.float32, max_iter=5).fit(Y, mask).completed_
    assert a.dtype == np.float32
    np.testing.assert_array_equal(a, b)
