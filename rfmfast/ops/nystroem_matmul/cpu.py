"""nystroem_matmul on the C++ CPU kernels: K(C, X) @ (K(X, C) @ V + W) in one pass over the rows
of X. Memory: packed C and V (m (d + t)), per thread one tile, one row block's kernel values
(block x m) and a (t x m) accumulator."""

from __future__ import annotations

import numpy as np
import torch

from ...kernels import kernel_record
from .._cpu.custom_op import cpu_op
from .._cpu.glue import fn, map_pair, np_, threads, values_args


@cpu_op("nystroem_matmul_cpu")
def nystroem_matmul_op(
    X: torch.Tensor,
    C: torch.Tensor,
    V: torch.Tensor,
    W: torch.Tensor | None,
    kernel: str,
    bandwidth: float,
    M: torch.Tensor | None,
) -> torch.Tensor:
    Xt, xn, Cp, cn, exact = map_pair(X, C, M, kernel, False)
    m, t = V.shape
    Vp, Vt = values_args(V)
    out = np.empty((m, t), dtype=Xt.dtype)
    fn("nystroem_matmul", X.dtype)(
        Xt,
        xn,
        Cp,
        cn,
        m,
        kernel_record(kernel).code,
        bandwidth,
        *exact,
        Vp,
        Vt,
        t,
        None if W is None else np_(W),
        out,
        threads(),
    )
    return torch.from_numpy(out)


@nystroem_matmul_op.register_fake
def _(X, C, V, W, kernel, bandwidth, M):
    return V.new_empty(V.shape[0], V.shape[1])


def nystroem_matmul(X, C, V, W, *, kernel, bandwidth, M):
    return nystroem_matmul_op(X, C, V, W, kernel, bandwidth, M)
