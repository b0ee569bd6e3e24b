"""kernel_matrix on the C++ CPU kernels (csrc/cpu): one pass, tiles in cache, one triangle when
Z is X. Memory: the (n, m) output, the packed copy of Z (m d) and one tile per thread."""

from __future__ import annotations

import numpy as np
import torch

from ...kernels import kernel_record
from .._cpu.custom_op import cpu_op
from .._cpu.glue import fn, map_pair, np_, out_array, threads

#: the triangle= values and their codes in the C++ kernel
TRIANGLES = {"full": 0, "symmetric": 1, "lower": 2}


def kernel_matrix_into(
    X: torch.Tensor,
    Z: torch.Tensor,
    kernel: str,
    bandwidth: float,
    M: torch.Tensor | None,
    triangle: str,
    out: np.ndarray,
) -> None:
    """K(X, Z) written into out, a C-contiguous (n, m) array of X's dtype.
    triangle: "full"; "symmetric" (Z is X: one triangle computed, mirrored); "lower" (Z is X:
    the lower triangle written, the strictly upper one only near the diagonal: for the Cholesky
    solve, which reads nothing else)."""
    Xt, xn, Zp, zn, exact = map_pair(X, Z, M, kernel, triangle != "full")
    fn("kernel_matrix", X.dtype)(
        Xt,
        xn,
        Zp,
        zn,
        Z.shape[0],
        kernel_record(kernel).code,
        bandwidth,
        *exact,
        TRIANGLES[triangle],
        out,
        threads(),
    )


@cpu_op("kernel_matrix_cpu")
def kernel_matrix_op(
    X: torch.Tensor,
    Z: torch.Tensor,
    kernel: str,
    bandwidth: float,
    M: torch.Tensor | None,
    symmetric: bool,
) -> torch.Tensor:
    out = out_array(X.shape[0], Z.shape[0], X.dtype)
    kernel_matrix_into(X, Z, kernel, bandwidth, M, "symmetric" if symmetric else "full", out)
    return torch.from_numpy(out)


@kernel_matrix_op.register_fake
def _(X, Z, kernel, bandwidth, M, symmetric):
    return X.new_empty(X.shape[0], Z.shape[0])


def kernel_matrix(X, Z, *, kernel, bandwidth, M, triangle="full", out=None):
    """K(X, Z) (n, m) with triangle "full" | "symmetric" | "lower" (Z is X for the last two);
    written into out ((n, m) C-contiguous tensor of X's dtype) when given (eager only: a
    traced call goes through the custom op, which returns a new matrix)."""
    if out is None and triangle != "lower":
        return kernel_matrix_op(X, Z, kernel, bandwidth, M, triangle == "symmetric")
    if out is None:
        out = torch.from_numpy(out_array(X.shape[0], Z.shape[0], X.dtype))
    kernel_matrix_into(X, Z, kernel, bandwidth, M, triangle, np_(out))
    return out
