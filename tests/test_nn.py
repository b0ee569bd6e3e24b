"""rfmfast.nn and rfmfast.metrics against float64 truths built another way: per-sample Jacobians
by torch.autograd.functional, explicit patches, explicit tangent kernels and Hessians."""

import copy
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import rfmfast
import rfmfast.nn as rnn
from rfmfast import metrics
from rfmfast.nn.experiments import ShallowReLU

F64 = torch.float64
# torch loads its forward-mode decompositions with torch.jit.script on the first jvp
pytestmark = pytest.mark.filterwarnings(
    "ignore:`torch.jit.script` is deprecated:DeprecationWarning"
)


def jac_rows(fn, H):
    """Per-sample Jacobians of fn (one sample -> (c,)) at the rows of H: (n, c, D), one
    torch.autograd.functional.jacobian call per sample."""
    out = []
    for h in H:
        J = torch.autograd.functional.jacobian(lambda z: fn(z).reshape(-1), h)
        out.append(J.reshape(J.shape[0], -1))
    return torch.stack(out)


def agop_of(J, s, centering=False):
    """(1/s) sum over rows and outputs of J J^T; J: (rows, c, D)."""
    if centering:
        J = J - J.mean(0, keepdim=True)
    return torch.einsum("rcd,rce->de", J, J) / s


def mlp(d=7, c=3, seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Linear(d, 19), nn.Tanh(), nn.Linear(19, 11), nn.ReLU(), nn.Linear(11, c)
    ).to(F64)


def rel(a, b):
    a, b = torch.as_tensor(a, dtype=F64), torch.as_tensor(b, dtype=F64)
    return float((a - b).norm() / b.norm())


# ---- agop wrt the input --------------------------------------------------------------------------
@pytest.mark.parametrize("method", ["backward", "vmap"])
@pytest.mark.parametrize("centering", [False, True])
@pytest.mark.parametrize("where", ["origin", "far", "near_duplicates"])
def test_agop_input(method, centering, where):
    net = mlp()
    X = torch.randn(37, 7, dtype=F64)
    if where == "far":
        X = X * 0.01 + 100.0
        with torch.no_grad():
            net[0].weight.mul_(0.01)
    elif where == "near_duplicates":
        X[1::2] = X[::2][: X[1::2].shape[0]] + 1e-9 * torch.randn_like(X[1::2])
    truth = agop_of(jac_rows(lambda x: net(x[None]), X), 37, centering)
    A = rnn.agop(net, X, centering=centering, chunk=5, method=method)
    assert A.dtype == F64 and A.shape == (7, 7)
    assert rel(A, truth) < 1e-12
    assert torch.equal(A, A.T)


def test_agop_outputs_and_numpy():
    net = mlp()
    X = torch.randn(23, 7, dtype=F64)
    J = jac_rows(lambda x: net(x[None]), X)
    for sel, cols in [(1, [1]), ([0, 2], [0, 2]), (slice(1, None), [1, 2]), (-1, [2])]:
        assert rel(rnn.agop(net, X, outputs=sel), agop_of(J[:, cols], 23)) < 1e-12
    A = rnn.agop(net, X.numpy())
    assert isinstance(A, np.ndarray) and rel(A, agop_of(J, 23)) < 1e-12


def test_agop_float32_model_within_float32_error():
    net = mlp().float()
    X = torch.randn(40, 7)
    truth = agop_of(jac_rows(lambda x: mlp()(x[None]), X.double()), 40)
    assert rel(rnn.agop(net, X), truth) < 1e-5


# ---- agop wrt a layer's input --------------------------------------------------------------------
@pytest.mark.parametrize("method", ["backward", "vmap"])
def test_agop_layer_input(method):
    net = mlp()
    X = torch.randn(29, 7, dtype=F64)
    H = net[1](net[0](X)).detach()  # the input of layer "2"
    sub = net[2:]
    truth = agop_of(jac_rows(lambda h: sub(h[None]), H), 29)
    A = rnn.agop(net, X, layer="2", chunk=8, method=method)
    assert A.shape == (19, 19) and rel(A, truth) < 1e-12


