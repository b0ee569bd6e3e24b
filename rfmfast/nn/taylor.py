"""linearized(model) and quadratic(model): the first- and second-order Taylor models of a torch
model in its parameters around their initial values, trainable like the model itself."""

from __future__ import annotations

import copy

import torch
from torch import nn


def _key(name: str) -> str:
    return name.replace(".", "__")


class TaylorModel(nn.Module):
    """f_T(x; theta) = f(x; theta0) + J(x; theta0) delta [+ 1/2 delta^T H(x; theta0) delta],
    delta = theta - theta0, theta0 the wrapped model's parameters when the TaylorModel was made.

    Its parameters() are theta (initialized to theta0, same names with '.' -> '__'), so any
    torch optimizer trains it; theta0 and the model's buffers are buffers (moved by .to()).
    Parameters with requires_grad=False stay fixed at their values. The derivatives are
    forward-mode (torch.func.jvp; for order 2 a jvp of a jvp), so a forward pass costs about
    2 (order 1) or 4 (order 2) forward passes of the model, and backward works through them.
    """

    def __init__(self, model: nn.Module, order: int):
        super().__init__()
        if order not in (1, 2):
            raise ValueError(f"order must be 1 or 2, got {order}")
        if not isinstance(model, nn.Module):
            raise ValueError(f"model must be an nn.Module, got {type(model).__name__}")
        self.order = order
        base = copy.deepcopy(model)
        object.__setattr__(self, "_base", base)  # not a submodule: its parameters are not ours
        self._names = [n for n, p in base.named_parameters() if p.requires_grad]
        if not self._names:
            raise ValueError("model has no trainable parameters (requires_grad)")
        self._fixed = [n for n, p in base.named_parameters() if not p.requires_grad]
        self._buffer_names = [n for n, _ in base.named_buffers()]
        self.theta = nn.ParameterDict()
        named = dict(base.named_parameters())
        for n in self._names:
            self.register_buffer("theta0__" + _key(n), named[n].detach().clone())
            self.theta[_key(n)] = nn.Parameter(named[n].detach().clone())
        for n in self._fixed:
            self.register_buffer("fixed__" + _key(n), named[n].detach().clone())
        for n, b in base.named_buffers():
            self.register_buffer("buffer__" + _key(n), b.detach().clone())

    def _others(self):
        out = {n: getattr(self, "fixed__" + _key(n)) for n in self._fixed}
        out.update({n: getattr(self, "buffer__" + _key(n)) for n in self._buffer_names})
        return out

    def theta0(self) -> dict:
        return {n: getattr(self, "theta0__" + _key(n)) for n in self._names}

    def delta(self) -> dict:
        """theta - theta0 per parameter name."""
        t0 = self.theta0()
        return {n: self.theta[_key(n)] - t0[n] for n in self._names}

    def forward(self, *args, **kwargs):
        from torch.func import functional_call, jvp

        others = self._others()

        def f(p):
            return functional_call(self._base, {**p, **others}, args, kwargs)

        p0, delta = self.theta0(), self.delta()
        with torch.no_grad():
            f0 = f(p0)
        if self.order == 1:
            _, first = jvp(f, (p0,), (delta,))
            return f0 + first

        def first_derivative(p):
            return jvp(f, (p,), (delta,))[1]

        first, second = jvp(first_derivative, (p0,), (delta,))
        return f0 + first + 0.5 * second

    def extra_repr(self) -> str:
        return f"order={self.order}, model={type(self._base).__name__}"


def linearized(model: nn.Module) -> TaylorModel:
    """The linear model f(x; theta0) + J(x; theta0)(theta - theta0) of ``model`` (a copy of it
    at its current parameters theta0), as a trainable module: the NTK regime's model."""
    return TaylorModel(model, 1)


def quadratic(model: nn.Module) -> TaylorModel:
    """The neural quadratic model f(x; theta0) + J delta + 1/2 delta^T H delta of ``model``
    (delta = theta - theta0, J and H at theta0), as a trainable module. For a shallow ReLU net
    f = v^T relu(U x) it is exactly the net with its activation pattern frozen at theta0."""
    return TaylorModel(model, 2)
