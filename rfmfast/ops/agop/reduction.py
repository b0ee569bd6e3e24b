"""The AGOP reduction, written once for every backend: the chunk loop, centering, the diagonal,
the right factor and the symmetrization. A backend supplies only the gradients of one chunk of
queries.

A backend hands gradients as H (b, c, r) with grad f_c(x) = H[x, c] @ F, where F is the
backend's right factor (M, or S for gradients in mapped coordinates, or None when H is the
gradient itself). Then

    AGOP = (1/q) F^T [ sum_x sum_c h h^T ] F        (diag: the diagonal of it, from G = H F)

Centering subtracts each output's mean gradient over the queries: with the first chunk's mean
h0 as a shift, sum (h - h0)(h - h0)^T - q (hbar - h0)(hbar - h0)^T, which keeps the subtraction
well conditioned. Outputs may come in groups (each its own pass over the queries, e.g. to bound
a packed value matrix): the AGOP is a sum over outputs, so the groups' sums add up exactly.
Memory: the d x d sums plus one chunk of gradients at a time.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch

from ...kernels import apply_M


def _group_sums(chunks: Iterable[torch.Tensor], F, diag: bool, centering: bool, acc, q: int):
    """sum h h^T (r, r) over one group's chunks (centered if asked); diag: sum of g * g (d,)
    with g = h F."""
    shift = s1 = s2 = None
    Fa = None if F is None else F.to(acc)
    for H in chunks:
        H = H.to(acc)
        if diag:
            H = apply_M(H, Fa)
        if centering and shift is None:
            shift = H.mean(0, keepdim=True)
        if shift is not None:
            H = H - shift
        if diag:
            part = (H * H).sum(0)  # (c, d)
        else:
            Hf = H.reshape(-1, H.shape[-1])
            part = Hf.T @ Hf  # (r, r)
        s2 = part if s2 is None else s2.add_(part)
        if centering:
            s = H.sum(0)  # (c, r)
            s1 = s if s1 is None else s1.add_(s)
    if diag:
        if centering:
            s2 = s2 - s1 * s1 / q
        return s2.sum(0)
    if centering:
        s2 = s2 - s1.T @ s1 / q
    return s2


def agop_from_gradients(
    groups: Iterable[Callable[[], Iterable[torch.Tensor]]],
    *,
    q: int,
    F,
    diag: bool,
    centering: bool,
    accumulate,
    dtype,
) -> torch.Tensor:
    """The AGOP from gradient chunks: (d, d), exactly symmetric, or its diagonal (d,).

    groups: one callable per group of outputs, each returning an iterable of H chunks (b, c, r)
    that together cover the q queries once (see the module doc for H and F).
    accumulate: None (sums in dtype) or "float64". dtype: the result's dtype.
    """
    acc = torch.float64 if accumulate == "float64" else dtype
    total = None
    for chunks in groups:
        part = _group_sums(chunks(), F, diag, centering, acc, q)
        total = part if total is None else total.add_(part)
    if not diag and F is not None:
        Fa = F.to(acc)
        total = Fa[:, None] * total * Fa[None, :] if Fa.ndim == 1 else Fa.T @ total @ Fa
    A = total / q
    if not diag:
        A = symmetrized(A)
    return A.to(dtype)


def symmetrized(A: torch.Tensor) -> torch.Tensor:
    """(A + A^T) / 2: exactly symmetric (floating-point addition commutes), so that an AGOP can
    be handed back as M whatever the GEMM's blocking did."""
    return (A + A.T) * 0.5
