"""Which backends exist here, and why one was not chosen.

    reference  plain PyTorch (float64-capable): the truth, and the fallback; any device
    cpu        the compiled C++ kernels (OpenMP, AVX2/AVX-512 chosen at run time); CPU tensors
    triton     fused Triton kernels; CUDA tensors (CPU tensors under TRITON_INTERPRET=1)
    cuda       reserved for hand-written CUDA kernels (none shipped: Triton covers the GPU)

``backend="auto"`` picks cpu for CPU tensors and triton for CUDA tensors, falling back to the
reference quietly when those are missing. ``RFMFAST_BACKEND`` (any of the names, or "auto")
overrides the argument everywhere. An explicitly requested backend that cannot run raises
BackendUnavailable saying why and how to get it. ``python -m rfmfast.info`` prints this table.
"""
from __future__ import annotations

import functools
import importlib
import os

BACKENDS = ("reference", "cpu", "triton", "cuda")


class BackendUnavailable(RuntimeError):
    """An explicitly requested backend cannot run here."""


@functools.lru_cache(maxsize=None)
def _probe(name: str) -> tuple[bool, str]:
    """(available, reason) for a backend, independent of the tensors' device."""
    if name == "reference":
        return True, "plain PyTorch"
    if name == "cpu":
        try:
            from . import _C  # noqa: F401
        except ImportError as e:
            pkg = os.path.dirname(os.path.abspath(__file__))
            if os.path.exists(os.path.join(os.path.dirname(pkg), "pyproject.toml")):
                # a source checkout shadows the installed package (e.g. `python -m` run from
                # the repository root): say so rather than suggest reinstalling
                return False, (f"the C++ extension rfmfast._C is not built in the source tree "
                               f"{pkg}, which is the rfmfast imported here; build it in place with "
                               "`pip install -e .`, or run from another directory to use an "
                               "installed package")
            return False, (f"the C++ extension rfmfast._C is not built ({e}); reinstall with "
                           "`pip install .` (needs a C++17 compiler, CMake and OpenMP)")
        return True, f"C++ kernels, {_C.isa()} code path, {_C.max_threads()} OpenMP threads"
    if name == "triton":
        try:
            import triton  # noqa: F401
        except ImportError:
            return False, "triton is not installed (`pip install triton`)"
        import torch

        if os.environ.get("TRITON_INTERPRET") == "1":
            return True, f"triton {triton.__version__} in interpreter mode (TRITON_INTERPRET=1)"
        if not torch.cuda.is_available():
            return False, "no CUDA device visible to torch (set TRITON_INTERPRET=1 to run on CPU, slowly)"
        return True, f"triton {triton.__version__} on {torch.cuda.get_device_name()}"
    if name == "cuda":
        try:
            from . import _C_cuda  # noqa: F401
        except ImportError:
            return False, ("no hand-written CUDA kernels are shipped: the triton backend covers "
                           "the GPU ops")
        return True, "hand-written CUDA kernels"
    raise ValueError(name)


def available_backends() -> dict[str, tuple[bool, str]]:
    """{name: (available, reason)} for every backend, as seen from this process."""
    return {name: _probe(name) for name in BACKENDS}


def _device_ok(name: str, device) -> tuple[bool, str]:
    if name == "reference":
        return True, ""
    if name == "cpu":
        return (device.type == "cpu", f"the cpu backend takes CPU tensors, got {device}")
    if name in ("triton", "cuda"):
        if device.type == "cuda":
            return True, ""
        if name == "triton" and os.environ.get("TRITON_INTERPRET") == "1" and device.type == "cpu":
            return True, ""
        return False, f"the {name} backend takes CUDA tensors, got {device}"
    return False, "unknown backend"


def choose(backend: str, device, op: str) -> str:
    """Resolve ``backend`` ("auto" or a name) for tensors on ``device``; raise if impossible."""
    forced = os.environ.get("RFMFAST_BACKEND")
    if forced:
        if forced != "auto" and forced not in BACKENDS:
            raise ValueError(f"RFMFAST_BACKEND={forced!r} is not one of auto, {', '.join(BACKENDS)}")
        backend = forced
    if backend == "auto":
        order = ("triton", "cuda", "reference") if device.type == "cuda" else ("cpu", "reference")
        for name in order:
            if _probe(name)[0] and _device_ok(name, device)[0] and has_impl(op, name):
                return name
        return "reference"
    ok, why = _probe(backend)
    if not ok:
        raise BackendUnavailable(f"backend {backend!r} is not available: {why}")
    ok, why = _device_ok(backend, device)
    if not ok:
        raise BackendUnavailable(why)
    if not has_impl(op, backend):
        raise BackendUnavailable(f"backend {backend!r} has no implementation of {op}")
    return backend


@functools.lru_cache(maxsize=None)
def has_impl(op: str, backend: str) -> bool:
    try:
        importlib.import_module(f"rfmfast.ops.{op}.{backend}")
    except ImportError:
        return False
    return True


def impl(op: str, backend: str):
    """The module rfmfast.ops.<op>.<backend>."""
    return importlib.import_module(f"rfmfast.ops.{op}.{backend}")
