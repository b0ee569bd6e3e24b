"""What every solve reports (SolveInfo), the memory budget, and the "auto" choice of solver."""

from __future__ import annotations

import dataclasses
import os

import torch

SOLVERS = ("auto", "cholesky", "cg")


class JitterWarning(RuntimeWarning):
    """The Cholesky factorization failed and succeeded only after adding jitter to the diagonal."""


@dataclasses.dataclass
class SolveInfo:
    """What a kernel solve did.

    solver: "cholesky", "cg" or "nystroem" (solvers/nystroem.py); reason: why it was chosen
    (for solver="auto"), and for "nystroem" the precision of its m x m factorizations when
    they had to be redone in float64.
    jitter: diagonal added beyond reg after a failed factorization (0.0 when none was needed);
    the system solved is then (K + (reg + jitter) I) alpha = y.
    iterations, residual, tol, converged: for "cg", the iteration count and the final relative
    residual max_c ||y_c - (K + reg I) alpha_c|| / ||y_c|| (computed afresh, not the recursive
    estimate); for "cholesky", iterations = 0 and residual = None (not computed).
    status: "converged" (cholesky: always), or why cg stopped short of tol: "max_iter",
    "stalled" (a restart did not halve the residual: the dtype's rounding floor), "diverged"
    (the residual grew far above its best or became non-finite) or "breakdown"
    (p^T (K + reg I) p <= 0: the matrix is not numerically positive definite).
    message: the ConvergenceWarning cg issued ("" when it converged).
    rank: the Nystroem preconditioner's rank ("cg"). seconds: wall time. memory_bytes: the
    largest buffer the solver held (the n x n matrix for "cholesky", n x rank for "cg", the
    m x m matrices for "nystroem").
    peak_memory_bytes: the most the solver held at once, from the sizes of its buffers (not
    measured; None where the solver does not say). centers: m, the number of Nystroem centers
    ("nystroem"; None for the exact solvers, whose centers are all n training points).
    factorization: for "cholesky", whose factorization ran: "rfmfast" (the C++ one), "lapack"
    or "cusolver" (rfmfast.ops.cholesky.choice says how "auto" picks on CPU).
    """

    solver: str
    n: int
    dtype: str
    reg: float
    jitter: float = 0.0
    iterations: int = 0
    residual: float | None = None
    tol: float | None = None
    converged: bool = True
    status: str = "converged"
    message: str = ""
    rank: int | None = None
    seconds: float = 0.0
    memory_bytes: int = 0
    reason: str = ""
    peak_memory_bytes: int | None = None
    centers: int | None = None
    factorization: str = ""


def available_memory(device: torch.device) -> int:
    """Bytes free for a new buffer on ``device``: CUDA's free memory, or the host's MemAvailable."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free)
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return 8 << 30  # unknown platform: assume 8 GiB


def choose_solver(
    n: int, reg: float, itemsize: int, device: torch.device, memory_budget: int | None
) -> tuple[str, str]:
    """("cholesky" | "cg", reason).

    cholesky whenever the n x n matrix fits the budget (default: half the free memory of the
    device); cg otherwise: a learned M makes the kernel more ill-conditioned, and preconditioned
    CG then needs several times the iterations it needs with M = I, so that it is slower than
    the direct solve wherever that fits (docs/benchmarks.md, `rfmfast bench --only solve`). reg
    is accepted for the reason text: with reg = 0 CG on an interpolation problem may not converge.
    """
    need = n * n * itemsize
    budget = int(memory_budget) if memory_budget is not None else available_memory(device) // 2
    gib = 1 << 30
    if need > budget:
        note = "" if reg > 0 else " (reg = 0: CG may converge slowly)"
        return "cg", (
            f"cg: the {n} x {n} kernel matrix needs {need / gib:.2f} GiB, over the "
            f"memory budget of {budget / gib:.2f} GiB{note}"
        )
    return "cholesky", (
        f"cholesky: the {n} x {n} kernel matrix ({need / gib:.2f} GiB) fits the "
        f"memory budget of {budget / gib:.2f} GiB"
    )


def redo_by_cholesky(
    info: SolveInfo, n: int, itemsize: int, device: torch.device, memory_budget: int | None
) -> bool:
    """solver="auto" after a cg that did not converge (it warned): True to redo the solve by
    Cholesky (with its jitter retry) because the n x n matrix fits the budget (default half the
    free memory); False to keep cg's answer when it only ran out of iterations or reached the
    rounding floor (its best iterate, residual in info). A cg that diverged or broke down with
    no room for Cholesky raises numpy.linalg.LinAlgError: never a diverged answer."""
    need = n * n * itemsize
    budget = int(memory_budget) if memory_budget is not None else available_memory(device) // 2
    if need <= budget:
        return True
    if info.status in ("diverged", "breakdown"):
        import numpy as np

        raise np.linalg.LinAlgError(
            f"solver='auto': {info.message} The {n} x {n} matrix of a Cholesky fallback "
            f"({need / (1 << 30):.2f} GiB) does not fit the memory budget "
            f"({budget / (1 << 30):.2f} GiB), so there is no answer."
        )
    return False
