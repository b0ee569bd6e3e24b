"""Dual activations: one record per activation of the deep NNGP / NTK kernels.

A dual activation psi maps the correlation rho = x.z of two unit vectors through one infinitely
wide layer, normalized so that psi(1) = 1 (the reference code's forms):

    relu        (rho (pi - acos rho) + sqrt(1 - rho^2)) / pi         (the arc-cosine kernel)
    erf         asin(2 rho / 3) / asin(2 / 3)
    sine_a      sinh(a rho) / sinh(a)          ("sine" is sine_1)
    hermite_k   rho^k
    2d_opt      rho^7 / 2 + rho / 2            (the activations whose infinite-depth NNGP is the
    3d_opt      rho^3 / 2 + rho / 2             Hilbert classifier for data on the sphere in
    5d_opt      rho^3 / 4 + rho^2 / 2 + rho / 4 R^2, R^3, R^5, R^9)
    9d_opt      rho^3 / 16 + 7 rho^2 / 8 + rho / 16

or Activation.custom(psi, dpsi) for any callable pair (run by the reference backend only).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import torch

#: the activation codes of the C++ kernels (csrc/cpu/params.h, DualAct), checked by a test
POLY, RELU, ERF, SINE, CUSTOM = 0, 1, 2, 3, -1
MAX_DEGREE = 64

_POLYNOMIALS = {
    "2d_opt": {7: 0.5, 1: 0.5},
    "3d_opt": {3: 0.5, 1: 0.5},
    "5d_opt": {3: 0.25, 2: 0.5, 1: 0.25},
    "9d_opt": {3: 1 / 16, 2: 7 / 8, 1: 1 / 16},
}
_ERF_INV = 1.0 / math.asin(2.0 / 3.0)


@dataclass(frozen=True)
class Activation:
    """One dual activation. code: POLY (coeffs[j] multiplies rho^j), RELU, ERF, SINE (param a)
    or CUSTOM (psi, dpsi callables on tensors)."""

    name: str
    code: int
    coeffs: tuple[float, ...] = ()
    param: float = 0.0
    psi_fn: Callable | None = field(default=None, compare=False)
    dpsi_fn: Callable | None = field(default=None, compare=False)

    @staticmethod
    def custom(psi: Callable, dpsi: Callable | None = None, name: str = "custom") -> Activation:
        """Any dual activation: psi (and psi', needed for the NTK and the exponent) as
        callables on torch tensors, elementwise; psi(1) should be 1."""
        if not callable(psi) or (dpsi is not None and not callable(dpsi)):
            raise ValueError("Activation.custom needs callables psi (and dpsi)")
        return Activation(name, CUSTOM, psi_fn=psi, dpsi_fn=dpsi)

    @property
    def inv_norm(self) -> float:
        """1 / sinh(a) (sine), 1 / asin(2/3) (erf): the factors the C++ kernels take."""
        if self.code == SINE:
            return 1.0 / math.sinh(self.param)
        return _ERF_INV if self.code == ERF else 1.0

    def psi(self, s: torch.Tensor) -> torch.Tensor:
        if self.code == POLY:
            v = torch.full_like(s, self.coeffs[-1])
            for c in reversed(self.coeffs[:-1]):
                v = v * s + c
            return v
        if self.code == RELU:
            return (s * (math.pi - torch.acos(s)) + torch.sqrt((1 - s * s).clamp_min(0))) / math.pi
        if self.code == ERF:
            return torch.asin(2 * s / 3) * _ERF_INV
        if self.code == SINE:
            return torch.sinh(self.param * s) / math.sinh(self.param)
        return self.psi_fn(s)

    def dpsi(self, s: torch.Tensor) -> torch.Tensor:
        if self.code == POLY:
            deg = len(self.coeffs) - 1
            if deg < 1:
                return torch.zeros_like(s)
            v = torch.full_like(s, deg * self.coeffs[deg])
            for j in range(deg - 1, 0, -1):
                v = v * s + j * self.coeffs[j]
            return v
        if self.code == RELU:
            return (math.pi - torch.acos(s)) / math.pi
        if self.code == ERF:
            return (2 / 3) * _ERF_INV / torch.sqrt(1 - 4 * s * s / 9)
        if self.code == SINE:
            return self.param * torch.cosh(self.param * s) / math.sinh(self.param)
        if self.dpsi_fn is None:
            raise ValueError(f"activation {self.name!r} has no dpsi: the NTK needs psi'")
        return self.dpsi_fn(s)

    def slopes(self) -> tuple[float, float]:
        """(psi'(0), psi'(1)), in float64."""
        d = self.dpsi(torch.tensor([0.0, 1.0], dtype=torch.float64))
        return float(d[0]), float(d[1])


def activation(spec) -> Activation:
    """The record of an activation name ("relu", "erf", "sine_2.5", "hermite_3", "3d_opt", ...)
    or an Activation (passes through)."""
    if isinstance(spec, Activation):
        return spec
    if not isinstance(spec, str):
        raise ValueError(
            "activation must be a name or an Activation (Activation.custom(psi, dpsi)), "
            f"got {spec!r}"
        )
    name = spec.strip()
    if name == "relu":
        return Activation(name, RELU)
    if name == "erf":
        return Activation(name, ERF)
    if name in _POLYNOMIALS:
        terms = _POLYNOMIALS[name]
        return Activation(name, POLY, tuple(terms.get(j, 0.0) for j in range(max(terms) + 1)))
    head, _, tail = name.partition("_")
    try:
        if head == "sine":
            a = float(tail) if tail else 1.0
            if not (0 < a <= 700):  # sinh(a) overflows float64 past about 710
                raise ValueError
            return Activation(name, SINE, param=a)
        if head == "hermite":
            k = int(tail)
            if not 1 <= k <= MAX_DEGREE:
                raise ValueError
            return Activation(name, POLY, tuple(1.0 if j == k else 0.0 for j in range(k + 1)))
    except ValueError:
        pass
    raise ValueError(
        f"unknown activation {spec!r}: use relu, erf, sine_<a in (0, 700]>, "
        f"hermite_<k in 1..{MAX_DEGREE}>, {', '.join(_POLYNOMIALS)}, "
        "or Activation.custom(psi, dpsi)"
    )


def singular_exponent(spec) -> float:
    """The exponent a of the singular kernel ||x - z||^(-a) that the depth -> infinity NNGP of
    this activation becomes (as a classifier): a = 2 ln(1 / psi'(0)) / ln psi'(1).

    Derivation (docs/math.md): for psi(1) = 1 with psi'(1) > 1 and 0 < psi'(0) < 1, iterating
    psi moves 1 - rho away from 0 by the factor psi'(1) per layer until it is of order 1, then
    rho towards the fixed point 0 by psi'(0) per layer; after L layers
    Sigma_L(rho) ~ C psi'(0)^L (1 - rho)^(-ln(1/psi'(0)) / ln psi'(1)), and 1 - rho =
    ||x - z||^2 / 2 on the sphere. psi'(0) = 0 gives inf (the 1-NN limit); psi'(1) <= 1 gives
    0 (every pair alike: majority vote)."""
    d0, d1 = activation(spec).slopes()
    if d0 <= 0:
        return math.inf
    if d1 <= 1:
        return 0.0
    if d0 >= 1:
        raise ValueError(f"psi'(0) = {d0:g} >= 1: 0 is not an attracting fixed point")
    return 2.0 * math.log(1.0 / d0) / math.log(d1)
