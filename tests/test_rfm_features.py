"""RFMFeatures (X -> X M^(1/2)), feature_importances_ from diag(M), and rfmfast.plot on the Agg
backend. Small sizes: the file runs in seconds."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
import scipy.linalg  # noqa: E402
import torch  # noqa: E402
from sklearn.base import clone  # noqa: E402
from sklearn.exceptions import NotFittedError  # noqa: E402
from sklearn.linear_model import LogisticRegression, Ridge  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402

from rfmfast import RFMClassifier, RFMRegressor  # noqa: E402
from rfmfast import plot as rplot  # noqa: E402
from rfmfast.models.rfm_features import RFMFeatures, sqrt_M  # noqa: E402


def product_data(n=300, d=6, seed=0):
    """y = x0 x1: only features 0 and 1 matter."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    return X, X[:, 0] * X[:, 1]


@pytest.fixture(scope="module")
def fitted():
    X, y = product_data()
    return X, y, RFMRegressor(iters=3, bandwidth=5.0, dtype="float64").fit(X, y)


def test_transform_is_X_times_sqrtm_M(fitted):
    X, y, rfm = fitted
    f = RFMFeatures(rfm, prefit=True).fit(X)
    S = scipy.linalg.sqrtm(rfm.M_).real
    np.testing.assert_allclose(f.transform(X), X @ S, rtol=1e-7, atol=1e-9)
    np.testing.assert_allclose(f.sqrt_M_.T @ f.sqrt_M_, rfm.M_, atol=1e-10)
    np.testing.assert_allclose(f.sqrt_M_, f.sqrt_M_.T)  # symmetric (eigh)
    assert f.estimator_ is rfm and f.transform(X).dtype == np.float64
    assert f.transform(X.astype(np.float32)).dtype == np.float32
    t = f.transform(torch.from_numpy(X))
    assert torch.is_tensor(t) and t.dtype == torch.float64


def test_fit_clones_and_fits_the_estimator():
    X, y = product_data(150)
    est = RFMRegressor(iters=1, dtype="float64")
    f = RFMFeatures(est).fit(X, y)
    assert f.estimator_ is not est and not hasattr(est, "M_")
    assert f.transform(X).shape == X.shape
    # the kernel of the RFM equals the plain kernel on the features
    Z = f.transform(X)
    dM = np.sqrt(
        np.maximum(
            ((X[:5, None] - X[None, :5]) @ f.estimator_.M_ * (X[:5, None] - X[None, :5])).sum(-1), 0
        )
    )
    dZ = np.linalg.norm(Z[:5, None] - Z[None, :5], axis=-1)
    np.testing.assert_allclose(dZ, dM, atol=1e-8)
    # default estimator: an RFMRegressor
    assert isinstance(RFMFeatures().fit(X, y).estimator_, RFMRegressor)


def test_diagonal_M_is_X_times_sqrt_m():
    X, y = product_data(150)
    rfm = RFMRegressor(iters=2, diag=True, dtype="float64").fit(X, y)
    assert rfm.M_.ndim == 1
    f = RFMFeatures(rfm, prefit=True).fit(X)
    np.testing.assert_allclose(f.transform(X), X * np.sqrt(rfm.M_))
    np.testing.assert_allclose(sqrt_M(np.diag(rfm.M_)), np.diag(np.sqrt(rfm.M_)), atol=1e-12)


def test_pipelines_with_ridge_and_logistic_regression():
    X, y = product_data(400)
    Xt, yt = product_data(200, seed=1)
    pipe = make_pipeline(RFMFeatures(RFMRegressor(iters=3, bandwidth=5.0)), Ridge(alpha=1e-3))
    pipe.fit(X, y)
    assert pipe.predict(Xt).shape == (200,)
    clone(pipe)  # get_params / clone through the nested estimator
    labels = (y > 0).astype(int)
    clf = make_pipeline(RFMFeatures(RFMClassifier(iters=2)), LogisticRegression(max_iter=500))
    clf.fit(X, labels)
    assert clf.predict(Xt).shape == (200,)
    assert clf.score(X, labels) > 0.5


