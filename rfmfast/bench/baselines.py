"""The baselines a user would otherwise write, each as good as plain PyTorch allows (one copy,
used by every benchmark), and the adapters that call the peer libraries the same way.

Laplace kernel exp(-||x - z||_M / L); M = I unless given. Every function takes tensors on any
device and allocates on the inputs' device.
"""

from __future__ import annotations

import importlib
import importlib.util

import torch


# ---- availability of the peers ----------------------------------------------------------
def has(module: str, install: str) -> tuple[bool, str]:
    """(True, "") when `module` imports; else (False, why and how to get it)."""
    if importlib.util.find_spec(module.split(".")[0]) is None:
        return False, f"{module} is not installed ({install})"
    try:
        importlib.import_module(module)
    except Exception as e:  # noqa: BLE001 - any import failure means "not available here"
        return False, f"{module} does not import: {type(e).__name__}: {str(e)[:120]}"
    return True, ""


def needs_xrfm():
    return has("xrfm", "pip install xrfm==0.4.5, or pip install 'rfmfast[bench]'")


def needs_falkon():
    return has(
        "falkon",
        "pip install falkon (a CPU wheel: see the Falkon docs); "
        "use FalkonOptions(use_cpu=True, keops_active='no')",
    )


def needs_pykeops():
    return has("pykeops.torch", "pip install pykeops (compiles on first use)")


def needs_sklearn():
    return has("sklearn", "pip install scikit-learn")


# ---- kernel_matrix ----------------------------------------------------------------------
def cdist_exp(X, Z, L):
    """torch.cdist + in-place exp: the whole n x m matrix, as one writes it."""
    return torch.cdist(X, Z).mul_(-1.0 / L).exp_()


# ---- kernel_matmul ----------------------------------------------------------------------
def matmul_plain(X, Z, V, L, rows=2048):
    """Plain blocked PyTorch: torch.cdist on row blocks, exp, matmul."""
    out = torch.empty(X.shape[0], V.shape[1], dtype=X.dtype, device=X.device)
    for i in range(0, X.shape[0], rows):
        K = torch.cdist(X[i : i + rows], Z)
        out[i : i + rows] = torch.exp(K * (-1.0 / L)) @ V
    return out


def matmul_blocked(X, Z, V, L, rows=512, cols=4096):
    """Well-tuned blocked PyTorch: distances by addmm on (rows x cols) tiles into one
    preallocated buffer, the epilogue in place (clamp, sqrt, scale, exp), then addmm into the
    output. cols >= m gives one tile per row block (the GPU setting)."""
    n, m = X.shape[0], Z.shape[0]
    rows, cols = min(rows, n), min(cols, m)
    xn = (X * X).sum(1, keepdim=True)
    zn = (Z * Z).sum(1)[None, :]
    out = torch.zeros(n, V.shape[1], dtype=X.dtype, device=X.device)
    buf = torch.empty(rows, cols, dtype=X.dtype, device=X.device)
    for i in range(0, n, rows):
        ib = min(rows, n - i)
        Xi, xi, oi = X[i : i + ib], xn[i : i + ib], out[i : i + ib]
        for j in range(0, m, cols):
            jb = min(cols, m - j)
            T = buf[:ib, :jb]
            torch.addmm(xi + zn[:, j : j + jb], Xi, Z[j : j + jb].T, beta=1, alpha=-2, out=T)
            T.clamp_(min=0).sqrt_().mul_(-1.0 / L).exp_()
            oi.addmm_(T, V[j : j + jb])
    return out


#: tile shapes the tuned CPU baseline is swept over (its best one is used)
CPU_TILES = ((256, 4096), (512, 4096), (1024, 2048), (2048, 20000))


