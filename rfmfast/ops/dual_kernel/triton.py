"""dual_kernel on the GPU: one Triton program per (BM, BN) tile computes rho = X Z^T with tl.dot
(near pairs from their distances, as reference.exact_near_pairs) and runs the depth recursion
on the tile in registers; the (n, m) output is written once.
Polynomial and sine activations; relu and erf (acos / asin, which Triton's core language lacks)
and custom activations are computed by the reference path on the same device.
Memory: the output only."""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from . import reference
from .activations import POLY, SINE

FUSED = (POLY, SINE)


@triton.jit
def _sinh(x):
    """sinh(x) to the dtype's precision: a Taylor series to x^15 where |x| < 1/2 (where
    (e^x - e^-x) / 2 cancels), the exponentials elsewhere."""
    x2 = x * x
    t = 1.0 + x2 / 210.0 * (1.0 + x2 / 272.0)
    t = 1.0 + x2 / 110.0 * (1.0 + x2 / 156.0 * t)
    t = 1.0 + x2 / 20.0 * (1.0 + x2 / 42.0 * (1.0 + x2 / 72.0 * t))
    series = x * (1.0 + x2 / 6.0 * t)
    return tl.where(tl.abs(x) < 0.5, series, 0.5 * (tl.exp(x) - tl.exp(-x)))


@triton.jit
def _dual_tile(
    X,
    Z,
    OUT,
    C,
    n,
    m,
    d,
    depth,
    A,
    sxn,
    szn,
    son,
    BM: tl.constexpr,
    BN: tl.constexpr,
    BD: tl.constexpr,
    ACT: tl.constexpr,
    NTK: tl.constexpr,
    DEG: tl.constexpr,
    F64: tl.constexpr,
    THR: tl.constexpr,
):
    pm = tl.program_id(0)
    pn = tl.program_id(1)
    rm = (pm * BM + tl.arange(0, BM)).to(tl.int64)  # int64: n m may pass 2^31
    rn = (pn * BN + tl.arange(0, BN)).to(tl.int64)
    acc = tl.zeros((BM, BN), dtype=tl.float64 if F64 else tl.float32)
    for k0 in range(0, d, BD):
        rk = k0 + tl.arange(0, BD)
        x = tl.load(
            X + rm[:, None] * sxn + rk[None, :],
            mask=(rm[:, None] < n) & (rk[None, :] < d),
            other=0.0,
        )
        z = tl.load(
            Z + rn[:, None] * szn + rk[None, :],
            mask=(rn[:, None] < m) & (rk[None, :] < d),
            other=0.0,
        )
        acc += tl.dot(x, tl.trans(z), input_precision="ieee")
    # near pairs take rho from their distance (reference.exact_near_pairs): a tile pays for it
    # only when it holds one
    if tl.max(tl.abs(acc)) > THR:
        d2p = tl.zeros_like(acc)
        d2m = tl.zeros_like(acc)
        for kd in range(0, d):
            xk = tl.load(X + rm * sxn + kd, mask=rm < n, other=0.0)
            zk = tl.load(Z + rn * szn + kd, mask=rn < m, other=0.0)
            dp = xk[:, None] - zk[None, :]
            dm = xk[:, None] + zk[None, :]
            d2p += dp * dp
            d2m += dm * dm
        acc = tl.where(acc > THR, 1.0 - 0.5 * d2p, tl.where(acc < -THR, 0.5 * d2m - 1.0, acc))
    s = tl.minimum(tl.maximum(acc, -1.0), 1.0)
    kk = s
    for _ in range(depth):
        if ACT == 0:
            ps = tl.zeros_like(s) + tl.load(C + DEG)
            for j in tl.static_range(DEG - 1, -1, -1):
                ps = ps * s + tl.load(C + j)
            if NTK:
                dps = tl.zeros_like(s) + DEG * tl.load(C + DEG)
                for j in tl.static_range(DEG - 1, 0, -1):
                    dps = dps * s + j * tl.load(C + j)
                kk = ps + kk * dps
        else:
            # a in X's dtype (a 1-element tensor), sinh(a) by the same function as the
            # numerator: psi(1) = sinh(a) / sinh(a) = 1 exactly (1 is a repelling fixed point)
            a = tl.load(A)
            den = _sinh(a)
            ps = _sinh(a * s) / den
            if NTK:
                kk = ps + kk * (0.5 * a * (tl.exp(a * s) + tl.exp(-a * s)) / den)
        s = tl.minimum(tl.maximum(ps, -1.0), 1.0)
    res = kk if NTK else s
    tl.store(OUT + rm[:, None] * son + rn[None, :], res, mask=(rm[:, None] < n) & (rn[None, :] < m))


def dual_kernel(X, Z, *, depth, act, kind, log_domain=False):
    if log_domain or act.code not in FUSED:
        return reference.dual_kernel(X, Z, depth=depth, act=act, kind=kind, log_domain=log_domain)
    X, Z = X.contiguous(), Z.contiguous()
    n, d = X.shape
    m = Z.shape[0]
    out = torch.empty(n, m, dtype=X.dtype, device=X.device)
    coeffs = torch.tensor(act.coeffs or (0.0,), dtype=X.dtype, device=X.device)
    BM = BN = 64 if X.dtype == torch.float32 else 32
    BD = max(16, min(64, triton.next_power_of_2(d)))
    grid = (triton.cdiv(n, BM), triton.cdiv(m, BN))
    _dual_tile[grid](
        X,
        Z,
        out,
        coeffs,
        n,
        m,
        d,
        int(depth),
        torch.tensor([act.param], dtype=X.dtype, device=X.device),
        X.stride(0),
        Z.stride(0),
        out.stride(0),
        BM=BM,
        BN=BN,
        BD=BD,
        ACT=0 if act.code == POLY else 1,
        NTK=kind == "ntk",
        DEG=max(len(act.coeffs) - 1, 0),
        F64=X.dtype == torch.float64,
        THR=1.0 - reference.NEAR,
    )
    return out
