"""Taps: where in a torch model the AGOP's variable sits (the input, a layer's input, or a conv
layer's patches), and a hook that hands that variable to a function and uses what it returns.

A tap turns ``model(x)`` into a function of the tapped variable h: the hook sees the value of h
that the forward pass produced (``natural``) and replaces it downstream by ``supply(natural)``.
Everything upstream of the tap still runs but no gradient flows to it: h is made a leaf.
"""

from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F
from torch import nn

WRT = ("input", "patches")


def find_layer(model: nn.Module, layer: str) -> nn.Module:
    try:
        return model.get_submodule(layer)
    except AttributeError:
        names = [n for n, _ in model.named_modules() if n]
        shown = ", ".join(names[:12]) + (", ..." if len(names) > 12 else "")
        raise ValueError(f"model has no submodule {layer!r}; its submodules: {shown}") from None


def conv_patches(conv: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    """The patches a Conv2d sees: x (N, c, H, W) -> (N, L, c*kh*kw), each patch ordered
    (channel, row, col), L output positions in row-major order; the layer's padding (zeros,
    reflect, replicate or circular, 'same' included) applied first."""
    mode = "constant" if conv.padding_mode == "zeros" else conv.padding_mode
    pad = conv._reversed_padding_repeated_twice
    if any(pad):
        x = F.pad(x, pad, mode=mode)
    P = F.unfold(x, conv.kernel_size, dilation=conv.dilation, padding=0, stride=conv.stride)
    return P.transpose(1, 2)


def conv_from_patches(conv: nn.Conv2d, P: torch.Tensor, out_shape) -> torch.Tensor:
    """The Conv2d's output computed from its patches P (N, L, c*kh*kw): (N, k, H', W')."""
    k = conv.out_channels
    Y = P @ conv.weight.reshape(k, -1).T
    if conv.bias is not None:
        Y = Y + conv.bias
    return Y.transpose(1, 2).reshape(out_shape)


class Tap:
    """The variable of an AGOP in ``model``: its input (layer=None), the input of the submodule
    named ``layer`` (wrt="input"), or the patches of the Conv2d named ``layer`` (wrt="patches")."""

    def __init__(self, model: nn.Module, layer: str | None, wrt: str):
        if wrt not in WRT:
            raise ValueError(f"wrt must be one of {WRT}, got {wrt!r}")
        self.model, self.layer, self.wrt = model, layer, wrt
        self.module = None if layer is None else find_layer(model, layer)
        if wrt == "patches":
            if not isinstance(self.module, nn.Conv2d):
                what = (
                    "no layer"
                    if layer is None
                    else f"layer {layer!r} is {type(self.module).__name__}"
                )
                raise ValueError(f"wrt='patches' needs layer= naming an nn.Conv2d; {what}")
            if self.module.groups != 1:
                raise ValueError(
                    f"wrt='patches': layer {layer!r} has groups={self.module.groups}; only "
                    "groups=1 convolutions have one patch vector per position"
                )

    @contextlib.contextmanager
    def hooked(self, supply):
        """Within the block, model(x) runs with the tapped variable replaced by supply(natural)."""
        if self.module is None:
            yield
            return
        if self.wrt == "input":

            def pre(_mod, args, kwargs):
                if not args:
                    raise ValueError(
                        f"layer {self.layer!r} was called without a positional input; "
                        "the AGOP needs its first positional argument"
                    )
                return (supply(args[0]), *args[1:]), kwargs

            handle = self.module.register_forward_pre_hook(pre, with_kwargs=True)
        else:

            def post(mod, args, output):
                P = supply(conv_patches(mod, args[0]))
                return conv_from_patches(mod, P, output.shape)

            handle = self.module.register_forward_hook(post)
        try:
            yield
        finally:
            handle.remove()

    def describe(self) -> str:
        if self.module is None:
            return "the model's input"
        if self.wrt == "patches":
            return f"the patches of layer {self.layer!r}"
        return f"the input of layer {self.layer!r}"
