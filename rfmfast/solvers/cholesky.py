"""Direct kernel ridge solve: (K(X, X) + reg I) alpha = y by Cholesky, factored in place."""

from __future__ import annotations

import time
import warnings
from contextlib import nullcontext

import numpy as np
import torch

from .. import _validate as validate
from .._threads import single_thread_glue, torch_kernel_threads
from ..ops.cholesky import cholesky_inplace
from ..ops.cholesky import prepare as prepare_factorization
from ..ops.kernel_matrix import kernel_matrix, writes_in_place
from ._params import check_solve_options, check_weights
from .auto import JitterWarning, SolveInfo

#: how many times the jitter is raised (x10 each) before giving up
MAX_TRIES = 6


class Workspace:
    """An (n, n) buffer that repeated Cholesky solves share (the RFM fit passes one to every
    solve): allocated on first use, by numpy for CPU tensors (its allocator advises huge pages
    for large arrays: fewer page faults and TLB misses), and only where the kernel matrix op
    writes into a buffer in place (rfmfast.ops.kernel_matrix.writes_in_place); elsewhere the
    solve allocates its own matrix and the workspace stays empty. Memory: n^2 entries once."""

    def __init__(self):
        self.buffer: torch.Tensor | None = None

    def get(self, X: torch.Tensor, backend: str) -> torch.Tensor | None:
        """The (n, n) buffer for X's size, dtype and device, or None where it would not be
        written in place."""
        if not writes_in_place(X.device, backend):
            return None
        n = X.shape[0]
        b = self.buffer
        if b is None or b.shape != (n, n) or b.dtype != X.dtype or b.device != X.device:
            self.buffer = None
            if X.device.type == "cpu":
                self.buffer = torch.from_numpy(
                    np.empty((n, n), dtype=np.float64 if X.dtype == torch.float64 else np.float32)
                )
            else:
                self.buffer = torch.empty(n, n, dtype=X.dtype, device=X.device)
        return self.buffer


def _kernel_matrix(X, kernel, bandwidth, M, backend, workspace):
    """K(X, X) for the factorization, validated as by rfmfast.kernel_matrix before any work.
    Only the lower triangle is asked for (all that the factorization and the triangular solves
    read: half the kernel evaluations on backends that compute it alone), into the workspace
    where the backend writes in place; elsewhere into a new matrix (a copy would hold two
    n x n matrices at once)."""
    if isinstance(workspace, Workspace):
        workspace = workspace.get(X, backend)
    elif workspace is not None:
        if not writes_in_place(X.device, backend):
            workspace = None
        else:
            validate.check_buffer(workspace, "workspace", (X.shape[0], X.shape[0]), X)
    return kernel_matrix(
        X,
        None,
        kernel=kernel,
        bandwidth=bandwidth,
        M=M,
        backend=backend,
        triangle="lower",
        out=workspace,
    )


def _lower_is_finite(K: torch.Tensor, rows: int = 1024) -> bool:
    """Whether the lower triangle of K (all the C++ backend writes) is finite, by row blocks:
    no n x n temporary."""
    n = K.shape[0]
    return all(
        bool(torch.isfinite(K[i : i + rows, : i + rows].tril(i)).all()) for i in range(0, n, rows)
    )