def test_agop_layer_skips_paths_around_it():
    class Skip(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Linear(4, 4).double(), nn.Linear(4, 1).double()

        def forward(self, x):
            h = torch.tanh(self.a(x))
            return self.b(h) + (x**2).sum(1, keepdim=True)  # the x**2 path bypasses "b"

    net = Skip()
    X = torch.randn(9, 4, dtype=F64)
    H = torch.tanh(net.a(X)).detach()
    truth = agop_of(jac_rows(lambda h: net.b(h[None]), H), 9)
    assert rel(rnn.agop(net, X, layer="b"), truth) < 1e-12


# ---- patch agop ----------------------------------------------------------------------------------
CONVS = [
    dict(kernel_size=3),
    dict(kernel_size=3, padding=1),
    dict(kernel_size=3, padding=1, padding_mode="circular"),
    dict(kernel_size=(2, 3), stride=2, padding="valid"),
    dict(kernel_size=3, padding="same", dilation=2, padding_mode="reflect"),
]


@pytest.mark.parametrize("method", ["backward", "vmap"])
@pytest.mark.parametrize("conv_args", CONVS, ids=[str(i) for i in range(len(CONVS))])
def test_patch_agop(conv_args, method):
    torch.manual_seed(1)
    conv = nn.Conv2d(2, 4, **conv_args).double()
    X = torch.randn(6, 2, 7, 9, dtype=F64)
    with torch.no_grad():
        Y = conv(X)
    head = nn.Sequential(nn.ReLU(), nn.Flatten(), nn.Linear(Y[0].numel(), 3)).double()
    net = nn.Sequential(conv, head)
    # truth: every patch an independent input of (conv from patches -> head)
    pad = conv._reversed_padding_repeated_twice
    mode = "constant" if conv.padding_mode == "zeros" else conv.padding_mode
    Xp = F.pad(X, pad, mode=mode) if any(pad) else X
    P = F.unfold(Xp, conv.kernel_size, dilation=conv.dilation, stride=conv.stride)
    P = P.transpose(1, 2)  # (N, L, c q q)
    assert torch.allclose(
        (P @ conv.weight.reshape(4, -1).T + conv.bias).transpose(1, 2).reshape(Y.shape), Y
    )

    def f(Pi):  # (L, D) -> (3,)
        y = (Pi @ conv.weight.reshape(4, -1).T + conv.bias).T.reshape(Y.shape[1:])
        return head(y[None])[0]

    J = torch.stack([torch.autograd.functional.jacobian(f, Pi) for Pi in P])  # (N, 3, L, D)
    truth = torch.einsum("nclD,nclE->DE", J, J) / 6
    A = rnn.agop(net, X, layer="0", wrt="patches", chunk=4, method=method)
    D = 2 * conv.kernel_size[0] * conv.kernel_size[1]
    assert A.shape == (D, D) and rel(A, truth) < 1e-12


# ---- agop of fitted rfmfast predictors -----------------------------------------------------------
class KernelPredictor(nn.Module):
    """f(x) = K_M(x, centers) alpha through the float64 reference backend (differentiable)."""

    def __init__(self, est):
        super().__init__()
        self.est = est
        self.register_buffer("C", torch.as_tensor(est.centers_, dtype=F64))
        self.register_buffer(
            "alpha", torch.as_tensor(est.alpha_, dtype=F64).reshape(len(self.C), -1)
        )
        M = getattr(est, "M_", None)
        self.register_buffer("M", None if M is None else torch.as_tensor(M, dtype=F64))

    def forward(self, X):
        return rfmfast.kernel_matmul(
            X,
            self.C,
            self.alpha,
            kernel=self.est.kernel,
            bandwidth=self.est.bandwidth,
            M=self.M,
            backend="reference",
        )


@pytest.mark.parametrize("kernel", ["laplace", "gaussian"])
def test_agop_of_fitted_rfm_matches_autograd(kernel):
    g = np.random.default_rng(0)
    X = g.standard_normal((120, 5))
    y = X[:, 0] * X[:, 1] + 0.1 * X[:, 2]
    est = rfmfast.RFMRegressor(
        kernel=kernel, bandwidth=3.0, iters=2, dtype="float64", random_state=0
    ).fit(X, y)
    Q = g.standard_normal((31, 5))  # queries off the centers: no zero-distance pairs
    A = rnn.agop(est, Q)
    truth = rnn.agop(KernelPredictor(est), torch.as_tensor(Q))
    assert isinstance(A, np.ndarray) and rel(A, truth) < 1e-10
    Ac = rnn.agop(est, torch.as_tensor(Q), centering=True)
    assert rel(Ac, rnn.agop(KernelPredictor(est), torch.as_tensor(Q), centering=True)) < 1e-10


# ---- bad input -----------------------------------------------------------------------------------
def test_agop_refuses_bad_input():
    net = mlp()
    X = torch.randn(5, 7, dtype=F64)
    with pytest.raises(ValueError, match="no submodule 'nope'"):
        rnn.agop(net, X, layer="nope")
    with pytest.raises(ValueError, match="nn.Conv2d"):
        rnn.agop(net, X, layer="0", wrt="patches")
    with pytest.raises(ValueError, match="wrt must be"):
        rnn.agop(net, X, wrt="weights")
    with pytest.raises(ValueError, match="NaN or inf"):
        rnn.agop(net, torch.full((3, 7), float("nan"), dtype=F64))
    with pytest.raises(ValueError, match="at least one sample"):
        rnn.agop(net, torch.zeros(0, 7, dtype=F64))
    with pytest.raises(ValueError, match="out of range"):
        rnn.agop(net, X, outputs=[3])
    with pytest.raises(ValueError, match="method must be"):
        rnn.agop(net, X, method="loop")
    with pytest.raises(ValueError, match="not fitted"):
        rnn.agop(rfmfast.RFMRegressor(), X)
    with pytest.raises(ValueError, match="nn.Module or a fitted"):
        rnn.agop(lambda x: x, X)
    bn = nn.Sequential(nn.Linear(7, 4), nn.BatchNorm1d(4), nn.Linear(4, 1)).double()
    with pytest.raises(ValueError, match="model.eval"):
        rnn.agop(bn, X)
    rnn.agop(bn.eval(), X)  # fine in eval mode


def test_agop_layer_called_twice_is_refused():
    lin = nn.Linear(3, 3).double()
    net = nn.Sequential(lin, nn.Tanh(), lin)
    with pytest.raises(ValueError, match="2 times"):
        rnn.agop(net, torch.randn(4, 3, dtype=F64), layer="0")


# ---- feature matrices and the ansatz report ------------------------------------------------------
def test_feature_matrix():
    lin = nn.Linear(6, 4)
    W = lin.weight.detach().double()
    assert torch.allclose(rnn.feature_matrix(lin), W.T @ W / 4)
    lin0 = copy.deepcopy(lin)
    with torch.no_grad():
        lin.weight.add_(1.0)
    Wd = lin.weight.detach().double() - W
    assert torch.allclose(rnn.feature_matrix(lin, init=lin0), Wd.T @ Wd / 4)
    conv = nn.Conv2d(3, 5, 2)
    Wc = conv.weight.detach().double()  # (5, 3, 2, 2): (channel, row, col) order
    flat = torch.stack([Wc[:, c, i, j] for c in range(3) for i in range(2) for j in range(2)], 1)
    assert torch.allclose(rnn.feature_matrix(conv), flat.T @ flat / 5)
    with pytest.raises(ValueError, match="shape"):
        rnn.feature_matrix(lin, init=nn.Linear(5, 4))


def test_nfa_report_rows():
    net = nn.Sequential(nn.Conv2d(1, 3, 3), nn.ReLU(), nn.Flatten(), nn.Linear(3 * 4 * 4, 2))
    init = copy.deepcopy(net)
    with torch.no_grad():
        net[0].weight.add_(0.1)
    X = torch.randn(8, 1, 6, 6)
    rep = rnn.nfa_report(net, X, init)
    assert [r.layer for r in rep.rows] == ["0", "3"]
    assert [r.kind for r in rep.rows] == ["conv", "linear"]
    assert rep.rows[0].dim == 9 and rep.rows[1].dim == 48
    assert math.isnan(rep.rows[1].correlation_delta)  # layer 3 did not move
    P = metrics.psd_power(rnn.agop(net, X, layer="0", wrt="patches"), 0.5)
    assert rep.rows[0].correlation == pytest.approx(
        metrics.matrix_correlation(rnn.feature_matrix(net[0]), P), abs=1e-12
    )
    assert "Pearson" in str(rep) and "conv" in str(rep)


# ---- metrics -------------------------------------------------------------------------------------
def test_metrics():
    g = np.random.default_rng(0)
    A, B = g.standard_normal((5, 5)), g.standard_normal((5, 5))
    assert metrics.matrix_correlation(A, B) == pytest.approx(
        np.corrcoef(A.ravel(), B.ravel())[0, 1]
    )
    cos = (A * B).sum() / np.linalg.norm(A) / np.linalg.norm(B)
    assert metrics.matrix_correlation(A, B, centered=False) == pytest.approx(cos)
    assert metrics.cosine_similarity(A, B) == pytest.approx(cos)
    assert metrics.alignment(torch.as_tensor(A), B) == pytest.approx(cos)
    assert metrics.matrix_correlation(A + 5.0, 2 * A) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="constant"):
        metrics.matrix_correlation(np.ones((3, 3)), A[:3, :3])
    with pytest.raises(ValueError, match="same shape"):
        metrics.alignment(A, B[:4])
    with pytest.raises(ValueError, match="NaN"):
        metrics.alignment(A * np.nan, B)


