"""Plain-PyTorch K(X, Z) @ V in row blocks (exact distances): the truth for kernel_matmul."""
from __future__ import annotations

import torch

from ...kernels import mahalanobis_factor
from ..kernel_matrix.reference import distances, kernel_from_distance, row_block


def kernel_matmul(X, Z, V, *, kernel, bandwidth, M):
    """X: (n, d), Z: (m, d), V: (m, t) -> (n, t). Memory: O(n t + 4M)."""
    S = mahalanobis_factor(M, kernel) if kernel == "l1_laplace" else None
    n, d = X.shape
    out = torch.empty(n, V.shape[1], dtype=X.dtype, device=X.device)
    b = row_block(Z.shape[0], d)
    for i in range(0, n, b):
        diff = X[i:i + b, None, :] - Z[None, :, :]
        K = kernel_from_distance(distances(diff, kernel, M, S), kernel, bandwidth)
        out[i:i + b] = K @ V
    return out
