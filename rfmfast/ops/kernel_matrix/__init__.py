"""kernel_matrix: K(X, Z) as a dense (n, m) matrix."""

from __future__ import annotations

import numpy as np
import torch

from ... import _validate as validate
from ...backends import BACKENDS, choose
from .. import _common

#: the backend modules, imported on first use (rfmfast.backends.impl)
__getattr__ = _common.backend_modules(__name__)

TRIANGLES = ("full", "symmetric", "lower")


def kernel_matrix(
    X, Z=None, *, kernel="laplace", bandwidth=10.0, M=None, backend="auto", out=None, triangle=None
):
    """Kernel matrix K_ij = K_M(x_i, z_j).

    X: (n, d), Z: (m, d) or None (Z = X) -> (n, m).
    kernel: "laplace" | "gaussian" | "l1_laplace" (formulas in rfmfast.kernels); bandwidth L > 0;
    M: (d, d) symmetric PSD, (d,) diagonal, or None (identity).
    backend: "auto" | "reference" | "cpu" | "triton" (env RFMFAST_BACKEND overrides).
    triangle: what is computed when Z is None: "symmetric" (the default: one triangle computed
    and mirrored, K exactly symmetric) or "lower" (only the lower triangle is guaranteed, what a
    Cholesky factorization reads; backends that do not compute it alone, see
    rfmfast.backends, give the symmetric matrix). With Z given only "full" (the default).
    out: optional (n, m) C-contiguous tensor (numpy array for numpy input) of X's dtype and
    device, written and returned: a buffer reused across calls skips a fresh n x m allocation
    and its page faults. The cpu backend writes into it directly; the others compute a new
    matrix and copy it in (writes_in_place says which).
    float32 or float64; torch in, torch out; numpy in, numpy out.
    Memory: the (n, m) output plus O(block * (block + d)) per thread; never more.
    Differentiable (once) with respect to X, Z and M on every backend (rfmfast.ops._autograd:
    the backward is the exact blocked formula on the (n, m) gradient; pairs nearer than 1e-10
    carry no gradient). With inputs that require grad, triangle="lower" gives the symmetric
    matrix and out= receives a differentiable copy. Under torch.compile / torch.export the
    checks that read the data are skipped (rfmfast._validate).
    """
    symmetric = Z is None
    if triangle is None:
        triangle = "symmetric" if symmetric else "full"
    if triangle not in TRIANGLES:
        raise ValueError(f"triangle must be one of {', '.join(TRIANGLES)}, got {triangle!r}")
    if triangle != "full" and not symmetric:
        raise ValueError(
            f"triangle={triangle!r} needs Z=None (Z = X); with Z given the matrix "
            "is computed whole (triangle='full')"
        )
    if triangle == "full" and symmetric:
        triangle = "symmetric"  # the same matrix, computed once per pair
    t, M, np_in, mod = _common.checked_inputs(
        "kernel_matrix", backend, kernel, bandwidth, M, {"X": X, "Z": Z}
    )
    X = t["X"]
    Z = X if symmetric else t["Z"]
    validate.check_d("X", X, "Z", Z)
    given, buf = out, None
    if out is not None:
        if np_in != isinstance(out, np.ndarray) or not isinstance(out, (np.ndarray, torch.Tensor)):
            raise TypeError(
                f"out must be a {'numpy array' if np_in else 'torch tensor'} like X, "
                f"got {type(out).__name__}"
            )
        if np_in and not out.flags.writeable:
            raise ValueError("out is a read-only numpy array")
        buf = torch.from_numpy(out) if np_in else out
        validate.check_buffer(buf, "out", (X.shape[0], Z.shape[0]), X)
    res = mod.kernel_matrix(
        X, Z, kernel=kernel, bandwidth=float(bandwidth), M=M, triangle=triangle, out=buf
    )
    return given if given is not None else validate.out_like(res, np_in)


def writes_in_place(device, backend="auto") -> bool:
    """Whether kernel_matrix(out=...) on tensors of ``device`` with ``backend`` writes the buffer
    directly (True) or computes a new matrix and copies it in (False): a caller holding an
    n x n workspace only gains from it in the first case."""
    if isinstance(device, str):
        device = torch.device(device)
    return BACKENDS[choose(backend, device, "kernel_matrix")].out_in_place
