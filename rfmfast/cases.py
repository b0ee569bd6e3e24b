"""Named, seeded inputs shared by the tests, the benchmarks and the demo: shapes, M kinds, points.

Nothing is downloaded: every array comes from a seed, in float64 on the CPU unless a function
says otherwise; callers round and move it (``.to(dtype)``, ``.to(device)``) so that every
backend and precision sees the same points.

Shapes (sizes avoid multiples of any block size; d = 1, and d past one block):

    SHAPES            (name, n, m, d): X (n, d), Z (m, d) for kernel_matrix and kernel_matmul,
                      up to 1003 x 1003 (the compiled CPU backend)
    GRAD_SHAPES       (name, q, n, d): queries Q (q, d), centers X (n, d) for kernel_grads / agop
    SMALL_CASES       (kernel, M kind, (n, m, d)): sizes for Triton's interpreter (n, m in
                      {1, 17, 70}, d in {1, 5, 33}); every kernel meets every M kind once
    SMALL_GRAD_CASES  (kernel, M kind, (q, n, d, c)): the same for kernel_grads / agop
    SMALL_SYMMETRIC   (M kind, n, d): symmetric kernel matrices K(X, X) (n, n)

Data:

    points(n, m, d)              X (n, d), Z (m, d) ~ N(0, (30 / sqrt d)^2 I): kernel values of
                                 bandwidth(kernel, d) spread over (0, 1)
    with_coincident(X, Z, k)     Z (m, d) whose first k rows are X's (coincident pairs)
    queries(X, Z, q, kind)       Q (q, d): "new" points, "train" points (X's first rows), or
                                 "mixed" (two thirds of them centers, at random positions)
    shifted_points(case, ...)    (X, Z) far from the origin (case = an offset) or
                                 near-duplicates (case = "near-dup": Z = X + 4e-4-sized noise)
    feature_matrix(kind, d)      M: None, (d,) diagonal, (d, d) full rank, or (d, d) of rank
                                 d // 3 with exactly representable entries
    coefficients(n, c)           alpha (n, c), the values / coefficients of a kernel machine
    low_rank_data(n, d)          the RFM paper's low-rank target: X ~ N(0, 0.5^2 I) (n, d),
                                 y = x_0 x_1 1[x_5 > 0] (n,)
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch

from .kernels import KERNELS as _KERNEL_RECORDS

#: every kernel, in the order of rfmfast.kernels.KERNELS
KERNELS = tuple(_KERNEL_RECORDS)
#: the kinds of feature matrix M: none, a (d,) diagonal, a full-rank (d, d) matrix
M_KINDS = ("none", "diag", "full")
#: M_KINDS and a (d, d) matrix of rank d // 3 (its factor drops rows)
ALL_M_KINDS = M_KINDS + ("lowrank",)
#: the offsets and near-duplicates of shifted_points()
SHIFTED_CASES = ("0", "1e3", "1e4", "near-dup")


class Shape(NamedTuple):
    """X (n, d) against Z (m, d)."""

    name: str
    n: int
    m: int
    d: int


class GradShape(NamedTuple):
    """q queries (q, d) against n centers (n, d)."""

    name: str
    q: int
    n: int
    d: int


SHAPES = [
    Shape("1x1_d1", 1, 1, 1),
    Shape("7x129_d3", 7, 129, 3),
    Shape("129x7_d64", 129, 7, 64),
    Shape("1003x129_d1", 1003, 129, 1),
    Shape("129x1003_d64", 129, 1003, 64),
    Shape("7x1003_d300", 7, 1003, 300),
    Shape("1003x1003_d3", 1003, 1003, 3),
]

GRAD_SHAPES = [
    GradShape("1q_1n_d1", 1, 1, 1),
    GradShape("7q_129n_d3", 7, 129, 3),
    GradShape("129q_7n_d64", 129, 7, 64),
    GradShape("129q_1003n_d64", 129, 1003, 64),
    GradShape("7q_129n_d300", 7, 129, 300),
    GradShape("1003q_129n_d3", 1003, 129, 3),
]

# d = 1 and 5 take Triton's difference-first tiles (r <= 8), d = 33 its GEMM tiles (more than one
# 16-wide k-step in the interpreter; lowrank: r = 11)
SMALL_CASES = [
    ("laplace", "none", (1, 70, 1)),
    ("laplace", "diag", (17, 70, 5)),
    ("laplace", "full", (70, 17, 33)),
    ("laplace", "lowrank", (70, 1, 33)),
    ("laplace", "full", (17, 17, 5)),
    ("gaussian", "none", (17, 17, 1)),
    ("gaussian", "diag", (70, 17, 33)),
    ("gaussian", "full", (17, 70, 33)),
    ("gaussian", "lowrank", (1, 70, 33)),
    ("l1_laplace", "none", (70, 1, 33)),
    ("l1_laplace", "diag", (17, 70, 33)),
    ("l1_laplace", "full", (70, 17, 5)),
    ("l1_laplace", "lowrank", (17, 17, 33)),
]

SMALL_GRAD_CASES = [
    ("laplace", "none", (17, 70, 1, 1)),
    ("laplace", "diag", (70, 17, 5, 1)),
    ("laplace", "full", (17, 70, 33, 3)),
    ("laplace", "lowrank", (70, 70, 33, 1)),
    ("laplace", "full", (1, 17, 5, 3)),
    ("gaussian", "none", (1, 17, 1, 3)),
    ("gaussian", "diag", (17, 70, 33, 3)),
    ("gaussian", "full", (70, 17, 5, 1)),
    ("gaussian", "lowrank", (17, 70, 33, 3)),
    ("l1_laplace", "none", (17, 70, 1, 1)),
    ("l1_laplace", "diag", (70, 70, 33, 1)),
    ("l1_laplace", "full", (17, 70, 33, 3)),
    ("l1_laplace", "lowrank", (70, 17, 5, 3)),
]

SMALL_SYMMETRIC = [("full", 70, 33), ("diag", 17, 5), ("lowrank", 70, 33), ("none", 1, 1)]


def _generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(int(seed))


def points(n: int, m: int, d: int, seed: int = 0):
    """float64 X (n, d) and Z (m, d), independent N(0, (30 / sqrt d)^2 I): distances of about
    40 whatever d, where the kernels at bandwidth(kernel, d) take values spread over (0, 1)."""
    g = _generator(seed + 1000 * n + 7 * m + d)
    scale = 3.0 / d**0.5
    X = torch.randn(n, d, generator=g, dtype=torch.float64) * 10 * scale
    Z = torch.randn(m, d, generator=g, dtype=torch.float64) * 10 * scale
    return X, Z


def bandwidth(kernel: str, d: int) -> float:
    """The bandwidth at which the kernel values of points() spread over (0, 1), not all ~0."""
    return {"laplace": 10.0, "gaussian": 30.0, "l1_laplace": 20.0 * d**0.5}[kernel]


def with_coincident(X, Z, k: int):
    """A copy of Z (m, d) whose first k rows equal X's first k rows: pairs at distance 0."""
    Z = Z.clone()
    Z[:k] = X[:k]
    return Z


