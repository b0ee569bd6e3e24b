"""Triton kernel_grads and agop: gradients of a kernel predictor and their average outer product.

laplace / gaussian (docs/math.md): with the weight tile A (K / dist, or K) and the value matrix
V = [alpha_1 * X | ... | alpha_c * X | alpha], one fused pass (rfmfast.ops._triton.product,
WEIGHT=True, V built on the fly from X and alpha) gives AV = A V (q, c d + c), and

    H_c = s (w_c * Q - AV_c),  w_c = A alpha_c,   grad f_c = H_c M   (s = grad_scale)

with Q and X translated by the mean of X (which changes nothing but the rounding).
l1_laplace: grad f_c = s S sum_i alpha_ic K_i sign(S(x - x_i)) needs a sign per pair and
coordinate: a tiled kernel over (query block, coordinate block, output) gives
H_c = s sum_i alpha_ic K_i sign(p - p_i) in the mapped coordinates p = S x, and grad = H S.
The same kernel, with (p - p_i) in place of the sign and the weights A, serves laplace and
gaussian when r <= 8 (difference-first tiles, rfmfast.ops._triton.common): grad = H S there,
since S^T S = M.

agop accumulates over query chunks: sum_c H_c^T H_c (or the diagonal of G^T G, G = H F), then
applies F = M (or S) on both sides, F^T (sum H^T H) F, so gradients exist one chunk at a time.
Centering uses the first chunk's mean gradient as a shift
(sum (H - h0)^T (H - h0) - q (hbar - h0)(hbar - h0)^T), which keeps the subtraction well
conditioned.

RFMFAST_TRITON_AGOP=two_stage (laplace and gaussian with r > 8) replaces the fused pass by two
steps per chunk of queries: the weight matrix A (chunk, n) from the Triton tile kernel
(rfmfast.ops._triton.matrix), then AV = A V by torch's matmul (cuBLAS; TF32 unless the
precision is "ieee"), with V (n, c d + c) stored once. It trades memory, O(n (c d + c) + 2^28)
entries, for doing the distance tiles once instead of once per column block of V, which on a
GPU is much faster (docs/benchmarks.md, `rfmfast bench --only agop --device cuda`). So the
default, "auto", is two_stage whenever V takes at most 1 GB (2^28 float32 entries, 2^27
float64), and fused (O(d^2 + chunk (c d + c)) memory) beyond; RFMFAST_TRITON_AGOP=fused or
two_stage forces one.
Memory (two_stage): V, n (c d + c) entries, plus A, max(2^28, 16 n) entries (a chunk is at least
16 queries), plus the fused path's O(d^2).

Memory (fused): kernel_grads, its (q, c, d) output plus O((q + n) d); agop,
O(d^2 + chunk (c d + c)) with chunk * (c d + c) <= 2^26 entries (256 MB in float32); never q x n.
"""

from __future__ import annotations

import os

import torch
import triton
import triton.language as tl

from ...kernels import apply_M, kernel_record
from .._triton import common
from .._triton.matrix import tile_matrix
from .._triton.product import direct_block_k, fused_product
from .reduction import agop_from_gradients

_CHUNK_ENTRIES = 1 << 26  # of AV (chunk, c d + c), fused
_TWO_STAGE_ENTRIES = 1 << 28  # of A (chunk, n), two_stage
_AUTO_V_BYTES = 1 << 30  # "auto": two_stage while V (n, c d + c) takes at most this
METHODS = ("auto", "fused", "two_stage")


def agop_method() -> str:
    """$RFMFAST_TRITON_AGOP: "auto" (the default), "fused" or "two_stage" (module doc)."""
    m = os.environ.get("RFMFAST_TRITON_AGOP", "auto")
    if m not in METHODS:
        raise ValueError(f"RFMFAST_TRITON_AGOP={m!r} is not one of {', '.join(METHODS)}")
    return m


def use_two_stage(n: int, c: int, d: int, itemsize: int = 4) -> bool:
    m = agop_method()
    return m == "two_stage" or (m == "auto" and n * (c * d + c) * itemsize <= _AUTO_V_BYTES)


