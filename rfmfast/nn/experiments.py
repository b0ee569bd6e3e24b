"""The seed papers' feature-learning experiments, at any size: the neural feature ansatz, catapults
in GD and SGD, and the quadratic model's catapult phase. Each returns plain numbers (and curves)
so that tests, the `rfmfast nn` recipes and the docs share one implementation.

Conventions (stated once): loss L = (1/2n) sum_i (f(x_i) - y_i)^2 for GD / SGD by hand,
lambda_0 = top eigenvalue of the tangent kernel / n (so 2 / lambda_0 is the linear model's
critical step), step sizes eta = c * 2 / lambda_0. Everything is seeded and runs on the CPU.
"""

from __future__ import annotations

import copy
import math

import numpy as np
import torch
from torch import nn

from .. import metrics
from .agop import agop
from .features import nfa_report
from .spikes import catapults
from .tangent import ntk_eigs
from .taylor import linearized, quadratic

TARGETS = {
    "x0x1": lambda X: X[:, 0] * X[:, 1],
    "lowrank": lambda X: X[:, 0] * X[:, 1] * (X[:, 5] > 0).to(X.dtype),
}


class _Target(nn.Module):
    """A target function as a module, so that its AGOP is taken like a network's."""

    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def forward(self, X):
        return self.fn(X)[:, None]


def target_agop(name: str, X: torch.Tensor) -> torch.Tensor:
    """AGOP of the target function ``TARGETS[name]`` on X: (d, d) float64."""
    return agop(_Target(TARGETS[name]), X.to(torch.float64))


class ShallowReLU(nn.Module):
    """f(x) = v^T relu(U x / sqrt(d)) / sqrt(m), NTK parametrization, U and v ~ N(0, 1)."""

    def __init__(self, d: int, m: int):
        super().__init__()
        self.d, self.m = d, m
        self.U = nn.Parameter(torch.randn(m, d))
        self.v = nn.Parameter(torch.randn(m))

    def forward(self, X):
        return torch.relu(X @ self.U.T / math.sqrt(self.d)) @ self.v / math.sqrt(self.m)


def _data(n, d, target, seed, n_test=0):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n + n_test, d, generator=g)
    y = TARGETS[target](X)
    return X[:n], y[:n], X[n:], y[n:]


def _mse(model, X, y) -> float:
    with torch.no_grad():
        return float(((model(X).reshape(-1) - y) ** 2).mean())


def _gd_step(model, X, y, lr) -> None:
    model.zero_grad(set_to_none=True)
    loss = 0.5 * ((model(X).reshape(-1) - y) ** 2).mean()
    loss.backward()
    with torch.no_grad():
        for p in model.parameters():
            if p.grad is not None:
                p -= lr * p.grad


def lambda0(model, X) -> float:
    """Top eigenvalue of the tangent kernel divided by n."""
    return float(ntk_eigs(model, X, 1)[0]) / X.shape[0]


# ---- the neural feature ansatz -------------------------------------------------------------------
def nfa_experiment(
    n=1000,
    d=50,
    width=256,
    epochs=100,
    lr=0.05,
    batch=128,
    target="x0x1",
    init_std=1e-3,
    powers=(0.5, 1.0),
    seed=0,
):
    """A 2-layer bias-free ReLU MLP (first layer N(0, init_std^2), second PyTorch's default)
    trained by SGD on the mean squared error; returns the Pearson correlation of the first
    layer's W^T W with AGOP^p (p in ``powers``) after training and at initialization, the test
    MSE, the target's variance and the seconds taken. The AGOP is taken on the training inputs."""
    import time

    torch.manual_seed(seed)
    X, y, Xt, yt = _data(n, d, target, seed, n_test=n)
    net = nn.Sequential(nn.Linear(d, width, bias=False), nn.ReLU(), nn.Linear(width, 1, bias=False))
    with torch.no_grad():
        net[0].weight.normal_(0.0, init_std)
    init = copy.deepcopy(net)
    opt = torch.optim.SGD(net.parameters(), lr=lr)
    g = torch.Generator().manual_seed(seed + 1)
    t0 = time.perf_counter()
    for _ in range(epochs):
        perm = torch.randperm(n, generator=g)
        for s in range(0, n, batch):
            i = perm[s : s + batch]
            opt.zero_grad(set_to_none=True)
            loss = ((net(X[i]).reshape(-1) - y[i]) ** 2).mean()
            loss.backward()
            opt.step()
    out = {"train_seconds": time.perf_counter() - t0}
    for p in powers:
        r = nfa_report(net, X, init, power=p, layers=["0"]).rows[0]
        out[f"corr_p{p:g}"] = r.correlation
        out[f"corr_init_p{p:g}"] = r.correlation_init
    out["test_mse"] = _mse(net, Xt, yt)
    out["target_var"] = float(yt.var())
    out["seconds"] = time.perf_counter() - t0
    return out