def test_psd_power():
    g = np.random.default_rng(1)
    Z = g.standard_normal((6, 3))
    A = Z @ Z.T  # rank 3, PSD
    R = metrics.psd_power(A, 0.5)
    assert np.allclose(R @ R, A, atol=1e-10)
    w, V = np.linalg.eigh(A)
    assert np.allclose(metrics.psd_power(A, 2.0), A @ A, atol=1e-9)
    assert np.allclose(metrics.psd_power(A, 1.5), (V * np.clip(w, 0, None) ** 1.5) @ V.T, atol=1e-9)
    T = metrics.psd_power(torch.as_tensor(A), 1.0)
    assert isinstance(T, torch.Tensor) and torch.allclose(T, torch.as_tensor(A))
    with pytest.raises(ValueError, match="positive"):
        metrics.psd_power(A, -0.5)
    with pytest.raises(ValueError, match="square"):
        metrics.psd_power(Z, 0.5)


# ---- the tangent kernel --------------------------------------------------------------------------
def explicit_ntk(model, X):
    params = [p for p in model.parameters() if p.requires_grad]
    rows = []
    out = model(X).reshape(X.shape[0], -1)
    for i in range(out.shape[0]):
        for j in range(out.shape[1]):
            gs = torch.autograd.grad(out[i, j], params, retain_graph=True)
            rows.append(torch.cat([g.reshape(-1) for g in gs]))
    J = torch.stack(rows)
    return J @ J.T


