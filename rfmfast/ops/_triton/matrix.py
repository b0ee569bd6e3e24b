"""Dense tiles of the Triton backends: K(X, Z), or the gradient weights, as an (n, m) matrix,
one (BLOCK, BLOCK) tile per program.

The distance tile comes from tl.dot on the mapped, centered points (laplace, gaussian) or from a
difference-first tiled sum (l1_laplace, or r <= 8 coordinates); exp2/rsqrt in registers; one
store. With
symmetric=True (Z is X) only the programs on or above the block diagonal work: each writes
its tile and the mirrored tile, so K is exactly symmetric and the diagonal is exactly 1.
Memory: the output plus O(n d) for the mapped points. Offsets are int64 (n m past 2^31 is fine).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from ...kernels import kernel_record
from . import common
from .product import direct_block_k


def _cfgs(rows):
    return [triton.Config({"BLOCK": b}, num_warps=w, num_stages=s) for b, w, s in rows]


# chosen so that ptxas (sm_90a, triton 3.9) reports no register spills in either mode, except
# the 128-block tensor-core config when symmetric (the transposed store), left to the tuner
_CONFIGS = {
    "ieee": _cfgs([(64, 4, 2), (64, 8, 2), (32, 4, 2)]),
    "tc": _cfgs([(64, 8, 2), (64, 4, 3), (128, 8, 3)]),
    "direct": _cfgs([(32, 4, 1), (64, 4, 1), (64, 8, 1)]),
}
_SMALL = triton.Config({"BLOCK": 16}, num_warps=1, num_stages=1)
_KEY = ["r", "KERNEL", "DIRECT", "SYMMETRIC", "WEIGHT", "PREC", "BLOCK_K"]


@triton.jit
def _kernel_matrix(
    p_ptr,
    y_ptr,
    pn_ptr,
    yn_ptr,
    out_ptr,
    consts_ptr,
    q,
    n,
    r,
    xo_ptr,
    zo_ptr,
    s_ptr,
    d,
    S_MODE: tl.constexpr,
    KERNEL: tl.constexpr,
    DIRECT: tl.constexpr,
    SYMMETRIC: tl.constexpr,
    WEIGHT: tl.constexpr,
    PREC: tl.constexpr,
    INTERP: tl.constexpr,
    BLOCK: tl.constexpr,
    BLOCK_K: tl.constexpr,
):
    """out[i, j] = K(P[i], Y[j]) (or the gradient weight, WEIGHT) for one (BLOCK, BLOCK) tile;
    out (q, n) contiguous."""
    pid_n = tl.program_id(0)
    pid_m = tl.program_id(1)
    if SYMMETRIC:
        if pid_m < pid_n:
            return
    rows = (pid_n * BLOCK + tl.arange(0, BLOCK)).to(tl.int64)
    cols = (pid_m * BLOCK + tl.arange(0, BLOCK)).to(tl.int64)
    resolve = tl.load(consts_ptr + 1)
    eps_abs = tl.load(consts_ptr + 2)
    near = tl.load(consts_ptr + 3)
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
            d,
            S_MODE,
            KERNEL != 2,
            BLOCK,
            BLOCK,
            BLOCK_K,
        )
    else:
        p_tile = tl.zeros((BLOCK, BLOCK_K), dtype=p_ptr.dtype.element_ty)
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
            d,
            S_MODE,
            False,
            PREC,
            INTERP,
            BLOCK,
            BLOCK,
            BLOCK_K,
        )
    if SYMMETRIC:
        diag = rows[:, None] == cols[None, :]
        dist = tl.where(diag, 0.0, dist)
        coincident = coincident | diag
    k = common.kernel_epilogue(dist, coincident, consts_ptr, KERNEL, WEIGHT)
    if WEIGHT:
        k = common.drop_near(k, dist, coincident, s, near)
    mask = (rows < q)[:, None] & (cols < n)[None, :]
    if SYMMETRIC:
        upper = rows[:, None] <= cols[None, :]
        tl.store(out_ptr + rows[:, None] * n + cols[None, :], k, mask=mask & upper)
        lower = rows[:, None] < cols[None, :]
        tl.store(out_ptr + cols[None, :] * n + rows[:, None], k, mask=mask & lower)
    else:
        tl.store(out_ptr + rows[:, None] * n + cols[None, :], k, mask=mask)


_KERNELS = {
    mode: triton.autotune(common.interpret_configs(cfgs, _SMALL), key=_KEY)(_kernel_matrix)
    for mode, cfgs in _CONFIGS.items()
}


def tile_matrix(pts, *, kernel, bandwidth, symmetric=False, weight=False):
    """The (q, n) matrix of kernel values (or gradient weights, weight=True: K / dist for
    laplace, K for gaussian) between prepared points (rfmfast.ops._triton.common.prepare_points).
    """
    q, r = pts.P.shape
    n = pts.Y.shape[0]
    dt = pts.P.dtype
    out = torch.empty(q, n, dtype=dt, device=pts.P.device)
    tc = pts.precision != "ieee"
    bk = direct_block_k(r) if pts.direct else min(32, common.block_k(r, tc))
    fn = _KERNELS["direct" if pts.direct else ("tc" if tc else "ieee")]
    grid = lambda meta: (triton.cdiv(q, meta["BLOCK"]), triton.cdiv(n, meta["BLOCK"]))  # noqa: E731
    xo, zo, sx, d, s_mode = pts.exact_args()
    fn[grid](
        pts.P,
        pts.Y,
        pts.pn,
        pts.yn,
        out,
        common.consts(pts, kernel, bandwidth),
        q,
        n,
        r,
        xo,
        zo,
        sx,
        d,
        S_MODE=s_mode,
        KERNEL=kernel_record(kernel).code,
        DIRECT=pts.direct,
        SYMMETRIC=bool(symmetric),
        WEIGHT=bool(weight),
        PREC=common.PREC_CODE[pts.precision],
        INTERP=common.INTERPRET,
        BLOCK_K=bk,
    )
    return out
