"""singular_kernel in plain PyTorch (any device): exact squared distances, then the power.
Memory: the (n, m) output, one (n, m) float64 work array and row blocks of the near-pair
differences (at most about 4M entries)."""

from __future__ import annotations

import torch

from ...kernels import RESOLVE
from .._reference import row_block


def squared_distances(X: torch.Tensor, Z: torch.Tensor) -> torch.Tensor:
    """||x - z||^2 (n, m) in float64: |x|^2 + |z|^2 - 2 x.z from a GEMM on points centered at
    Z's mean, and by differences for the pairs whose GEMM value is at most RESOLVE
    (|x|^2 + |z|^2) (the distance rule of rfmfast.kernels: near-duplicates and coincident
    points come out exact, coincident ones exactly 0)."""
    X64, Z64 = X.to(torch.float64), Z.to(torch.float64)
    mu = Z64.mean(0)
    Xc, Zc = X64 - mu, Z64 - mu
    nx, nz = (Xc * Xc).sum(1), (Zc * Zc).sum(1)
    D = (nx[:, None] + nz[None, :] - 2.0 * (Xc @ Zc.T)).clamp_(min=0.0)
    near = D <= RESOLVE * (nx[:, None] + nz[None, :])
    if bool(near.any()):
        i, j = torch.nonzero(near, as_tuple=True)
        step = max(1, row_block(1, X.shape[1]))
        for s in range(0, i.numel(), step):
            ii, jj = i[s : s + step], j[s : s + step]
            diff = X64[ii] - Z64[jj]
            D[ii, jj] = (diff * diff).sum(1)
    return D


def singular_kernel(X, Z, *, alpha, coincident):
    D = squared_distances(X, Z)
    K = D.pow(-0.5 * alpha)  # 0 ** negative = inf
    zero = D == 0
    if coincident != "inf" and bool(zero.any()):
        K[zero] = 0.0
    return K.to(X.dtype)
