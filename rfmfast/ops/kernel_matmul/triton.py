"""Triton kernel_matmul: K(X, Z) @ V fused like flash attention; the (n, m) matrix is never stored
(the kernel is the fused product of rfmfast.ops._triton.product).

Differentiable with respect to X, Z, V and M, once (rfmfast.ops._autograd): dV = K(Z, X) dS is
this product with X and Z swapped; dX and dZ are the Triton kernel_grads (the backend of
rfmfast.ops.agop, reached through rfmfast.backends.impl) contracted with dS and V, in chunks of
rows; a gradient with respect to M takes the exact blocked PyTorch formula instead
(rfmfast.ops._autograd.matmul_backward_by_pairs: O(n m (t + d)) work, O(4M) memory, never
n x m)."""

from __future__ import annotations

import torch
from torch.autograd.function import once_differentiable

from ...backends import impl
from .. import _autograd
from .._triton import common
from .._triton.product import fused_product

#: entries of kernel_grads' output (rows, t, d) per call of the backward pass
_GRAD_ENTRIES = 1 << 24


def _product(X, Z, V, kernel, bandwidth, M, precision):
    common.check_device(X, Z, V)
    pts = common.prepare_points(X, Z, kernel, M, common.resolve_precision(precision, X.dtype))
    return fused_product(pts, kernel=kernel, bandwidth=bandwidth, V=V)


def _contracted_grads(Q, C, alpha, weights, kernel, bandwidth, M, precision):
    """sum_c weights_ic grad f_c(q_i) for f(x) = K(x, C) alpha: (q, d), from the Triton
    kernel_grads in chunks of queries (its (chunk, c, d) output under _GRAD_ENTRIES)."""
    grads = impl("agop", "triton").kernel_grads
    q, d = Q.shape
    chunk = max(1, _GRAD_ENTRIES // max(1, alpha.shape[1] * d))
    out = torch.empty(q, d, dtype=Q.dtype, device=Q.device)
    for i in range(0, q, chunk):
        H = grads(
            Q[i : i + chunk],
            C,
            alpha,
            kernel=kernel,
            bandwidth=bandwidth,
            M=M,
            precision=precision,
        )
        out[i : i + chunk] = torch.einsum("qc,qcd->qd", weights[i : i + chunk], H)
    return out


class _KernelMatmul(torch.autograd.Function):
    @staticmethod
    def forward(X, Z, V, kernel, bandwidth, M, precision):
        return _product(X, Z, V, kernel, bandwidth, M, precision)

    @staticmethod
    def setup_context(ctx, inputs, output):
        X, Z, V, kernel, bandwidth, M, precision = inputs
        ctx.save_for_backward(X, Z, V, M)
        ctx.args = kernel, bandwidth, precision

    @staticmethod
    @once_differentiable
    def backward(ctx, G):
        X, Z, V, M = ctx.saved_tensors
        kernel, bandwidth, precision = ctx.args
        need_x, need_z, need_v = ctx.needs_input_grad[:3]
        need_m = ctx.needs_input_grad[5] and M is not None
        G = G.contiguous()
        dV = _product(Z, X, G, kernel, bandwidth, M, precision) if need_v else None
        if need_m:
            dX, dZ, dM = _autograd.matmul_backward_by_pairs(
                X,
                Z,
                V,
                G,
                kernel=kernel,
                bandwidth=bandwidth,
                M=M,
                need_x=need_x,
                need_z=need_z,
                need_m=True,
            )
        else:
            dM = None
            dX = _contracted_grads(X, Z, V, G, kernel, bandwidth, M, precision) if need_x else None
            dZ = _contracted_grads(Z, X, G, V, kernel, bandwidth, M, precision) if need_z else None
        return dX, dZ, dV, None, None, dM, None


def kernel_matmul(X, Z, V, *, kernel, bandwidth, M, precision=None):
    """X: (n, d), Z: (m, d), V: (m, t) -> (n, t) = K(X, Z) @ V, fused (K never stored).

    precision: "ieee" | "tf32" | "bf16" for the distance GEMM of float32 inputs (module doc of
    rfmfast.ops._triton.common); default $RFMFAST_TRITON_PRECISION or "ieee".
    Memory: the (n, t) output plus O((n + m) d) for the mapped points.
    """
    if torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in (X, Z, V, M)):
        return _KernelMatmul.apply(X, Z, V, kernel, bandwidth, M, precision)
    return _product(X, Z, V, kernel, bandwidth, M, precision)