def test_set_output_pandas_and_feature_names():
    X, y, rfm = fitted_small()
    cols = [f"c{j}" for j in range(X.shape[1])]
    df = pd.DataFrame(X, columns=cols)
    f = RFMFeatures(rfm, prefit=True).fit(df).set_output(transform="pandas")
    out = f.transform(df)
    assert isinstance(out, pd.DataFrame)
    assert list(out.columns) == [f"rfmfeatures{j}" for j in range(X.shape[1])]
    assert list(f.get_feature_names_out()) == list(out.columns)
    np.testing.assert_allclose(out.to_numpy(), X @ f.sqrt_M_)
    assert list(f.feature_names_in_) == cols
    with pytest.raises(ValueError, match="feature names should match"):
        f.transform(df[cols[::-1]])
    out2 = RFMFeatures(RFMRegressor(iters=1)).set_output(transform="pandas").fit_transform(df, y)
    assert isinstance(out2, pd.DataFrame) and out2.shape == X.shape


def fitted_small():
    X, y = product_data(120, d=4)
    return X, y, RFMRegressor(iters=1, dtype="float64").fit(X, y)


def test_errors_say_what_to_do(fitted):
    X, y, rfm = fitted
    with pytest.raises(NotFittedError):
        RFMFeatures().transform(X)
    with pytest.raises(NotFittedError):
        RFMFeatures(RFMRegressor(), prefit=True).fit(X)
    with pytest.raises(ValueError, match="requires y to be passed"):
        RFMFeatures().fit(X)
    with pytest.raises(ValueError, match="expecting 6 features"):
        RFMFeatures(rfm, prefit=True).fit(X).transform(X[:, :3])
    with pytest.raises(ValueError, match="expecting 6 features"):
        RFMFeatures(rfm, prefit=True).fit(X[:, :3])
    with pytest.raises(NotFittedError):
        RFMRegressor().feature_importances_  # noqa: B018


def test_feature_importances_rank_the_relevant_features_first(fitted):
    X, y, rfm = fitted
    imp = rfm.feature_importances_
    assert imp.shape == (X.shape[1],) and imp.dtype == np.float64
    assert imp.sum() == pytest.approx(1.0) and (imp >= 0).all()
    assert set(np.argsort(imp)[::-1][:2]) == {0, 1}
    assert imp[:2].min() > 3 * imp[2:].max()
    np.testing.assert_allclose(RFMFeatures(rfm, prefit=True).fit(X).feature_importances_, imp)
    Xc, yc = X, (y > 0).astype(int)
    c = RFMClassifier(iters=3, bandwidth=5.0).fit(Xc, yc)
    assert c.feature_importances_.sum() == pytest.approx(1.0)
    assert set(np.argsort(c.feature_importances_)[::-1][:2]) == {0, 1}
    d = RFMRegressor(iters=2, diag=True).fit(X, y)
    assert d.feature_importances_.sum() == pytest.approx(1.0)


def test_plot_helpers_return_axes(fitted):
    X, y, rfm = fitted
    axes = rplot.plot_M(rfm)
    assert len(axes) == 2 and all(isinstance(a, matplotlib.axes.Axes) for a in axes)
    assert len(axes[1].get_lines()) >= 3
    _, ax = plt.subplots()
    assert rplot.plot_M(torch.eye(3), ax=ax, top=0) == [ax]
    assert len(rplot.plot_M(np.ones(4), top=2)) == 2  # a diagonal M
    assert len(rplot.plot_M(RFMFeatures(rfm, prefit=True).fit(X), top=1)) == 2
    with pytest.raises(ValueError, match="top=0"):
        rplot.plot_M(rfm, ax=ax)
    ax = rplot.plot_history(rfm)
    assert isinstance(ax, matplotlib.axes.Axes)
    assert [t.get_text() for t in ax.get_legend().get_texts()][0] == "train_mse"
    ax = rplot.plot_history(rfm, metrics="solve_s")
    assert len(ax.get_lines()[0].get_xdata()) == len(rfm.history_)
    with pytest.raises(ValueError, match="not in history_"):
        rplot.plot_history(rfm, metrics=["nope"])
    with pytest.raises(ValueError, match="fit it first"):
        rplot.plot_history(RFMRegressor())
    plt.close("all")


def test_plot_without_matplotlib_names_the_install(monkeypatch):
    import builtins

    real = builtins.__import__

    def no_mpl(name, *a, **k):
        if name.startswith("matplotlib"):
            raise ImportError("No module named 'matplotlib'")
        return real(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", no_mpl)
    with pytest.raises(ImportError, match="pip install matplotlib"):
        rplot.plot_M(np.eye(2))
