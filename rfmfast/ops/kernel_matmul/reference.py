"""Plain-PyTorch K(X, Z) @ V in row blocks (exact distances): the truth for kernel_matmul."""

from __future__ import annotations

import torch

from ...kernels import kernel_record
from .._reference import distances, kernel_from_distance, l1_factor, row_block


def kernel_matmul(X, Z, V, *, kernel, bandwidth, M):
    """X: (n, d), Z: (m, d), V: (m, t) -> (n, t). Memory: O(n t + 4M)."""
    k = kernel_record(kernel)
    S = l1_factor(M, k)
    n, d = X.shape
    out = torch.empty(n, V.shape[1], dtype=X.dtype, device=X.device)
    b = row_block(Z.shape[0], d)
    for i in range(0, n, b):
        diff = X[i : i + b, None, :] - Z[None, :, :]
        out[i : i + b] = kernel_from_distance(distances(diff, k, M, S), k, bandwidth) @ V
    return out
