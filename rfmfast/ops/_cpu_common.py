"""Glue between torch tensors and the compiled C++ kernels (rfmfast._C).

Tensors are handed to C++ as numpy views (no copy for contiguous CPU tensors); the C++ code
never links against libtorch. Each public CPU entry point is registered as a torch.library
custom op with a fake (meta) implementation, so the ops compose with torch.compile.
"""
from __future__ import annotations

import numpy as np
import torch

from .. import _C
from ..kernels import EPS, RESOLVE, apply_M, center_of, grad_scale, mahalanobis_factor

KIND = {"laplace": 0, "gaussian": 1, "l1_laplace": 2}
#: below this many value columns kernel_matmul uses row dot products instead of a GEMM
SMALL_T = 4
#: bytes of gradients held at once by the AGOP (one chunk of queries)
AGOP_CHUNK_BYTES = 64 << 20
#: bytes of the AGOP's packed value matrix (n (c d + c)); more outputs are taken in groups
AGOP_VALUE_BYTES = 256 << 20


def fn(name: str, dtype: torch.dtype):
    return getattr(_C, f"{name}_{'f64' if dtype == torch.float64 else 'f32'}")


def threads() -> int:
    return max(1, torch.get_num_threads())


def np_(t: torch.Tensor) -> np.ndarray:
    return t.detach().contiguous().numpy()


def factor(M, kernel, dtype):
    """(S as numpy or None, s_mode) for _C.prepare: 0 identity, 1 diagonal, 2 (r, d) matrix."""
    S = mahalanobis_factor(M, kernel, dtype)
    if S is None:
        return None, 0
    return np_(S), 1 if S.ndim == 1 else 2


def prepare(X: torch.Tensor, mu: np.ndarray | None, S, s_mode):
    """Translate points by -mu, map them by S and take their squared norms: (Xt, norms) numpy.
    (Points whose squared distances would overflow were refused by ops._common.check_range.)"""
    return fn("prepare", X.dtype)(np_(X), mu, S, s_mode, threads())


def center(X: torch.Tensor, kernel: str, S) -> np.ndarray | None:
    """The distance rule's translation; none for l1_laplace without M, whose distances are
    differences of the original coordinates already (a translation would only add rounding)."""
    if kernel == "l1_laplace" and S is None:
        return None
    return center_of(X).numpy()


class GradContext:
    """Everything about the centers that the gradient kernels need, packed once, so that
    queries can be processed chunk by chunk. Memory: O(n (d + c d)) for the packed centers and
    value matrix."""

    def __init__(self, X, alpha, kernel, bandwidth, M):
        self.kernel, self.bandwidth, self.dtype = kernel, float(bandwidth), X.dtype
        self.scale = grad_scale(kernel, bandwidth)
        self.S, self.s_mode = factor(M, kernel, X.dtype)
        self.mu = center(X, kernel, self.S)
        self.Xt, self.xn = prepare(X, self.mu, self.S, self.s_mode)
        self.Xp = fn("pack_points", X.dtype)(self.Xt)
        self.n, self.c = alpha.shape
        self.alpha = np_(alpha)
        if kernel == "l1_laplace":
            self.post = None if self.S is None else torch.from_numpy(self.S)
        else:
            # centered centers (the gradient is translation invariant): no cancellation of the
            # data's offset in (A alpha) q - A (alpha x); the original rows for exact pairs
            self.X = np_(X)
            self.Vp = fn("pack_grad_values", X.dtype)(self.X - self.mu, self.alpha)
            self.post = M

    def raw(self, Q: torch.Tensor) -> torch.Tensor:
        """H (q, c, r) with grad f = H @ post (post = M, or S for l1_laplace; None = I)."""
        Qt, qn = prepare(Q, self.mu, self.S, self.s_mode)
        if self.kernel == "l1_laplace":
            H = np.empty((Q.shape[0], self.c, Qt.shape[1]), dtype=Qt.dtype)
            fn("l1_grads", self.dtype)(Qt, self.Xt, self.Xp, self.alpha, self.bandwidth,
                                       self.scale, H, threads())
        else:
            H = np.empty((Q.shape[0], self.c, Q.shape[1]), dtype=Qt.dtype)
            Qo = np_(Q)
            fn("kernel_grads", self.dtype)(Qt, qn, Qo - self.mu, self.Xp, self.xn, Qo, self.X,
                                           self.S, self.s_mode, self.alpha, KIND[self.kernel],
                                           self.bandwidth, self.scale, EPS, RESOLVE, self.Vp, H,
                                           threads())
        return torch.from_numpy(H)


