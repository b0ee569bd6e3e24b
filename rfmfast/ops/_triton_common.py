"""Shared pieces of the Triton backends: precision, point preparation, and the distance tiles.

Distances (laplace, gaussian) come from one GEMM per tile, flash-attention style:
``||x - z||^2 = |x|^2 + |z|^2 - 2 x.z`` on points already mapped by S (S^T S = M) and centered at
the mean of the centers (translation changes no distance but shrinks |x|^2 + |z|^2, hence the
cancellation error). The squared distance is clamped at 0, and a pair whose squared distance is
within the rounding floor of this formula,
``d2 <= tau * (|x|^2 + |z|^2)`` with ``tau = (r + 2) * eps(dtype)`` (r = rank of M),
counts as coincident (distance 0): that is the ``< EPS`` rule of MATH.md widened to what the
GEMM can resolve, and it is what keeps the Laplace self-pair out of the gradient weights.

Precision of the distance GEMM (float32 inputs; float64 inputs always run in float64):
    "ieee"  float32 products and sums (no tensor-core rounding); the default
    "tf32"  points rounded to tf32 (10-bit mantissa) once, then a tf32 tensor-core GEMM
    "bf16"  points rounded to bfloat16 (7-bit mantissa) once, then a bf16 tensor-core GEMM
The norms are taken from the rounded points, so a reduced precision computes the exact distances
of slightly moved points (relative move 2^-11 or 2^-8), accumulated in float32. The second GEMM
(weights @ values) is float32 for "ieee" and tf32 (weights rounded to nearest in the kernel)
otherwise. The default comes from the environment variable RFMFAST_TRITON_PRECISION.
"""
from __future__ import annotations

import math
import os

import torch
import triton
import triton.language as tl

from ..kernels import apply_factor, mahalanobis_factor

#: True when kernels run in Triton's interpreter on CPU tensors (tests on machines without GPU).
INTERPRET = os.environ.get("TRITON_INTERPRET") == "1"

PRECISIONS = ("ieee", "tf32", "bf16")
PREC_CODE = {"ieee": 0, "tf32": 1, "bf16": 2}

LOG2E = math.log2(math.e)


def resolve_precision(precision: str | None, dtype: torch.dtype) -> str:
    """The precision to use: the argument, else $RFMFAST_TRITON_PRECISION, else "ieee".

    float64 inputs always compute in float64 ("ieee"); the setting applies to float32 inputs.
    """
    p = precision if precision is not None else os.environ.get("RFMFAST_TRITON_PRECISION", "ieee")
    if p not in PRECISIONS:
        src = "precision" if precision is not None else "RFMFAST_TRITON_PRECISION"
        raise ValueError(f"{src}={p!r} is not one of {', '.join(PRECISIONS)}")
    return "ieee" if dtype == torch.float64 else p


def round_tf32(x: torch.Tensor) -> torch.Tensor:
    """float32 rounded to nearest (ties to even) with a 10-bit mantissa, as float32."""
    b = x.contiguous().view(torch.int32)
    b = (b + 0xFFF + ((b >> 13) & 1)) & -8192
    return b.view(torch.float32)


def round_to(x: torch.Tensor, precision: str) -> torch.Tensor:
    if x.dtype != torch.float32 or precision == "ieee":
        return x
    if precision == "tf32":
        return round_tf32(x)
    return x.to(torch.bfloat16).to(torch.float32)


def coincidence_tau(r: int, dtype: torch.dtype, kernel: str) -> float:
    """Relative rounding floor of |x|^2 + |z|^2 - 2 x.z for r coordinates (see module doc);
    for l1_laplace, of the l1 distance between two S-mappings of one point (4x wider)."""
    return (r + 2) * torch.finfo(dtype).eps * (4 if kernel == "l1_laplace" else 1)


