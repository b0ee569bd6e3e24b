"""Shared pieces of the Triton backends: precision, point preparation, and the distance tiles.

Distances (laplace, gaussian) come from one GEMM per tile, flash-attention style:
``||x - z||^2 = |x|^2 + |z|^2 - 2 x.z`` on points already mapped by S (S^T S = M) and centered at
the mean of the centers, with the distance rule of rfmfast.kernels: a pair whose squared
distance is at most RESOLVE (|x|^2 + |z|^2) is recomputed from differences of the original rows
(exact_dist_tile; rare, so a tile pays for it only when it holds such a pair). In gradient
weights, pairs nearer than NEAR (|x|^2 + |z|^2) and coincident pairs (distance 0) leave the tile,
and near_grads (rfmfast.ops.agop.triton) sums their terms directly on the original rows.

Difference-first tiles (sum over coordinates of (p - y)^2, or |p - y| for l1_laplace) are used
for l1_laplace and whenever r <= 8, where a GEMM would be mostly padding: exact small distances,
and the gradients then come from a tiled kernel that sums weight * (p - y) (or its sign) directly.

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

import os

import torch
import triton
import triton.language as tl

from ...kernels import RESOLVE, apply_factor, center_of, kernel_record, mahalanobis_factor

#: True when kernels run in Triton's interpreter on CPU tensors (tests on machines without GPU).
INTERPRET = os.environ.get("TRITON_INTERPRET") == "1"

PRECISIONS = ("ieee", "tf32", "bf16")
PREC_CODE = {"ieee": 0, "tf32": 1, "bf16": 2}


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


def use_direct(kernel: str, r: int) -> bool:
    """Difference-first distance tiles: always for an l1 distance (no GEMM form), and for r <= 8
    coordinates, where a GEMM would be mostly padding and resolves small distances poorly."""
    return kernel_record(kernel).distance == "l1" or r <= DIRECT_MAX_R


DIRECT_MAX_R = 8


#: pairs whose exact distance is at most NEAR (|x|^2 + |z|^2) (squared; l1: against the l1
#: norms) leave the gradient tiles and are summed directly (near_grads); NEAR < RESOLVE keeps
#: every such pair inside the region that every tile shape resolves exactly.
NEAR = RESOLVE / 4


class Points:
    """Queries and centers prepared for the distance tiles (see prepare_points)."""

    def __init__(self, P, Y, pn, yn, mu, S, precision, direct, Qo, Xo, Sx, s_mode):
        self.P, self.Y, self.pn, self.yn = P, Y, pn, yn
        self.mu, self.S, self.precision, self.direct = mu, S, precision, direct
        self.Qo, self.Xo, self.Sx, self.s_mode = Qo, Xo, Sx, s_mode

    def rows(self, i0: int, i1: int) -> Points:
        """The same centers with the queries i0:i1 only."""
        return Points(
            self.P[i0:i1],
            self.Y,
            self.pn[i0:i1],
            self.yn,
            self.mu,
            self.S,
            self.precision,
            self.direct,
            self.Qo[i0:i1],
            self.Xo,
            self.Sx,
            self.s_mode,
        )

    def rule(self, kernel: str) -> bool:
        """Whether the distance rule's exact path applies (Kernel.translates)."""
        return kernel_record(kernel).translates(self.s_mode != 0)

    def exact_args(self):
        """The exact path's arguments of the tile functions: original rows, S, d, s_mode."""
        return self.Qo, self.Xo, self.Sx, self.Qo.shape[1], self.s_mode


