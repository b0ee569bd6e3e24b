"""The xRFM plug-in kernel gives xRFM's own Laplace kernel results (xrfm 0.4.5)."""
import pytest
import torch

xrfm = pytest.importorskip("xrfm", reason="xrfm is not installed (pip install xrfm==0.4.5)")
from xrfm.rfm_src.kernels import LaplaceKernel  # noqa: E402

from rfmfast.xrfm_plugin import RfmfastKernel  # noqa: E402

DT = torch.float64
# xRFM's LaplaceKernel measures distances with torch.cdist (a GEMM expansion) and M^{1/2} from
# its own matrix power: float64 agreement to ~1e-7 is what that arithmetic allows.
TOL = 1e-5


def lowrank(n, d=10, seed=0):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, d, generator=g, dtype=DT) * 0.5
    return X, (X[:, 0] * X[:, 1] * (X[:, 5] > 0))[:, None]


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
    assert rel(ours.get_function_grads(X, Z, coefs, M),
               theirs.get_function_grads(X, Z, coefs, sqrtM)) < TOL
    for centered in (False, True):
        assert rel(ours.get_agop(X, Z, coefs, M, center_grads=centered),
                   theirs.get_agop(X, Z, coefs, sqrtM, center_grads=centered)) < TOL
    d = torch.linspace(0.2, 1.0, 10, dtype=DT)
    assert rel(ours.get_agop_diag(X, Z, coefs, d), theirs.get_agop_diag(X, Z, coefs, d.sqrt())) < TOL


@pytest.mark.parametrize("diag", [False, True])
def test_xrfm_rfm_with_plugin_equals_its_laplace_kernel(diag):
    X, y = lowrank(300)
    Xv, yv = lowrank(100, seed=5)
    out = []
    for kernel in (LaplaceKernel(bandwidth=10.0, exponent=1.0), RfmfastKernel("laplace", 10.0)):
        m = xrfm.RFM(kernel=kernel, iters=3, diag=diag, device="cpu", verbose=False,
                     tuning_metric="mse")
        m.fit((X, y), (Xv, yv), reg=1e-3, early_stop_rfm=False, verbose=False)
        out.append((m.predict(Xv), m.M, m.best_iter))
    (p0, M0, b0), (p1, M1, b1) = out
    assert b0 == b1
    assert rel(M1, M0) < TOL and rel(p1, p0) < TOL


def test_unsupported_features_say_so():
    with pytest.raises(ValueError, match="exponent"):
        RfmfastKernel(exponent=1.2)
    with pytest.raises(NotImplementedError, match="constant bandwidth"):
        RfmfastKernel()._reset_adaptive_bandwidth()


def test_xrfm_tree_leaves_take_the_plugin():
    """xRFM (the tree) fits its leaf RFMs with the plug-in; same splits, same predictions."""
    X, y = lowrank(600)
    Xv, yv = lowrank(200, seed=7)
    Xt, _ = lowrank(200, seed=8)
    X, y, Xv, yv, Xt = (t.float() for t in (X, y, Xv, yv, Xt))
    preds, leaves = [], []
    for kernel in (LaplaceKernel(bandwidth=10.0, exponent=1.0), RfmfastKernel("laplace", 10.0)):
        params = {"model": {"kernel": kernel, "bandwidth": 10.0, "diag": False},
                  "fit": {"reg": 1e-3, "iters": 2, "early_stop_rfm": False,
                          "return_best_params": True}}
        m = xrfm.xRFM(rfm_params=params, max_leaf_size=250, device="cpu", random_state=0,
                      verbose=False, tuning_metric="mse")
        m.fit(X, y, Xv, yv)
        preds.append(torch.as_tensor(m.predict(Xt)))
        found = []

        def walk(node):
            if node["type"] == "leaf":
                found.append(node["model"].kernel_obj)
            else:
                walk(node["left"])
                walk(node["right"])

        for tree in m.trees:
            walk(tree)
        leaves.append(found)
    assert len(leaves[1]) >= 2 and all(isinstance(k, RfmfastKernel) for k in leaves[1])
    assert len(leaves[0]) == len(leaves[1])
    assert rel(preds[1], preds[0]) < 2e-3          # float32 arithmetic on both sides
