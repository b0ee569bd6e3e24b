"""Triton kernel_matrix: K(X, Z) as a dense (n, m) matrix (the tile kernel of
rfmfast.ops._triton.matrix).

Differentiable with respect to X, Z and M, once: the backward takes the (n, m) upstream
gradient through the exact blocked PyTorch formula (rfmfast.ops._autograd.matrix_backward)."""

from __future__ import annotations

import torch
from torch.autograd.function import once_differentiable

from .. import _autograd
from .._triton import common
from .._triton.matrix import tile_matrix


def _matrix(X, Z, kernel, bandwidth, M, symmetric, precision):
    pts = common.prepare_points(X, Z, kernel, M, common.resolve_precision(precision, X.dtype))
    return tile_matrix(pts, kernel=kernel, bandwidth=bandwidth, symmetric=symmetric)


class _KernelMatrix(torch.autograd.Function):
    @staticmethod
    def forward(X, Z, kernel, bandwidth, M, symmetric, precision):
        return _matrix(X, Z, kernel, bandwidth, M, symmetric, precision)

    @staticmethod
    def setup_context(ctx, inputs, output):
        X, Z, kernel, bandwidth, M, _, _ = inputs
        ctx.save_for_backward(X, Z, M)
        ctx.args = kernel, bandwidth

    @staticmethod
    @once_differentiable
    def backward(ctx, G):
        X, Z, M = ctx.saved_tensors
        kernel, bandwidth = ctx.args
        need_x, need_z = ctx.needs_input_grad[:2]
        need_m = ctx.needs_input_grad[4] and M is not None
        dX, dZ, dM = _autograd.matrix_backward(
            X,
            Z,
            G,
            kernel=kernel,
            bandwidth=bandwidth,
            M=M,
            need_x=need_x,
            need_z=need_z,
            need_m=need_m,
        )
        return dX, dZ, None, None, dM, None, None


def kernel_matrix(X, Z, *, kernel, bandwidth, M, triangle="full", out=None, precision=None):
    """X: (n, d), Z: (m, d) -> K: (n, m), K_ij = K_M(x_i, z_j).

    triangle "symmetric" or "lower" (Z is X): one triangle of tiles is computed and mirrored
    (the lower triangle alone is not computed: the symmetric matrix holds it). out: computed
    whole, then copied in.
    precision: "ieee" | "tf32" | "bf16" for the distance GEMM of float32 inputs (module doc of
    rfmfast.ops._triton.common); default $RFMFAST_TRITON_PRECISION or "ieee".
    Memory: the (n, m) output plus O((n + m) d) for the mapped points.
    """
    common.check_device(X, Z)
    symmetric = triangle != "full"
    if symmetric:
        Z = X
    if torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in (X, Z, M)):
        K = _KernelMatrix.apply(X, Z, kernel, bandwidth, M, symmetric, precision)
    else:
        K = _matrix(X, Z, kernel, bandwidth, M, symmetric, precision)
    if out is None:
        return K
    return out.copy_(K)