def _opt(M):
    return None if M is None else M.detach()


def _map_pair(X, Z, M, kernel, same: bool):
    """Both point sets centered and mapped by the factor of M, with their norms; Z packed for
    the kernels; and the distance rule's exact-path arguments (original rows, S, s_mode)."""
    S, s_mode = factor(_opt(M), kernel, X.dtype)
    mu = center(Z, kernel, S)
    Xt, xn = prepare(X, mu, S, s_mode)
    Zt, zn = (Xt, xn) if same else prepare(Z, mu, S, s_mode)
    Xo = np_(X)
    exact = (Xo, Xo if same else np_(Z), S, s_mode, RESOLVE)
    return Xt, xn, fn("pack_points", X.dtype)(Zt), zn, exact


FILL = {"full": 0, "symmetric": 1, "lower": 2}


def kernel_matrix_into(X: torch.Tensor, Z: torch.Tensor, kernel: str, bandwidth: float,
                       M: torch.Tensor | None, fill: str, out: np.ndarray) -> None:
    """K(X, Z) written into out, a C-contiguous (n, m) array of X's dtype (the solvers reuse one
    buffer across solves: no fresh n x m allocation, and none of its page faults, per solve).
    fill: "full"; "symmetric" (Z is X: one triangle computed, mirrored); "lower" (Z is X: the
    lower triangle written, the strictly upper one only near the diagonal: for the Cholesky
    solve, which reads nothing else)."""
    Xt, xn, Zp, zn, exact = _map_pair(X, Z, M, kernel, fill != "full")
    fn("kernel_matrix", X.dtype)(Xt, xn, Zp, zn, Z.shape[0], KIND[kernel], bandwidth, *exact,
                                 FILL[fill], out, threads())


# ---- custom ops --------------------------------------------------------------------------------
class CpuOp:
    """A function registered as the custom op rfmfast::<name> (so torch.compile and fake tensors
    see its shapes through register_fake) that eager calls run directly: the custom-op
    dispatcher's first call imports torch's compiler modules (1-4 s, and a Ctrl-C during that
    import leaves the process broken), a plain Python call imports nothing."""

    def __init__(self, name: str, impl):
        self.impl = impl
        self.op = torch.library.custom_op(f"rfmfast::{name}", mutates_args=(),
                                          device_types="cpu")(impl)
        self.__doc__ = impl.__doc__

    def register_fake(self, fake):
        return self.op.register_fake(fake)

    def __call__(self, *args):
        traced = torch.compiler.is_compiling() or any(
            isinstance(a, torch.Tensor) and type(a) is not torch.Tensor for a in args)
        return (self.op if traced else self.impl)(*args)


def cpu_op(name: str):
    return lambda impl: CpuOp(name, impl)


@cpu_op("kernel_matrix_cpu")
def kernel_matrix_op(X: torch.Tensor, Z: torch.Tensor, kernel: str, bandwidth: float,
                     M: torch.Tensor | None, symmetric: bool) -> torch.Tensor:
    out = np.empty((X.shape[0], Z.shape[0]), dtype=np.float64 if X.dtype == torch.float64
                   else np.float32)
    kernel_matrix_into(X, Z, kernel, bandwidth, M, "symmetric" if symmetric else "full", out)
    return torch.from_numpy(out)


@kernel_matrix_op.register_fake
def _(X, Z, kernel, bandwidth, M, symmetric):
    return X.new_empty(X.shape[0], Z.shape[0])


