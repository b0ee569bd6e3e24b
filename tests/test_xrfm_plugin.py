"""The xRFM plug-in kernel gives xRFM's own Laplace kernel results (xrfm 0.4.5)."""

import pytest
import torch

xrfm = pytest.importorskip("xrfm", reason="xrfm is not installed (pip install xrfm==0.4.5)")
from xrfm.rfm_src.kernels import LaplaceKernel  # noqa: E402

from rfmfast.cases import low_rank_data  # noqa: E402
from rfmfast.xrfm_plugin import RfmfastKernel, symmetrized  # noqa: E402

DT = torch.float64
# xRFM's LaplaceKernel measures distances with torch.cdist (a GEMM expansion) and M^{1/2} from
# its own matrix power: float64 agreement to ~1e-7 is what that arithmetic allows.
TOL = 1e-5


def lowrank(n, d=10, seed=0):
    X, y = low_rank_data(n, d, seed, source="torch", dtype=DT)
    return X, y[:, None]


def rel(a, b):
    return float((a - b).norm() / b.norm())


def psd(d, seed=1):
    g = torch.Generator().manual_seed(seed)
    A = torch.randn(d, d, generator=g, dtype=DT)
    M = A @ A.T / d
    return M / M.max()


def test_kernel_matrix_grads_and_agop_equal_xrfm_laplace():
    X, _ = lowrank(120)
    Z, _ = lowrank(45, seed=3)
    coefs = torch.randn(3, 120, dtype=DT)
    M = psd(10)
    w, U = torch.linalg.eigh(M)
    sqrtM = (U * w.clamp(min=0).sqrt()) @ U.T
    ours, theirs = RfmfastKernel("laplace", 10.0), LaplaceKernel(bandwidth=10.0, exponent=1.0)
    assert rel(ours.get_kernel_matrix(Z, X, M), theirs.get_kernel_matrix(Z, X, sqrtM)) < TOL
    assert rel(ours.get_kernel_matrix(X, X, M), theirs.get_kernel_matrix(X, X, sqrtM)) < TOL
    assert (
        rel(ours.get_function_grads(X, Z, coefs, M), theirs.get_function_grads(X, Z, coefs, sqrtM))
        < TOL
    )
    for centered in (False, True):
        assert (
            rel(
                ours.get_agop(X, Z, coefs, M, center_grads=centered),
                theirs.get_agop(X, Z, coefs, sqrtM, center_grads=centered),
            )
            < TOL
        )
    d = torch.linspace(0.2, 1.0, 10, dtype=DT)
    assert (
        rel(ours.get_agop_diag(X, Z, coefs, d), theirs.get_agop_diag(X, Z, coefs, d.sqrt())) < TOL
    )


@pytest.mark.parametrize("diag", [False, True])
def test_xrfm_rfm_with_plugin_equals_its_laplace_kernel(diag):
    X, y = lowrank(300)
    Xv, yv = lowrank(100, seed=5)
    out = []
    for kernel in (LaplaceKernel(bandwidth=10.0, exponent=1.0), RfmfastKernel("laplace", 10.0)):
        m = xrfm.RFM(
            kernel=kernel, iters=3, diag=diag, device="cpu", verbose=False, tuning_metric="mse"
        )
        m.fit((X, y), (Xv, yv), reg=1e-3, early_stop_rfm=False, verbose=False)
        out.append((m.predict(Xv), m.M, m.best_iter))
    (p0, M0, b0), (p1, M1, b1) = out
    assert b0 == b1
    assert rel(M1, M0) < TOL and rel(p1, p0) < TOL


def test_unsupported_features_say_so():
    with pytest.raises(ValueError, match="exponent 1 only"):
        RfmfastKernel(exponent=1.2)
    with pytest.raises(NotImplementedError, match="constant bandwidth"):
        RfmfastKernel()._reset_adaptive_bandwidth()
    X, y = lowrank(60)
    m = xrfm.RFM(
        kernel=RfmfastKernel(), bandwidth_mode="adaptive", iters=1, device="cpu", verbose=False
    )
    with pytest.raises(NotImplementedError, match="constant bandwidth"):
        m.fit((X, y), (X, y), reg=1e-3, verbose=False)


def asymmetric(M, by):
    """M plus an upper triangle of noise: max |A - A^T| = by * max |M|."""
    g = torch.Generator().manual_seed(2)
    R = torch.rand(M.shape, generator=g, dtype=M.dtype) * 2 - 1
    R = R.triu(1) / R.triu(1).abs().max()
    return M + by * float(M.abs().max()) * R


@pytest.mark.parametrize(
    "dtype, by", [(torch.float32, 1e-4), (torch.float32, 3e-3), (torch.float64, 1e-7)]
)
def test_m_asymmetric_by_rounding_is_averaged(dtype, by):
    """xRFM computes M in the data's precision; triangles that differ by rounding (more than
    rfmfast's ops accept) give the results of (M + M^T) / 2 instead of an error."""
    d = 64
    X, Z = lowrank(90, d)[0].to(dtype), lowrank(40, d, seed=3)[0].to(dtype)
    coefs = torch.randn(2, 90, dtype=dtype)
    A = asymmetric((psd(d) + torch.eye(d, dtype=DT) / 2).to(dtype), by)  # well inside PSD
    S = (A + A.T) * 0.5
    k = RfmfastKernel("laplace", 10.0)
    assert torch.equal(symmetrized(A), S)
    assert torch.equal(k.get_kernel_matrix(X, Z, A), k.get_kernel_matrix(X, Z, S))
    assert torch.equal(k.get_kernel_matrix(X, X, A), k.get_kernel_matrix(X, X, S))
    assert torch.equal(k.get_function_grads(X, Z, coefs, A), k.get_function_grads(X, Z, coefs, S))
    for centered in (False, True):
        assert torch.equal(
            k.get_agop(X, Z, coefs, A, centered), k.get_agop(X, Z, coefs, S, centered)
        )


