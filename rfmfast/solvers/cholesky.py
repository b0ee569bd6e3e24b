"""Direct kernel ridge solve: (K(X, X) + reg I) alpha = y by Cholesky, factored in place."""
from __future__ import annotations

import time
import warnings

import numpy as np
import torch

from .. import _validate as _v
from ..backends import choose
from ..ops import _common
from ..ops.cholesky import cholesky_inplace
from ..ops.kernel_matrix import kernel_matrix
from ._params import check_solve_options
from .auto import JitterWarning, SolveInfo

#: how many times the jitter is raised (x10 each) before giving up
MAX_TRIES = 6


def cpu_workspace(n: int, dtype: torch.dtype) -> torch.Tensor:
    """An (n, n) CPU tensor for the C++ backend's matrix and factor, allocated by numpy, whose
    allocator advises huge pages for large arrays (fewer page faults and TLB misses)."""
    return torch.from_numpy(np.empty((n, n), dtype=np.float64 if dtype == torch.float64
                                     else np.float32))


def _kernel_matrix(X, kernel, bandwidth, M, backend, workspace):
    """K(X, X) for the factorization. Inputs are validated as by rfmfast.kernel_matrix (finite X,
    kernel, bandwidth, a PSD M) before any work. The C++ backend writes only the lower triangle
    (and the diagonal blocks), all that the factorization and the triangular solves read: half
    the kernel evaluations, no mirror pass; it writes into workspace when one is given. The other
    backends compute K(X, X) whole into a new matrix and ignore workspace (they cannot write in
    place, and a copy would hold two n x n matrices at once)."""
    t, M, _, _ = _common.prepare("kernel_matrix", backend, kernel, bandwidth, M, {"X": X})
    X = t["X"]
    if choose(backend, X.device, "kernel_matrix") != "cpu":
        return kernel_matrix(X, X, kernel=kernel, bandwidth=bandwidth, M=M, backend=backend)
    from ..ops import _cpu_common   # the C++ extension: imported only where it is used

    n = X.shape[0]
    if workspace is None:
        workspace = cpu_workspace(n, X.dtype)
    else:
        _v.check_buffer(workspace, "workspace", (n, n), X)
    _cpu_common.kernel_matrix_into(X, X, kernel, float(bandwidth), M, "lower",
                                   _cpu_common.np_(workspace))
    return workspace


def _lower_is_finite(K: torch.Tensor, rows: int = 1024) -> bool:
    """Whether the lower triangle of K (all the C++ backend writes) is finite, by row blocks:
    no n x n temporary."""
    n = K.shape[0]
    return all(bool(torch.isfinite(K[i:i + rows, :i + rows].tril(i)).all())
               for i in range(0, n, rows))