@cpu_op("kernel_matmul_cpu")
def kernel_matmul_op(X: torch.Tensor, Z: torch.Tensor, V: torch.Tensor, kernel: str,
                     bandwidth: float, M: torch.Tensor | None) -> torch.Tensor:
    Xt, xn, Zp, zn, exact = _map_pair(X, Z, M, kernel, False)
    t = V.shape[1]
    if t <= SMALL_T:
        Vp, Vt = None, np_(V.T)
    else:
        Vp, Vt = fn("pack_values", X.dtype)(np_(V)), None
    out = np.empty((X.shape[0], t), dtype=Xt.dtype)
    fn("kernel_matmul", X.dtype)(Xt, xn, Zp, zn, Z.shape[0], KIND[kernel], bandwidth, *exact,
                                 Vp, Vt, t, out, threads())
    return torch.from_numpy(out)


@kernel_matmul_op.register_fake
def _(X, Z, V, kernel, bandwidth, M):
    return X.new_empty(X.shape[0], V.shape[1])


@cpu_op("kernel_grads_cpu")
def kernel_grads_op(Q: torch.Tensor, X: torch.Tensor, alpha: torch.Tensor, kernel: str,
                    bandwidth: float, M: torch.Tensor | None) -> torch.Tensor:
    ctx = GradContext(X, alpha, kernel, bandwidth, _opt(M))
    return apply_M(ctx.raw(Q), ctx.post).contiguous()


@kernel_grads_op.register_fake
def _(Q, X, alpha, kernel, bandwidth, M):
    return Q.new_empty(Q.shape[0], alpha.shape[1], Q.shape[1])


def _sandwich(A: torch.Tensor, P: torch.Tensor | None) -> torch.Tensor:
    """P^T A P for P (r, d) matrix, diag(P) A diag(P) for a vector, A for None."""
    if P is None:
        return A
    if P.ndim == 1:
        return P[:, None] * A * P[None, :]
    return P.T @ A @ P


@cpu_op("agop_cpu")
def agop_op(Q: torch.Tensor, X: torch.Tensor, alpha: torch.Tensor, kernel: str,
            bandwidth: float, M: torch.Tensor | None, diag: bool, centering: bool,
            accumulate: str) -> torch.Tensor:
    acc = torch.float64 if accumulate == "float64" else Q.dtype
    q, c = Q.shape[0], alpha.shape[1]
    n, d = X.shape
    # outputs in groups: the packed value matrix of a group, n (g d + g) entries, stays under
    # AGOP_VALUE_BYTES (the AGOP is a sum over outputs, so groups add up exactly)
    group = max(1, min(c, AGOP_VALUE_BYTES // max(1, Q.element_size() * n * (d + 1))))
    HtH = None
    for c0 in range(0, c, group):
        ctx = GradContext(X, alpha[:, c0:c0 + group].contiguous(), kernel, bandwidth, _opt(M))
        part = _agop_sums(ctx, Q, acc, centering)
        HtH = part if HtH is None else HtH.add_(part)
        post = ctx.post.to(acc) if ctx.post is not None else None
        del ctx
    A = _sandwich(HtH, post) / q
    if diag:
        A = torch.diagonal(A).contiguous()
    return A.to(Q.dtype)


def _agop_sums(ctx: GradContext, Q: torch.Tensor, acc, centering: bool) -> torch.Tensor:
    """sum_x sum_c h_c h_c^T over the queries (h: raw gradients, before post), in chunks of
    queries; centered per output if asked."""
    q, c = Q.shape[0], ctx.c
    chunk = max(64, AGOP_CHUNK_BYTES // (Q.element_size() * c * Q.shape[1]))
    HtH = Hsum = None
    for i in range(0, q, chunk):
        H = ctx.raw(Q[i:i + chunk]).to(acc)
        Hf = H.reshape(-1, H.shape[-1])
        part = Hf.T @ Hf
        HtH = part if HtH is None else HtH.add_(part)
        s = H.sum(0)
        Hsum = s if Hsum is None else Hsum.add_(s)
    if centering:
        HtH = HtH - Hsum.T @ Hsum / q
    return HtH


@agop_op.register_fake
def _(Q, X, alpha, kernel, bandwidth, M, diag, centering, accumulate):
    d = Q.shape[1]
    return Q.new_empty(d) if diag else Q.new_empty(d, d)