def test_m_asymmetric_beyond_rounding_is_refused():
    X = lowrank(30, 16)[0].float()
    A = asymmetric(psd(16).float(), 0.05)
    assert symmetrized(A) is A
    with pytest.raises(ValueError, match="symmetric"):
        RfmfastKernel("laplace", 10.0).get_kernel_matrix(X, X, A)
    diag = torch.ones(16)
    assert symmetrized(diag) is diag and symmetrized(None) is None


@pytest.mark.parametrize("d", [8, 64])
def test_xrfm_float32_one_leaf_equals_xrfm_l2_kernels(d):
    """xRFM on float32 data, one leaf, 3 iterations: the plug-in's predictions are as close to
    xRFM's "l2" and "l2_high_dim" kernels' as those two are to each other (within 2x). At d = 64
    the triangles of a float32 M can differ by more than rfmfast's ops accept as rounding: the fit
    must not stop at iteration 2."""
    X, y = (t.float() for t in lowrank(256, d))
    Xv, yv = (t.float() for t in lowrank(128, d, seed=5))
    preds = {}
    for kernel in (RfmfastKernel("laplace", 10.0), "l2", "l2_high_dim"):
        params = {
            "model": {
                "kernel": kernel,
                "bandwidth": 10.0,
                "exponent": 1.0,
                "diag": False,
                "bandwidth_mode": "constant",
            },
            "fit": {
                "reg": 1e-3,
                "iters": 3,
                "early_stop_rfm": False,
                "return_best_params": False,
                "verbose": False,
            },
        }
        m = xrfm.xRFM(
            rfm_params=params,
            max_leaf_size=10_000,
            device="cpu",
            n_threads=1,
            tuning_metric="mse",
            verbose=False,
        )
        m.fit(X, y, Xv, yv)
        leaf = m.trees[0]
        assert leaf["type"] == "leaf" and (
            leaf["model"].kernel_obj is kernel or isinstance(kernel, str)
        )
        preds[kernel if isinstance(kernel, str) else "rfmfast"] = torch.as_tensor(m.predict(Xv))
    spread = rel(preds["l2_high_dim"], preds["l2"])  # xRFM's own float32 kernels, 1e-4 to 1e-3
    for name in ("l2", "l2_high_dim"):
        assert rel(preds["rfmfast"], preds[name]) <= 2 * spread, (name, spread)


def test_rfm_float32_d64_error_at_most_twice_xrfms():
    """Against xRFM's float64 fit, the plug-in's float32 RFM (d = 64) errs at most 2x as much
    as xRFM's own float32 RFM: averaging M's triangles costs no accuracy."""
    X, y = lowrank(256, 64)
    Xv, yv = lowrank(128, 64, seed=5)

    def predict(kernel, dtype):
        m = xrfm.RFM(kernel=kernel, iters=3, device="cpu", verbose=False, tuning_metric="mse")
        m.fit(
            (X.to(dtype), y.to(dtype)),
            (Xv.to(dtype), yv.to(dtype)),
            reg=1e-3,
            early_stop_rfm=False,
            return_best_params=False,
            verbose=False,
        )
        return m.predict(Xv.to(dtype)).double()

    truth = predict(LaplaceKernel(bandwidth=10.0, exponent=1.0), DT)
    theirs = rel(predict(LaplaceKernel(bandwidth=10.0, exponent=1.0), torch.float32), truth)
    ours = rel(predict(RfmfastKernel("laplace", 10.0), torch.float32), truth)
    assert ours <= 2 * theirs, (ours, theirs)


def test_xrfm_tree_leaves_take_the_plugin():
    """xRFM (the tree) fits its leaf RFMs with the plug-in; same splits, same predictions."""
    X, y = lowrank(600)
    Xv, yv = lowrank(200, seed=7)
    Xt, _ = lowrank(200, seed=8)
    X, y, Xv, yv, Xt = (t.float() for t in (X, y, Xv, yv, Xt))
    preds, leaves = [], []
    for kernel in (LaplaceKernel(bandwidth=10.0, exponent=1.0), RfmfastKernel("laplace", 10.0)):
        params = {
            "model": {"kernel": kernel, "bandwidth": 10.0, "diag": False},
            "fit": {"reg": 1e-3, "iters": 2, "early_stop_rfm": False, "return_best_params": True},
        }
        m = xrfm.xRFM(
            rfm_params=params,
            max_leaf_size=250,
            device="cpu",
            random_state=0,
            verbose=False,
            tuning_metric="mse",
        )
        m.fit(X, y, Xv, yv)
        preds.append(torch.as_tensor(m.predict(Xt)))
        found = []

        def walk(node, found):
            if node["type"] == "leaf":
                found.append(node["model"].kernel_obj)
            else:
                walk(node["left"], found)
                walk(node["right"], found)

        for tree in m.trees:
            walk(tree, found)
        leaves.append(found)
    assert len(leaves[1]) >= 2 and all(isinstance(k, RfmfastKernel) for k in leaves[1])
    assert len(leaves[0]) == len(leaves[1])
    assert rel(preds[1], preds[0]) < 2e-3  # float32 arithmetic on both sides
