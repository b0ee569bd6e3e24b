"""kernel_matrix on the C++ CPU kernels (csrc/cpu): one pass, tiles in cache, one triangle when
Z is X. Memory: the (n, m) output, the packed copy of Z (m d) and one tile per thread.

Differentiable with respect to X, Z and M (full or diagonal), once: the backward takes the
(n, m) upstream gradient through the reference formula, exact differences in row blocks
(rfmfast.ops._autograd.matrix_backward, one op rfmfast::kernel_matrix_backward_cpu). A call
whose inputs require grad returns a new matrix, differentiable, for every triangle= (the
symmetric matrix serves "lower") and copies it into out= if given."""

from __future__ import annotations

import numpy as np
import torch

from ..._threads import torch_kernel_threads
from ...kernels import kernel_record
from .. import _autograd
from .._cpu.custom_op import cpu_op
from .._cpu.glue import fn, map_pair, np_, opt, out_array, threads

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


@cpu_op("kernel_matrix_backward_cpu")
def kernel_matrix_backward_op(
    X: torch.Tensor,
    Z: torch.Tensor,
    G: torch.Tensor,
    kernel: str,
    bandwidth: float,
    M: torch.Tensor | None,
    need_x: bool,
    need_z: bool,
    need_m: bool,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(dX (n, d), dZ (m, d), dM (M's shape)) of kernel_matrix for the upstream gradient G
    (n, m); each one not needed is an empty (0,) tensor (rfmfast.ops._autograd)."""
    M = opt(M)
    with torch_kernel_threads():  # blocked torch GEMMs of (block, m, d): torch's threads pay
        dX, dZ, dM = _autograd.matrix_backward(
            X.detach(),
            Z.detach(),
            G,
            kernel=kernel,
            bandwidth=bandwidth,
            M=M,
            need_x=need_x,
            need_z=need_z,
            need_m=need_m,
        )
    return (
        dX if need_x else X.new_empty(0),
        dZ if need_z else X.new_empty(0),
        dM if need_m else X.new_empty(0),
    )


@kernel_matrix_backward_op.register_fake
def _(X, Z, G, kernel, bandwidth, M, need_x, need_z, need_m):
    return (
        X.new_empty(X.shape) if need_x else X.new_empty(0),
        Z.new_empty(Z.shape) if need_z else X.new_empty(0),
        M.new_empty(M.shape) if need_m else X.new_empty(0),
    )


def _setup_context(ctx, inputs, output):
    X, Z, kernel, bandwidth, M, _ = inputs
    ctx.save_for_backward(X, Z, M)
    ctx.kernel, ctx.bandwidth = kernel, bandwidth


def _backward(ctx, G):
    X, Z, M = ctx.saved_tensors
    need_x, need_z, _, _, need_m, _ = ctx.needs_input_grad
    need_m = bool(need_m) and M is not None
    dX = dZ = dM = None
    if need_x or need_z or need_m:
        dX, dZ, dM = kernel_matrix_backward_op(
            X, Z, G, ctx.kernel, ctx.bandwidth, M, need_x, need_z, need_m
        )
    return (
        dX if need_x else None,
        dZ if need_z else None,
        None,
        None,
        dM if need_m else None,
        None,
    )


kernel_matrix_op.register_autograd(_backward, setup_context=_setup_context)


def _needs_grad(*ts) -> bool:
    return torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in ts)


def kernel_matrix(X, Z, *, kernel, bandwidth, M, triangle="full", out=None):
    """K(X, Z) (n, m) with triangle "full" | "symmetric" | "lower" (Z is X for the last two);
    written into out ((n, m) C-contiguous tensor of X's dtype) when given (eager only: a
    traced call goes through the custom op, which returns a new matrix). Inputs that require
    grad: the custom op's differentiable matrix (symmetric for "lower"), copied into out."""
    if _needs_grad(X, Z, M) or torch.compiler.is_compiling():
        K = kernel_matrix_op(X, Z, kernel, bandwidth, M, triangle != "full")
        return K if out is None else out.copy_(K)
    if out is None and triangle != "lower":
        return kernel_matrix_op(X, Z, kernel, bandwidth, M, triangle == "symmetric")
    if out is None:
        out = torch.from_numpy(out_array(X.shape[0], Z.shape[0], X.dtype))
    kernel_matrix_into(X, Z, kernel, bandwidth, M, triangle, np_(out))
    return out
