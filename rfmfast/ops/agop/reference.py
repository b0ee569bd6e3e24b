"""Plain-PyTorch predictor gradients and AGOP (exact differences): the truth for agop."""
from __future__ import annotations

import torch

from ...kernels import EPS, apply_M, grad_scale, mahalanobis_factor
from ..kernel_matrix.reference import distances, kernel_from_distance, row_block


def kernel_grads(Q, X, alpha, *, kernel, bandwidth, M):
    """Q: (q, d), X: (n, d), alpha: (n, c) -> (q, c, d), the gradients of
    f(x) = K(x, X) alpha at each query (formulas in rfmfast.kernels). Memory: O(q c d + 4M)."""
    q, d = Q.shape
    n, c = alpha.shape
    s = grad_scale(kernel, bandwidth)
    S = mahalanobis_factor(M, kernel) if kernel == "l1_laplace" else None
    out = torch.empty(q, c, d, dtype=Q.dtype, device=Q.device)
    b = row_block(n, d)
    for i in range(0, q, b):
        diff = Q[i:i + b, None, :] - X[None, :, :]                    # (b, n, d)
        dist = distances(diff, kernel, M, S)
        K = kernel_from_distance(dist, kernel, bandwidth)
        if kernel == "l1_laplace":
            u = diff * S if (S is not None and S.ndim == 1) else (diff if S is None else diff @ S.T)
            h = s * torch.einsum("bn,nc,bnr->bcr", K, alpha, torch.sign(u))
            out[i:i + b] = apply_M(h, S)
            continue
        if kernel == "laplace":
            A = torch.where(dist < EPS, torch.zeros_like(K), K / dist.clamp(min=EPS))
        else:
            A = K
        out[i:i + b] = apply_M(s * torch.einsum("bn,nc,bnd->bcd", A, alpha, diff), M)
    return out


def agop(Q, X, alpha, *, kernel, bandwidth, M, diag=False, centering=False, accumulate=None):
    """(1/q) sum_x sum_c grad f_c(x) grad f_c(x)^T: (d, d), or its diagonal (d,) if diag.

    centering subtracts each output's mean gradient over Q first. accumulate="float64" forms
    the sums in float64; the result has Q's dtype.
    """
    G = kernel_grads(Q, X, alpha, kernel=kernel, bandwidth=bandwidth, M=M)
    if accumulate == "float64":
        G = G.to(torch.float64)
    if centering:
        G = G - G.mean(0, keepdim=True)
    q = G.shape[0]
    if diag:
        A = (G * G).sum((0, 1)) / q
    else:
        Gf = G.reshape(-1, G.shape[-1])
        A = Gf.T @ Gf / q
    return A.to(Q.dtype)