@pytest.mark.parametrize("method", ["exact", "lanczos"])
def test_ntk_eigs(method):
    net = mlp(d=4, c=2)
    X = torch.randn(21, 4, dtype=F64)
    w_true = torch.linalg.eigvalsh(explicit_ntk(net, X)).flip(0)[:3].numpy()
    w = rnn.ntk_eigs(net, X, 3, method=method, chunk=8, tol=1e-10)
    assert np.allclose(w, w_true, rtol=1e-8)
    w1, V = rnn.ntk_eigs(net, X, 1, method=method, return_vectors=True, tol=1e-10)
    assert V.shape == (42, 1)
    with pytest.raises(ValueError, match="k must be"):
        rnn.ntk_eigs(net, X, 0)


def test_critical_lr_is_two_over_lambda0():
    net = ShallowReLU(5, 64).double()
    X = torch.randn(30, 5, dtype=F64)
    lam = torch.linalg.eigvalsh(explicit_ntk(net, X))[-1].item() / 30
    assert rnn.critical_lr(net, X) == pytest.approx(2 / lam, rel=1e-8)


# ---- Taylor models -------------------------------------------------------------------------------
def flat_params(model):
    return torch.cat([p.detach().reshape(-1) for p in model.parameters()])


def perturb(model, scale, seed=3):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(scale * torch.randn(p.shape, generator=g, dtype=p.dtype))


