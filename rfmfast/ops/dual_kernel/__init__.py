"""dual_kernel: the deep NNGP / NTK kernels of infinitely wide networks on the unit sphere."""

from __future__ import annotations

import torch

from ... import _validate as validate
from ...backends import choose, impl
from .activations import CUSTOM, Activation, singular_exponent
from .activations import activation as activation_record

__all__ = ["dual_kernel", "Activation", "activation_record", "singular_exponent", "KINDS"]

KINDS = ("nngp", "ntk")
#: how far a row's norm may be from 1 (relative) before it is refused as off the sphere
SPHERE_TOL = {torch.float32: 1e-5, torch.float64: 1e-6}


def _on_sphere(X: torch.Tensor, name: str, normalize: bool) -> torch.Tensor:
    norms = torch.linalg.vector_norm(X, dim=1, dtype=torch.float64)
    if normalize:
        if bool((norms == 0).any()):
            raise ValueError(f"{name} has a zero row: it has no direction to normalize")
        return (X / norms.to(X.dtype)[:, None]).contiguous()
    off = float((norms - 1).abs().max())
    if off > SPHERE_TOL[X.dtype]:
        raise ValueError(
            f"{name}'s rows must lie on the unit sphere (a row norm is off by {off:.2g}); "
            "pass normalize=True to divide each row by its norm"
        )
    return X


def dual_kernel(
    X,
    Z=None,
    *,
    depth: int,
    activation="relu",
    kind: str = "nngp",
    log_domain: bool = False,
    normalize: bool = False,
    backend: str = "auto",
):
    """The depth-L NNGP or NTK kernel of a fully connected network of infinite width.

    X: (n, d), Z: (m, d) or None (Z = X), rows on the unit sphere (normalize=True divides them
    by their norms) -> (n, m). With rho = x.z (clipped to [-1, 1]) and the dual activation psi
    (rfmfast.ops.dual_kernel.activations; psi(1) = 1):
        kind="nngp":  Sigma_0 = rho,  Sigma_l = psi(Sigma_{l-1})                  -> Sigma_L
        kind="ntk":   K_0 = rho,      K_l = psi(Sigma_{l-1}) + K_{l-1} psi'(Sigma_{l-1})  -> K_L
    activation: a name ("relu", "erf", "sine_<a>", "hermite_<k>", "2d_opt", "3d_opt", "5d_opt",
    "9d_opt") or Activation.custom(psi, dpsi) (then the reference backend computes it).
    log_domain (NNGP only): returns (log|Sigma_L|, sign Sigma_L), computed in float64 by the
    reference path, for depths where Sigma_L underflows (rho^(k^L) for hermite_k): exact for
    polynomial activations, the leading term at 0 for the others once |Sigma| < e^-700.
    backend: "auto" | "reference" | "cpu" | "triton". The cpu backend takes rho from torch's GEMM
    and runs the depth recursion fused (one pass over the output, the steps in registers); the
    triton backend fuses GEMM and recursion per tile for polynomial and sine activations.
    float32 or float64; torch in, torch out; numpy in, numpy out.
    Memory: the (n, m) output (the reference: two to four more float64 (n, m) arrays, see its
    module). Time: one GEMM plus n m L activation steps.
    """
    act = activation_record(activation)
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    if isinstance(depth, bool) or not isinstance(depth, int) or depth < 0:
        raise ValueError(f"depth must be an integer >= 0, got {depth!r}")
    if log_domain and kind != "nngp":
        raise ValueError("log_domain=True is for kind='nngp' (the NTK's sum has no log form here)")
    if kind == "ntk" and act.code == CUSTOM and act.dpsi_fn is None:
        raise ValueError("kind='ntk' needs psi': pass Activation.custom(psi, dpsi)")
    validate.check_backend_name(backend)
    Xt, np_in = validate.to_tensor(X, "X")
    validate.check_matrix(Xt, "X", ndim=(2,), finite=True)
    if Z is None:
        Zt = None
    else:
        Zt, _ = validate.to_tensor(Z, "Z")
        validate.check_matrix(Zt, "Z", ndim=(2,), finite=True)
        validate.check_same(Xt, "X", Z=Zt)
        validate.check_d("X", Xt, "Z", Zt)
    Xt = _on_sphere(Xt, "X", normalize)
    Zt = Xt if Zt is None else _on_sphere(Zt, "Z", normalize)
    name = choose(backend, Xt.device, "dual_kernel")
    if act.code == CUSTOM or log_domain:
        if backend not in ("auto", "reference"):
            why = "custom activations" if act.code == CUSTOM else "log_domain=True"
            raise ValueError(f"{why} run on the reference backend only, not {backend!r}")
        name = "reference"
    res = impl("dual_kernel", name).dual_kernel(
        Xt, Zt, depth=depth, act=act, kind=kind, log_domain=log_domain
    )
    if log_domain:
        return tuple(validate.out_like(r, np_in) for r in res)
    return validate.out_like(res, np_in)
