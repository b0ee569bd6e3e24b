"""Powers of a symmetric positive semi-definite matrix, ``A ** p`` for real ``p > 0``.

Two methods:
    "newton_schulz"  GEMM-only (no eigendecomposition, no SVD): integer part by repeated squaring,
                     fractional part from its binary expansion ``f = sum_j b_j 2^-j`` as a
                     product of repeated square roots ``A^(1/2^j)``, each by the coupled
                     Newton-Schulz iteration
                         Y_0 = A / c, Z_0 = I,  T = (3 I - Z_k Y_k) / 2,
                         Y_{k+1} = Y_k T,  Z_{k+1} = T Z_k
                     (``Y_k -> (A/c)^(1/2)``; ``c = ||A||_F`` puts the spectrum in [0, 1]).
                     Three GEMMs per step; runs on any device at GEMM speed.
    "eigh"           ``V diag(max(w, 0)^p) V^T`` from ``torch.linalg.eigh`` (the check, and the
                     baseline).

Shapes: A (d, d) -> (d, d). Memory: about six (d, d) matrices for "newton_schulz", three for "eigh".
"""

from __future__ import annotations

import torch

_FRACTION_BITS = 16  # the fractional exponent is rounded to a multiple of 2^-16


def sqrt_newton_schulz(
    A: torch.Tensor, *, tol: float | None = None, max_iter: int = 100
) -> tuple[torch.Tensor, int]:
    """(A^(1/2), steps) for symmetric PSD ``A`` (d, d) by the coupled Newton-Schulz iteration.

    Stops when the relative change of ``Y`` in Frobenius norm falls below ``tol`` (default: 1e-10
    in float64, 1e-5 in float32), or when ``||Z||_F`` passes ``eps^(-1/2)`` (``Z -> (A/c)^(-1/2)``):
    then only eigenvalues below rounding level (``eps * c``) are still moving, and in that null
    space the coupled iteration grows rounding errors by 1.5x a step until it blows up. Their
    share of the result is at most ``sqrt(eps c)``.
    """
    if tol is None:
        tol = 1e-10 if A.dtype == torch.float64 else 1e-5
    c = float(torch.linalg.matrix_norm(A))
    if c == 0.0:
        return torch.zeros_like(A), 0
    eye = torch.eye(A.shape[0], dtype=A.dtype, device=A.device)
    Y = A / c
    Z = eye.clone()
    z_max = torch.finfo(A.dtype).eps ** -0.5
    steps = 0
    for _ in range(max_iter):
        steps += 1
        T = 1.5 * eye - 0.5 * (Z @ Y)
        Y_new = Y @ T
        change = float(torch.linalg.matrix_norm(Y_new - Y)) / max(
            float(torch.linalg.matrix_norm(Y_new)), 1e-300
        )
        Z = T @ Z
        Y = Y_new
        if change <= tol or float(torch.linalg.matrix_norm(Z)) > z_max:
            break
    Y = 0.5 * (Y + Y.T)
    return Y * (c**0.5), steps


def _split_exponent(p: float) -> tuple[int, list[int]]:
    """(m, bits): p = m + sum_j bits[j-1] 2^-j, the fraction rounded to _FRACTION_BITS bits."""
    q = round(p * 2**_FRACTION_BITS)
    m, frac = divmod(q, 2**_FRACTION_BITS)
    bits = [(frac >> (_FRACTION_BITS - j)) & 1 for j in range(1, _FRACTION_BITS + 1)]
    while bits and bits[-1] == 0:
        bits.pop()
    return m, bits


def psd_power(A: torch.Tensor, p: float, *, method: str = "newton_schulz") -> torch.Tensor:
    """``A ** p`` for symmetric PSD ``A`` (d, d) and real ``p > 0``; returns (d, d), symmetric.

    "newton_schulz" uses only matrix products (the fractional part of ``p`` is rounded to a
    multiple of 2^-16); "eigh" uses an eigendecomposition and clamps negative eigenvalues to 0.
    """
    if A.ndim != 2 or A.shape[0] != A.shape[1]:
        raise ValueError(f"A must be square (d, d), got shape {tuple(A.shape)}")
    if not p > 0:
        raise ValueError(f"the exponent p must be > 0, got {p}")
    if method == "eigh":
        w, V = torch.linalg.eigh(A)
        return (V * w.clamp(min=0) ** p) @ V.T
    if method != "newton_schulz":
        raise ValueError(f"method must be 'newton_schulz' or 'eigh', got {method!r}")
    m, bits = _split_exponent(p)
    if m == 0 and not bits:
        raise ValueError(f"the exponent p = {p} rounds to 0 at {_FRACTION_BITS} fractional bits")
    result = None
    if m > 0:  # A^m by repeated squaring
        base, e = A, m
        while e:
            if e & 1:
                result = base if result is None else result @ base
            e >>= 1
            if e:
                base = base @ base
    root = A
    for b in bits:  # root = A^(1/2^j)
        root, _ = sqrt_newton_schulz(root)
        if b:
            result = root if result is None else result @ root
    return 0.5 * (result + result.T)
