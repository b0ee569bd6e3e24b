"""The CPU kernels' predictor gradients, shared by kernel_grads and agop (rfmfast.ops.agop.cpu)
and the backward pass of kernel_matmul (rfmfast.ops.kernel_matmul.cpu): the centers and the
value matrix packed once, queries taken chunk by chunk, and raw gradients contracted with
per-query weights (rfmfast.ops._autograd)."""

from __future__ import annotations

import numpy as np
import torch

from ...kernels import EPS, RESOLVE, kernel_record
from .glue import factor, fn, map_points, np_, threads, translation

#: bytes of raw gradients held at once by contracted_raw (one chunk of queries)
CHUNK_BYTES = 64 << 20
#: bytes of the packed value matrix (n (c d + c)); more columns of alpha are taken in groups
VALUE_BYTES = 256 << 20


class GradContext:
    """Everything about the centers that the gradient kernels need, packed once, so that
    queries can be processed chunk by chunk. Memory: O(n (d + c d)) for the packed centers and
    value matrix."""

    def __init__(self, X, alpha, kernel, bandwidth, M, fac=None):
        """fac: (S, s_mode) from glue.factor(M, kernel, X.dtype) when the caller has it."""
        self.k = kernel_record(kernel)
        self.bandwidth, self.dtype = float(bandwidth), X.dtype
        self.scale = self.k.grad_scale(self.bandwidth)
        self.S, self.s_mode = fac if fac is not None else factor(M, kernel, X.dtype)
        self.mu = translation(X, kernel, self.S)
        self.Xt, self.xn = map_points(X, self.mu, self.S, self.s_mode)
        self.Xp = fn("pack_points", X.dtype)(self.Xt, threads())
        self.n, self.c = alpha.shape
        self.alpha = np_(alpha)
        if self.k.distance == "l1":
            self.post = None if self.S is None else torch.from_numpy(self.S)
        else:
            # centered centers (the gradient is translation invariant): no cancellation of the
            # data's offset in (A alpha) q - A (alpha x); the original rows for exact pairs
            self.X = np_(X)
            self.Vp = fn("pack_grad_values", X.dtype)(self.X - self.mu, self.alpha, threads())
            self.post = M

    def raw(self, Q: torch.Tensor) -> torch.Tensor:
        """H (q, c, r) with grad f = H @ post (post = M, or S for l1_laplace; None = I)."""
        Qt, qn = map_points(Q, self.mu, self.S, self.s_mode)
        if self.k.distance == "l1":
            H = np.empty((Q.shape[0], self.c, Qt.shape[1]), dtype=Qt.dtype)
            fn("l1_grads", self.dtype)(
                Qt, self.Xt, self.Xp, self.alpha, self.bandwidth, self.scale, H, threads()
            )
        else:
            H = np.empty((Q.shape[0], self.c, Q.shape[1]), dtype=Qt.dtype)
            Qo = np_(Q)
            fn("kernel_grads", self.dtype)(
                Qt,
                qn,
                Qo - self.mu,
                self.Xp,
                self.xn,
                Qo,
                self.X,
                self.S,
                self.s_mode,
                self.alpha,
                self.k.code,
                self.bandwidth,
                self.scale,
                EPS,
                RESOLVE,
                self.Vp,
                H,
                threads(),
            )
        return torch.from_numpy(H)


def contracted_raw(Q, X, alpha, weights, kernel, bandwidth, M, fac=None):
    """R (q, r) with R_i = sum_c weights_ic H_ic, H the raw gradients (GradContext.raw) of
    f(x) = K(x, X) alpha at the queries Q (q, d); alpha (n, c), weights (q, c). Columns of
    alpha are taken in groups (the packed value matrix under VALUE_BYTES) and queries in chunks
    (H under CHUNK_BYTES): never q x c x d at once beyond a chunk, never q x n. Returns
    (R, post) with post the right factor of the gradients (GradContext.post)."""
    q, d = Q.shape
    n, c = alpha.shape
    fac = fac if fac is not None else factor(M, kernel, X.dtype)
    size = Q.element_size()
    group = max(1, min(c, VALUE_BYTES // max(1, size * n * (d + 1))))
    chunk = max(64, CHUNK_BYTES // (size * group * d))
    R, post = None, None
    for c0 in range(0, c, group):
        c1 = min(c, c0 + group)
        ctx = GradContext(X, alpha[:, c0:c1].contiguous(), kernel, bandwidth, M, fac)
        post = ctx.post
        for i in range(0, q, chunk):
            H = ctx.raw(Q[i : i + chunk])
            part = torch.einsum("qc,qcr->qr", weights[i : i + chunk, c0:c1].to(H.dtype), H)
            if R is None:
                R = torch.empty(q, H.shape[2], dtype=H.dtype)
            if c0 == 0:
                R[i : i + chunk] = part
            else:
                R[i : i + chunk] += part
    return R, post
