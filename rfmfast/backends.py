"""Which backends exist here, what each supports (as data), and why one was not chosen.

    reference  plain PyTorch (float64-capable): the truth, and the fallback; any device
    cpu        the compiled C++ kernels (AVX2/AVX-512 chosen at run time, own threads); CPU tensors
    triton     fused Triton kernels; CUDA tensors (CPU tensors under TRITON_INTERPRET=1)

Each backend is a record: the devices it takes, the ops it implements, and what it does with
kernel_matrix's triangle= and out= (computed as asked, or a superset; written in place, or
computed and copied). ``not_supported_reasons`` turns the records into sentences, for the choice
and for ``rfmfast info``. ``backend="auto"`` picks cpu for CPU tensors and triton for CUDA
tensors, falling back to the reference quietly when those are missing. ``RFMFAST_BACKEND`` (any
of the names, or "auto") overrides the argument everywhere. An explicitly requested backend
that cannot run raises BackendUnavailable saying why and how to get it.
"""

from __future__ import annotations

import functools
import importlib
import os
from dataclasses import dataclass

#: the ops that dispatch through choose()
OPS = ("kernel_matrix", "kernel_matmul", "agop", "cholesky", "nystroem_matmul", "dual_kernel")


class BackendUnavailable(RuntimeError):
    """An explicitly requested backend cannot run here."""


@dataclass(frozen=True)
class Backend:
    """What a backend supports, as data.

    devices: tensor device types it takes, or ("any",) (triton takes CPU tensors too under
        TRITON_INTERPRET=1).
    ops: the ops it implements (a module rfmfast.ops.<op>.<name> each).
    triangles: kernel_matrix triangle= values computed as asked; others are served by a
        superset ("lower" by "symmetric", which holds the lower triangle too).
    out_in_place: kernel_matrix(out=) is written directly (no second n x m matrix); else the
        matrix is computed whole and copied in.
    """

    name: str
    devices: tuple[str, ...]
    ops: tuple[str, ...]
    triangles: tuple[str, ...]
    out_in_place: bool

    def takes(self, device) -> bool:
        if device.type in self.devices or self.devices == ("any",):
            return True
        return (
            self.name == "triton"
            and device.type == "cpu"
            and os.environ.get("TRITON_INTERPRET") == "1"
        )


BACKENDS: dict[str, Backend] = {
    b.name: b
    for b in (
        Backend("reference", ("any",), OPS, ("full", "symmetric"), out_in_place=False),
        Backend(
            "cpu",
            ("cpu",),
            (
                "kernel_matrix",
                "kernel_matmul",
                "agop",
                "cholesky",
                "nystroem_matmul",
                "dual_kernel",
            ),
            ("full", "symmetric", "lower"),
            out_in_place=True,
        ),
        Backend(
            "triton",
            ("cuda",),
            ("kernel_matrix", "kernel_matmul", "agop", "dual_kernel"),
            ("full", "symmetric"),
            out_in_place=False,
        ),
    )
}
#: the order "auto" tries, per device type
AUTO_ORDER = {"cuda": ("triton", "reference"), "cpu": ("cpu", "reference")}


#: name -> (available, why not): filled once per backend by _availability
_AVAILABLE: dict[str, tuple[bool, str]] = {}


def _availability(name: str) -> tuple[bool, str]:
    """(available, why not ("" when available)) for a backend, independent of the tensors'
    device; checked once per process. Cheap and free of calls torch.compile cannot trace (the
    descriptions of _probe are not made here), so that the backend choice of a compiled call
    is static: read from a dict, or worked out once at trace time."""
    got = _AVAILABLE.get(name)
    if got is None:
        got = _check(name)
        _AVAILABLE[name] = got
    return got


