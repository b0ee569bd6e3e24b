"""In-place dense Cholesky factorization, the direct kernel ridge solve's bulk of work.

Internal building block of rfmfast.solvers.cholesky_solve (not part of the public op set: it
does no finiteness check, its caller builds the matrix).
"""
from __future__ import annotations

import os

import torch

from ...backends import BackendUnavailable, available_backends, impl


def cholesky_inplace(A: torch.Tensor, *, backend: str = "auto") -> int:
    """Factor A = L L^T in place, L in A's lower triangle.

    A: (n, n) float32 or float64, C-contiguous (row-major), symmetric positive definite; only
    its lower triangle is read, and on return the strictly upper triangle holds scratch values
    (read only the lower triangle, e.g. with torch.linalg.solve_triangular(A, y, upper=False)).
    Returns 0, or j + 1 where pivot j was not positive (the LAPACK convention; A is then partly
    overwritten).
    backend: "cpu" (C++, CPU tensors: recursive factorization on rfmfast's own GEMM tiles) or
    "reference" (torch.linalg.cholesky_ex: LAPACK on CPU, cuSOLVER on CUDA). "auto" and backends
    without a factorization of their own (triton, cuda) use "cpu" on CPU tensors where it is
    built, else "reference".
    Memory: nothing of size n^2 beyond A (packing buffers of at most a few MB per thread).
    """
    if A.ndim != 2 or A.shape[0] != A.shape[1]:
        raise ValueError(f"cholesky: A must be square, got shape {tuple(A.shape)}")
    if A.dtype not in (torch.float32, torch.float64):
        raise TypeError(f"cholesky: A must be float32 or float64, got {A.dtype}")
    if not A.is_contiguous():
        raise ValueError("cholesky: A must be C-contiguous (it is factored in place)")
    # $RFMFAST_BACKEND applies where it names a backend with a factorization (cpu, reference);
    # triton and cuda have none, so they and "auto" take the best one for A's device
    forced = os.environ.get("RFMFAST_BACKEND")
    want = forced if forced in ("cpu", "reference") else backend
    if want == "cpu":
        ok, why = available_backends()["cpu"]
        if not ok:
            raise BackendUnavailable(f"backend 'cpu' is not available: {why}")
        if A.device.type != "cpu":
            raise BackendUnavailable(f"the cpu backend needs CPU tensors, got {A.device}")
        name = "cpu"
    elif want == "reference":
        name = "reference"
    else:
        name = ("cpu" if A.device.type == "cpu" and available_backends()["cpu"][0]
                else "reference")
    if A.shape[0] == 0:
        return 0
    return int(impl("cholesky", name).cholesky_inplace(A))