def _value_gemm(A, V, precision):
    """A @ V in float32 ("ieee") or TF32 (otherwise), whatever torch's global TF32 setting.
    Off the GPU (the interpreter's tests) TF32 is emulated by rounding both operands."""
    if precision == "ieee" or A.dtype != torch.float32:
        prev, torch.backends.cuda.matmul.allow_tf32 = torch.backends.cuda.matmul.allow_tf32, False
    elif A.is_cuda:
        prev, torch.backends.cuda.matmul.allow_tf32 = torch.backends.cuda.matmul.allow_tf32, True
    else:
        return common.round_tf32(A) @ common.round_tf32(V)
    try:
        return A @ V
    finally:
        torch.backends.cuda.matmul.allow_tf32 = prev


_DIRECT_CONFIGS = [
    triton.Config({"BLOCK_Q": bq, "BLOCK_N": bn}, num_warps=w, num_stages=1)
    for bq, bn, w in [(32, 32, 4), (64, 32, 4), (32, 64, 8)]
]
_SMALL = triton.Config({"BLOCK_Q": 16, "BLOCK_N": 16}, num_warps=1, num_stages=1)


@triton.autotune(
    common.interpret_configs(_DIRECT_CONFIGS, _SMALL), key=["r", "KERNEL", "BLOCK_K", "BLOCK_R"]
)
@triton.jit
def _direct_grads(
    p_ptr,
    y_ptr,
    pn_ptr,
    yn_ptr,
    a_ptr,
    h_ptr,
    consts_ptr,
    q,
    n,
    r,
    c,
    xo_ptr,
    zo_ptr,
    s_ptr,
    d,
    S_MODE: tl.constexpr,
    KERNEL: tl.constexpr,
    BLOCK_Q: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_K: tl.constexpr,
    BLOCK_R: tl.constexpr,
):
    """h[rows, ci, kc] = s sum_j A(P[rows], Y[j]) alpha[j, ci] f(P[rows, kc] - Y[j, kc]),
    f = sign for l1_laplace (A = K), the identity otherwise (A = K / dist, or K).

    Difference-first throughout (exact small distances). Grid: (query blocks, coordinate
    blocks of BLOCK_R, outputs c); the distance tile is recomputed per coordinate block.
    h: (q, c, r) contiguous.
    """
    pid_q = tl.program_id(0)
    pid_r = tl.program_id(1)
    ci = tl.program_id(2).to(tl.int64)
    rows = (pid_q * BLOCK_Q + tl.arange(0, BLOCK_Q)).to(tl.int64)
    kc = (pid_r * BLOCK_R + tl.arange(0, BLOCK_R)).to(tl.int64)
    rmask = rows < q
    kmask = kc < r
    resolve = tl.load(consts_ptr + 1)
    eps_abs = tl.load(consts_ptr + 2)
    near = tl.load(consts_ptr + 3)
    s = tl.load(consts_ptr + 5)
    p = tl.load(
        p_ptr + rows[:, None] * r + kc[None, :], mask=rmask[:, None] & kmask[None, :], other=0.0
    )
    acc = tl.zeros((BLOCK_Q, BLOCK_R), dtype=p_ptr.dtype.element_ty)
    for n0 in range(0, n, BLOCK_N):
        cols = (n0 + tl.arange(0, BLOCK_N)).to(tl.int64)
        cmask = cols < n
        dist, coincident, sn = common.direct_dist_tile(
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
            S_MODE,
            KERNEL != 2,
            BLOCK_Q,
            BLOCK_N,
            BLOCK_K,
        )
        a = tl.load(a_ptr + cols * c + ci, mask=cmask, other=0.0)
        w = common.kernel_epilogue(dist, coincident, consts_ptr, KERNEL, True)
        w = common.drop_near(w, dist, coincident, sn, near)
        w = tl.where(~cmask[None, :], 0.0, w * a[None, :])
        y = tl.load(
            y_ptr + cols[:, None] * r + kc[None, :], mask=cmask[:, None] & kmask[None, :], other=0.0
        )
        diff = p[:, None, :] - y[None, :, :]
        if KERNEL == 2:
            diff = tl.where(diff > 0, 1.0, tl.where(diff < 0, -1.0, 0.0))
        acc += tl.sum(w[:, :, None] * diff, axis=1)
    tl.store(
        h_ptr + rows[:, None] * (c * r) + ci * r + kc[None, :],
        s * acc,
        mask=rmask[:, None] & kmask[None, :],
    )


