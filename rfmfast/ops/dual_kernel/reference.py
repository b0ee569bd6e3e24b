"""dual_kernel in plain PyTorch, float64: the truth, the log-domain path and custom activations.
Memory: the (n, m) result and float64 (n, m) work arrays: about two for the NNGP, four for the
NTK (Sigma, psi(Sigma), K and psi'(Sigma)), one more for float32 input."""

from __future__ import annotations

import math

import torch

from .activations import POLY, Activation

#: below this log|Sigma| the non-polynomial activations take their leading term at 0 (their
#: linear-domain value would underflow float64)
_LOG_LOW = -700.0


#: pairs with |rho| above 1 - NEAR take rho from their distance (exact_near_pairs)
NEAR = 1.0 / 16.0


def exact_near_pairs(R: torch.Tensor, X: torch.Tensor, Z: torch.Tensor) -> torch.Tensor:
    """The correlation rule, in place on R = X Z^T (from a GEMM) for unit rows: a pair with
    rho > 1 - NEAR takes rho = 1 - ||x - z||^2 / 2 (and rho < -(1 - NEAR) takes
    -1 + ||x + z||^2 / 2), the differences summed in float64. 1 is a repelling fixed point of
    the recursion (psi'(1) > 1 for the activations that matter), so the GEMM's rounding of a
    self-pair (1 - 1e-16 instead of 1) would grow 4-fold per layer and turn Sigma_L(x, x) from 1
    into 0; from the distance a coincident pair is exactly 1. Memory: row blocks of at most
    about 4M difference entries. Returns R clipped to [-1, 1]."""
    thr = 1.0 - NEAR
    lo, hi = torch.aminmax(R)  # no (n, m) temporary
    if max(-float(lo), float(hi)) > thr:
        d = X.shape[1]
        block = max(1, (1 << 22) // max(1, Z.shape[0] * d))
        for r0 in range(0, R.shape[0], block):
            Rb = R[r0 : r0 + block]
            for sign in (1.0, -1.0):
                i, j = torch.nonzero(Rb * sign > thr, as_tuple=True)
                if i.numel() == 0:
                    continue
                for c0 in range(0, i.numel(), block * 64):
                    ii, jj = i[c0 : c0 + block * 64], j[c0 : c0 + block * 64]
                    diff = X[r0 + ii].to(torch.float64) - sign * Z[jj].to(torch.float64)
                    Rb[ii, jj] = (sign * (1.0 - 0.5 * (diff * diff).sum(1))).to(R.dtype)
    return R.clamp_(-1.0, 1.0)


def correlations(X: torch.Tensor, Z: torch.Tensor) -> torch.Tensor:
    """rho = X Z^T in float64 with the near-pair rule (exact_near_pairs), clipped to [-1, 1]."""
    R = X.to(torch.float64) @ Z.to(torch.float64).T
    return exact_near_pairs(R, X, Z)


def recursion(R: torch.Tensor, depth: int, act: Activation, ntk: bool) -> torch.Tensor:
    """depth steps of psi on R (any dtype, not modified): Sigma_depth, or K_depth for the NTK."""
    S = R
    K = R if ntk else None
    for _ in range(depth):
        P = act.psi(S)
        if ntk:
            K = P + K * act.dpsi(S)
        S = P.clamp(-1.0, 1.0)
    return K if ntk else S


def _log_psi(act: Activation, la: torch.Tensor, sg: torch.Tensor):
    """(log|psi(s)|, sign psi(s)) for s = sg * exp(la), without forming s where it underflows."""
    if act.code == POLY:
        terms = [(j, c) for j, c in enumerate(act.coeffs) if c != 0.0]
        if len(terms) == 1:  # a monomial c s^j: exact and cheap
            ((j, c),) = terms
            return math.log(abs(c)) + j * la, math.copysign(1.0, c) * sg**j
        logs = torch.stack(
            [
                math.log(abs(c)) + j * la if j else torch.full_like(la, math.log(abs(c)))
                for j, c in terms
            ]
        )
        signs = torch.stack([math.copysign(1.0, c) * sg**j for j, c in terms])
        top = logs.max(0).values
        top_f = torch.where(torch.isfinite(top), top, torch.zeros_like(top))
        v = (signs * torch.exp(logs - top_f)).sum(0)
        return torch.log(v.abs()) + top_f, torch.sign(v)
    s = sg * torch.exp(la)
    v = act.psi(s.clamp(-1.0, 1.0))
    out_l, out_s = torch.log(v.abs()), torch.sign(v)
    low = la < _LOG_LOW
    if bool(low.any()):
        zero = torch.zeros(1, dtype=la.dtype)
        p0 = float(act.psi(zero))
        if p0 != 0.0:
            lead_l, lead_s = (
                torch.full_like(la, math.log(abs(p0))),
                torch.full_like(la, math.copysign(1, p0)),
            )
        else:
            d0 = float(act.dpsi(zero))
            if d0 == 0.0:
                raise ValueError(
                    f"activation {act.name!r}: psi(0) = psi'(0) = 0, no log-domain rule"
                )
            lead_l, lead_s = la + math.log(abs(d0)), sg * math.copysign(1, d0)
        out_l = torch.where(low, lead_l, out_l)
        out_s = torch.where(low, lead_s, out_s)
    return out_l, out_s


def log_recursion(R: torch.Tensor, depth: int, act: Activation):
    """The NNGP recursion in the log domain: (log|Sigma_depth|, sign Sigma_depth), float64.
    Polynomials are exact (a signed log-sum-exp of their terms); other activations switch to
    their leading term at 0 once |Sigma| < exp(-700)."""
    la = torch.log(R.abs())
    sg = torch.sign(R)
    for _ in range(depth):
        la, sg = _log_psi(act, la, sg)
        la = la.clamp(max=0.0)  # |Sigma| <= 1
    return la, sg


def dual_kernel(X, Z, *, depth, act, kind, log_domain=False):
    R = correlations(X, Z)
    if log_domain:
        la, sg = log_recursion(R, depth, act)
        return la.to(X.dtype), sg.to(X.dtype)
    return recursion(R, depth, act, kind == "ntk").to(X.dtype)
