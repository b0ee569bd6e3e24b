"""Fused kernel ops, one folder each: reference.py (plain PyTorch, the truth), cpu.py (C++),
triton.py (GPU), and __init__.py (the public function and its backend choice). Shared glue:
_cpu/, _triton/, _reference.py; input handling: _common.py; the backward passes of
kernel_matrix and kernel_matmul: _autograd.py. Solvers and estimators reach
backends only through these ops (and the names re-exported here)."""

from ..backends import BACKENDS, BackendUnavailable

__all__ = ["BACKENDS", "BackendUnavailable"]