def _direct_h(pts, alpha, kernel, bandwidth):
    """H (q, c, r) on difference-first points, in the mapped coordinates (grad = H S)."""
    q, r = pts.P.shape
    n, c = alpha.shape
    h = torch.empty(q, c, r, dtype=pts.P.dtype, device=pts.P.device)
    consts = common.consts(pts, kernel, bandwidth, kernel_record(kernel).grad_scale(bandwidth))
    bk = direct_block_k(r)
    br = min(16 if common.INTERPRET else 8, triton.next_power_of_2(r))
    xo, zo, sx, d, s_mode = pts.exact_args()
    grid = lambda meta: (triton.cdiv(q, meta["BLOCK_Q"]), triton.cdiv(r, br), c)  # noqa: E731
    _direct_grads[grid](
        pts.P,
        pts.Y,
        pts.pn,
        pts.yn,
        alpha,
        h,
        consts,
        q,
        n,
        r,
        c,
        xo,
        zo,
        sx,
        d,
        S_MODE=s_mode,
        KERNEL=kernel_record(kernel).code,
        BLOCK_K=bk,
        BLOCK_R=br,
    )
    return h


@triton.autotune(
    common.interpret_configs(_DIRECT_CONFIGS, _SMALL),
    key=["r", "d", "KERNEL", "DIRECT", "MAPPED", "S_MODE", "BLOCK_K", "BLOCK_R"],
    reset_to_zero=["h_ptr"],
)  # it accumulates into h: each tuning run from zero
@triton.jit
def _near_grads(
    p_ptr,
    y_ptr,
    pn_ptr,
    yn_ptr,
    xo_ptr,
    zo_ptr,
    s_ptr,
    a_ptr,
    h_ptr,
    consts_ptr,
    q,
    n,
    r,
    d,
    c,
    ro,
    S_MODE: tl.constexpr,
    KERNEL: tl.constexpr,
    DIRECT: tl.constexpr,
    MAPPED: tl.constexpr,
    PREC: tl.constexpr,
    INTERP: tl.constexpr,
    BLOCK_Q: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_K: tl.constexpr,
    BLOCK_R: tl.constexpr,
):
    """h[rows, ci, k] += s sum_j w_ij alpha_jc f_k(x_i - x_j) over the near pairs only (exact
    distance <= NEAR (|p|^2 + |y|^2), not coincident: the pairs the gradient tiles drop), from
    differences of the original rows: f = the difference (original coordinates, ro = d), or
    with MAPPED the difference mapped by S (ro = r); its sign for l1_laplace.

    One program per block of queries: each distance tile is computed once, and only a tile that
    holds a near pair does more (every output and coordinate block, read-add-write of the
    program's own rows of h). h: (q, c, ro) contiguous, zero on entry."""
    pid_q = tl.program_id(0)
    rows = (pid_q * BLOCK_Q + tl.arange(0, BLOCK_Q)).to(tl.int64)
    rmask = rows < q
    resolve = tl.load(consts_ptr + 1)
    eps_abs = tl.load(consts_ptr + 2)
    nearc = tl.load(consts_ptr + 3)
    s = tl.load(consts_ptr + 5)
    for n0 in range(0, n, BLOCK_N):
        cols = (n0 + tl.arange(0, BLOCK_N)).to(tl.int64)
        cmask = cols < n
        if DIRECT:
            dist, coincident, sn = common.direct_dist_tile(
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
                S_MODE,
                KERNEL != 2,
                BLOCK_Q,
                BLOCK_N,
                BLOCK_K,
            )
        else:
            p_tile = tl.zeros((BLOCK_Q, BLOCK_K), dtype=p_ptr.dtype.element_ty)
            dist, coincident, sn = common.sq_dist_tile(
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
                S_MODE,
                False,
                PREC,
                INTERP,
                BLOCK_Q,
                BLOCK_N,
                BLOCK_K,
            )
        near = (dist <= nearc * sn) & ~coincident & rmask[:, None] & cmask[None, :]
        if tl.max(near.to(tl.int32)) > 0:  # rare
            w0 = common.kernel_epilogue(dist, coincident, consts_ptr, KERNEL, True)
            w0 = tl.where(near, w0, 0.0)
            for k0 in range(0, ro, BLOCK_R):
                kc = (k0 + tl.arange(0, BLOCK_R)).to(tl.int64)
                kmask = kc < ro
                if MAPPED and S_MODE == 2:
                    u = tl.zeros((BLOCK_Q, BLOCK_N, BLOCK_R), dtype=p_ptr.dtype.element_ty)
                    for k in range(0, d):
                        xk = tl.load(xo_ptr + rows * d + k, mask=rmask, other=0.0)
                        zk = tl.load(zo_ptr + cols * d + k, mask=cmask, other=0.0)
                        sk = tl.load(s_ptr + kc * d + k, mask=kmask, other=0.0)
                        u += (xk[:, None] - zk[None, :])[:, :, None] * sk[None, None, :]
                else:
                    xk = tl.load(
                        xo_ptr + rows[:, None] * d + kc[None, :],
                        mask=rmask[:, None] & kmask[None, :],
                        other=0.0,
                    )
                    zk = tl.load(
                        zo_ptr + cols[:, None] * d + kc[None, :],
                        mask=cmask[:, None] & kmask[None, :],
                        other=0.0,
                    )
                    u = xk[:, None, :] - zk[None, :, :]
                    if MAPPED and S_MODE == 1:
                        u = u * tl.load(s_ptr + kc, mask=kmask, other=0.0)[None, None, :]
                if KERNEL == 2:
                    u = tl.where(u > 0, 1.0, tl.where(u < 0, -1.0, 0.0))
                hmask = rmask[:, None] & kmask[None, :]
                for ci in range(0, c):
                    a = tl.load(a_ptr + cols * c + ci, mask=cmask, other=0.0)
                    part = tl.sum((w0 * a[None, :])[:, :, None] * u, axis=1)
                    hp = h_ptr + rows[:, None] * (c * ro) + ci * ro + kc[None, :]
                    tl.store(hp, tl.load(hp, mask=hmask, other=0.0) + s * part, mask=hmask)


