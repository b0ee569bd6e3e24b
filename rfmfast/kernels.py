"""Kernel definitions: names, parameters and the math of each.

With a feature matrix M (symmetric PSD, d x d; or a length-d diagonal; None = identity),
||v||_M = sqrt(v^T M v), and for a bandwidth L > 0:

    laplace     K(x, z) = exp(-||x - z||_M / L)
    gaussian    K(x, z) = exp(-||x - z||_M^2 / (2 L^2))
    l1_laplace  K(x, z) = exp(-||S (x - z)||_1 / L),  S = M^{1/2} (the symmetric square root)

Gradients of f_c(x) = sum_i alpha_ic K(x, x_i):

    laplace     grad f_c(x) = -(1/L)   M sum_i alpha_ic K_i / ||x - x_i||_M (x - x_i)
                (the term is 0 where ||x - x_i||_M < EPS, e.g. the self-pair)
    gaussian    grad f_c(x) = -(1/L^2) M sum_i alpha_ic K_i (x - x_i)
    l1_laplace  grad f_c(x) = -(1/L)   S sum_i alpha_ic K_i sign(S (x - x_i))
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

LOG2E = math.log2(math.e)


@dataclass(frozen=True)
class Kernel:
    """Everything the ops need to know about one kernel; the only place a kernel is named.

    name: the public name.  code: the integer shared with the C++ (csrc/cpu/kernels.h) and
    Triton epilogues (the KERNEL constexpr).  distance: "l2" (||S v||_2, from a distance GEMM)
    or "l1" (||S v||_1, no GEMM form: tiles take coordinate differences).  squared: the
    exponent takes the squared distance (gaussian) rather than the distance.  factor: the
    convention of S with S^T S = M: "eig" (rows sqrt(lambda_i) u_i^T of M's nonzero
    eigenpairs; only ||S v||_2 matters) or "sqrt" (the symmetric square root M^{1/2}: the l1
    norm is not rotation invariant).  weight_over_distance: the gradient weight of a pair is
    K / dist (laplace) instead of K.  Zero-distance rule (every kernel): a coincident pair,
    distance below EPS, carries no gradient weight.
    """

    name: str
    code: int
    distance: str
    squared: bool
    factor: str
    weight_over_distance: bool

    def scale(self, bandwidth: float) -> float:
        """c in K = exp(-c dist) (or exp(-c dist^2) when squared): 1/L or 1/(2 L^2)."""
        return 0.5 / (bandwidth * bandwidth) if self.squared else 1.0 / bandwidth

    def exp2_scale(self, bandwidth: float) -> float:
        """c2 with K = exp2(c2 dist) (or exp2(c2 dist^2)): the Triton epilogues' form."""
        if self.squared:
            return -LOG2E / (2.0 * bandwidth * bandwidth)
        return -LOG2E / bandwidth

    def grad_scale(self, bandwidth: float) -> float:
        """s in  G_c = s [ (A alpha_c) * Q - A (alpha_c * X) ] M  (docs/math.md): -1/L^2 for a
        squared distance, -1/L otherwise."""
        return -2.0 * self.scale(bandwidth) if self.squared else -self.scale(bandwidth)

    def translates(self, has_factor: bool) -> bool:
        """Whether the distance rule's translation (and exact recompute) applies: not for an
        l1 distance without M, whose tiles take differences of the original coordinates
        already (a translation would only add rounding)."""
        return self.distance == "l2" or has_factor

    @property
    def coincident_eps(self) -> float:
        """The zero-distance threshold in the units the tiles carry: EPS^2 against squared l2
        distances, EPS against l1 distances."""
        return EPS if self.distance == "l1" else EPS * EPS


#: one record per kernel; iterating gives the names. Adding a kernel: a record here, its
#: epilogue in csrc/cpu/tiles.h and in rfmfast/ops/_triton/common.py (kernel_epilogue).
KERNELS: dict[str, Kernel] = {
    k.name: k
    for k in (
        Kernel("laplace", 0, "l2", squared=False, factor="eig", weight_over_distance=True),
        Kernel("gaussian", 1, "l2", squared=True, factor="eig", weight_over_distance=False),
        Kernel("l1_laplace", 2, "l1", squared=False, factor="sqrt", weight_over_distance=False),
    )
}


def kernel_record(kernel: str | Kernel) -> Kernel:
    """The record of a kernel name (a record passes through); ValueError for unknown names."""
    if isinstance(kernel, Kernel):
        return kernel
    try:
        return KERNELS[kernel]
    except (KeyError, TypeError):
        raise ValueError(f"unknown kernel {kernel!r}; choose one of {', '.join(KERNELS)}") from None


#: distances below this count as zero (the Laplace gradient's self-pair), as in the RFM code.
EPS = 1e-10