def test_taylor_models_equal_the_model_at_theta0():
    net = mlp()
    X = torch.randn(6, 7, dtype=F64)
    for T in (rnn.linearized(net), rnn.quadratic(net)):
        assert torch.allclose(T(X), net(X), atol=1e-14)
        assert sum(p.numel() for p in T.parameters()) == sum(p.numel() for p in net.parameters())


def test_linearized_and_quadratic_against_explicit_derivatives():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 5), nn.Tanh(), nn.Linear(5, 2)).double()
    x = torch.randn(1, 3, dtype=F64)
    theta0 = flat_params(net)
    shapes = [p.shape for p in net.parameters()]

    def f(theta):
        ps, i = [], 0
        for s in shapes:
            k = math.prod(s)
            ps.append(theta[i : i + k].reshape(s))
            i += k
        h = torch.tanh(x @ ps[0].T + ps[1])
        return (h @ ps[2].T + ps[3])[0]

    J = torch.autograd.functional.jacobian(f, theta0)  # (2, P)
    H = torch.stack(
        [torch.autograd.functional.hessian(lambda t, j=j: f(t)[j], theta0) for j in range(2)]
    )  # (2, P, P)
    lin, quad = rnn.linearized(net), rnn.quadratic(net)
    perturb(lin, 0.3)
    perturb(quad, 0.3)
    delta = flat_params(lin) - theta0
    assert torch.allclose(flat_params(quad) - theta0, delta)
    f0 = f(theta0)
    assert torch.allclose(lin(x)[0], f0 + J @ delta, atol=1e-12)
    assert torch.allclose(
        quad(x)[0], f0 + J @ delta + 0.5 * torch.einsum("p,jpq,q->j", delta, H, delta), atol=1e-12
    )


def test_quadratic_of_shallow_relu_is_the_frozen_pattern_net():
    torch.manual_seed(0)
    net = ShallowReLU(6, 40).double()
    X = torch.randn(17, 6, dtype=F64)
    mask = (X @ net.U.detach().T > 0).to(F64)
    quad = rnn.quadratic(net)
    perturb(quad, 0.5)
    U, v = quad.theta["U"], quad.theta["v"]
    frozen = ((X @ U.T / math.sqrt(6)) * mask) @ v / math.sqrt(40)
    assert torch.allclose(quad(X), frozen, atol=1e-12)
    # and gradients flow as through the frozen-pattern net
    g_quad = torch.autograd.grad(quad(X).sum(), [U, v])
    g_frozen = torch.autograd.grad(frozen.sum(), [U, v])
    for a, b in zip(g_quad, g_frozen):
        assert torch.allclose(a, b, atol=1e-12)


