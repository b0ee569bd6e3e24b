"""Shared test inputs: named ragged shapes, M variants, cached float64 references."""
from __future__ import annotations

import functools

import numpy as np
import torch

from rfmfast.ops.agop import reference as agop_ref
from rfmfast.ops.kernel_matrix import reference as km_ref

KERNELS = ("laplace", "gaussian", "l1_laplace")
M_KINDS = ("none", "diag", "full")

# (name, n, m, d): sizes that are not multiples of any block, d = 1 and d past one block
SHAPES = [
    ("1x1_d1", 1, 1, 1),
    ("7x129_d3", 7, 129, 3),
    ("129x7_d64", 129, 7, 64),
    ("1003x129_d1", 1003, 129, 1),
    ("129x1003_d64", 129, 1003, 64),
    ("7x1003_d300", 7, 1003, 300),
    ("1003x1003_d3", 1003, 1003, 3),
]


def ids(cases):
    return [c[0] for c in cases]


@functools.lru_cache(maxsize=None)
def data(n: int, m: int, d: int, seed: int = 0):
    """float64 points X (n, d), Z (m, d) with distances around the bandwidth 10 (laplace)."""
    g = torch.Generator().manual_seed(seed + 1000 * n + 7 * m + d)
    scale = 3.0 / d ** 0.5
    X = torch.randn(n, d, generator=g, dtype=torch.float64) * 10 * scale
    Z = torch.randn(m, d, generator=g, dtype=torch.float64) * 10 * scale
    return X, Z


@functools.lru_cache(maxsize=None)
def feature_matrix(kind: str, d: int):
    g = torch.Generator().manual_seed(d)
    if kind == "none":
        return None
    if kind == "diag":
        return torch.rand(d, generator=g, dtype=torch.float64) + 0.1
    A = torch.randn(d, max(1, d // 2), generator=g, dtype=torch.float64)  # low rank PSD
    return A @ A.T / d + 0.01 * torch.eye(d, dtype=torch.float64)


def bandwidth(kernel: str, d: int) -> float:
    """Bandwidths at which the kernel values of data() spread over (0, 1), not all ~0."""
    return {"laplace": 10.0, "gaussian": 30.0, "l1_laplace": 20.0 * d ** 0.5}[kernel]


@functools.lru_cache(maxsize=None)
def ref_kernel_matrix(name, kernel, mkind, symmetric):
    _, n, m, d = next(s for s in SHAPES if s[0] == name)
    X, Z = data(n, m, d)
    M = feature_matrix(mkind, d)
    Z = X if symmetric else Z
    return km_ref.kernel_matrix(X, Z, kernel=kernel, bandwidth=bandwidth(kernel, d), M=M,
                                triangle="symmetric" if symmetric else "full")


@functools.lru_cache(maxsize=None)
def alpha(n: int, c: int):
    g = torch.Generator().manual_seed(n * 31 + c)
    return torch.randn(n, c, generator=g, dtype=torch.float64)


@functools.lru_cache(maxsize=None)
def ref_grads(q, n, d, c, kernel, mkind, train_queries):
    X, Z = data(n, q, d)
    Q = X[:q] if train_queries else Z
    return agop_ref.kernel_grads(Q, X, alpha(n, c), kernel=kernel, bandwidth=bandwidth(kernel, d),
                                 M=feature_matrix(mkind, d))


def to(x, dtype):
    return None if x is None else x.to(dtype)


def rss_growth_mb(setup: str, warm: str, run: str) -> float:
    """Peak resident memory growth (MB) of `run` in a fresh interpreter, after `setup` and a
    small warm-up call `warm`. Runs outside the source tree so the installed package (with its
    compiled module) is imported."""
    import subprocess
    import sys
    import tempfile

    code = (f"import resource, torch, rfmfast\n{setup}\n{warm}\n"
            "base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
            f"{run}\n"
            "print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) / 1024)\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       cwd=tempfile.gettempdir())
    assert r.returncode == 0, r.stderr
    return float(r.stdout.strip().splitlines()[-1])


def low_rank_data(n, d=20, seed=0):
    """Science 2024 notebook: X ~ N(0, 0.5^2 I), f*(x) = x_0 x_1 1[x_5 > 0] (MATH.md)."""
    rng = np.random.default_rng(seed)
    X = rng.normal(0.0, 0.5, (n, d))
    return X, X[:, 0] * X[:, 1] * (X[:, 5] > 0)