# ---- the distance rule (every backend) ------------------------------------------------------
# A distance GEMM forms ||x - z||^2 as |x|^2 + |z|^2 - 2 x.z, whose rounding error is about
# eps (|x|^2 + |z|^2): it cancels for points far from the origin relative to their spread, and
# for near-duplicate points. Kernels are translation invariant, so
#   1. both point sets are translated by the centers' mean (center_of) before they are mapped
#      by M's factor: only the data's spread enters the norms;
#   2. a pair whose GEMM squared distance is at most RESOLVE (|x|^2 + |z|^2) is recomputed by
#      differences, sum_k (x_k - z_k)^2: small distances (near-duplicates, self-pairs) come out
#      exact, and the pair's gradient term w alpha (q - x) is summed directly, not through the
#      value matrix;
#   3. coincident pairs (distance 0 after 2.) carry no gradient weight, for every kernel.
# The relative error of a GEMM distance that is kept is then at most about (r + 2) eps / RESOLVE.
RESOLVE = 1.0 / 16.0


def center_of(Z: torch.Tensor) -> torch.Tensor:
    """The translation of the distance rule: the mean of the centers Z (m, d) -> (d,), summed in
    float64 and rounded once to Z's dtype."""
    return Z.mean(0, dtype=torch.float64).to(Z.dtype)


def check_kernel(kernel: str, bandwidth: float) -> None:
    kernel_record(kernel)
    if isinstance(bandwidth, (bool, str, bytes)) or not hasattr(bandwidth, "__float__"):
        raise TypeError(f"bandwidth must be a positive number, got {bandwidth!r}")
    try:
        bw = float(bandwidth)
    except (TypeError, ValueError):
        raise TypeError(f"bandwidth must be a positive number, got {bandwidth!r}") from None
    if not (bw > 0 and bw < float("inf")):
        raise ValueError(f"bandwidth must be a positive finite number, got {bandwidth!r}")


def check_bandwidth_scale(kernel: str, bandwidth: float, dtype: torch.dtype) -> None:
    """Refuse a bandwidth whose scale overflows the dtype: 1/L (laplace, l1_laplace) or
    1/(2 L^2) (gaussian) beyond finfo.max would turn the kernel's exponent into inf * 0 = NaN.
    (A merely tiny bandwidth is valid: every off-diagonal entry is then 0.)"""
    fi = torch.finfo(dtype)
    k = kernel_record(kernel)
    if not k.scale(bandwidth) < fi.max / 16:
        name = str(dtype).replace("torch.", "")
        low = (0.5 * 16 / fi.max) ** 0.5 if k.squared else 16 / fi.max
        raise ValueError(
            f"bandwidth {bandwidth!r} is too small for {name}: the {kernel} "
            f"kernel's scale overflows (use a bandwidth above {low:.2g}, "
            "or float64)"
        )


def mahalanobis_factor(M: torch.Tensor | None, kernel: str, dtype=None) -> torch.Tensor | None:
    """A factor S with S^T S = M, as an (r, d) matrix; a (d,) vector for a diagonal M; None for
    M = I.

    For ``l1_laplace`` S is the symmetric square root M^{1/2} (d, d): the l1 norm is not
    rotation invariant, so the convention matters (it is xRFM's ``sqrtM``). In both forms
    eigenvalues below d eps(float64) lambda_max count as 0. For the other
    kernels only ||S v||_2 matters, so S = diag(sqrt(lambda)) U^T from M = U diag(lambda) U^T,
    with the rows of zero eigenvalues dropped (r = rank of M <= d): a low-rank M makes every
    later distance computation cheaper. The eigendecomposition runs in float64.
    """
    if M is None:
        return None
    dtype = dtype or M.dtype
    if M.ndim == 1:
        return M.clamp(min=0).sqrt().to(dtype)
    w, U = torch.linalg.eigh(M.to(torch.float64))
    w = w.clamp(min=0)  # M was checked PSD (up to rounding) by the op's input validation
    # Eigenvalues below d eps lambda_max are rounding noise of the eigensolver (they differ
    # between LAPACK and cuSOLVER), and their square roots (~1e-8 lambda_max^1/2) would enter
    # every distance: they are taken as exactly 0.
    tol = w.max() * M.shape[0] * torch.finfo(torch.float64).eps
    keep = w > tol
    if kernel_record(kernel).factor == "sqrt":
        return ((U * torch.where(keep, w, 0.0).sqrt()) @ U.T).to(dtype)
    if not bool(keep.any()):
        keep[-1] = True  # M == 0: keep one zero row so shapes stay valid (all distances 0)
    return (w[keep].sqrt()[:, None] * U[:, keep].T).to(dtype).contiguous()


def apply_factor(X: torch.Tensor, S: torch.Tensor | None) -> torch.Tensor:
    """Rows of X mapped by S: (n, d) -> (n, r); S as returned by mahalanobis_factor."""
    if S is None:
        return X
    if S.ndim == 1:
        return X * S
    return X @ S.T


def apply_M(G: torch.Tensor, M: torch.Tensor | None) -> torch.Tensor:
    """G @ M for G (..., d) and M (d, d), (d,) or None (identity)."""
    if M is None:
        return G
    if M.ndim == 1:
        return G * M
    return G @ M
