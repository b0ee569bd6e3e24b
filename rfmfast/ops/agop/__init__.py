"""kernel_grads and agop: gradients of a kernel predictor, and their average outer product."""

from __future__ import annotations

from ... import _validate as validate
from .. import _common

#: the backend modules, imported on first use (rfmfast.backends.impl)
__getattr__ = _common.backend_modules(__name__)

_ACCUMULATE = (None, "float32", "float64")


def _agop_inputs(op, Q, X, alpha, kernel, bandwidth, M, backend):
    t, M, np_in, mod = _common.checked_inputs(
        op, backend, kernel, bandwidth, M, {"Q": Q, "X": X, "alpha": alpha}
    )
    Q, X, a = t["Q"], t["X"], t["alpha"]
    validate.check_d("Q", Q, "X", X)
    validate.check_rows("X", X, "alpha", a)
    return Q, X, a, M, np_in, mod


def kernel_grads(Q, X, alpha, *, kernel="laplace", bandwidth=10.0, M=None, backend="auto"):
    """Gradients of f(x) = K_M(x, X) @ alpha at the queries.

    Q: (q, d), X: (n, d) centers, alpha: (n, c) -> (q, c, d); alpha: (n,) -> (q, d).
    Formulas in rfmfast.kernels; for the Laplace kernel a center at distance < 1e-10 from the
    query (the query itself, when queries are training points) contributes nothing.
    Memory: the output plus O(block * (n-block + c d)) per thread; nothing of size q x n x d.
    """
    Q, X, a, M, np_in, mod = _agop_inputs("agop", Q, X, alpha, kernel, bandwidth, M, backend)
    vec = a.ndim == 1
    G = mod.kernel_grads(
        Q, X, a[:, None] if vec else a, kernel=kernel, bandwidth=float(bandwidth), M=M
    )
    return validate.out_like(G[:, 0] if vec else G, np_in)


def agop(
    Q,
    X,
    alpha,
    *,
    kernel="laplace",
    bandwidth=10.0,
    M=None,
    diag=False,
    centering=False,
    accumulate=None,
    backend="auto",
):
    """Average gradient outer product (1/q) sum_{x in Q} sum_c grad f_c(x) grad f_c(x)^T.

    Q: (q, d) queries (e.g. a random sample of training points), X: (n, d) centers,
    alpha: (n, c) or (n,) -> (d, d); with diag=True only the diagonal, (d,).
    centering: subtract each output's mean gradient over Q before the outer products.
    accumulate: None (the input dtype) or "float64" for the sums (the result keeps Q's dtype).
    Fused: gradients exist one block of queries at a time; memory O(d^2 + block (n-block + c d))
    per thread beyond the inputs, plus on the cpu backend the packed value matrix
    [alpha_1 X | ... | alpha_c X | alpha], n (c d + c) entries held once, outputs taken in
    groups so that it stays under 256 MB (a group re-runs the distance tiles).
    The result is exactly symmetric (rfmfast.ops.agop.reduction, shared by every backend).
    """
    if accumulate not in _ACCUMULATE:
        raise ValueError(f"accumulate must be one of {_ACCUMULATE}, got {accumulate!r}")
    Q, X, a, M, np_in, mod = _agop_inputs("agop", Q, X, alpha, kernel, bandwidth, M, backend)
    A = mod.agop(
        Q,
        X,
        a[:, None] if a.ndim == 1 else a,
        kernel=kernel,
        bandwidth=float(bandwidth),
        M=M,
        diag=bool(diag),
        centering=bool(centering),
        accumulate=accumulate,
    )
    return validate.out_like(A, np_in)
