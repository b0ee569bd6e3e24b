"""The fused product of the Triton backends: out = W(P, Y) @ V, where W is the kernel matrix or
the gradient weights between prepared points, flash-attention style; W is never stored.
Shared by kernel_matmul (W = K) and the predictor gradients of agop (WEIGHT=True, the value
matrix built on the fly from X and alpha).

One program owns BLOCK_N rows of the output and BLOCK_T of its columns. It walks the centers in
tiles of BLOCK_M: a distance tile from tl.dot (rfmfast.ops._triton.common), the exp2/rsqrt
epilogue in registers, and a second tl.dot with the (BLOCK_M, BLOCK_T) value tile into a float32
(float64 for float64 inputs) accumulator. l1_laplace has no GEMM form, and r <= 8 coordinates
make a poor one: there the distance tile is a difference-first tiled sum (DIRECT).

The same kernel serves the predictor gradients (rfmfast.ops.agop.triton): WEIGHT=True replaces
the kernel values by the gradient weights of docs/math.md, and VALUES_FROM_X=True builds the value
tile V = [alpha_1 * X | ... | alpha_c * X | alpha] on the fly from X and alpha, so that the
(n, c d + c) value matrix never exists either.

Memory: the output, plus O((n + m) r) for the mapped, centered points; per program registers of
O(BLOCK_N (BLOCK_M + BLOCK_T + BLOCK_K)). Offsets are int64: n m past 2^31 is fine.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from ...kernels import kernel_record
from . import common


def _cfgs(rows, names=("BLOCK_N", "BLOCK_M")):
    return [
        triton.Config(dict(zip(names, r[: len(names)])), num_warps=r[-2], num_stages=r[-1])
        for r in rows
    ]


# Block sizes per kind of tile, chosen so that ptxas (sm_90a, triton 3.9) reports no register
# spills, or a few bytes at most: the FMA-unit dot of "ieee" (and float64) holds far more operand
# registers than a tensor-core dot, hence smaller tiles and 16-wide k-steps there.
_CONFIGS = {
    "ieee": _cfgs([(64, 64, 4, 2), (32, 64, 4, 2), (128, 64, 8, 2), (128, 128, 8, 1)]),
    "tc": _cfgs(
        [
            (64, 64, 4, 3),
            (128, 64, 8, 3),
            (128, 128, 8, 2),
            (64, 128, 4, 2),
            (128, 32, 4, 3),
            (256, 64, 8, 2),
        ]
    ),
    # more than 128 value columns (the AGOP's c d + c): the column block is tuned too, since
    # every column block recomputes its distance tiles
    "ieee_wide": _cfgs(
        [(64, 32, 128, 8, 1), (32, 32, 128, 4, 1), (128, 32, 64, 8, 1), (64, 32, 64, 4, 1)],
        ("BLOCK_N", "BLOCK_M", "BLOCK_T"),
    ),
    "tc_wide": _cfgs(
        [
            (64, 64, 128, 8, 2),
            (64, 64, 128, 8, 1),
            (128, 32, 128, 8, 2),
            (64, 32, 128, 8, 2),
            (64, 32, 256, 8, 1),
        ],
        ("BLOCK_N", "BLOCK_M", "BLOCK_T"),
    ),
    "direct": _cfgs([(32, 32, 4, 1), (64, 32, 4, 1), (32, 64, 4, 1), (64, 64, 8, 1)]),
}
_SMALL = triton.Config({"BLOCK_N": 16, "BLOCK_M": 16}, num_warps=1, num_stages=1)
_SMALL_WIDE = triton.Config(
    {"BLOCK_N": 16, "BLOCK_M": 16, "BLOCK_T": 64}, num_warps=1, num_stages=1
)
_KEY = ["r", "t", "KERNEL", "DIRECT", "WEIGHT", "VALUES_FROM_X", "PREC", "BLOCK_T", "BLOCK_K"]


@triton.jit
def _fused_kmm(
    p_ptr,
    y_ptr,
    pn_ptr,
    yn_ptr,
    v_ptr,
    x_ptr,
    a_ptr,
    out_ptr,
    consts_ptr,
    q,
    n,
    r,
    t,
    d,
    c,
    xo_ptr,
    zo_ptr,
    s_ptr,
    dx,
    S_MODE: tl.constexpr,
    KERNEL: tl.constexpr,
    DIRECT: tl.constexpr,
    WEIGHT: tl.constexpr,
    VALUES_FROM_X: tl.constexpr,
    PREC: tl.constexpr,
    INTERP: tl.constexpr,
    P_RESIDENT: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_K: tl.constexpr,
    BLOCK_T: tl.constexpr,
):
    """out[rows, tcols] = sum_j w(P[rows], Y[j]) V[j, tcols]; V (n, t) contiguous, or built
    from X (n, d) and alpha (n, c) with t = c d + c when VALUES_FROM_X."""
    pid_n = tl.program_id(0)
    pid_t = tl.program_id(1)
    rows = (pid_n * BLOCK_N + tl.arange(0, BLOCK_N)).to(tl.int64)
    tcols = (pid_t * BLOCK_T + tl.arange(0, BLOCK_T)).to(tl.int64)
    tmask = tcols < t
    resolve = tl.load(consts_ptr + 1)
    eps_abs = tl.load(consts_ptr + 2)
    near = tl.load(consts_ptr + 3)
    if VALUES_FROM_X:
        # column j < c d is alpha[:, j // d] * X[:, j % d]; column c d + i is alpha[:, i]
        is_alpha = tcols >= c * d
        col_c = tl.where(is_alpha, tcols - c * d, tcols // d)
        col_k = tl.where(is_alpha, 0, tcols % d)
    kk = tl.arange(0, BLOCK_K)
    if P_RESIDENT:
        p_tile = tl.load(
            p_ptr + rows[:, None] * r + kk[None, :],
            mask=(rows < q)[:, None] & (kk < r)[None, :],
            other=0.0,
        )
    else:
        p_tile = tl.zeros((BLOCK_N, BLOCK_K), dtype=p_ptr.dtype.element_ty)
    acc = tl.zeros((BLOCK_N, BLOCK_T), dtype=p_ptr.dtype.element_ty)
    for m0 in range(0, n, BLOCK_M):
        cols = (m0 + tl.arange(0, BLOCK_M)).to(tl.int64)
        cmask = cols < n
        if DIRECT:
            dist, coincident, s = common.direct_dist_tile(
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
                dx,
                S_MODE,
                KERNEL != 2,
                BLOCK_N,
                BLOCK_M,
                BLOCK_K,
            )
        else:
            dist, coincident, s = common.sq_dist_tile(
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
                dx,
                S_MODE,
                P_RESIDENT,
                PREC,
                INTERP,
                BLOCK_N,
                BLOCK_M,
                BLOCK_K,
            )
        w = common.kernel_epilogue(dist, coincident, consts_ptr, KERNEL, WEIGHT)
        if WEIGHT:
            w = common.drop_near(w, dist, coincident, s, near)
        w = tl.where(cmask[None, :], w, 0.0)
        vmask = cmask[:, None] & tmask[None, :]
        if VALUES_FROM_X:
            a = tl.load(a_ptr + cols[:, None] * c + col_c[None, :], mask=vmask, other=0.0)
            xv = tl.load(
                x_ptr + cols[:, None] * d + col_k[None, :],
                mask=vmask & ~is_alpha[None, :],
                other=1.0,
            )
            v = a * xv
        else:
            v = tl.load(v_ptr + cols[:, None] * t + tcols[None, :], mask=vmask, other=0.0)
        if PREC == 0:
            acc += tl.dot(w, v, input_precision="ieee")
        else:
            acc += tl.dot(
                common.round_tf32_tile(w), common.round_tf32_tile(v), input_precision="tf32"
            )
    tl.store(
        out_ptr + rows[:, None] * t + tcols[None, :], acc, mask=(rows < q)[:, None] & tmask[None, :]
    )


_KERNELS = {
    mode: triton.autotune(
        common.interpret_configs(cfgs, _SMALL_WIDE if mode.endswith("wide") else _SMALL),
        key=[k for k in _KEY if k != "BLOCK_T"] if mode.endswith("wide") else _KEY,
    )(_fused_kmm)
    for mode, cfgs in _CONFIGS.items()
}


def block_t(t: int) -> int:
    """Output columns per program for t <= 128 (at least 16, tl.dot's minimum); wider outputs
    tune it (_CONFIGS["*_wide"])."""
    return min(128, max(16, triton.next_power_of_2(t)))


def direct_block_k(r: int) -> int:
    """Coordinates per step of a difference-first tile (a 3-D (BN, BM, BLOCK_K) temporary)."""
    return min(16 if common.INTERPRET else 4, triton.next_power_of_2(r))


def fused_product(pts, *, kernel, bandwidth, V=None, X=None, alpha=None, weight=False):
    """The fused product on prepared points pts (rfmfast.ops._triton.common.prepare_points).

    Either V (n, t), or X (n, d) and alpha (n, c) for the gradient value matrix (t = c d + c).
    weight=True uses the gradient weights (K / dist for laplace, K for gaussian) instead of K.
    Returns (q, t) in the points' dtype.
    """
    P, Y = pts.P, pts.Y
    q, r = P.shape
    n = Y.shape[0]
    dt = P.dtype
    if V is not None:
        V = V.contiguous()
        t, d, c = V.shape[1], 1, 1
        X = alpha = V
    else:
        X, alpha = X.contiguous(), alpha.contiguous()
        d, c = X.shape[1], alpha.shape[1]
        t = c * d + c
    out = torch.empty(q, t, dtype=dt, device=P.device)
    consts = common.consts(pts, kernel, bandwidth)
    tc = pts.precision != "ieee"
    bk = direct_block_k(r) if pts.direct else common.block_k(r, tc)
    if pts.direct:
        mode = "direct"
    else:
        mode = ("tc" if tc else "ieee") + ("_wide" if t > 128 else "")
    extra = {} if mode.endswith("wide") else {"BLOCK_T": block_t(t)}
    fn = _KERNELS[mode]
    grid = lambda meta: (
        triton.cdiv(q, meta["BLOCK_N"]),  # noqa: E731
        triton.cdiv(t, meta["BLOCK_T"]),
    )
    xo, zo, sx, dx, s_mode = pts.exact_args()
    fn[grid](
        P,
        Y,
        pts.pn,
        pts.yn,
        V if V is not None else X,
        X,
        alpha,
        out,
        consts,
        q,
        n,
        r,
        t,
        d,
        c,
        xo,
        zo,
        sx,
        dx,
        S_MODE=s_mode,
        KERNEL=kernel_record(kernel).code,
        DIRECT=pts.direct,
        WEIGHT=weight,
        VALUES_FROM_X=V is None,
        PREC=common.PREC_CODE[pts.precision],
        INTERP=common.INTERPRET,
        P_RESIDENT=(tc and r <= bk),
        BLOCK_K=bk,
        **extra,
    )
    return out