def near_grads(pts, alpha, kernel, bandwidth, mapped: bool):
    """The near pairs' gradient terms (q, c, r if mapped else d), summed on the original rows:
    what the gradient tiles leave out (rfmfast.ops._triton.common, NEAR). Costs one more pass
    of distance tiles."""
    q, r = pts.P.shape
    n, c = alpha.shape
    xo, zo, sx, d, s_mode = pts.exact_args()
    ro = r if mapped else d
    h = torch.zeros(q, c, ro, dtype=pts.P.dtype, device=pts.P.device)
    if not pts.rule(kernel):
        return h
    consts = common.consts(pts, kernel, bandwidth, kernel_record(kernel).grad_scale(bandwidth))
    tc = pts.precision != "ieee"
    bk = direct_block_k(r) if pts.direct else min(32, common.block_k(r, tc))
    br = min(16 if common.INTERPRET else 8, triton.next_power_of_2(ro))
    grid = lambda meta: (triton.cdiv(q, meta["BLOCK_Q"]),)  # noqa: E731
    _near_grads[grid](
        pts.P,
        pts.Y,
        pts.pn,
        pts.yn,
        xo,
        zo,
        sx,
        alpha,
        h,
        consts,
        q,
        n,
        r,
        d,
        c,
        ro,
        S_MODE=s_mode,
        KERNEL=kernel_record(kernel).code,
        DIRECT=pts.direct,
        MAPPED=mapped,
        PREC=common.PREC_CODE[pts.precision],
        INTERP=common.INTERPRET,
        BLOCK_K=bk,
        BLOCK_R=br,
    )
    return h


