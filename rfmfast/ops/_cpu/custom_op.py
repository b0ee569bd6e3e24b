"""The torch.library registration of the CPU ops: a custom op for tracing, a plain call in eager
mode."""

from __future__ import annotations

import torch

from ..._threads import torch_single_thread


class CpuOp:
    """A function registered as the custom op rfmfast::<name> (so torch.compile and fake tensors
    see its shapes through register_fake) that eager calls run directly: the custom-op
    dispatcher's first call imports torch's compiler modules (seconds, and a Ctrl-C during that
    import leaves the process broken), a plain Python call imports nothing. An eager call runs
    its torch glue (factors, reductions of the AGOP) with torch on one thread, the kernels on
    the caller's count (rfmfast._threads: torch's threads cost more than they give there)."""

    def __init__(self, name: str, impl):
        self.impl = impl
        self.op = torch.library.custom_op(f"rfmfast::{name}", mutates_args=(), device_types="cpu")(
            impl
        )
        self.__doc__ = impl.__doc__

    def register_fake(self, fake):
        return self.op.register_fake(fake)

    def __call__(self, *args):
        traced = torch.compiler.is_compiling() or any(
            isinstance(a, torch.Tensor) and type(a) is not torch.Tensor for a in args
        )
        if traced:
            return self.op(*args)
        with torch_single_thread():
            return self.impl(*args)


def cpu_op(name: str):
    """Decorator: register impl as the custom op rfmfast::<name> (see CpuOp)."""
    return lambda impl: CpuOp(name, impl)