def _check(name: str) -> tuple[bool, str]:
    if name == "reference":
        return True, ""
    if name == "cpu":
        try:
            from . import _C  # noqa: F401
        except ImportError as e:
            pkg = os.path.dirname(os.path.abspath(__file__))
            if os.path.exists(os.path.join(os.path.dirname(pkg), "pyproject.toml")):
                # a source checkout shadows the installed package (e.g. `python -m` run from
                # the repository root): say so rather than suggest reinstalling
                return False, (
                    f"the C++ extension rfmfast._C is not built in the source tree "
                    f"{pkg}, which is the rfmfast imported here; build it in place with "
                    "`pip install -e .`, or run from another directory to use an "
                    "installed package"
                )
            return False, (
                f"the C++ extension rfmfast._C is not built ({e}); reinstall with "
                "`pip install .` (needs a C++17 compiler and CMake)"
            )
        return True, ""
    if name == "triton":
        try:
            import triton  # noqa: F401
        except ImportError:
            return False, "triton is not installed (`pip install triton`)"
        import torch

        if os.environ.get("TRITON_INTERPRET") == "1" or torch.cuda.is_available():
            return True, ""
        return (
            False,
            "no CUDA device visible to torch (set TRITON_INTERPRET=1 to run on CPU, slowly)",
        )
    raise ValueError(name)


# Whether the C++ extension loads is decided here, at import (one load of rfmfast._C, cheap):
# a first call compiled with torch.compile must not meet the ImportError of a missing extension
# while tracing (dynamo cannot trace the except path; fullgraph would fail).
_availability("cpu")


@functools.cache
def _probe(name: str) -> tuple[bool, str]:
    """(available, reason) for a backend, independent of the tensors' device: _availability
    with a description of each available backend (for rfmfast info)."""
    ok, why = _availability(name)
    if not ok:
        return False, why
    if name == "reference":
        return True, "plain PyTorch"
    import torch

    if name == "cpu":
        from . import _C

        return True, (
            f"C++ kernels, {_C.isa()} code path, {torch.get_num_threads()} threads "
            "(torch.get_num_threads())"
        )
    import triton

    if os.environ.get("TRITON_INTERPRET") == "1":
        return True, f"triton {triton.__version__} in interpreter mode (TRITON_INTERPRET=1)"
    return True, f"triton {triton.__version__} on {torch.cuda.get_device_name()}"


def available_backends() -> dict[str, tuple[bool, str]]:
    """{name: (available, reason)} for every backend, as seen from this process."""
    return {name: _probe(name) for name in BACKENDS}


def not_supported_reasons(name: str, device, op: str) -> list[str]:
    """Why backend ``name`` cannot run ``op`` on tensors of ``device``: [] when it can."""
    b = BACKENDS[name]
    ok, why = _availability(name)
    reasons = [] if ok else [f"backend {name!r} is not available: {why}"]
    if not b.takes(device):
        reasons.append(
            f"the {name} backend takes {' or '.join(d.upper() for d in b.devices)} "
            f"tensors, got {device}"
        )
    if op not in b.ops:
        reasons.append(f"backend {name!r} has no implementation of {op}")
    return reasons


def choose(backend: str, device, op: str, *, missing_op: str = "raise") -> str:
    """Resolve ``backend`` ("auto" or a name) for ``op`` on tensors of ``device``; raise
    BackendUnavailable if impossible. missing_op="auto": a backend that could run but lacks
    this op (e.g. triton for the Cholesky factorization) hands the op to "auto" instead."""
    forced = os.environ.get("RFMFAST_BACKEND")
    if forced:
        if forced != "auto" and forced not in BACKENDS:
            raise ValueError(
                f"RFMFAST_BACKEND={forced!r} is not one of auto, {', '.join(BACKENDS)}"
            )
        backend = forced
    if backend != "auto":
        reasons = not_supported_reasons(backend, device, op)
        if not reasons:
            return backend
        if missing_op == "auto" and reasons == [
            f"backend {backend!r} has no implementation of {op}"
        ]:
            backend = "auto"
        else:
            raise BackendUnavailable(reasons[0])
    for name in AUTO_ORDER.get(device.type, ("reference",)):
        if not not_supported_reasons(name, device, op):
            return name
    return "reference"


def impl(op: str, backend: str):
    """The module rfmfast.ops.<op>.<backend>, as an attribute of its op's package (whose module
    __getattr__, rfmfast.ops._common.backend_modules, imports it on first use): torch.compile
    evaluates a module attribute at trace time, where a call of importlib.import_module would
    break the graph."""
    from . import ops  # (its op packages are its attributes once imported)

    pkg = getattr(ops, op, None)
    mod = getattr(pkg, backend, None) if pkg is not None else None
    return mod if mod is not None else importlib.import_module(f"rfmfast.ops.{op}.{backend}")
