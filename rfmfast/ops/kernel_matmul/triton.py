"""Triton kernel_matmul: K(X, Z) @ V fused like flash attention; the (n, m) matrix is never stored
(the kernel is the fused product of rfmfast.ops._triton.product)."""

from __future__ import annotations

from .._triton import common
from .._triton.product import fused_product


def kernel_matmul(X, Z, V, *, kernel, bandwidth, M, precision=None):
    """X: (n, d), Z: (m, d), V: (m, t) -> (n, t) = K(X, Z) @ V, fused (K never stored).

    precision: "ieee" | "tf32" | "bf16" for the distance GEMM of float32 inputs (module doc of
    rfmfast.ops._triton.common); default $RFMFAST_TRITON_PRECISION or "ieee".
    Memory: the (n, t) output plus O((n + m) d) for the mapped points.
    """
    common.check_device(X, Z, V)
    pts = common.prepare_points(X, Z, kernel, M, common.resolve_precision(precision, X.dtype))
    return fused_product(pts, kernel=kernel, bandwidth=bandwidth, V=V)
