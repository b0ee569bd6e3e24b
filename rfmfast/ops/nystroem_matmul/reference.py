"""Plain-PyTorch K(C, X) @ (K(X, C) @ V + W) in row blocks of X (exact distances): the truth
for nystroem_matmul."""

from __future__ import annotations

import torch

from ...kernels import kernel_record
from .._reference import distances, kernel_from_distance, l1_factor, row_block


def nystroem_matmul(X, C, V, W, *, kernel, bandwidth, M):
    """X: (n, d), C: (m, d), V: (m, t), W: (n, t) or None -> K(C, X) @ (K(X, C) @ V + W): (m, t).

    Each block of rows X_b gives K_b = K(X_b, C) once (difference-first distances) and K_b is
    used for both products: out += K_b^T (K_b V + W_b). Memory: the (m, t) output, one block's
    differences (about 4M entries), K_b (block m) and K_b V (block t): O(block m + m t).
    """
    k = kernel_record(kernel)
    S = l1_factor(M, k)
    n, d = X.shape
    m, t = V.shape
    out = torch.zeros(m, t, dtype=X.dtype, device=X.device)
    b = row_block(m, d)
    for i in range(0, n, b):
        diff = X[i : i + b, None, :] - C[None, :, :]
        Kb = kernel_from_distance(distances(diff, k, M, S), k, bandwidth)  # (b, m)
        U = Kb @ V
        if W is not None:
            U += W[i : i + b]
        out.addmm_(Kb.T, U)
    return out