@single_thread_glue
def cholesky_solve(
    X: torch.Tensor,
    y: torch.Tensor,
    *,
    kernel="laplace",
    bandwidth=10.0,
    M=None,
    reg=1e-3,
    backend="auto",
    workspace: Workspace | torch.Tensor | None = None,
    verbose=False,
    weights=None,
) -> tuple[torch.Tensor, SolveInfo]:
    """alpha = (K(X, X) + reg I)^{-1} y by Cholesky; with weights, (K + reg W^{-1}) alpha = y.

    X: (n, d), y: (n, c) -> alpha: (n, c), in X's dtype and device (pass float64 tensors for a
    float64 solve). The kernel matrix is built once, reg is added to its diagonal and it is
    factored in place: memory n^2 entries plus the op's blocks, no second n x n buffer (tested
    in tests/test_solvers.py). workspace: a Workspace, or an (n, n) C-contiguous tensor of X's
    dtype and device, that holds the matrix and its factor (overwritten) where the kernel matrix
    is written in place (the C++ backend): a caller solving repeatedly (the RFM fit) passes one
    to every solve instead of allocating n^2 entries each time; other backends ignore it.
    On CPU tensors with the C++ extension the factorization is rfmfast's own (recursive, on its
    packed GEMM tiles) or LAPACK's, whichever was timed faster on this machine
    (rfmfast.ops.cholesky.choice; info.factorization says which ran); elsewhere
    torch.linalg.cholesky_ex. On CPU tensors torch's own small ops here run on one thread
    (rfmfast._threads), the kernels and LAPACK on torch.get_num_threads().

    If the factorization fails (K + reg I not numerically positive definite, e.g. reg = 0 with
    nearly repeated points), the matrix is rebuilt and jitter is added to the diagonal, starting
    at 10 * eps(dtype) * n and growing x10, up to MAX_TRIES times; success after jitter issues a
    JitterWarning and records it in info.jitter. If every try fails, numpy.linalg.LinAlgError is
    raised: never a silent wrong answer. A kernel matrix with non-finite entries (distances that
    overflowed the dtype) or a solution that overflows is a ValueError saying so.
    verbose: a line when the solve starts (the matrix's size) and one when it ends (timings).
    weights: None, or (n,) positive sample weights w: the weighted ridge, the minimiser of
    sum_i w_i (f(x_i) - y_i)^2 + reg ||f||^2, whose system differs only on the diagonal,
    reg / w_i in place of reg (drop the rows of weight zero first: they do not enter it).
    """
    check_solve_options(
        "cholesky_solve",
        kernel=kernel,
        bandwidth=bandwidth,
        reg=reg,
        backend=backend,
        verbose=verbose,
    )
    validate.check_matrix(y, "y")
    validate.check_rows("X", X, "y", y)
    w = check_weights(weights, X)
    t0 = time.perf_counter()
    n = X.shape[0]
    reg = float(reg)
    dtype = str(X.dtype).replace("torch.", "")
    wider = "use float64 or " if X.dtype != torch.float64 else ""
    if verbose:
        print(
            f"  cholesky: n = {n}, the {n} x {n} kernel matrix takes "
            f"{n * n * X.element_size() / (1 << 20):.1f} MiB ({dtype})",
            flush=True,
        )
    eps = torch.finfo(X.dtype).eps
    prepare_factorization(n, X.dtype, X.device, backend=backend)  # any timing before K exists
    jitter = 0.0
    used: dict = {}
    for attempt in range(MAX_TRIES + 1):
        K = _kernel_matrix(X, kernel, bandwidth, M, backend, workspace)
        if attempt > 0 and not _lower_is_finite(K):
            raise ValueError(
                f"the {n} x {n} kernel matrix has non-finite entries: the distances "
                f"overflowed {dtype} (largest |X| {float(X.abs().max()):.3g}); "
                f"{wider}rescale X (e.g. StandardScaler)"
            )
        if w is None:
            K.diagonal().add_(reg + jitter)
        else:
            K.diagonal().add_(reg / w + jitter)
        # in place, L in K's lower triangle (C++ on CPU, LAPACK / cuSOLVER otherwise)
        failed = cholesky_inplace(K, backend=backend, used=used)
        if not failed:
            break
        K = None
        if attempt == MAX_TRIES:
            raise np.linalg.LinAlgError(
                f"Cholesky of the {n} x {n} kernel matrix + (reg = {reg:g}) I failed even with "
                f"jitter {jitter:.3g} on the diagonal (leading minor {failed} not positive). Use a "
                "larger reg, float64, or check the data for duplicated rows."
            )
        jitter = 10 * eps * n if jitter == 0.0 else jitter * 10
        if verbose:
            print(
                f"  cholesky: factorization failed (leading minor {failed}); retrying with "
                f"jitter {jitter:.3g}",
                flush=True,
            )
    if jitter:
        warnings.warn(
            f"Cholesky of K + reg I (n = {n}, reg = {reg:g}, {X.dtype}) failed; it "
            f"succeeded after adding jitter {jitter:.3g} to the diagonal, so the system "
            f"solved is (K + {reg + jitter:.3g} I) alpha = y",
            JitterWarning,
            stacklevel=3,
        )
    # two triangular solves (each reads only its triangle): faster than torch.cholesky_solve
    # for a few right-hand sides on CPU; memory-bound, so on one thread (single_thread_glue),
    # except for many right-hand sides
    with torch_kernel_threads() if y.shape[1] > 64 else nullcontext():
        alpha = torch.linalg.solve_triangular(
            K.mT, torch.linalg.solve_triangular(K, y, upper=False), upper=True
        )
    if not bool(torch.isfinite(alpha).all()):
        raise ValueError(
            f"the Cholesky solution is not finite: the solve overflowed {dtype} "
            f"(largest |y| {float(y.abs().max()):.3g}, reg = {reg:g}, largest |X| "
            f"{float(X.abs().max()):.3g}); {wider}rescale y and X"
        )
    if verbose:
        print(f"  cholesky: solved in {time.perf_counter() - t0:.2f} s", flush=True)
    info = SolveInfo(
        solver="cholesky",
        n=n,
        dtype=str(X.dtype).replace("torch.", ""),
        reg=float(reg),
        jitter=float(jitter),
        seconds=time.perf_counter() - t0,
        memory_bytes=n * n * X.element_size(),
        factorization=used.get("factorization", ""),
    )
    return alpha, info