def prepare_points(Q: torch.Tensor, X: torch.Tensor, kernel: str, M, precision: str):
    """Map queries Q (q, d) and centers X (n, d) for the distance tiles.

    Returns (P, Y, pn, yn, mu, S):
      P (q, r), Y (n, r): contiguous coordinates, S-mapped and centered at mu (rounded to the
        precision for "tf32"/"bf16"); r = rank of M (d for l1_laplace or M diagonal/None);
      pn (q,), yn (n,): squared norms of P and Y rows (l1 norms for l1_laplace);
      mu (d,): the mean of X in the original coordinates (the translation applied);
      S: the factor from mahalanobis_factor (None, (d,) or (r, d)).
    Memory: O((q + n) r) beyond the inputs.
    """
    S = mahalanobis_factor(M, kernel, dtype=X.dtype)
    mu = X.mean(0, dtype=torch.float64).to(X.dtype)
    P = apply_factor(Q - mu, S)
    Y = P if Q is X else apply_factor(X - mu, S)
    P = round_to(P, precision).contiguous()
    Y = P if Q is X else round_to(Y, precision).contiguous()
    if kernel == "l1_laplace":
        pn = P.abs().sum(1)
        yn = pn if Q is X else Y.abs().sum(1)
    else:
        pn = (P * P).sum(1)
        yn = pn if Q is X else (Y * Y).sum(1)
    return P, Y, pn, yn, mu, S


def block_k(r: int) -> int:
    """Chunk of coordinates per tl.dot: all of them up to 128 (loaded once), else 64 at a time."""
    p = max(16, triton.next_power_of_2(r))
    return p if p <= 128 else 64


@triton.jit
def round_tf32_tile(a):
    """Round a float32 tile to nearest tf32 (so the tensor cores' truncation is a no-op)."""
    b = a.to(tl.int32, bitcast=True)
    b = (b + 0xFFF + ((b >> 13) & 1)) & -8192
    return b.to(tl.float32, bitcast=True)


@triton.jit
def dot_points(p, y, PREC: tl.constexpr, INTERP: tl.constexpr):
    """p (BN, BK) . y (BM, BK)^T with the distance precision (inputs already rounded)."""
    if PREC == 2 and not INTERP:
        return tl.dot(p.to(tl.bfloat16), tl.trans(y.to(tl.bfloat16)))
    elif PREC == 1:
        return tl.dot(p, tl.trans(y), input_precision="tf32")
    else:
        return tl.dot(p, tl.trans(y), input_precision="ieee")


@triton.jit
def sq_dist_tile(p_ptr, y_ptr, pn_ptr, yn_ptr, rows, cols, q, n, r, tau, p_tile,
                 P_RESIDENT: tl.constexpr, PREC: tl.constexpr, INTERP: tl.constexpr,
                 BLOCK_N: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_K: tl.constexpr):
    """Squared distances (BN, BM) between P[rows] and Y[cols] (rows/cols int64 offsets).

    Returns (d2, coincident): d2 clamped at 0 and set to 0 where coincident (see module doc).
    With P_RESIDENT the caller passes P's tile (BN, BLOCK_K) already loaded (r <= BLOCK_K).
    """
    rmask = rows < q
    cmask = cols < n
    kk = tl.arange(0, BLOCK_K)
    if P_RESIDENT:
        y = tl.load(y_ptr + cols[:, None] * r + kk[None, :],
                    mask=cmask[:, None] & (kk[None, :] < r), other=0.0)
        g = dot_points(p_tile, y, PREC, INTERP)
    else:
        g = tl.zeros((BLOCK_N, BLOCK_M), dtype=p_ptr.dtype.element_ty)
        for k0 in range(0, r, BLOCK_K):
            kmask = (k0 + kk) < r
            p = tl.load(p_ptr + rows[:, None] * r + (k0 + kk)[None, :],
                        mask=rmask[:, None] & kmask[None, :], other=0.0)
            y = tl.load(y_ptr + cols[:, None] * r + (k0 + kk)[None, :],
                        mask=cmask[:, None] & kmask[None, :], other=0.0)
            g += dot_points(p, y, PREC, INTERP)
    pn = tl.load(pn_ptr + rows, mask=rmask, other=0.0)
    yn = tl.load(yn_ptr + cols, mask=cmask, other=0.0)
    s = pn[:, None] + yn[None, :]
    d2 = tl.maximum(s - 2.0 * g, 0.0)
    coincident = d2 <= tau * s
    d2 = tl.where(coincident, 0.0, d2)
    return d2, coincident


