"""kernel_matmul on the C++ CPU kernels: K(X, Z) @ V without storing K. Memory: packed Z and V
(m (d + t)), per thread one tile and a block x t accumulator."""

from __future__ import annotations

import numpy as np
import torch

from ...kernels import kernel_record
from .._cpu.custom_op import cpu_op
from .._cpu.glue import fn, map_pair, threads, values_args


@cpu_op("kernel_matmul_cpu")
def kernel_matmul_op(
    X: torch.Tensor,
    Z: torch.Tensor,
    V: torch.Tensor,
    kernel: str,
    bandwidth: float,
    M: torch.Tensor | None,
) -> torch.Tensor:
    Xt, xn, Zp, zn, exact = map_pair(X, Z, M, kernel, False)
    t = V.shape[1]
    Vp, Vt = values_args(V)
    out = np.empty((X.shape[0], t), dtype=Xt.dtype)
    fn("kernel_matmul", X.dtype)(
        Xt,
        xn,
        Zp,
        zn,
        Z.shape[0],
        kernel_record(kernel).code,
        bandwidth,
        *exact,
        Vp,
        Vt,
        t,
        out,
        threads(),
    )
    return torch.from_numpy(out)


@kernel_matmul_op.register_fake
def _(X, Z, V, kernel, bandwidth, M):
    return X.new_empty(X.shape[0], V.shape[1])


def kernel_matmul(X, Z, V, *, kernel, bandwidth, M):
    return kernel_matmul_op(X, Z, V, kernel, bandwidth, M)