def queries(X, Z, q: int, kind: str, seed: int = 0):
    """Queries (q, d) for the gradients at centers X (n, d): "new" = Z[:q] (q <= m),
    "train" = X[:q] (q <= n), "mixed" = Z[:q] with min(q, n) - min(q, n) // 3 of its rows
    replaced by centers drawn at random (their self-pairs, docs/math.md)."""
    if kind == "train":
        return X[:q]
    Q = Z[:q]
    if kind == "new":
        return Q
    if kind != "mixed":
        raise ValueError(f"queries kind {kind!r} is not new, train or mixed")
    n = X.shape[0]
    k = min(q, n) - min(q, n) // 3
    Q = Q.clone()
    Q[:k] = X[torch.randperm(n, generator=_generator(seed + 17 * q + n))[:k]]
    return Q


def shifted_points(case: str, n: int = 37, m: int = 29, d: int = 50, seed: int = 0):
    """float64 X (n, d), Z (m, d): standard normal shifted by the offset float(case), or for
    case = "near-dup" Z = X[:m] + noise of norm about 4e-4 (m <= n). Round with .to(dtype)."""
    g = _generator(seed)
    X = torch.randn(n, d, generator=g, dtype=torch.float64)
    Z = torch.randn(m, d, generator=g, dtype=torch.float64)
    if case.startswith("near"):
        return X, X[:m] + 4e-4 * torch.randn(m, d, generator=g, dtype=torch.float64) / d**0.5
    off = float(case)
    return X + off, Z + off


def feature_matrix(kind: str, d: int, seed: int | None = None):
    """M for kind: "none" -> None, "diag" -> (d,) in [0.1, 1.1), "full" -> (d, d) A A^T / d +
    0.01 I (A: d x d // 2), "lowrank" -> (d, d) A A^T 2^-k of rank max(1, d // 3) with A's
    entries multiples of 1/4: exact (exactly PSD) in float32 and float64 alike. float64, seeded
    by d unless seed is given."""
    g = _generator(d if seed is None else seed)
    if kind == "none":
        return None
    if kind == "diag":
        return torch.rand(d, generator=g, dtype=torch.float64) + 0.1
    if kind == "full":
        A = torch.randn(d, max(1, d // 2), generator=g, dtype=torch.float64)
        return A @ A.T / d + 0.01 * torch.eye(d, dtype=torch.float64)
    if kind == "lowrank":
        k = max(1, d // 3)
        A = torch.randint(-3, 4, (d, k), generator=g).to(torch.float64) / 4
        return A @ A.T * 2.0 ** -int(np.ceil(np.log2(k)))
    raise ValueError(f"M kind {kind!r} is not one of {', '.join(ALL_M_KINDS)}")


def coefficients(n: int, c: int):
    """float64 alpha (n, c) ~ N(0, 1): the coefficients of f(x) = K(x, X) alpha."""
    return torch.randn(n, c, generator=_generator(n * 31 + c), dtype=torch.float64)


def low_rank_target(X):
    """y = x_0 x_1 1[x_5 > 0] for X (n, d >= 6), numpy or torch: the RFM paper's target."""
    return X[:, 0] * X[:, 1] * (X[:, 5] > 0)


def low_rank_data(
    n: int, d: int = 20, seed: int = 0, *, source: str = "numpy", dtype=None, device=None
):
    """X ~ N(0, 0.5^2 I) (n, d) and y = low_rank_target(X) (n,) (docs/math.md).

    source="numpy": arrays from np.random.default_rng(seed), float64 unless dtype is given.
    source="torch": tensors from torch.Generator().manual_seed(seed), float32 unless dtype is
    given, moved to device. The two sources draw different points.
    """
    if source == "numpy":
        X = np.random.default_rng(seed).normal(0.0, 0.5, (n, d))
        if dtype is not None:
            X = X.astype(dtype)
        y = low_rank_target(X)
        return X, y if dtype is None else y.astype(dtype)
    if source == "torch":
        X = torch.randn(n, d, generator=_generator(seed), dtype=dtype or torch.float32) * 0.5
        X = X.to(device) if device is not None else X
        return X, low_rank_target(X)
    raise ValueError(f"source {source!r} is not numpy or torch")