def prepare_points(Q: torch.Tensor, X: torch.Tensor, kernel: str, M, precision: str) -> Points:
    """Map queries Q (q, d) and centers X (n, d) for the distance tiles.

    Points fields:
      P (q, r), Y (n, r): contiguous coordinates, S-mapped and centered at mu (rounded to the
        precision for "tf32"/"bf16" GEMM tiles); r = rank of M (d for l1_laplace, or M diagonal
        or None); Y is P when Q is X;
      pn (q,), yn (n,): squared norms of the rows (l1 norms for l1_laplace);
      mu (d,): the mean of X in the original coordinates (the translation applied);
      S: the factor from mahalanobis_factor (None, (d,) or (r, d));
      precision: the one in effect ("ieee" for difference-first tiles); direct: use_direct.
    Memory: O((q + n) r) beyond the inputs (transiently in float64 for a full M).
    """
    S64 = mahalanobis_factor(M, kernel, dtype=torch.float64)
    S = None if S64 is None else S64.to(X.dtype)
    k = kernel_record(kernel)
    if not k.translates(S is not None):
        mu64 = torch.zeros(X.shape[1], dtype=torch.float64, device=X.device)
    else:
        mu64 = center_of(X).to(torch.float64)
    mu = mu64.to(X.dtype)
    same = Q is X

    def mapped(Z):
        if S64 is not None and S64.ndim == 2:
            # a full factor maps in float64 (whatever torch's TF32 setting), then rounds once
            return apply_factor(Z.to(torch.float64) - mu64, S64).to(X.dtype)
        return apply_factor(Z - mu, S)

    P = mapped(Q)
    Y = P if same else mapped(X)
    direct = use_direct(kernel, P.shape[1])
    if direct:
        precision = "ieee"
    P = round_to(P, precision).contiguous()
    Y = P if same else round_to(Y, precision).contiguous()
    if k.distance == "l1":
        pn = P.abs().sum(1)
        yn = pn if same else Y.abs().sum(1)
    else:
        pn = (P * P).sum(1)
        yn = pn if same else (Y * Y).sum(1)
    s_mode = 0 if S is None else (1 if S.ndim == 1 else 2)
    Sx = (S if S is not None else torch.zeros(1, dtype=X.dtype, device=X.device)).contiguous()
    Qo = Q.contiguous()
    Xo = Qo if same else X.contiguous()
    return Points(P, Y, pn, yn, mu, S, precision, direct, Qo, Xo, Sx, s_mode)


def block_k(r: int, tensor_cores: bool) -> int:
    """Coordinates per tl.dot step. Tensor cores (tf32, bf16): all of them up to 128 (the query
    tile is then loaded once per program), else 32 at a time. The FMA-unit dot ("ieee",
    float64) keeps its operands in registers per k: 16 at a time."""
    if not tensor_cores:
        return 16
    p = max(16, triton.next_power_of_2(r))
    return p if p <= 128 else 32


@triton.jit
def round_tf32_tile(a):
    """Round a float32 tile to nearest tf32 (so the tensor cores' truncation is a no-op)."""
    b = a.to(tl.int32, bitcast=True)
    b = (b + 0xFFF + ((b >> 13) & 1)) & -8192
    return b.to(tl.float32, bitcast=True)


@triton.jit
def dot_points(p, y, PREC: tl.constexpr, INTERP: tl.constexpr):
    """p (BN, BK) . y (BM, BK)^T with the distance precision (inputs already rounded).

    The interpreter's bf16 tl.dot is broken (triton 3.9), and the operands are exactly
    representable in bf16 anyway: there the float32 product is the same computation."""
    if PREC == 2:
        if INTERP:
            g = tl.dot(p, tl.trans(y), input_precision="ieee")
        else:
            g = tl.dot(p.to(tl.bfloat16), tl.trans(y.to(tl.bfloat16)))
    elif PREC == 1:
        g = tl.dot(p, tl.trans(y), input_precision="tf32")
    else:
        g = tl.dot(p, tl.trans(y), input_precision="ieee")
    return g


@triton.jit
def exact_dist_tile(
    xo_ptr,
    zo_ptr,
    s_ptr,
    rows,
    cols,
    q,
    n,
    d,
    r,
    flag,
    SQUARED: tl.constexpr,
    S_MODE: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_M: tl.constexpr,
):
    """The distance rule's exact path: ||S (x - z)||^2 (SQUARED) or ||S (x - z)||_1 between
    the original rows Xo[rows] and Zo[cols], (BN, BM), from coordinate differences (0 for
    identical rows). S_MODE: 0 none, 1 diagonal s (d,), 2 matrix S (r, d); for a matrix the
    r d pass runs only when a flagged pair is not a pair of identical rows (self-pairs cost d)."""
    rmask = rows < q
    cmask = cols < n
    acc = tl.zeros((BLOCK_N, BLOCK_M), dtype=xo_ptr.dtype.element_ty)
    for k in range(0, d):
        xk = tl.load(xo_ptr + rows * d + k, mask=rmask, other=0.0)
        zk = tl.load(zo_ptr + cols * d + k, mask=cmask, other=0.0)
        diff = xk[:, None] - zk[None, :]
        if S_MODE == 1:
            diff = diff * tl.load(s_ptr + k)
        if SQUARED:
            acc += diff * diff
        else:
            acc += tl.abs(diff)
    if S_MODE == 2:
        distinct = flag & (acc > 0)
        if tl.max(distinct.to(tl.int32)) > 0:
            full = tl.zeros((BLOCK_N, BLOCK_M), dtype=xo_ptr.dtype.element_ty)
            for j in range(0, r):
                u = tl.zeros((BLOCK_N, BLOCK_M), dtype=xo_ptr.dtype.element_ty)
                for k in range(0, d):
                    sk = tl.load(s_ptr + j * d + k)
                    xk = tl.load(xo_ptr + rows * d + k, mask=rmask, other=0.0)
                    zk = tl.load(zo_ptr + cols * d + k, mask=cmask, other=0.0)
                    u += sk * (xk[:, None] - zk[None, :])
                if SQUARED:
                    full += u * u
                else:
                    full += tl.abs(u)
            acc = tl.where(acc > 0, full, 0.0)
        else:
            acc = tl.zeros((BLOCK_N, BLOCK_M), dtype=xo_ptr.dtype.element_ty)
    return acc


