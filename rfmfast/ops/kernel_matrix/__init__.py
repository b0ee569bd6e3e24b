"""kernel_matrix: K(X, Z) as a dense (n, m) matrix."""
from __future__ import annotations

import numpy as np
import torch

from .. import _common
from ... import _validate as _v


def kernel_matrix(X, Z=None, *, kernel="laplace", bandwidth=10.0, M=None, backend="auto",
                  out=None):
    """Kernel matrix K_ij = K_M(x_i, z_j).

    X: (n, d), Z: (m, d) or None (Z = X: one triangle is computed and mirrored) -> (n, m).
    kernel: "laplace" | "gaussian" | "l1_laplace" (formulas in rfmfast.kernels); bandwidth L > 0;
    M: (d, d) symmetric PSD, (d,) diagonal, or None (identity).
    backend: "auto" | "reference" | "cpu" | "triton" | "cuda" (env RFMFAST_BACKEND overrides).
    out: optional (n, m) C-contiguous tensor (numpy array for numpy input) of X's dtype and
    device, written in place and returned. A buffer reused across calls skips a fresh n x m
    allocation and its page faults (about 1 s for 20,000 x 20,000 float32 on the 2-core machine
    of bench/results). The cpu backend writes into it directly; the others compute a new matrix
    and copy it in.
    float32 or float64; torch in, torch out; numpy in, numpy out.
    Memory: the (n, m) output plus O(block * (block + d)) per thread; never more.
    """
    symmetric = Z is None
    t, M, np_in, mod = _common.prepare("kernel_matrix", backend, kernel, bandwidth, M,
                                       {"X": X, "Z": Z})
    X = t["X"]
    Z = X if symmetric else t["Z"]
    _v.check_d("X", X, "Z", Z)
    if out is None:
        res = mod.kernel_matrix(X, Z, kernel=kernel, bandwidth=float(bandwidth), M=M,
                                symmetric=symmetric)
        return _v.out_like(res, np_in)
    given = out
    if np_in != isinstance(out, np.ndarray) or not isinstance(out, (np.ndarray, torch.Tensor)):
        raise TypeError(f"out must be a {'numpy array' if np_in else 'torch tensor'} like X, "
                        f"got {type(out).__name__}")
    if np_in and not out.flags.writeable:
        raise ValueError("out is a read-only numpy array")
    out = torch.from_numpy(out) if np_in else out
    _v.check_buffer(out, "out", (X.shape[0], Z.shape[0]), X)
    if hasattr(mod, "kernel_matrix_into"):
        mod.kernel_matrix_into(X, Z, kernel=kernel, bandwidth=float(bandwidth), M=M,
                               symmetric=symmetric, out=out)
    else:
        out.copy_(mod.kernel_matrix(X, Z, kernel=kernel, bandwidth=float(bandwidth), M=M,
                                    symmetric=symmetric))
    return given
