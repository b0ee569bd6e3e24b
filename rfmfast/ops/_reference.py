"""Plain-PyTorch pieces shared by the references of several ops: exact (difference-first)
distances in row blocks, so that at most ~4M entries of a (block, m, d) difference tensor exist
at once. This is the exact path of the distance rule (docs/math.md), with no GEMM shortcut."""

from __future__ import annotations

import torch

from ..kernels import Kernel, mahalanobis_factor

_BLOCK_ELEMS = 1 << 22


def row_block(m: int, d: int) -> int:
    """Rows per block for a (block, m, d) difference tensor of about 4M entries."""
    return max(1, _BLOCK_ELEMS // max(1, m * d))


def l1_factor(M, k: Kernel):
    """The factor S applied before an l1 distance (None for l2 kernels, which use M itself)."""
    return mahalanobis_factor(M, k.name) if k.distance == "l1" else None


def distances(diff: torch.Tensor, k: Kernel, M, S) -> torch.Tensor:
    """(..., d) differences -> (...) the kernel's exponent argument: ||.||_M, its square for a
    squared kernel (gaussian), or ||S .||_1 for an l1 kernel."""
    if k.distance == "l1":
        u = diff if S is None else (diff * S if S.ndim == 1 else diff @ S.T)
        return u.abs().sum(-1)
    if M is None:
        d2 = (diff * diff).sum(-1)
    elif M.ndim == 1:
        d2 = (diff * diff * M).sum(-1)
    else:
        d2 = ((diff @ M) * diff).sum(-1)
    d2 = d2.clamp(min=0)
    if k.squared:
        return d2
    # sqrt with a zero gradient at distance 0 (the zero-distance rule, rfmfast.ops._autograd:
    # autograd of a plain sqrt gives 0 * inf = NaN for a coincident pair); the same values
    pos = d2 > 0
    return torch.where(pos, torch.where(pos, d2, torch.ones_like(d2)).sqrt(), d2)


def kernel_from_distance(dist: torch.Tensor, k: Kernel, bandwidth: float) -> torch.Tensor:
    """K = exp(-c dist) for the output of distances (c = k.scale(bandwidth))."""
    return torch.exp(dist * (-k.scale(bandwidth)))
