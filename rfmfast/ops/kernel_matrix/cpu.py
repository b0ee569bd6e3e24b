"""kernel_matrix on the C++ CPU kernels (csrc/cpu): one pass, tiles in cache, one triangle when
Z is X. Memory: the (n, m) output, the packed copy of Z (m d) and one tile per thread."""
from .._cpu_common import kernel_matrix_into as _into, kernel_matrix_op, np_


def kernel_matrix(X, Z, *, kernel, bandwidth, M, symmetric=False):
    return kernel_matrix_op(X, Z, kernel, bandwidth, M, symmetric)


def kernel_matrix_into(X, Z, *, kernel, bandwidth, M, symmetric, out):
    """Into a given contiguous (n, m) tensor (eager only: not a traced custom op)."""
    _into(X, Z, kernel, bandwidth, M, "symmetric" if symmetric else "full", np_(out))
