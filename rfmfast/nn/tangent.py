"""The empirical neural tangent kernel of a torch model: its top eigenvalues, matrix-free."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from .agop import _check_X, _model_place

METHODS = ("auto", "exact", "lanczos")
_EXACT_MAX_ENTRIES = 2e7  # J (n c x P) materialized up to this many entries (160 MB in float64)


def _functional(model: nn.Module):
    """(trainable params dict, f(params, x) -> model output) with the other tensors fixed."""
    from torch.func import functional_call

    params = {k: v.detach() for k, v in model.named_parameters() if v.requires_grad}
    if not params:
        raise ValueError("model has no trainable parameters (requires_grad): no tangent kernel")
    fixed = {k: v.detach() for k, v in model.named_parameters() if not v.requires_grad}
    fixed.update({k: v for k, v in model.named_buffers()})

    def f(p, x):
        return functional_call(model, {**p, **fixed}, (x,))

    return params, f


def _jacobian(f, params, X, chunk):
    from torch.func import jacrev

    blocks = []
    for s in range(0, X.shape[0], chunk):
        Xc = X[s : s + chunk]
        J = jacrev(lambda p, Xc=Xc: f(p, Xc).reshape(-1))(params)
        blocks.append(torch.cat([J[k].reshape(J[k].shape[0], -1) for k in params], dim=1))
    return torch.cat(blocks).to(torch.float64)


def ntk_eigs(
    model: nn.Module,
    X,
    k: int = 1,
    *,
    method: str = "auto",
    chunk: int = 512,
    tol: float = 1e-6,
    return_vectors: bool = False,
):
    """Top-k eigenvalues of the empirical tangent kernel Theta = J J^T of ``model`` on X.

    J = d f(X) / d theta over the trainable parameters, one row per (sample, output): Theta is
    (n c) x (n c), rows ordered sample-major. No 1/n: the catapult papers' lambda_0 for the loss
    (1/2n) sum (f - y)^2 is ``ntk_eigs(model, X)[0] / n`` (see rfmfast.nn.critical_lr).
    method: "exact" (J materialized, eigh of Theta in float64: small models), "lanczos"
    (matrix-free: scipy's ARPACK Lanczos on v -> J (J^T v), each product one vjp and one jvp
    over X in chunks, memory O(P + chunk's graph)), "auto" (exact while n c P <= 2e7 and
    n c <= 4000). tol: ARPACK's relative tolerance (the products run in the model's dtype).
    Returns a float64 numpy array (k,), descending; with return_vectors also (n c, k) vectors.
    """
    from torch.func import jvp, vjp

    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    device, dtype = _model_place(model)
    X, _ = _check_X(X, device, dtype)
    params, f = _functional(model)
    with torch.no_grad():
        c = f(params, X[:1]).reshape(1, -1).shape[1]
    N = X.shape[0] * c
    P = sum(v.numel() for v in params.values())
    k = int(k)
    if not 1 <= k <= N:
        raise ValueError(f"k must be in 1..{N} (n * outputs), got {k}")
    if method == "auto":
        method = "exact" if (N * P <= _EXACT_MAX_ENTRIES and N <= 4000) or k >= N - 1 else "lanczos"
    if method == "exact":
        J = _jacobian(f, params, X, int(chunk))
        w, V = torch.linalg.eigh(J @ J.T)
        w, V = w.flip(0)[:k].cpu().numpy(), V.flip(1)[:, :k].cpu().numpy()
        return (w, V) if return_vectors else w
    if k >= N - 1:
        raise ValueError(f"method='lanczos' needs k < n c - 1 = {N - 1}; use method='exact'")
    from scipy.sparse.linalg import LinearOperator, eigsh

    starts = list(range(0, X.shape[0], int(chunk)))

    def matvec(v):
        v = torch.as_tensor(np.asarray(v, dtype=np.float64).reshape(X.shape[0], c), dtype=dtype)
        v = v.to(device)
        g = {key: torch.zeros_like(t) for key, t in params.items()}  # J^T v
        for s in starts:
            Xc = X[s : s + int(chunk)]
            _, pull = vjp(lambda p, Xc=Xc: f(p, Xc).reshape(Xc.shape[0], -1), params)
            (gc,) = pull(v[s : s + Xc.shape[0]])
            for key in g:
                g[key] += gc[key]
        out = []
        for s in starts:  # J (J^T v)
            Xc = X[s : s + int(chunk)]
            _, t = jvp(lambda p, Xc=Xc: f(p, Xc), (params,), (g,))
            out.append(t.reshape(Xc.shape[0], -1))
        return torch.cat(out).reshape(-1).to("cpu", torch.float64).numpy()

    op = LinearOperator((N, N), matvec=matvec, dtype=np.float64)
    v0 = np.random.default_rng(0).standard_normal(N)
    w, V = eigsh(op, k=k, which="LA", tol=tol, v0=v0)
    order = np.argsort(w)[::-1]
    w, V = w[order], V[:, order]
    return (w, V) if return_vectors else w


def critical_lr(model: nn.Module, X, **kwargs) -> float:
    """2 / lambda_0, lambda_0 = top eigenvalue of the tangent kernel / n: the largest step size
    at which gradient descent on the loss (1/2n) sum_i ||f(x_i) - y_i||^2 of the linearized
    model still converges. ``kwargs`` go to ``ntk_eigs``."""
    n = int(np.shape(X)[0]) if not isinstance(X, torch.Tensor) else int(X.shape[0])
    return 2.0 / (float(ntk_eigs(model, X, 1, **kwargs)[0]) / n)
