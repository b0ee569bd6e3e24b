"""nystroem_matmul: K(C, X) @ (K(X, C) @ V + W), each block of K(X, C) computed once and used
for both products (the product of the Nystroem normal equations)."""

from __future__ import annotations

import torch

from ... import _validate as validate
from ...backends import choose
from .. import _common

#: the backend modules, imported on first use (rfmfast.backends.impl)
__getattr__ = _common.backend_modules(__name__)


def nystroem_matmul(X, C, V, W=None, *, kernel="laplace", bandwidth=10.0, M=None, backend="auto"):
    """K(C, X) @ (K(X, C) @ V + W), with K(X, C)_ij = K_M(x_i, c_j).

    X: (n, d) points, C: (m, d) centers, V: (m, t), W: (n, t) or None -> (m, t);
    V: (m,) with W: (n,) or None -> (m,). torch in, torch out; numpy in, numpy out.
    kernel, bandwidth, M, backend as in kernel_matrix. W = None is W = 0.
    One pass over the rows of X: each block of K(X, C) is computed once and used for both
    products, so that one Nystroem CG iteration costs one kernel evaluation per (x_i, c_j).
    Memory: the output plus O(block m + m t); the (n, m) kernel matrix is never stored.
    """
    named = {"X": X, "C": C, "V": V, "W": None}
    w_np, w_shape = False, None
    if W is not None:  # W may be 1-D like V: checked here, handed over as (n, t)
        Wt, w_np = validate.to_tensor(W, "W")
        validate.check_matrix(Wt, "W", ndim=(1, 2), finite=False)
        w_shape = tuple(Wt.shape)
        named["W"] = Wt[:, None] if Wt.ndim == 1 else Wt
    t, M, np_in, mod = _common.checked_inputs(
        "nystroem_matmul", backend, kernel, bandwidth, M, named
    )
    X, C, Vt, Wt = t["X"], t["C"], t["V"], t["W"]
    validate.check_d("X", X, "C", C)
    validate.check_rows("C", C, "V", Vt)
    _check_centers_range(X, C, M)
    vec = Vt.ndim == 1
    if Wt is not None:
        validate.check_rows("X", X, "W", Wt)
        if len(w_shape) != Vt.ndim or w_shape[1:] != tuple(Vt.shape[1:]):
            want = f"({X.shape[0]},)" if vec else f"({X.shape[0]}, {Vt.shape[1]})"
            raise ValueError(
                f"W has shape {w_shape} but V has {tuple(Vt.shape)}: W must be "
                f"{want}, one column per column of V"
            )
    out = mod.nystroem_matmul(
        X, C, Vt[:, None] if vec else Vt, Wt, kernel=kernel, bandwidth=float(bandwidth), M=M
    )
    return validate.out_like(out[:, 0] if vec else out, np_in or w_np)


def _check_centers_range(X, C, M) -> None:
    """The distance-overflow check of the other ops, with C in the centers' place (it is Z
    there): its message names C."""
    try:
        _common.check_range({"Z": C, "X": X}, M)
    except ValueError as e:
        msg = str(e)
        raise ValueError("C" + msg[1:] if msg.startswith("Z ") else msg) from None


def runs_fused(device, backend="auto") -> bool:
    """Whether nystroem_matmul on tensors of ``device`` with ``backend`` runs a fused kernel
    (True) or the plain-PyTorch reference (False). A solver without a fused kernel does better
    with two kernel_matmul passes, K(C, X) @ (K(X, C) @ V + W), on the compiled kernels: the
    same product at twice the kernel evaluations, with an (n, t) intermediate."""
    if isinstance(device, str):
        device = torch.device(device)
    return choose(backend, device, "nystroem_matmul", missing_op="auto") != "reference"