def gpu_rows(n: int, m: int, gb: float = 4.0) -> int:
    """Rows per block on a GPU: as many as fit `gb` GB of float32 kernel entries."""
    return max(1, min(n, int(gb * 2**30 / 4) // max(m, 1)))


def best_tiles(X, Z, V, L, tiles=CPU_TILES):
    """The fastest tile shape of matmul_blocked for these inputs (one timed call each after
    one warm-up), so the baseline gets its best configuration."""
    import time

    best = None
    for rows, cols in tiles:
        matmul_blocked(X[: min(512, X.shape[0])], Z, V, L, rows, cols)
        t = time.perf_counter()
        matmul_blocked(X, Z, V, L, rows, cols)
        s = time.perf_counter() - t
        if best is None or s < best[0]:
            best = (s, (rows, cols))
    return best[1]


def compiled_matmul(L):
    """torch.compile of one row block of matmul_blocked (GPU baseline): returns
    run(X, Z, V, rows) -> K(X, Z) @ V; equal row blocks keep to one graph."""

    def block(Xb, xnb, Z, zn, V):
        G = torch.addmm(zn[None, :], Xb, Z.T, alpha=-2.0) + xnb[:, None]
        return torch.exp(G.clamp(min=0).sqrt() * (-1.0 / L)) @ V

    cblock = torch.compile(block, dynamic=False)

    def run(X, Z, V, rows):
        xn, zn = (X * X).sum(1), (Z * Z).sum(1)
        out = torch.empty(X.shape[0], V.shape[1], dtype=X.dtype, device=X.device)
        for i in range(0, X.shape[0], rows):
            out[i : i + rows] = cblock(X[i : i + rows], xn[i : i + rows], Z, zn, V)
        return out

    return run


def floor_matmul(X, Z, V, L, rows=256, cols=4096, timer=None):
    """The floor from torch's parts: the distance GEMM alone on (rows x cols) tiles, plus
    sqrt+exp over all n*m entries at the throughput measured on one cache-resident tile.
    Returns (gemm seconds, sqrt/exp seconds), each the best of 2 after a warm-up."""
    import time

    n, m = X.shape[0], Z.shape[0]
    rows, cols = min(rows, n), min(cols, m)
    buf = torch.empty(rows, cols, dtype=X.dtype, device=X.device)

    def best(fn, k=2):
        fn()
        ts = []
        for _ in range(k):
            t = time.perf_counter()
            fn()
            ts.append(time.perf_counter() - t)
        return min(ts)

    def gemm():
        for i in range(0, n, rows):
            ib = min(rows, n - i)
            for j in range(0, m, cols):
                jb = min(cols, m - j)
                torch.mm(X[i : i + ib], Z[j : j + jb].T, out=buf[:ib, :jb])

    g = best(gemm)
    buf.uniform_(0, 100)

    def ew():
        for _ in range(20):
            buf.sqrt_().exp_()

    e = best(ew)
    return g, e / 20 * (n * m) / (rows * cols)


# ---- kernel_grads / agop ----------------------------------------------------------------
def grads_blocked(Q, X, alpha, L, rows=1024, eps=1e-10):
    """Gradients of f_c = sum_i alpha_ic K(., x_i) at the queries, laplace, M = I, in blocked
    PyTorch: W = K / distance (0 for coincident pairs), then one GEMM with the value matrix
    [alpha_1 X | ... | alpha_c X] and one with alpha. (q, c, d)."""
    n, d = X.shape
    c = alpha.shape[1]
    Vx = (alpha[:, :, None] * X[:, None, :]).reshape(n, c * d)
    xn = (X * X).sum(1)[None, :]
    out = torch.empty(Q.shape[0], c, d, dtype=Q.dtype, device=Q.device)
    for i in range(0, Q.shape[0], rows):
        Qi = Q[i : i + rows]
        D = torch.addmm(xn, Qi, X.T, alpha=-2.0).add_((Qi * Qi).sum(1, keepdim=True))
        D.clamp_(min=0).sqrt_()
        W = torch.where(D > eps, torch.exp(D * (-1.0 / L)) / D.clamp(min=eps), 0.0)
        s = W @ alpha  # (b, c)
        G = s[:, :, None] * Qi[:, None, :] - (W @ Vx).reshape(-1, c, d)
        out[i : i + rows] = G.mul_(-1.0 / L)
    return out


def xrfm_grads(X, Q, alpha, L=10.0, batch=10_000):
    """xrfm 0.4.5's LaplaceKernel.get_function_grads (M = I), in query batches: (q, c, d)."""
    from xrfm.rfm_src.kernels import LaplaceKernel

    kern = LaplaceKernel(bandwidth=L, exponent=1.0)
    parts = [
        kern.get_function_grads(x=X, z=Q[i : i + batch], coefs=alpha.T)
        for i in range(0, Q.shape[0], batch)
    ]
    return torch.cat(parts, dim=1).permute(1, 0, 2)


def sqrt_psd(M):
    """Symmetric square root of a PSD matrix (xrfm's kernels take M^(1/2))."""
    w, U = torch.linalg.eigh(M.double())
    return ((U * w.clamp(min=0).sqrt()) @ U.T).to(M.dtype)


def xrfm_agop(X, Q, alpha, sqrtM, L=10.0, batch=10_000):
    """xrfm 0.4.5's own Laplace gradient + AGOP path, as its fit_M runs it: get_agop over query
    batches (10,000 on CPU), summed, divided by the number of queries."""
    from xrfm.rfm_src.kernels import LaplaceKernel

    kern = LaplaceKernel(bandwidth=L, exponent=1.0)
    total = None
    for i in range(0, Q.shape[0], batch):
        part = kern.get_agop(x=X, z=Q[i : i + batch], coefs=alpha.T, mat=sqrtM)
        total = part if total is None else total + part
    return total / Q.shape[0]


def xrfm_gpu_batch(q: int, device) -> int:
    """xRFM 0.4.5's AGOP sample batch for LaplaceKernel on GPU (its 'cheap' rule):
    min(q, 10,000 * free memory / 40 GB)."""
    if device.type != "cuda":
        return q
    free, _ = torch.cuda.mem_get_info(device)
    return max(1, min(q, int(10_000 * max(free / 40e9, 1e-3))))


def xrfm_agop_reimpl(X, Q, alpha, sqrtM, L=10.0, batch=10_000, eps=1e-10):
    """xRFM 0.4.5's LaplaceKernel(exponent=1).get_agop path re-implemented op for op in plain
    PyTorch (for machines without xrfm), in the same batches, divided by the queries."""
    xm = X @ sqrtM
    total = torch.zeros(X.shape[1], X.shape[1], dtype=X.dtype, device=X.device)
    for i in range(0, Q.shape[0], batch):
        zm = Q[i : i + batch] @ sqrtM
        dists = torch.cdist(xm, zm)
        dists.clamp_(min=0)
        kmat = dists.clone().mul_(-1.0 / L).exp_()
        mask = dists >= eps
        dists.clamp_(min=eps).pow_(-1.0)
        kmat.mul_(dists).mul_(mask).mul_(-1.0 / L)
        coefs = alpha.T
        grads = torch.einsum("li,ij,jd->ljd", coefs, kmat, zm) - torch.einsum(
            "li,ij,id->ljd", coefs, kmat, xm
        )
        grads = (grads @ sqrtM).reshape(-1, grads.shape[-1])
        total += grads.T @ grads
    return total / Q.shape[0]


def gemm_rate(n, w, dtype=torch.float32, device="cpu", rows=2048):
    """Measured GEMM rate (flop/s) of tile (rows x n) @ (n x w): the AGOP's GEMM shapes."""
    import time

    A = torch.randn(rows, n, dtype=dtype, device=device)
    B = torch.randn(n, w, dtype=dtype, device=device)
    A @ B
    best = float("inf")
    for _ in range(2):
        t = time.perf_counter()
        A @ B
        if A.device.type == "cuda":
            torch.cuda.synchronize(A.device)
        best = min(best, time.perf_counter() - t)
    return 2.0 * rows * n * w / best


# ---- solves -----------------------------------------------------------------------------
def krr_lu(X, y, L, reg):
    """Kernel ridge by LU, as xrfm solves it: K = cdist + exp, K += reg I, torch.linalg.solve."""
    K = cdist_exp(X, X, L)
    K.diagonal().add_(reg)
    return torch.linalg.solve(K, y)


def krr_cholesky(X, y, L, reg):
    """Kernel ridge by LAPACK's (cuSOLVER's) Cholesky: cholesky_ex, then cholesky_solve."""
    K = cdist_exp(X, X, L)
    K.diagonal().add_(reg)
    F, info = torch.linalg.cholesky_ex(K)
    if int(info):
        raise ArithmeticError(f"cholesky_ex: pivot {int(info)} not positive")
    return torch.cholesky_solve(y, F)


def falkon_fit(X, y, L, reg, centers, maxiter=20):
    """Falkon (Nystroem KRR with `centers` centers, preconditioned CG): the fitted model.
    Its penalty is on the mean loss, so reg / n matches (K + reg I) alpha = y."""
    import falkon

    opt = falkon.FalkonOptions(use_cpu=X.device.type == "cpu", keops_active="no")
    kern = falkon.kernels.LaplacianKernel(sigma=L, opt=opt)
    return falkon.Falkon(
        kernel=kern, penalty=reg / X.shape[0], M=centers, maxiter=maxiter, seed=0, options=opt
    ).fit(X, y)


def falkon_kernel(L, device):
    import falkon

    opt = falkon.FalkonOptions(use_cpu=device.type == "cpu", keops_active="no")
    return falkon.kernels.LaplacianKernel(sigma=L, opt=opt)
