"""What every public op does before the work: validate, convert, choose the backend."""
from __future__ import annotations

from .. import _validate as V
from ..backends import choose, impl


def prepare(op: str, backend: str, kernel: str, bandwidth: float, M, named: dict):
    """Validate the named float arrays (name -> array or None) and M; pick the backend.

    Returns (tensors, M, from_numpy, backend_module). Raises before any work on bad input.
    """
    V.common(kernel, bandwidth, backend)
    tensors, from_numpy = {}, False
    for name, x in named.items():
        if x is None:
            tensors[name] = None
            continue
        t, np_in = V.to_tensor(x, name)
        V.check_matrix(t, name, ndim=(1, 2) if name in ("V", "alpha") else (2,), finite=False)
        tensors[name] = t
        from_numpy = from_numpy or np_in
    first_name = next(iter(named))
    first = tensors[first_name]
    V.check_same(first, first_name, **{k: v for k, v in tensors.items() if k != first_name})
    name = choose(backend, first.device, op)  # a backend that can't take these tensors: say so now
    for k, t in tensors.items():
        if t is not None:
            V.check_finite(t, k)
    M = V.check_M(M, first.shape[1], first)
    return tensors, M, from_numpy, impl(op, name)
