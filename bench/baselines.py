"""The baselines a user would otherwise write, each as good as plain PyTorch allows.

Laplace kernel exp(-||x - z|| / L), M = I unless given.
"""
from __future__ import annotations

import torch


def matmul_plain(X, Z, V, L, rows=2048):
    """(a) plain blocked PyTorch: torch.cdist on row blocks, exp, matmul."""
    out = torch.empty(X.shape[0], V.shape[1], dtype=X.dtype)
    for i in range(0, X.shape[0], rows):
        K = torch.cdist(X[i:i + rows], Z)
        out[i:i + rows] = torch.exp(K * (-1.0 / L)) @ V
    return out


def matmul_tuned(X, Z, V, L, rows=512, cols=4096):
    """(b) well-tuned blocked PyTorch: addmm on cache-sized tiles into preallocated buffers, the
    epilogue in place (clamp, sqrt, scale, exp), then addmm into the output."""
    n, m = X.shape[0], Z.shape[0]
    xn = (X * X).sum(1, keepdim=True)
    zn = (Z * Z).sum(1)[None, :]
    out = torch.zeros(n, V.shape[1], dtype=X.dtype)
    buf = torch.empty(rows, cols, dtype=X.dtype)
    for i in range(0, n, rows):
        ib = min(rows, n - i)
        Xi, xi, oi = X[i:i + ib], xn[i:i + ib], out[i:i + ib]
        for j in range(0, m, cols):
            jb = min(cols, m - j)
            T = buf[:ib, :jb]
            torch.addmm(xi + zn[:, j:j + jb], Xi, Z[j:j + jb].T, beta=1, alpha=-2, out=T)
            T.clamp_(min=0).sqrt_().mul_(-1.0 / L).exp_()
            oi.addmm_(T, V[j:j + jb])
    return out


def tuned_best(X, Z, V, L, timeit):
    """Sweep a few tile shapes of matmul_tuned and return (seconds, memory, (rows, cols)) of the
    fastest: the baseline gets its best configuration."""
    best = None
    for rows, cols in ((256, 4096), (512, 4096), (1024, 2048), (2048, 20000)):
        s, mem, _ = timeit(lambda: matmul_tuned(X, Z, V, L, rows, cols), repeat=2)
        if best is None or s < best[0]:
            best = (s, mem, (rows, cols))
    return best


def floor_matmul(X, Z, V, L, timeit, rows=256, cols=4096):
    """(d) the floor: the distance GEMM alone on cache-sized tiles (rows x cols, the tuned
    baseline's best shape), plus sqrt+exp over all n*m entries at the throughput measured on one
    cache-resident tile; returns (gemm_s, sqrt_exp_s)."""
    n, m = X.shape[0], Z.shape[0]
    buf = torch.empty(rows, cols, dtype=X.dtype)

    def gemm():
        for i in range(0, n, rows):
            ib = min(rows, n - i)
            for j in range(0, m, cols):
                jb = min(cols, m - j)
                torch.mm(X[i:i + ib], Z[j:j + jb].T, out=buf[:ib, :jb])

    g, _, _ = timeit(gemm, repeat=3)
    buf.uniform_(0, 100)

    def ew():
        for _ in range(20):
            buf.sqrt_().exp_()

    e, _, _ = timeit(ew, repeat=3)
    return g, e / 20 * (n * m) / (rows * cols)


def xrfm_agop(X, Q, alpha, sqrtM, L=10.0, batch=10_000):
    """xrfm 0.4.5's own Laplace gradient + AGOP path, as its fit_M runs it: get_agop over query
    batches of 10,000, summed."""
    from xrfm.rfm_src.kernels import LaplaceKernel

    kern = LaplaceKernel(bandwidth=L, exponent=1.0)
    total = None
    for i in range(0, Q.shape[0], batch):
        part = kern.get_agop(x=X, z=Q[i:i + batch], coefs=alpha.T, mat=sqrtM)
        total = part if total is None else total + part
    return total / Q.shape[0]


def sgemm_rate(n, w, dtype=torch.float32, timeit=None, rows=2048):
    """Measured GEMM rate (flop/s) of tile(rows x n) @ (n x w), the AGOP's value GEMM shape."""
    A = torch.randn(rows, n, dtype=dtype)
    B = torch.randn(n, w, dtype=dtype)
    s, _, _ = timeit(lambda: A @ B, repeat=3)
    return 2.0 * rows * n * w / s
