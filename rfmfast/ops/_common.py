"""What every public op does before the work: validate, convert, choose the backend."""

from __future__ import annotations

import importlib

import torch

from .. import _validate as validate
from ..backends import BACKENDS, choose, impl
from ..kernels import center_of, check_bandwidth_scale

#: names of the point sets among an op's arrays (the others are values: V, alpha)
POINTS = ("X", "Z", "Q")


def backend_modules(package: str):
    """A module __getattr__ (PEP 562) for the op package ``package``: its backend modules
    (package.cpu, package.triton, package.reference) imported on first access, so that
    rfmfast.backends.impl reaches them without importlib in a call traced by torch.compile."""

    def __getattr__(name: str):
        if name in BACKENDS:
            return importlib.import_module(f"{package}.{name}")
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    return __getattr__


def checked_inputs(op: str, backend: str, kernel: str, bandwidth: float, M, named: dict):
    """Validate the named float arrays (name -> array or None) and M; pick the backend.

    Returns (tensors, M, from_numpy, backend_module). Raises before any work on bad input.
    """
    validate.common(kernel, bandwidth, backend)
    tensors, from_numpy = {}, False
    for name, x in named.items():
        if x is None:
            tensors[name] = None
            continue
        t, np_in = validate.to_tensor(x, name)
        validate.check_matrix(
            t, name, ndim=(1, 2) if name in ("V", "alpha") else (2,), finite=False
        )
        tensors[name] = t
        from_numpy = from_numpy or np_in
    first_name = next(iter(named))
    first = tensors[first_name]
    validate.check_same(first, first_name, **{k: v for k, v in tensors.items() if k != first_name})
    name = choose(backend, first.device, op)  # a backend that can't take these tensors: say so now
    for k, t in tensors.items():
        if t is not None:
            validate.check_finite(t, k)
    M = validate.check_M(M, first.shape[1], first)
    check_bandwidth_scale(kernel, float(bandwidth), first.dtype)
    check_range(tensors, M)
    return tensors, M, from_numpy, impl(op, name)


def check_range(tensors: dict, M) -> None:
    """Refuse points whose squared distances overflow their dtype even after the distance
    rule's centering (rfmfast.kernels): |x - mu|^2 ||M|| d must stay below finfo.max / 8.
    One max-abs pass over each point set; the centered pass only for suspiciously large data.
    Skipped while tracing (it reads the data: rfmfast._validate's module doc)."""
    if validate.tracing():
        return
    pts = {k: t.detach() for k, t in tensors.items() if k in POINTS and t is not None}
    first = next(iter(pts.values()))
    fi = torch.finfo(first.dtype)
    d = first.shape[1]
    mscale = 1.0 if M is None else float(M.detach().abs().max()) * (1 if M.ndim == 1 else d)
    big = fi.max / 8

    def too_big(amax: float) -> bool:
        return amax * amax * d * max(mscale, 1e-300) > big or amax != amax

    amax = {k: validate.abs_max(t) for k, t in pts.items()}
    if not any(too_big(a) for a in amax.values()):
        return
    centers = pts.get("Z", pts.get("X"))
    mu = center_of(centers)
    for k, t in pts.items():
        spread = float((t - mu).abs().max())
        if too_big(spread):
            name = str(first.dtype).replace("torch.", "")
            raise ValueError(
                f"{k} has values up to {amax[k]:.3g} (spread {spread:.3g} about the centers' "
                f"mean): its squared distances overflow {name}. Rescale the data (e.g. divide "
                "by its standard deviation, and the bandwidth alike)"
                + (" or use float64" if first.dtype == torch.float32 else "")
            )