# ---- catapults in GD and SGD ---------------------------------------------------------------------
def catapult_run(
    c,
    *,
    batch=None,
    n=256,
    d=20,
    width=1024,
    steps=1000,
    epochs=None,
    target="x0x1",
    n_test=1000,
    seed=0,
    factor=2.0,
):
    """Train ShallowReLU(d, width) at eta = c * 2 / lambda_0 by full-batch GD (batch=None, ``steps``
    steps) or SGD (``batch``, ``epochs`` passes), recording the full training loss after every
    step; returns the spikes (``catapults(losses, factor)``), test MSE, AGOP alignment with the
    target (both AGOPs on the test inputs), lambda_0 and the loss curve."""
    torch.manual_seed(seed)
    X, y, Xt, yt = _data(n, d, target, seed, n_test=n_test)
    net = ShallowReLU(d, width)
    lam = lambda0(net, X)
    lr = c * 2.0 / lam
    losses = [0.5 * _mse(net, X, y)]
    g = torch.Generator().manual_seed(seed + 1)
    if batch is None:
        for _ in range(steps):
            _gd_step(net, X, y, lr)
            losses.append(0.5 * _mse(net, X, y))
    else:
        for _ in range(epochs or 1):
            perm = torch.randperm(n, generator=g)
            for s in range(0, n, batch):
                i = perm[s : s + batch]
                _gd_step(net, X[i], y[i], lr)
                losses.append(0.5 * _mse(net, X, y))
    losses = np.array(losses)
    ok = bool(np.isfinite(losses[-1]))
    align = metrics.alignment(agop(net, Xt), target_agop(target, Xt)) if ok else float("nan")
    return {
        "c": c,
        "batch": batch,
        "lambda0": lam,
        "lr": lr,
        "spikes": catapults(losses, factor),
        "test_mse": _mse(net, Xt, yt) if ok else float("inf"),
        "alignment": align,
        "final_loss": float(losses[-1]),
        "losses": losses,
    }


# ---- the quadratic model's catapult phase --------------------------------------------------------
def quadratic_run(kappa, *, n=64, d=10, width=4096, steps=200, target="x0x1", seed=0):
    """GD at eta = kappa / lambda_0 (kappa = 2 is the linear model's critical step) on the same
    data for the network ShallowReLU(d, width), its quadratic model and its linear model, all
    started from the same initial parameters. Returns each one's training-loss curve and its
    tangent kernel's top eigenvalue / n at the end, next to 2 / eta."""
    torch.manual_seed(seed)
    X, y, _, _ = _data(n, d, target, seed)
    net = ShallowReLU(d, width)
    lam = lambda0(net, X)
    lr = kappa / lam
    models = {"network": net, "quadratic": quadratic(net), "linear": linearized(net)}
    out = {"kappa": kappa, "lambda0": lam, "lr": lr, "two_over_lr": 2.0 / lr}
    for name, model in models.items():
        losses = [0.5 * _mse(model, X, y)]
        for _ in range(steps):
            _gd_step(model, X, y, lr)
            losses.append(0.5 * _mse(model, X, y))
            if not np.isfinite(losses[-1]) or losses[-1] > 1e12:
                losses[-1] = np.inf
                break
        losses = np.array(losses)
        out[name] = {"losses": losses, "spikes": catapults(losses)}
        if np.isfinite(losses[-1]) and name != "linear":
            out[name]["lambda_end"] = lambda0(model, X)
    return out