def cholesky_solve(X: torch.Tensor, y: torch.Tensor, *, kernel="laplace", bandwidth=10.0, M=None,
                   reg=1e-3, backend="auto", workspace: torch.Tensor | None = None,
                   verbose=False) -> tuple[torch.Tensor, SolveInfo]:
    """alpha = (K(X, X) + reg I)^{-1} y by Cholesky.

    X: (n, d), y: (n, c) -> alpha: (n, c), in X's dtype and device (pass float64 tensors for a
    float64 solve). The kernel matrix is built once, reg is added to its diagonal and it is
    factored in place: memory n^2 entries plus the op's blocks, no second n x n buffer (tested
    in tests/test_solvers.py). workspace: an optional (n, n) C-contiguous tensor of X's dtype and
    device that holds the matrix and its factor (overwritten) on the C++ backend: a caller
    solving repeatedly (the RFM fit) passes one buffer to every solve instead of allocating n^2
    entries each time; other backends ignore it. On CPU tensors with the C++ extension the factorization is
    rfmfast's own (recursive, on its packed GEMM tiles; about 2x LAPACK's rate on the 2-core
    AVX-512 machine of bench/results); elsewhere torch.linalg.cholesky_ex.

    If the factorization fails (K + reg I not numerically positive definite, e.g. reg = 0 with
    nearly repeated points), the matrix is rebuilt and jitter is added to the diagonal, starting
    at 10 * eps(dtype) * n and growing x10, up to MAX_TRIES times; success after jitter issues a
    JitterWarning and records it in info.jitter. If every try fails, numpy.linalg.LinAlgError is
    raised: never a silent wrong answer. A kernel matrix with non-finite entries (distances that
    overflowed the dtype) or a solution that overflows is a ValueError saying so.
    verbose: a line when the solve starts (the matrix's size) and one when it ends (timings).
    """
    check_solve_options("cholesky_solve", kernel=kernel, bandwidth=bandwidth, reg=reg,
                        backend=backend, verbose=verbose)
    _v.check_matrix(y, "y")
    _v.check_rows("X", X, "y", y)
    t0 = time.perf_counter()
    n = X.shape[0]
    reg = float(reg)
    dtype = str(X.dtype).replace("torch.", "")
    wider = "use float64 or " if X.dtype != torch.float64 else ""
    if verbose:
        print(f"  cholesky: n = {n}, the {n} x {n} kernel matrix takes "
              f"{n * n * X.element_size() / (1 << 20):.1f} MiB ({dtype})", flush=True)
    eps = torch.finfo(X.dtype).eps
    jitter = 0.0
    for attempt in range(MAX_TRIES + 1):
        K = _kernel_matrix(X, kernel, bandwidth, M, backend, workspace)
        if attempt > 0 and not _lower_is_finite(K):
            raise ValueError(f"the {n} x {n} kernel matrix has non-finite entries: the distances "
                             f"overflowed {dtype} (largest |X| {float(X.abs().max()):.3g}); "
                             f"{wider}rescale X (e.g. StandardScaler)")
        K.diagonal().add_(reg + jitter)
        # in place, L in K's lower triangle (C++ on CPU, LAPACK / cuSOLVER otherwise)
        failed = cholesky_inplace(K, backend=backend)
        if not failed:
            break
        K = None
        if attempt == MAX_TRIES:
            raise np.linalg.LinAlgError(
                f"Cholesky of the {n} x {n} kernel matrix + (reg = {reg:g}) I failed even with "
                f"jitter {jitter:.3g} on the diagonal (leading minor {failed} not positive). Use a "
                "larger reg, float64, or check the data for duplicated rows.")
        jitter = 10 * eps * n if jitter == 0.0 else jitter * 10
        if verbose:
            print(f"  cholesky: factorization failed (leading minor {failed}); retrying with "
                  f"jitter {jitter:.3g}", flush=True)
    if jitter:
        warnings.warn(f"Cholesky of K + reg I (n = {n}, reg = {reg:g}, {X.dtype}) failed; it "
                      f"succeeded after adding jitter {jitter:.3g} to the diagonal, so the system "
                      f"solved is (K + {reg + jitter:.3g} I) alpha = y", JitterWarning, stacklevel=3)
    # two triangular solves (each reads only its triangle): measured 5-10x faster than
    # torch.cholesky_solve for a few right-hand sides at n = 4000 on CPU
    alpha = torch.linalg.solve_triangular(K.mT, torch.linalg.solve_triangular(K, y, upper=False),
                                          upper=True)
    if not bool(torch.isfinite(alpha).all()):
        raise ValueError(f"the Cholesky solution is not finite: the solve overflowed {dtype} "
                         f"(largest |y| {float(y.abs().max()):.3g}, reg = {reg:g}, largest |X| "
                         f"{float(X.abs().max()):.3g}); {wider}rescale y and X")
    if verbose:
        print(f"  cholesky: solved in {time.perf_counter() - t0:.2f} s", flush=True)
    info = SolveInfo(solver="cholesky", n=n, dtype=str(X.dtype).replace("torch.", ""),
                     reg=float(reg), jitter=float(jitter), seconds=time.perf_counter() - t0,
                     memory_bytes=n * n * X.element_size())
    return alpha, info
