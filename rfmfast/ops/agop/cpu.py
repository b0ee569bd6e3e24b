"""kernel_grads and agop on the C++ CPU kernels, by the value-matrix trick of MATH.md: one GEMM
of the weight tile with V = [alpha_1 X | ... | alpha_c X | alpha] gives all c gradients.

Memory: packed centers and V (n (d + c d + c)), per thread one tile of block x (block + c d),
and for the AGOP gradients of one chunk of queries (64 MB) plus d x d sums; never q x n x d."""
from .._cpu_common import agop_op, kernel_grads_op


def kernel_grads(Q, X, alpha, *, kernel, bandwidth, M):
    return kernel_grads_op(Q, X, alpha, kernel, bandwidth, M)


def agop(Q, X, alpha, *, kernel, bandwidth, M, diag=False, centering=False, accumulate=None):
    return agop_op(Q, X, alpha, kernel, bandwidth, M, diag, centering, accumulate or "")
