"""In-place dense Cholesky factorization, the direct kernel ridge solve's bulk of work.

Internal building block of rfmfast.solvers.cholesky_solve (not part of the public op set: it
does no finiteness check, its caller builds the matrix).
"""

from __future__ import annotations

import os

import torch

from ...backends import choose, impl


def cholesky_inplace(A: torch.Tensor, *, backend: str = "auto", used: dict | None = None) -> int:
    """Factor A = L L^T in place, L in A's lower triangle.

    A: (n, n) float32 or float64, C-contiguous (row-major), symmetric positive definite; only
    its lower triangle is read, and on return the strictly upper triangle holds scratch values
    (read only the lower triangle, e.g. with torch.linalg.solve_triangular(A, y, upper=False)).
    Returns 0, or j + 1 where pivot j was not positive (the LAPACK convention; A is then partly
    overwritten).
    backend: "cpu" (C++, CPU tensors: recursive factorization on rfmfast's own GEMM tiles) or
    "reference" (torch.linalg.cholesky_ex: LAPACK on CPU, cuSOLVER on CUDA), chosen like every
    op's backend (rfmfast.backends.choose); a backend without a factorization (triton) hands it
    to "auto". Under "auto" on CPU tensors with the C++ extension built, the own factorization
    or LAPACK's, whichever was timed faster on this machine for A's size class (choice.py).
    used: a dict that receives "factorization": "rfmfast", "lapack" or "cusolver".
    Memory: nothing of size n^2 beyond A (packing buffers of at most a few MB per thread).
    """
    if A.ndim != 2 or A.shape[0] != A.shape[1]:
        raise ValueError(f"cholesky: A must be square, got shape {tuple(A.shape)}")
    if A.dtype not in (torch.float32, torch.float64):
        raise TypeError(f"cholesky: A must be float32 or float64, got {A.dtype}")
    if not A.is_contiguous():
        raise ValueError("cholesky: A must be C-contiguous (it is factored in place)")
    # backends without a factorization of their own (triton) hand it to "auto"
    name = choose(backend, A.device, "cholesky", missing_op="auto")
    if A.shape[0] == 0:
        return 0
    if _timed_choice(name, backend):
        info, which = impl("cholesky", "cpu").cholesky_auto(A)
    else:
        info = int(impl("cholesky", name).cholesky_inplace(A))
        which = "rfmfast" if name == "cpu" else "cusolver" if A.device.type == "cuda" else "lapack"
    if used is not None:
        used["factorization"] = which
    return info


def prepare(n: int, dtype: torch.dtype, device, *, backend: str = "auto") -> None:
    """Settle now which factorization cholesky_inplace will use for an n x n matrix (under
    "auto" on CPU the first one of a size class is timed on a probe matrix: choice.py), so that
    a caller can do it before it allocates the matrix."""
    name = choose(backend, torch.device(device), "cholesky", missing_op="auto")
    if n > 0 and _timed_choice(name, backend):
        impl("cholesky", "cpu").choice_for(n, dtype)


def _timed_choice(name: str, backend: str) -> bool:
    """Whether the factorization is chosen by timing (choice.py): the cpu backend reached by
    "auto" (triton has no factorization and hands it to auto), not asked for by name."""
    requested = os.environ.get("RFMFAST_BACKEND") or backend
    return name == "cpu" and requested in ("auto", "triton")
