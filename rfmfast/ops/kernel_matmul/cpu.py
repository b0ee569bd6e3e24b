"""kernel_matmul on the C++ CPU kernels: distance GEMM, epilogue and value GEMM per cache tile.
Memory: the output, packed copies of Z (m d) and V (m t), and per thread one tile of
block x (block + d + t); never the (n, m) kernel matrix."""
from .._cpu_common import kernel_matmul_op


def kernel_matmul(X, Z, V, *, kernel, bandwidth, M):
    return kernel_matmul_op(X, Z, V, kernel, bandwidth, M)