class _Prepared:
    """Points prepared once for every query chunk, and the right factor F (grad = H F)."""

    def __init__(self, Q, X, alpha, kernel, bandwidth, M, precision):
        common.check_device(Q, X, alpha)
        self.kernel, self.bandwidth = kernel, bandwidth
        self.alpha = alpha.contiguous()
        self.pts = common.prepare_points(
            Q, X, kernel, M, common.resolve_precision(precision, Q.dtype)
        )
        n, c = self.alpha.shape
        self.two_stage = use_two_stage(n, c, X.shape[1], X.element_size()) and not self.pts.direct
        self.V = None
        if self.pts.direct:
            # H in the mapped coordinates: grad = H S (S = M^{1/2} for l1_laplace, else S^T S = M)
            self.F = self.pts.S
        else:
            # H in the original coordinates (translated by mu): grad = H M
            self.F = M
            self.Qc = (Q - self.pts.mu).contiguous()
            self.Xc = (X - self.pts.mu).contiguous()

    def chunk(self) -> int:
        """Queries per call of h: bounds AV (fused) or A (two_stage)."""
        n, c = self.alpha.shape
        d = self.pts.mu.shape[0]
        if self.two_stage:
            return max(16, _TWO_STAGE_ENTRIES // n)
        return max(128, _CHUNK_ENTRIES // (c * d + c))

    def h(self, i0: int, i1: int) -> torch.Tensor:
        """H (i1 - i0, c, d or r) for queries i0:i1, before the right factor F."""
        pts = self.pts.rows(i0, i1)
        if pts.direct:
            return _direct_h(pts, self.alpha, self.kernel, self.bandwidth) + near_grads(
                pts, self.alpha, self.kernel, self.bandwidth, mapped=True
            )
        c = self.alpha.shape[1]
        d = self.Xc.shape[1]
        if self.two_stage:
            if self.V is None:  # [alpha_1 * X | ... | alpha_c * X | alpha], (n, c d + c)
                self.V = torch.cat(
                    [self.alpha[:, j : j + 1] * self.Xc for j in range(c)] + [self.alpha], dim=1
                )
            A = tile_matrix(pts, kernel=self.kernel, bandwidth=self.bandwidth, weight=True)
            AV = _value_gemm(A, self.V, pts.precision)
        else:
            AV = fused_product(
                pts,
                kernel=self.kernel,
                bandwidth=self.bandwidth,
                X=self.Xc,
                alpha=self.alpha,
                weight=True,
            )
        w = AV[:, c * d :]
        H = w[:, :, None] * self.Qc[i0:i1, None, :] - AV[:, : c * d].view(-1, c, d)
        return H * kernel_record(self.kernel).grad_scale(self.bandwidth) + near_grads(
            pts, self.alpha, self.kernel, self.bandwidth, mapped=False
        )


def kernel_grads(Q, X, alpha, *, kernel, bandwidth, M, precision=None):
    """Q: (q, d), X: (n, d), alpha: (n, c) -> (q, c, d): grad f_c at each query (rfmfast.kernels).

    precision: "ieee" | "tf32" | "bf16" (rfmfast.ops._triton.common); default
    $RFMFAST_TRITON_PRECISION or "ieee". Memory: the output plus O((q + n) d + q c).
    """
    prep = _Prepared(Q, X, alpha, kernel, bandwidth, M, precision)
    q, chunk = Q.shape[0], prep.chunk()
    if q <= chunk:
        return apply_M(prep.h(0, q), prep.F).contiguous()
    out = torch.empty(q, alpha.shape[1], Q.shape[1], dtype=Q.dtype, device=Q.device)
    for i0 in range(0, q, chunk):
        out[i0 : i0 + chunk] = apply_M(prep.h(i0, min(q, i0 + chunk)), prep.F)
    return out


def agop(
    Q,
    X,
    alpha,
    *,
    kernel,
    bandwidth,
    M,
    diag=False,
    centering=False,
    accumulate=None,
    precision=None,
):
    """(1/q) sum_x sum_c grad f_c(x) grad f_c(x)^T: (d, d), or its diagonal (d,) if diag.

    centering subtracts each output's mean gradient over Q first; accumulate="float64" forms
    the sums in float64 (result in Q's dtype). The reduction is rfmfast.ops.agop.reduction.
    Memory: O(d^2 + chunk (c d + c)), see module doc.
    """
    prep = _Prepared(Q, X, alpha, kernel, bandwidth, M, precision)
    q, chunk = Q.shape[0], prep.chunk()

    def chunks():
        for i0 in range(0, q, chunk):
            yield prep.h(i0, min(q, i0 + chunk))

    return agop_from_gradients(
        [chunks],
        q=q,
        F=prep.F,
        diag=diag,
        centering=centering,
        accumulate=accumulate,
        dtype=Q.dtype,
    )
