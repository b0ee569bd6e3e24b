"""kernel_matrix: K(X, Z) as a dense (n, m) matrix."""
from __future__ import annotations

from .. import _common
from ... import _validate as _v


def kernel_matrix(X, Z=None, *, kernel="laplace", bandwidth=10.0, M=None, backend="auto"):
    """Kernel matrix K_ij = K_M(x_i, z_j).

    X: (n, d), Z: (m, d) or None (Z = X: one triangle is computed and mirrored) -> (n, m).
    kernel: "laplace" | "gaussian" | "l1_laplace" (formulas in rfmfast.kernels); bandwidth L > 0;
    M: (d, d) symmetric PSD, (d,) diagonal, or None (identity).
    backend: "auto" | "reference" | "cpu" | "triton" | "cuda" (env RFMFAST_BACKEND overrides).
    float32 or float64; torch in, torch out; numpy in, numpy out.
    Memory: the (n, m) output plus O(block * (block + d)) per thread; never more.
    """
    symmetric = Z is None
    t, M, np_in, mod = _common.prepare("kernel_matrix", backend, kernel, bandwidth, M,
                                       {"X": X, "Z": Z})
    X = t["X"]
    Z = X if symmetric else t["Z"]
    _v.check_d("X", X, "Z", Z)
    out = mod.kernel_matrix(X, Z, kernel=kernel, bandwidth=float(bandwidth), M=M,
                            symmetric=symmetric)
    return _v.out_like(out, np_in)
