"""Cholesky on the C++ CPU kernels (csrc/cpu/cholesky.h): recursive, nearly all of it in
rfmfast's packed GEMM. Memory: packing buffers of a few MB per thread beyond A."""

from __future__ import annotations

import torch

from .._cpu.glue import fn, np_, threads


def cholesky_inplace(A: torch.Tensor) -> int:
    if A.device.type != "cpu":
        raise ValueError(f"the cpu backend needs CPU tensors, got {A.device}")
    return int(fn("cholesky", A.dtype)(np_(A), threads()))