@triton.jit
def l1_dist_tile(p_ptr, y_ptr, pn_ptr, yn_ptr, rows, cols, q, n, r, tau,
                 BLOCK_N: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_K: tl.constexpr):
    """l1 distances sum_k |P[rows, k] - Y[cols, k]| as a (BN, BM) tile, exact differences.

    Returns (dist, coincident): pairs with dist <= tau (|p|_1 + |y|_1) (pn, yn hold the l1
    norms) count as coincident and get distance 0, so that a point mapped twice by S (as a query
    and as a center) is recognised as the same point despite rounding.
    """
    rmask = rows < q
    cmask = cols < n
    kk = tl.arange(0, BLOCK_K)
    acc = tl.zeros((BLOCK_N, BLOCK_M), dtype=p_ptr.dtype.element_ty)
    for k0 in range(0, r, BLOCK_K):
        kmask = (k0 + kk) < r
        p = tl.load(p_ptr + rows[:, None] * r + (k0 + kk)[None, :],
                    mask=rmask[:, None] & kmask[None, :], other=0.0)
        y = tl.load(y_ptr + cols[:, None] * r + (k0 + kk)[None, :],
                    mask=cmask[:, None] & kmask[None, :], other=0.0)
        acc += tl.sum(tl.abs(p[:, None, :] - y[None, :, :]), axis=2)
    pn = tl.load(pn_ptr + rows, mask=rmask, other=0.0)
    yn = tl.load(yn_ptr + cols, mask=cmask, other=0.0)
    coincident = acc <= tau * (pn[:, None] + yn[None, :])
    acc = tl.where(coincident, 0.0, acc)
    return acc, coincident


def kernel_code(kernel: str) -> int:
    return {"laplace": 0, "gaussian": 1, "l1_laplace": 2}[kernel]


def exp2_scale(kernel: str, bandwidth: float) -> float:
    """c with K = exp2(c * dist) (laplace, l1_laplace) or exp2(c * dist^2) (gaussian)."""
    if kernel == "gaussian":
        return -LOG2E / (2.0 * bandwidth * bandwidth)
    return -LOG2E / bandwidth


@triton.jit
def kernel_epilogue(d2, coincident, c2, KERNEL: tl.constexpr, WEIGHT: tl.constexpr):
    """Kernel values (WEIGHT=False) or gradient weights (WEIGHT=True) from a distance tile.

    laplace: K = exp2(c2 sqrt(d2)); weight K / dist, 0 where coincident.
    gaussian: K = exp2(c2 d2); weight K.  l1_laplace: d2 holds the l1 distance; K = exp2(c2 d2).
    """
    if KERNEL == 0:
        inv = tl.math.rsqrt(tl.where(coincident, 1.0, d2))
        dist = tl.where(coincident, 0.0, d2 * inv)
        k = tl.exp2(dist * c2)
        if WEIGHT:
            k = tl.where(coincident, 0.0, k * inv)
    else:
        k = tl.exp2(d2 * c2)
    return k


def interpret_configs(configs, small):
    """The autotune list: ``configs`` on a GPU, the single ``small`` config in the interpreter."""
    return [small] if INTERPRET else configs


def check_device(*ts: torch.Tensor) -> None:
    """Triton kernels take CUDA tensors (CPU tensors only under TRITON_INTERPRET=1)."""
    for t in ts:
        if t is not None and t.device.type != "cuda" and not INTERPRET:
            raise ValueError(f"the triton backend takes CUDA tensors, got one on {t.device} "
                             "(set TRITON_INTERPRET=1 before importing rfmfast to run on CPU)")
