"""Cholesky by torch.linalg.cholesky_ex (LAPACK on CPU, cuSOLVER on CUDA), in place."""

from __future__ import annotations

import torch

from ..._threads import torch_kernel_threads


def cholesky_inplace(A: torch.Tensor) -> int:
    # The column-major view A.mT is what LAPACK works on, so no n x n copy is made. Its upper
    # triangle U (A.mT = U^T U) is A's lower triangle read row-major: L = U^T.
    At = A.mT
    info = torch.empty((), dtype=torch.int32, device=A.device)
    with torch_kernel_threads():  # LAPACK gains from threads, even in a single-thread block
        torch.linalg.cholesky_ex(At, upper=True, out=(At, info))
    return int(info)