@triton.jit
def sq_dist_tile(
    p_ptr,
    y_ptr,
    pn_ptr,
    yn_ptr,
    rows,
    cols,
    q,
    n,
    r,
    resolve,
    eps_abs,
    p_tile,
    xo_ptr,
    zo_ptr,
    s_ptr,
    d,
    S_MODE: tl.constexpr,
    P_RESIDENT: tl.constexpr,
    PREC: tl.constexpr,
    INTERP: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_K: tl.constexpr,
):
    """Squared distances (BN, BM) between P[rows] and Y[cols] (rows/cols int64 offsets).

    Returns (d2, coincident, s): d2 clamped at 0; pairs with d2 <= resolve * s
    (s = |p|^2 + |y|^2) recomputed by exact_dist_tile (the distance rule, rfmfast.kernels);
    coincident where d2 <= eps_abs (EPS^2) after that.
    With P_RESIDENT the caller passes P's tile (BN, BLOCK_K) already loaded (r <= BLOCK_K).
    """
    rmask = rows < q
    cmask = cols < n
    kk = tl.arange(0, BLOCK_K)
    if P_RESIDENT:
        y = tl.load(
            y_ptr + cols[:, None] * r + kk[None, :],
            mask=cmask[:, None] & (kk[None, :] < r),
            other=0.0,
        )
        g = dot_points(p_tile, y, PREC, INTERP)
    else:
        g = tl.zeros((BLOCK_N, BLOCK_M), dtype=p_ptr.dtype.element_ty)
        for k0 in range(0, r, BLOCK_K):
            kmask = (k0 + kk) < r
            p = tl.load(
                p_ptr + rows[:, None] * r + (k0 + kk)[None, :],
                mask=rmask[:, None] & kmask[None, :],
                other=0.0,
            )
            y = tl.load(
                y_ptr + cols[:, None] * r + (k0 + kk)[None, :],
                mask=cmask[:, None] & kmask[None, :],
                other=0.0,
            )
            g += dot_points(p, y, PREC, INTERP)
    pn = tl.load(pn_ptr + rows, mask=rmask, other=0.0)
    yn = tl.load(yn_ptr + cols, mask=cmask, other=0.0)
    s = pn[:, None] + yn[None, :]
    d2 = tl.maximum(s - 2.0 * g, 0.0)
    flag = (d2 <= resolve * s) & rmask[:, None] & cmask[None, :]
    if tl.max(flag.to(tl.int32)) > 0:  # rare: near pairs, self-pairs
        ex = exact_dist_tile(
            xo_ptr, zo_ptr, s_ptr, rows, cols, q, n, d, r, flag, True, S_MODE, BLOCK_N, BLOCK_M
        )
        d2 = tl.where(flag, ex, d2)
    coincident = d2 <= eps_abs
    d2 = tl.where(coincident, 0.0, d2)
    return d2, coincident, s


