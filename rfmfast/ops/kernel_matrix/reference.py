"""Plain-PyTorch kernel matrix: the truth the fused kernels are tested against.

Distances are computed difference-first (x - z, then the norm), the exact path of MATH.md,
in row blocks so that at most ~4M entries of the (block, m, d) difference tensor exist at once.
"""
from __future__ import annotations

import torch

from ...kernels import mahalanobis_factor

_BLOCK_ELEMS = 1 << 22


def row_block(m: int, d: int) -> int:
    return max(1, _BLOCK_ELEMS // max(1, m * d))


def distances(diff: torch.Tensor, kernel: str, M, S) -> torch.Tensor:
    """(..., d) differences -> (...) distances: ||.||_M, or ||S .||_1 for l1_laplace.

    For the gaussian the *squared* distance is returned.
    """
    if kernel == "l1_laplace":
        u = diff if S is None else (diff * S if S.ndim == 1 else diff @ S.T)
        return u.abs().sum(-1)
    if M is None:
        d2 = (diff * diff).sum(-1)
    elif M.ndim == 1:
        d2 = (diff * diff * M).sum(-1)
    else:
        d2 = ((diff @ M) * diff).sum(-1)
    d2 = d2.clamp(min=0)
    return d2 if kernel == "gaussian" else d2.sqrt()


def kernel_from_distance(dist: torch.Tensor, kernel: str, bandwidth: float) -> torch.Tensor:
    if kernel == "gaussian":
        return torch.exp(dist * (-0.5 / (bandwidth * bandwidth)))
    return torch.exp(dist * (-1.0 / bandwidth))


def kernel_matrix(X, Z, *, kernel, bandwidth, M, symmetric=False):
    """X: (n, d), Z: (m, d) -> K: (n, m), K_ij = K_M(x_i, z_j). Memory: O(n m + 4M)."""
    S = mahalanobis_factor(M, kernel) if kernel == "l1_laplace" else None
    n, d = X.shape
    m = Z.shape[0]
    out = torch.empty(n, m, dtype=X.dtype, device=X.device)
    b = row_block(m, d)
    for i in range(0, n, b):
        diff = X[i:i + b, None, :] - Z[None, :, :]
        out[i:i + b] = kernel_from_distance(distances(diff, kernel, M, S), kernel, bandwidth)
    return out
