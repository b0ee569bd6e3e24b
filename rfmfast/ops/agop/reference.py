"""Plain-PyTorch predictor gradients and AGOP (exact differences): the truth for agop."""

from __future__ import annotations

import torch

from ...kernels import EPS, apply_M, kernel_record
from .._reference import distances, kernel_from_distance, l1_factor, row_block
from .reduction import agop_from_gradients


def _grad_blocks(Q, X, alpha, kernel, bandwidth, M):
    """Gradients (b, c, d) of f(x) = K(x, X) alpha for successive row blocks of Q."""
    d = Q.shape[1]
    k = kernel_record(kernel)
    s = k.grad_scale(bandwidth)
    S = l1_factor(M, k)
    b = row_block(X.shape[0], d)
    for i in range(0, Q.shape[0], b):
        diff = Q[i : i + b, None, :] - X[None, :, :]  # (b, n, d)
        dist = distances(diff, k, M, S)
        K = kernel_from_distance(dist, k, bandwidth)
        if k.distance == "l1":
            u = diff if S is None else (diff * S if S.ndim == 1 else diff @ S.T)
            yield apply_M(s * torch.einsum("bn,nc,bnr->bcr", K, alpha, torch.sign(u)), S)
            continue
        if k.weight_over_distance:
            A = torch.where(dist < EPS, torch.zeros_like(K), K / dist.clamp(min=EPS))
        else:
            A = K
        yield apply_M(s * torch.einsum("bn,nc,bnd->bcd", A, alpha, diff), M)


def kernel_grads(Q, X, alpha, *, kernel, bandwidth, M):
    """Q: (q, d), X: (n, d), alpha: (n, c) -> (q, c, d), the gradients of
    f(x) = K(x, X) alpha at each query (formulas in rfmfast.kernels). Memory: O(q c d + 4M)."""
    out = torch.empty(Q.shape[0], alpha.shape[1], Q.shape[1], dtype=Q.dtype, device=Q.device)
    i = 0
    for G in _grad_blocks(Q, X, alpha, kernel, bandwidth, M):
        out[i : i + G.shape[0]] = G
        i += G.shape[0]
    return out


def agop(Q, X, alpha, *, kernel, bandwidth, M, diag=False, centering=False, accumulate=None):
    """(1/q) sum_x sum_c grad f_c(x) grad f_c(x)^T: (d, d), or its diagonal (d,) if diag, by the
    shared reduction (rfmfast.ops.agop.reduction) over blocks of gradients.

    centering subtracts each output's mean gradient over Q first. accumulate="float64" forms
    the sums in float64; the result has Q's dtype.
    """
    return agop_from_gradients(
        [lambda: _grad_blocks(Q, X, alpha, kernel, bandwidth, M)],
        q=Q.shape[0],
        F=None,
        diag=diag,
        centering=centering,
        accumulate=accumulate,
        dtype=Q.dtype,
    )
