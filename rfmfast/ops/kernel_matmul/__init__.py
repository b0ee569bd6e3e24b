"""kernel_matmul: K(X, Z) @ V without ever storing K(X, Z)."""

from __future__ import annotations

from ... import _validate as validate
from .. import _common

#: the backend modules, imported on first use (rfmfast.backends.impl)
__getattr__ = _common.backend_modules(__name__)


def kernel_matmul(X, Z, V, *, kernel="laplace", bandwidth=10.0, M=None, backend="auto"):
    """K(X, Z) @ V, with K_ij = K_M(x_i, z_j).

    X: (n, d), Z: (m, d), V: (m, t) -> (n, t); V: (m,) -> (n,).
    kernel, bandwidth, M, backend as in kernel_matrix.
    Memory: the output plus O(block * (block + d + t)) per thread; the (n, m) kernel matrix is
    never stored.
    Differentiable (once) with respect to X, Z, V and M on every backend: dV = K(Z, X) dS, and
    dX, dZ, dM fused products of the kernel_grads form, never n x m x d (rfmfast.ops._autograd,
    which states the zero-distance convention: pairs nearer than 1e-10 carry no gradient).
    Under torch.compile / torch.export the checks that read the data (NaN, M PSD, range) are
    skipped and the backend choice is made at trace time (rfmfast._validate).
    """
    t, M, np_in, mod = _common.checked_inputs(
        "kernel_matmul", backend, kernel, bandwidth, M, {"X": X, "Z": Z, "V": V}
    )
    X, Z, Vt = t["X"], t["Z"], t["V"]
    validate.check_d("X", X, "Z", Z)
    validate.check_rows("Z", Z, "V", Vt)
    vec = Vt.ndim == 1
    out = mod.kernel_matmul(
        X, Z, Vt[:, None] if vec else Vt, kernel=kernel, bandwidth=float(bandwidth), M=M
    )
    return validate.out_like(out[:, 0] if vec else out, np_in)
