"""Comparisons between matrices (feature matrices, AGOPs): correlation, alignment, PSD powers.

Every function takes numpy arrays or torch tensors of any float dtype and works in float64;
results are Python floats (or a float64 array / tensor of the input's kind for ``psd_power``).

    matrix_correlation(A, B, centered=True)   Pearson correlation of the entries
    cosine_similarity(A, B)                   <A, B>_F / (||A||_F ||B||_F), nothing subtracted
    alignment(A, B)                           the same cosine, under the name the catapults
                                              paper uses ("AGOP alignment")
    psd_power(A, p)                           A^p of a symmetric matrix, negative eigenvalues
                                              (round-off) set to 0 first
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["matrix_correlation", "cosine_similarity", "alignment", "psd_power"]


def _as64(name: str, A) -> torch.Tensor:
    if isinstance(A, torch.Tensor):
        t = A.detach().to("cpu", torch.float64)
    else:
        a = np.asarray(A)
        if a.dtype == object or a.dtype.kind not in "biuf":
            raise ValueError(f"{name} must be a real numeric array, got dtype {a.dtype}")
        t = torch.from_numpy(np.array(a, dtype=np.float64))
    if t.ndim != 2:
        raise ValueError(f"{name} must be a 2-D matrix, got shape {tuple(t.shape)}")
    if t.numel() == 0:
        raise ValueError(f"{name} is empty (shape {tuple(t.shape)})")
    if not bool(torch.isfinite(t).all()):
        raise ValueError(f"{name} contains NaN or inf")
    return t


def _pair(A, B):
    a, b = _as64("A", A), _as64("B", B)
    if a.shape != b.shape:
        raise ValueError(
            f"A and B must have the same shape, got {tuple(a.shape)} and {tuple(b.shape)}"
        )
    return a, b


def _cosine(a: torch.Tensor, b: torch.Tensor, what: str, scale_a=None, scale_b=None) -> float:
    """The cosine of a and b; scale_*: the norms before centering, against which a norm left
    by rounding alone (a constant matrix whose mean does not round exactly) counts as 0."""
    na, nb = torch.linalg.norm(a), torch.linalg.norm(b)
    tiny_a = 0 if scale_a is None else 1e-14 * float(scale_a)
    tiny_b = 0 if scale_b is None else 1e-14 * float(scale_b)
    if na <= tiny_a or nb <= tiny_b:
        raise ValueError(
            f"{what} is undefined: one matrix is {'constant' if 'Pearson' in what else 'zero'}"
        )
    return float(((a * b).sum() / (na * nb)).clamp(-1.0, 1.0))


def matrix_correlation(A, B, *, centered: bool = True) -> float:
    """Correlation of two matrices' entries. A, B: (r, s), the same shape -> float in [-1, 1].

    centered=True (the default; the neural feature ansatz papers' reference code): the Pearson
    correlation, i.e. each matrix's mean entry subtracted, then the cosine of the entries.
    centered=False: the uncentered cosine <A, B>_F / (||A||_F ||B||_F) (some of the papers' CNN
    scripts); the same number as ``cosine_similarity`` and ``alignment``.
    A constant matrix (centered) or a zero one (uncentered) raises ValueError: no correlation
    exists. Memory: two float64 copies of the inputs.
    """
    a, b = _pair(A, B)
    if centered:
        return _cosine(
            a - a.mean(),
            b - b.mean(),
            "the Pearson correlation",
            torch.linalg.norm(a),
            torch.linalg.norm(b),
        )
    return _cosine(a, b, "the cosine")


def cosine_similarity(A, B) -> float:
    """<A, B>_F / (||A||_F ||B||_F), nothing subtracted. A, B: (r, s) -> float in [-1, 1]."""
    a, b = _pair(A, B)
    return _cosine(a, b, "the cosine")


def alignment(A, B) -> float:
    """AGOP alignment <A, B>_F / (||A||_F ||B||_F) (A, B: (d, d)), as the catapults paper
    defines it between a network's AGOP and the target function's; equal to
    ``cosine_similarity(A, B)`` (no centering). For PSD matrices it lies in [0, 1]."""
    return cosine_similarity(A, B)


def psd_power(A, p: float, *, rcond: float = 0.0):
    """A^p for a symmetric positive semi-definite A: (d, d) -> (d, d), float64.

    Computed by ``eigh`` of (A + A^T) / 2 in float64; eigenvalues below rcond * max eigenvalue
    (and negative ones: round-off in a PSD matrix) are set to 0 before the power, so p may be
    fractional or 0 < p. Negative p raises (the inverse power of a singular matrix).
    Returns a torch tensor for a tensor input (on its device), else a numpy array.
    Memory: O(d^2) float64; time O(d^3).
    """
    if not np.isfinite(p) or p <= 0:
        raise ValueError(f"p must be a positive finite number, got {p}")
    a = _as64("A", A)
    if a.shape[0] != a.shape[1]:
        raise ValueError(f"A must be square, got shape {tuple(a.shape)}")
    w, V = torch.linalg.eigh((a + a.T) / 2)
    floor = rcond * float(w.max().clamp_min(0))
    w = torch.where(w > floor, w, torch.zeros_like(w)).clamp_min(0)
    out = (V * w.pow(p)) @ V.T
    out = (out + out.T) / 2
    if isinstance(A, torch.Tensor):
        return out.to(A.device)
    return out.numpy()
