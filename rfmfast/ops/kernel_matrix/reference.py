"""Plain-PyTorch kernel matrix: the truth the fused kernels are tested against (exact,
difference-first distances in row blocks: rfmfast.ops._reference)."""

from __future__ import annotations

import torch

from ...kernels import kernel_record
from .._reference import distances, kernel_from_distance, l1_factor, row_block


def kernel_matrix(X, Z, *, kernel, bandwidth, M, triangle="full", out=None):
    """X: (n, d), Z: (m, d) -> K: (n, m), K_ij = K_M(x_i, z_j), every entry computed (any
    triangle=), into out if given. Memory: O(n m + 4M)."""
    k = kernel_record(kernel)
    S = l1_factor(M, k)
    n, d = X.shape
    m = Z.shape[0]
    if out is None:
        out = torch.empty(n, m, dtype=X.dtype, device=X.device)
    b = row_block(m, d)
    for i in range(0, n, b):
        diff = X[i : i + b, None, :] - Z[None, :, :]
        out[i : i + b] = kernel_from_distance(distances(diff, k, M, S), k, bandwidth)
    return out
