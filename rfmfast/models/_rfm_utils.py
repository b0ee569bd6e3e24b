"""RFM estimators' helpers beyond input conversion (rfmfast.models._inputs): the AGOP's checks
and its map to the next M, and progress lines."""

from __future__ import annotations

import torch


def agop_trouble(
    A: torch.Tensor, X: torch.Tensor, alpha: torch.Tensor, bandwidth: float, t: int
) -> str | None:
    """None when the AGOP A can make the next M. An AGOP that overflowed the dtype is a
    ValueError saying so; one that is zero (every gradient underflowed, or alpha is zero) gives
    the reason, as a sentence with what to do: M would be zero and the model a constant."""
    dt = str(A.dtype).replace("torch.", "")
    if not bool(torch.isfinite(A).all()):
        raise ValueError(
            f"the AGOP of iteration {t} overflowed {dt}: the gradients scale with "
            f"alpha (largest |alpha| {float(alpha.abs().max()):.3g}) and with 1 / "
            "bandwidth; use dtype='float64' or rescale y (e.g. to unit variance)"
        )
    if bool(((A.diagonal() if A.ndim == 2 else A) > 0).any()):
        return None
    stop = f"The fit stopped at iteration {t}, keeping the best iterate so far."
    if not bool((alpha != 0).any()):
        return (
            f"the AGOP of iteration {t} is zero because the solved weights alpha are all zero "
            f"(is y zero?), so M would be zero and the model a constant. {stop}"
        )
    P = X[:200].to(torch.float64)
    med = float(torch.pdist(P).median()) if len(P) > 1 else float("nan")
    return (
        f"the AGOP of iteration {t} is zero (every kernel gradient underflowed), so M would "
        f"be zero and the model a constant: the bandwidth {bandwidth:g} is far below the "
        f"distances between points (median Euclidean distance {med:.3g} among the first "
        f"{len(P)} training points); try a larger bandwidth. {stop}"
    )


def agop_to_M(A: torch.Tensor, power: float, normalize) -> torch.Tensor:
    """The M update: normalize(A ** power).

    A: (d, d) symmetric PSD (or (d,) diagonal). power 1: A itself; other powers through an
    eigendecomposition in float64 (negative eigenvalues from rounding clipped to 0).
    normalize: "max" divides by the largest entry (xRFM, Science 2024), None leaves the scale.
    The result is symmetrized exactly ((A + A^T) / 2): blocked sums leave rounding asymmetry.
    """
    if A.ndim == 2:
        A = (A + A.T) * 0.5
    if power != 1:
        if A.ndim == 1:
            A = A.clamp(min=0).to(torch.float64).pow(power).to(A.dtype)
        else:
            w, U = torch.linalg.eigh(A.to(torch.float64))
            A = ((U * w.clamp(min=0).pow(power)) @ U.T).to(A.dtype)
            A = (A + A.T) * 0.5
    if normalize == "max":
        top = float(A.max())
        if top > 0:
            A = A / top
    return A


def progress_line(t: int, iters: int, row: dict, metric: str, left_s: float | None = None) -> str:
    """One verbose line: a bar, the iteration, train/validation metrics, timings and an
    estimate of the time left (left_s: the mean time per iteration so far x those remaining)."""
    width = 20
    done = int(round(width * (t + 1) / (iters + 1)))
    bar = "#" * done + "." * (width - done)
    parts = [f"[{bar}] iter {t}/{iters}"]
    for key in (f"train_{metric}", f"val_{metric}"):
        if row.get(key) is not None:
            parts.append(f"{key} {row[key]:.5g}")
    parts.append(f"solve {row['solve_s']:.2f}s")
    if row.get("agop_s") is not None:
        parts.append(f"agop {row['agop_s']:.2f}s")
    if row.get("jitter"):
        parts.append(f"jitter {row['jitter']:.2g}")
    if row.get("cg_iterations"):
        parts.append(f"cg {row['cg_iterations']} it")
    if row.get("converged") is False:
        parts.append("NOT CONVERGED")
    if left_s is not None and t < iters:
        parts.append(f"~{left_s:.3g}s left")
    return "  ".join(parts)


#: entries of one block of gradients (queries x outputs x features) in weighted_agop
GRAD_BLOCK = 1 << 22


def weighted_agop(Q, Z, alpha, w, *, kernel, bandwidth, M, diag, centering, backend):
    """The AGOP with weighted queries: sum_q w_q sum_c g_qc g_qc^T / sum_q w_q, g_qc the gradient
    of output c of f(x) = K_M(x, Z) alpha at Q[q]; its diagonal (d,) if diag. centering
    subtracts each output's w-weighted mean gradient first. With integer w it is the AGOP of the
    queries repeated w times (rfmfast.agop on them). w: (q,) > 0.

    The gradients come from rfmfast.kernel_grads in blocks of queries (at most GRAD_BLOCK
    entries each); the sums are formed in float64, shifted by the first block's weighted mean
    gradient when centering (as the fused op's reduction does), and the result is exactly
    symmetric, in Q's dtype. Memory: one block of gradients and the d x d sums."""
    from ..ops.agop import kernel_grads

    q, d = Q.shape
    c = alpha.shape[1]
    b = max(1, GRAD_BLOCK // max(1, c * d))
    w64 = w.to(torch.float64)
    total = float(w64.sum())
    s2 = s1 = shift = None
    for i in range(0, q, b):
        G = kernel_grads(
            Q[i : i + b], Z, alpha, kernel=kernel, bandwidth=bandwidth, M=M, backend=backend
        ).to(torch.float64)  # (b, c, d)
        wb = w64[i : i + b, None, None]
        if centering and shift is None:
            shift = (wb * G).sum(0, keepdim=True) / wb.sum()
        if shift is not None:
            G = G - shift
        if diag:
            part = (wb * G * G).sum(0)  # (c, d)
        else:
            Gf = G.reshape(-1, d)
            part = Gf.T @ (Gf * wb.expand(-1, c, 1).reshape(-1, 1))  # (d, d)
        s2 = part if s2 is None else s2.add_(part)
        if centering:
            s = (wb * G).sum(0)  # (c, d)
            s1 = s if s1 is None else s1.add_(s)
    if diag:
        if centering:
            s2 = s2 - s1 * s1 / total
        A = s2.sum(0) / total
    else:
        if centering:
            s2 = s2 - s1.T @ s1 / total
        A = s2 / total
        A = (A + A.T) * 0.5
    return A.to(Q.dtype)
