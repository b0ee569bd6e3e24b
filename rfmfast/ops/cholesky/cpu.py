"""Cholesky on the C++ CPU kernels (csrc/cpu/cholesky.h): recursive, nearly all of it in
rfmfast's packed GEMM. Memory: packing buffers of a few MB per thread beyond A. Under
backend="auto" it is used only where it was timed faster than LAPACK here (choice.py)."""

from __future__ import annotations

import torch

from ... import _C
from .._cpu.glue import fn, np_, threads
from . import choice
from . import reference as lapack


def cholesky_inplace(A: torch.Tensor) -> int:
    if A.device.type != "cpu":
        raise ValueError(f"the cpu backend needs CPU tensors, got {A.device}")
    return int(fn("cholesky", A.dtype)(np_(A), threads()))


def choice_for(n: int, dtype: torch.dtype) -> str:
    """ "own" or "lapack" for an n x n factorization here (timed on first use: choice.py)."""
    nt = threads()
    own = fn("cholesky", dtype)

    def lapack_np(a):
        lapack.cholesky_inplace(torch.from_numpy(a))

    return choice.choose(n, dtype, _C.isa(), nt, lambda a: own(a, nt), lapack_np)


def cholesky_auto(A: torch.Tensor) -> tuple[int, str]:
    """(info, "rfmfast" or "lapack"): the factorization choice.py picks for A's size, dtype,
    instruction-set path and thread count, run in place."""
    if A.device.type != "cpu":
        raise ValueError(f"the cpu backend needs CPU tensors, got {A.device}")
    if choice_for(A.shape[0], A.dtype) == "lapack":
        return lapack.cholesky_inplace(A), "lapack"
    return int(fn("cholesky", A.dtype)(np_(A), threads())), "rfmfast"