@triton.jit
def direct_dist_tile(
    p_ptr,
    y_ptr,
    pn_ptr,
    yn_ptr,
    rows,
    cols,
    q,
    n,
    r,
    resolve,
    eps_abs,
    xo_ptr,
    zo_ptr,
    s_ptr,
    d,
    S_MODE: tl.constexpr,
    SQUARED: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_K: tl.constexpr,
):
    """Difference-first distances between P[rows] and Y[cols] as a (BN, BM) tile:
    sum_k (P - Y)^2 if SQUARED, else sum_k |P - Y| (l1).

    Returns (dist, coincident, s): pairs with dist <= resolve * s (s = pn + yn, the squared or
    l1 norms of the mapped, centered points) are recomputed from the original rows
    (exact_dist_tile: the mapping's rounding leaves them), coincident where dist <= eps_abs.
    """
    rmask = rows < q
    cmask = cols < n
    kk = tl.arange(0, BLOCK_K)
    acc = tl.zeros((BLOCK_N, BLOCK_M), dtype=p_ptr.dtype.element_ty)
    for k0 in range(0, r, BLOCK_K):
        kmask = (k0 + kk) < r
        p = tl.load(
            p_ptr + rows[:, None] * r + (k0 + kk)[None, :],
            mask=rmask[:, None] & kmask[None, :],
            other=0.0,
        )
        y = tl.load(
            y_ptr + cols[:, None] * r + (k0 + kk)[None, :],
            mask=cmask[:, None] & kmask[None, :],
            other=0.0,
        )
        diff = p[:, None, :] - y[None, :, :]
        if SQUARED:
            acc += tl.sum(diff * diff, axis=2)
        else:
            acc += tl.sum(tl.abs(diff), axis=2)
    pn = tl.load(pn_ptr + rows, mask=rmask, other=0.0)
    yn = tl.load(yn_ptr + cols, mask=cmask, other=0.0)
    s = pn[:, None] + yn[None, :]
    flag = (acc <= resolve * s) & rmask[:, None] & cmask[None, :]
    if tl.max(flag.to(tl.int32)) > 0:
        ex = exact_dist_tile(
            xo_ptr, zo_ptr, s_ptr, rows, cols, q, n, d, r, flag, SQUARED, S_MODE, BLOCK_N, BLOCK_M
        )
        acc = tl.where(flag, ex, acc)
    coincident = acc <= eps_abs
    acc = tl.where(coincident, 0.0, acc)
    return acc, coincident, s


def consts(pts: Points, kernel: str, bandwidth: float, *extra) -> torch.Tensor:
    """Scalars for a launch, in the points' dtype (a float argument would be float32):
    [exp2 scale (hi), RESOLVE, absolute EPS rule (EPS^2, or EPS for l1), NEAR, exp2 scale (lo),
    *extra].
    RESOLVE and NEAR are 0 where the tiles' differences are of the original coordinates
    (l1_laplace without M: no translation, no mapping), which are exact already."""
    k = kernel_record(kernel)
    rule = pts.rule(kernel)
    c2 = k.exp2_scale(bandwidth)
    hi = float(torch.tensor(c2, dtype=pts.P.dtype))
    vals = [hi, RESOLVE if rule else 0.0, k.coincident_eps, NEAR if rule else 0.0, c2 - hi, *extra]
    return torch.tensor(vals, dtype=pts.P.dtype, device=pts.P.device)


@triton.jit
def kernel_epilogue(d2, coincident, consts_ptr, KERNEL: tl.constexpr, WEIGHT: tl.constexpr):
    """Kernel values (WEIGHT=False) or gradient weights (WEIGHT=True) from a distance tile.

    laplace: K = exp2(c2 sqrt(d2)); weight K / dist, 0 where coincident.
    gaussian: K = exp2(c2 d2); weight K.  l1_laplace: d2 holds the l1 distance; K = exp2(c2 d2).
    c2 = c2_hi + c2_lo (consts 0 and 4): the scale's rounding would otherwise bias every entry
    by |exponent| eps.
    """
    c2 = tl.load(consts_ptr)
    c2lo = tl.load(consts_ptr + 4)
    if KERNEL == 0:
        inv = tl.math.rsqrt(tl.where(coincident, 1.0, d2))
        dist = tl.where(coincident, 0.0, d2 * inv)
        k = tl.exp2(dist * c2 + dist * c2lo)
        if WEIGHT:
            k = tl.where(coincident, 0.0, k * inv)
    else:
        k = tl.exp2(d2 * c2 + d2 * c2lo)
    return k


@triton.jit
def drop_near(w, dist, coincident, s, near):
    """Gradient weights without the pairs that near_grads sums directly: coincident ones and
    those with (exact) distance <= near * s."""
    return tl.where(coincident | (dist <= near * s), 0.0, w)


def interpret_configs(configs, small):
    """The autotune list: ``configs`` on a GPU, the single ``small`` config in the interpreter.

    RFMFAST_TRITON_AUTOTUNE=0 keeps only the first GPU config (no tuning runs: quick tests).
    """
    if INTERPRET:
        return [small]
    return configs[:1] if os.environ.get("RFMFAST_TRITON_AUTOTUNE") == "0" else configs


def check_device(*ts: torch.Tensor) -> None:
    """Triton kernels take CUDA tensors (CPU tensors only under TRITON_INTERPRET=1)."""
    for t in ts:
        if t is not None and t.device.type != "cuda" and not INTERPRET:
            raise ValueError(
                f"the triton backend takes CUDA tensors, got one on {t.device} "
                "(set TRITON_INTERPRET=1 before importing rfmfast to run on CPU)"
            )
