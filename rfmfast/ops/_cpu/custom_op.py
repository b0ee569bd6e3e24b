"""The torch.library registration of the CPU ops: a custom op for tracing, a plain call in eager
mode."""

from __future__ import annotations

import torch
from torch.autograd.function import once_differentiable

from ..._threads import torch_single_thread

#: tensor types an eager call takes as plain tensors (any other Tensor subclass, e.g. a fake or
#: functional tensor of a tracer, goes through the dispatcher)
_EAGER_TYPES = (torch.Tensor, torch.nn.Parameter)


class CpuOp:
    """A function registered as the custom op rfmfast::<name> (so torch.compile and fake tensors
    see its shapes through register_fake) that eager calls run directly: the custom-op
    dispatcher's first call imports torch's compiler modules (seconds, and a Ctrl-C during that
    import leaves the process broken), a plain Python call imports nothing. An eager call runs
    its torch glue (factors, reductions of the AGOP) with torch on one thread, the kernels on
    the caller's count (rfmfast._threads: torch's threads cost more than they give there).

    An op with a backward formula (register_autograd) has it on the custom op (for traced
    calls: torch.compile, torch.export) and on an equivalent torch.autograd.Function for eager
    calls whose tensors require grad (no dispatcher there either). Its backward is
    differentiable once: a second derivative raises (once_differentiable)."""

    def __init__(self, name: str, impl):
        self.name = name
        self.impl = impl
        self.op = torch.library.custom_op(f"rfmfast::{name}", mutates_args=(), device_types="cpu")(
            impl
        )
        self.__doc__ = impl.__doc__
        self._function = None

    def register_fake(self, fake):
        return self.op.register_fake(fake)

    def register_autograd(self, backward, setup_context):
        """backward(ctx, *grads) -> one gradient (or None) per input; setup_context(ctx,
        inputs, output) as for torch.library.register_autograd."""
        self.op.register_autograd(backward, setup_context=setup_context)
        impl = self.impl

        class Function(torch.autograd.Function):
            @staticmethod
            def forward(*args):
                with torch_single_thread():
                    return impl(*args)

            @staticmethod
            def setup_context(ctx, inputs, output):
                setup_context(ctx, inputs, output)

            @staticmethod
            @once_differentiable
            def backward(ctx, *grads):
                return backward(ctx, *grads)

        Function.__name__ = Function.__qualname__ = f"{self.name}_function"
        self._function = Function

    def __call__(self, *args):
        traced = torch.compiler.is_compiling() or any(
            isinstance(a, torch.Tensor) and type(a) not in _EAGER_TYPES for a in args
        )
        if traced:
            return self.op(*args)
        if (
            self._function is not None
            and torch.is_grad_enabled()
            and any(isinstance(a, torch.Tensor) and a.requires_grad for a in args)
        ):
            return self._function.apply(*args)
        with torch_single_thread():
            return self.impl(*args)


def cpu_op(name: str):
    """Decorator: register impl as the custom op rfmfast::<name> (see CpuOp)."""
    return lambda impl: CpuOp(name, impl)