def test_taylor_model_trains_and_keeps_frozen_parameters():
    net = mlp()
    net[0].bias.requires_grad_(False)
    quad = rnn.quadratic(net)
    assert sum(p.numel() for p in quad.parameters()) == sum(
        p.numel() for p in net.parameters() if p.requires_grad
    )
    X, y = torch.randn(32, 7, dtype=F64), torch.randn(32, 3, dtype=F64)
    opt = torch.optim.SGD(quad.parameters(), lr=0.05)
    losses = []
    for _ in range(20):
        opt.zero_grad()
        loss = ((quad(X) - y) ** 2).mean()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]
    with pytest.raises(ValueError, match="order"):
        rnn.TaylorModel(net, 3)


# ---- catapults -----------------------------------------------------------------------------------
def test_catapults_rule():
    assert rnn.catapults(np.linspace(1, 0.1, 50)) == []
    (s,) = rnn.catapults([1.0, 0.8, 0.5, 0.6, 3.0, 40.0, 2.0, 0.9, 0.4, 0.3])
    assert (s.start, s.peak, s.end, s.reference) == (4, 5, 7, 0.5) and s.height == 80.0
    # a loss inside a spike does not lower the reference; two separate spikes
    sp = rnn.catapults([1.0, 3.0, 0.5, 0.4, 5.0, 0.3])
    assert [(x.start, x.end) for x in sp] == [(1, 2), (4, 5)]
    # divergence: no end; NaN counts as above every threshold
    (d,) = rnn.catapults([1.0, 0.5, 2.0, float("inf"), float("nan")])
    assert d.start == 2 and d.end is None and d.height == float("inf")
    assert rnn.catapults([1.0, 1.9, 1.0], factor=2) == []
    assert len(rnn.catapults([1.0, 1.9, 1.0], factor=1.5)) == 1
    with pytest.raises(ValueError, match="factor"):
        rnn.catapults([1.0, 2.0], factor=1.0)
    with pytest.raises(ValueError, match="non-empty"):
        rnn.catapults([])


# ---- the command line ----------------------------------------------------------------------------
def test_cli_nn_nfa(capsys, tmp_path):
    from rfmfast.cli import main

    assert main(["nn", "nfa", "--out", ""]) == 0
    out = capsys.readouterr().out
    assert "x0x1" in out and "lowrank" in out
    target = tmp_path / "exists.png"
    target.write_bytes(b"")
    assert main(["nn", "quadratic", "--out", str(target)]) == 2  # refused before any work
    assert "--force" in capsys.readouterr().err
    assert main(["nn", "nope"]) == 2


def test_agop_of_a_layer_after_an_embedding_takes_token_ids():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Embedding(11, 4), nn.Flatten(), nn.Linear(12, 2)).double()
    ids = torch.randint(0, 11, (9, 3))
    H = net[1](net[0](ids)).detach()
    truth = agop_of(jac_rows(lambda h: net[2](h[None]), H), 9)
    assert rel(rnn.agop(net, ids, layer="2"), truth) < 1e-12
    assert rel(rnn.agop(net, ids.numpy(), layer="2"), truth) < 1e-12


def test_agop_refuses_a_sequence_first_layer_input():
    class SeqFirst(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(4, 1).double()

        def forward(self, x):  # (N, T, d) -> the layer sees (T, N, d)
            return self.lin(x.transpose(0, 1)).sum(0)

    with pytest.raises(ValueError, match="batch-first"):
        rnn.agop(SeqFirst(), torch.randn(5, 3, 4, dtype=F64), layer="lin")


def test_metrics_constant_up_to_rounding_and_spikes_edge_cases():
    with pytest.raises(ValueError, match="constant"):
        metrics.matrix_correlation(np.full((3, 3), 0.1), np.eye(3))
    with pytest.raises(ValueError, match="first loss"):
        rnn.catapults([float("inf"), 1.0])
