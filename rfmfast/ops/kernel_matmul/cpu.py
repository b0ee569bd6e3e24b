"""kernel_matmul on the C++ CPU kernels: K(X, Z) @ V without storing K. Memory: packed Z and V
(m (d + t)), per thread one tile and a block x t accumulator.

Differentiable with respect to X, Z, V and M (full or diagonal), once (rfmfast.ops._autograd):
dV = K(Z, X) dS is this op with X and Z swapped; dX, dZ and dM come from the raw predictor
gradients of the C++ kernel_grads (rfmfast.ops._cpu.grads.contracted_raw), one op
(rfmfast::kernel_matmul_backward_cpu). Memory of the backward: that of kernel_grads for t
outputs, in chunks of rows (never n x m, nor n x m x d)."""

from __future__ import annotations

import numpy as np
import torch

from ...kernels import apply_M, kernel_record
from .. import _autograd
from .._cpu.custom_op import cpu_op
from .._cpu.glue import factor, fn, map_pair, opt, threads, values_args
from .._cpu.grads import contracted_raw


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


@cpu_op("kernel_matmul_backward_cpu")
def kernel_matmul_backward_op(
    X: torch.Tensor,
    Z: torch.Tensor,
    V: torch.Tensor,
    G: torch.Tensor,
    kernel: str,
    bandwidth: float,
    M: torch.Tensor | None,
    need_x: bool,
    need_z: bool,
    need_m: bool,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(dX (n, d), dZ (m, d), dM (M's shape)) of kernel_matmul for the upstream gradient G
    (n, t) of its output; each one not needed is an empty (0,) tensor. dX from the raw
    gradients of f(x) = K(x, Z) V at X contracted with G, dZ from those of K(z, X) G at Z
    contracted with V (rfmfast.ops._autograd)."""
    M = opt(M)
    fac = factor(M, kernel, X.dtype)
    R = Rz = post = None
    if need_x or need_m:
        R, post = contracted_raw(X, Z, V, G, kernel, bandwidth, M, fac)
    if need_z or need_m:
        Rz, post = contracted_raw(Z, X, G, V, kernel, bandwidth, M, fac)
    dX = apply_M(R, post).contiguous() if need_x else X.new_empty(0)
    dZ = apply_M(Rz, post).contiguous() if need_z else X.new_empty(0)
    dM = _autograd.metric_grad(kernel, M, X, Z, R, Rz) if need_m else X.new_empty(0)
    return dX, dZ, dM


@kernel_matmul_backward_op.register_fake
def _(X, Z, V, G, kernel, bandwidth, M, need_x, need_z, need_m):
    return (
        X.new_empty(X.shape) if need_x else X.new_empty(0),
        Z.new_empty(Z.shape) if need_z else X.new_empty(0),
        M.new_empty(M.shape) if need_m else X.new_empty(0),
    )


def _setup_context(ctx, inputs, output):
    X, Z, V, kernel, bandwidth, M = inputs
    ctx.save_for_backward(X, Z, V, M)
    ctx.kernel, ctx.bandwidth = kernel, bandwidth


def _backward(ctx, G):
    X, Z, V, M = ctx.saved_tensors
    need_x, need_z, need_v, _, _, need_m = ctx.needs_input_grad
    need_m = bool(need_m) and M is not None
    dV = kernel_matmul_op(Z, X, G, ctx.kernel, ctx.bandwidth, M) if need_v else None
    dX = dZ = dM = None
    if need_x or need_z or need_m:
        dX, dZ, dM = kernel_matmul_backward_op(
            X, Z, V, G, ctx.kernel, ctx.bandwidth, M, need_x, need_z, need_m
        )
    return (
        dX if need_x else None,
        dZ if need_z else None,
        dV,
        None,
        None,
        dM if need_m else None,
    )


kernel_matmul_op.register_autograd(_backward, setup_context=_setup_context)


def kernel_matmul(X, Z, V, *, kernel, bandwidth, M):
    return kernel_matmul_op(X, Z, V, kernel, bandwidth, M)
