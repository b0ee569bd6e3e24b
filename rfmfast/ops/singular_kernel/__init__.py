"""singular_kernel: K(x, z) = ||x - z||^(-alpha), the kernels of the Hilbert-type classifiers."""

from __future__ import annotations

import math

from ... import _validate as validate
from . import reference

COINCIDENT = ("inf", "zero")


def singular_kernel(X, Z=None, alpha: float = 1.0, *, coincident: str = "inf"):
    """K_ij = ||x_i - z_j||^(-alpha) (Euclidean), X: (n, d), Z: (m, d) or None (Z = X) -> (n, m).

    The singular kernels that infinitely deep networks become (rfmfast.dual_kernel's
    singular_exponent), and the weights of the Hilbert estimate (alpha = D - 1 for data on the
    sphere in R^D). Distances by the ops' distance rule: a GEMM, with near pairs recomputed by
    differences, so near-duplicates are exact and coincident points exactly 0 apart.
    coincident: what a pair at distance 0 gets: "inf" (the default; a classifier then takes
    that training point's label) or "zero" (the pair is left out, e.g. leave-one-out on the
    training set). alpha: > 0 (alpha = 0 would be the constant kernel: use a majority vote).
    float32 or float64; torch in, torch out; numpy in, numpy out; computed in float64.
    Memory: the output and one float64 (n, m) work array.
    """
    if (
        isinstance(alpha, bool)
        or not isinstance(alpha, (int, float))
        or not (alpha > 0 and math.isfinite(alpha))
    ):
        raise ValueError(f"alpha must be a positive finite number, got {alpha!r}")
    if coincident not in COINCIDENT:
        raise ValueError(f"coincident must be one of {COINCIDENT}, got {coincident!r}")
    Xt, np_in = validate.to_tensor(X, "X")
    validate.check_matrix(Xt, "X", ndim=(2,), finite=True)
    if Z is None:
        Zt = Xt
    else:
        Zt, _ = validate.to_tensor(Z, "Z")
        validate.check_matrix(Zt, "Z", ndim=(2,), finite=True)
        validate.check_same(Xt, "X", Z=Zt)
        validate.check_d("X", Xt, "Z", Zt)
    K = reference.singular_kernel(Xt, Zt, alpha=float(alpha), coincident=coincident)
    return validate.out_like(K, np_in)
