"""Glue between torch tensors and the compiled C++ kernels (rfmfast._C), shared by the CPU ops.

Tensors are handed to C++ as numpy views (no copy for contiguous CPU tensors); the C++ code
never links against libtorch. Points are translated and mapped here by the distance rule of
rfmfast.kernels before the kernels see them.
"""

from __future__ import annotations

import numpy as np
import torch

from ... import _C
from ..._threads import kernel_threads
from ...kernels import RESOLVE, center_of, kernel_record, mahalanobis_factor

#: up to this many value columns the products take V^T and row dot products instead of a
#: packed V and the value GEMM (csrc/cpu/params.h SMALL_T)
SMALL_T = 4


def values_args(V: torch.Tensor):
    """The (Vp, Vt) pair the C++ products take for values V (m, t): one of them None."""
    if V.shape[1] <= SMALL_T:
        return None, np_(V.T)
    return fn("pack_values", V.dtype)(np_(V), threads()), None


def fn(name: str, dtype: torch.dtype):
    """The _C entry point <name>_f32 or <name>_f64 for dtype."""
    return getattr(_C, f"{name}_{'f64' if dtype == torch.float64 else 'f32'}")


def threads() -> int:
    """The kernels' thread count (rfmfast._threads.kernel_threads)."""
    return kernel_threads()


def np_(t: torch.Tensor) -> np.ndarray:
    """A numpy view of a CPU tensor (a contiguous copy if it is not contiguous)."""
    return t.detach().contiguous().numpy()


def opt(M):
    """M detached (custom ops receive it as a possibly tracked tensor), or None."""
    return None if M is None else M.detach()


def factor(M, kernel, dtype):
    """(S as numpy or None, s_mode) for the kernels: 0 identity, 1 diagonal, 2 (r, d) matrix."""
    S = mahalanobis_factor(M, kernel, dtype)
    if S is None:
        return None, 0
    return np_(S), 1 if S.ndim == 1 else 2


def map_points(X: torch.Tensor, mu: np.ndarray | None, S, s_mode):
    """Translate points by -mu, map them by S and take their squared norms: (Xt, norms) numpy.
    (Points whose squared distances would overflow were refused by ops._common.check_range.)"""
    return fn("prepare", X.dtype)(np_(X), mu, S, s_mode, threads())


def translation(Z: torch.Tensor, kernel: str, S) -> np.ndarray | None:
    """The distance rule's translation (the centers' mean), or None where it does not apply
    (Kernel.translates)."""
    if not kernel_record(kernel).translates(S is not None):
        return None
    return center_of(Z.detach()).numpy()


def map_pair(X, Z, M, kernel, same: bool):
    """Both point sets centered and mapped by the factor of M, with their norms; Z packed for
    the kernels; and the distance rule's exact-path arguments (original rows, S, s_mode,
    RESOLVE). Returns (Xt, xn, Zp, zn, exact)."""
    S, s_mode = factor(opt(M), kernel, X.dtype)
    mu = translation(Z, kernel, S)
    Xt, xn = map_points(X, mu, S, s_mode)
    Zt, zn = (Xt, xn) if same else map_points(Z, mu, S, s_mode)
    Xo = np_(X)
    exact = (Xo, Xo if same else np_(Z), S, s_mode, RESOLVE)
    return Xt, xn, fn("pack_points", X.dtype)(Zt, threads()), zn, exact


def out_array(n: int, m: int, dtype: torch.dtype) -> np.ndarray:
    """An uninitialized C-contiguous (n, m) numpy array of dtype."""
    return np.empty((n, m), dtype=np.float64 if dtype == torch.float64 else np.float32)
