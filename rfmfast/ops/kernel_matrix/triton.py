"""Triton kernel_matrix: K(X, Z) as a dense (n, m) matrix (the tile kernel of
rfmfast.ops._triton.matrix)."""

from __future__ import annotations

from .._triton import common
from .._triton.matrix import tile_matrix


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
    pts = common.prepare_points(X, Z, kernel, M, common.resolve_precision(precision, X.dtype))
    K = tile_matrix(pts, kernel=kernel, bandwidth=bandwidth, symmetric=symmetric)
    if out is None:
        return K
    return out.copy_(K)
