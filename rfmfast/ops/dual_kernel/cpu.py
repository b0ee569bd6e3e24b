"""dual_kernel on the C++ CPU kernels: rho = X Z^T by torch's GEMM (near pairs from their
distances, reference.exact_near_pairs), then the depth recursion
fused in csrc/cpu/dual_kernel.h (one pass over the output, the depth steps in registers).
Memory: the (n, m) output only."""

from __future__ import annotations

import numpy as np
import torch

from ..._threads import torch_kernel_threads
from .._cpu.glue import fn, np_, threads
from .reference import exact_near_pairs


def dual_kernel(X, Z, *, depth, act, kind, log_domain=False):
    with torch_kernel_threads():
        out = exact_near_pairs(torch.mm(X, Z.T), X, Z)
    dtype = np.float64 if X.dtype == torch.float64 else np.float32
    coeffs = np.asarray(act.coeffs or (0.0,), dtype=dtype)
    fn("dual_recursion", X.dtype)(
        np_(out),
        int(depth),
        int(act.code),
        kind == "ntk",
        coeffs,
        float(act.param),
        float(act.inv_norm),
        threads(),
    )
    return out
