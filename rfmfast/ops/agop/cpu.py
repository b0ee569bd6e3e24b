"""kernel_grads and agop on the C++ CPU kernels, by the value-matrix trick (docs/math.md): one
GEMM of the weight tile with V = [alpha_1 X | ... | alpha_c X | alpha] gives all c gradients.
The AGOP's reduction is rfmfast.ops.agop.reduction; this backend supplies gradient chunks.

Memory: packed centers and V (n (d + c d + c)), per thread one tile of block x (block + c d),
and for the AGOP gradients of one chunk of queries (AGOP_CHUNK_BYTES) plus d x d sums; never
q x n x d. V is held for at most AGOP_VALUE_BYTES worth of outputs at a time."""

from __future__ import annotations

import torch

from ...kernels import apply_M, kernel_record
from .._cpu.custom_op import cpu_op
from .._cpu.glue import factor, opt
from .._cpu.grads import GradContext
from .reduction import agop_from_gradients

#: bytes of gradients held at once by the AGOP (one chunk of queries)
AGOP_CHUNK_BYTES = 64 << 20
#: bytes of the AGOP's packed value matrix (n (c d + c)); more outputs are taken in groups
AGOP_VALUE_BYTES = 256 << 20


@cpu_op("kernel_grads_cpu")
def kernel_grads_op(
    Q: torch.Tensor,
    X: torch.Tensor,
    alpha: torch.Tensor,
    kernel: str,
    bandwidth: float,
    M: torch.Tensor | None,
) -> torch.Tensor:
    ctx = GradContext(X, alpha, kernel, bandwidth, opt(M))
    return apply_M(ctx.raw(Q), ctx.post).contiguous()


@kernel_grads_op.register_fake
def _(Q, X, alpha, kernel, bandwidth, M):
    return Q.new_empty(Q.shape[0], alpha.shape[1], Q.shape[1])


@cpu_op("agop_cpu")
def agop_op(
    Q: torch.Tensor,
    X: torch.Tensor,
    alpha: torch.Tensor,
    kernel: str,
    bandwidth: float,
    M: torch.Tensor | None,
    diag: bool,
    centering: bool,
    accumulate: str,
) -> torch.Tensor:
    q, c = Q.shape[0], alpha.shape[1]
    n, d = X.shape
    M = opt(M)
    # outputs in groups: the packed value matrix of a group, n (g d + g) entries, stays under
    # AGOP_VALUE_BYTES
    group = max(1, min(c, AGOP_VALUE_BYTES // max(1, Q.element_size() * n * (d + 1))))
    chunk = max(64, AGOP_CHUNK_BYTES // (Q.element_size() * min(c, group) * d))

    fac = factor(M, kernel, X.dtype)

    def chunks(c0):
        ctx = GradContext(X, alpha[:, c0 : c0 + group].contiguous(), kernel, bandwidth, M, fac)
        for i in range(0, q, chunk):
            yield ctx.raw(Q[i : i + chunk])

    # the right factor of the raw gradients (GradContext.post)
    if kernel_record(kernel).distance == "l1":
        F = None if fac[0] is None else torch.from_numpy(fac[0])
    else:
        F = M
    return agop_from_gradients(
        [lambda c0=c0: chunks(c0) for c0 in range(0, c, group)],
        q=q,
        F=F,
        diag=diag,
        centering=centering,
        accumulate=accumulate or None,
        dtype=Q.dtype,
    )


@agop_op.register_fake
def _(Q, X, alpha, kernel, bandwidth, M, diag, centering, accumulate):
    d = Q.shape[1]
    return Q.new_empty(d) if diag else Q.new_empty(d, d)


def kernel_grads(Q, X, alpha, *, kernel, bandwidth, M):
    return kernel_grads_op(Q, X, alpha, kernel, bandwidth, M)


def agop(Q, X, alpha, *, kernel, bandwidth, M, diag=False, centering=False, accumulate=None):
    return agop_op(Q, X, alpha, kernel, bandwidth, M, diag, centering, accumulate or "")
