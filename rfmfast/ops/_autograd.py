"""Backward passes of kernel_matrix and kernel_matmul: the formulas, shared by the backends.

For a loss L with upstream gradient dK = dL/dK (n, m) of K_ij = k(x_i, z_j):

    dX_i = sum_j dK_ij  d k(x_i, z_j) / d x_i,     dZ_j = sum_i dK_ij  d k(x_i, z_j) / d z_j

and every kernel's gradient has the form (rfmfast.kernels, grad_scale s, Delta = x - z)

    d k / d x = s w(x, z) u(x, z) F = - d k / d z

    laplace     w = K / ||Delta||_M,  u = Delta,           F = M       s = -1/L
    gaussian    w = K,                u = Delta,           F = M       s = -1/L^2
    l1_laplace  w = K,                u = sign(S Delta),   F = S       s = -1/L

so that dX = R F and dZ = Rz F with the *raw* sums (before the right factor F)

    R_i = s sum_j (dK w)_ij u_ij,      Rz_j = -s sum_i (dK w)_ij u_ij.

For kernel_matmul, S = K(X, Z) V, the upstream gradient is G = dL/dS (n, t) and dK = G V^T,
which is never formed: dV = K(Z, X) G (kernel_matmul with X and Z swapped), and the raw sums
are kernel_grads' own products, R_i = sum_c G_ic H_ic with H the raw gradients of
f(x) = K(x, Z) V at the queries X (kernel_grads(X, Z, V) = H F); Rz likewise from
kernel_grads(Z, X, G), contracted with V. Cost O(n m t d), memory O(n t d) per chunk of rows;
nothing of size n x m x d.

The gradient with respect to M comes from the same raw sums, with A = R^T X + Rz^T Z (d, d)
(on coordinates centered by the centers' mean: translation does not change A, but lowers its
rounding error):

    laplace, gaussian   dM = A / 2 (symmetrized: (A + A^T) / 4); diagonal M: diag(A) / 2
                        (both from d ||Delta||_M^2 = Delta^T dM Delta)
    l1_laplace          A = dL/dS for S = M^{1/2}; diagonal M: dm = diag(A) / (2 sqrt(m));
                        full M: dM solves S dM + dM S = (A + A^T) / 2, in M's eigenbasis
                        dM = U [(U^T A_sym U)_ab / (sigma_a + sigma_b)] U^T, sigma = sqrt(lambda)

The derivative of M^{1/2} is infinite where M is singular: there (sigma_a + sigma_b = 0, or a
zero diagonal entry) the l1_laplace gradient with respect to M comes out inf or NaN, as the
reference backend's autograd gives; every other gradient here is finite.

Zero-distance convention (the rule of rfmfast.kernels): a pair nearer than EPS = 1e-10 carries
no gradient weight. It matters only for the Laplace kernel, whose gradient is undefined where
x = z (the kernel has a cusp there; 0 is its subgradient's centre, and what the reference
backend's autograd now gives at distance exactly 0, instead of NaN). For the gaussian kernel
the term is 0 at x = z anyway, and l1_laplace takes sign(0) = 0, as torch's abs does. Pairs
between 0 and EPS apart are the only place where the fused backends' gradients differ from
the reference backend's autograd by more than rounding.
"""

from __future__ import annotations

import torch

from ..kernels import EPS, apply_M, center_of, kernel_record
from ._reference import distances, kernel_from_distance, l1_factor, row_block

#: the message of a backward pass asked for a second derivative (create_graph=True)
NO_SECOND_DERIVATIVE = (
    "second derivatives of rfmfast.{op} are not implemented (backward with "
    "create_graph=True, or torch.autograd.grad of a gradient); the reference backend "
    "(backend='reference') is differentiable to any order"
)


def right_factor(kernel: str, M, S):
    """F of dX = R F: M for l2 kernels, S = M^{1/2} (or its diagonal) for l1_laplace."""
    return S if kernel_record(kernel).distance == "l1" else M


def pair_grads(X, Z, dK_rows, *, kernel, bandwidth, M, need_z=True):
    """The raw sums (R (n, r), Rz (m, r) or None) of the module doc for the upstream gradient
    rows dK_rows(i0, i1) -> (i1 - i0, m), from exact differences in row blocks (the reference's
    difference-first distances: no GEMM shortcut, so near pairs come out exact).
    Memory: O(n r + m r) and one (block, m, d) difference tensor of about 4M entries."""
    k = kernel_record(kernel)
    s = k.grad_scale(bandwidth)
    S = l1_factor(M, k)
    n, d = X.shape
    m = Z.shape[0]
    R = torch.empty(n, d, dtype=X.dtype, device=X.device)  # r = d: S is (d, d), (d,) or None
    Rz = torch.zeros(m, d, dtype=X.dtype, device=X.device) if need_z else None
    b = row_block(m, d)
    for i in range(0, n, b):
        diff = X[i : i + b, None, :] - Z[None, :, :]  # (b, m, d)
        dist = distances(diff, k, M, S)
        w = kernel_from_distance(dist, k, bandwidth)
        if k.distance == "l1":
            u = torch.sign(diff if S is None else (diff * S if S.ndim == 1 else diff @ S.T))
        else:
            u = diff
            if k.weight_over_distance:  # K / dist, 0 for a coincident pair (module doc)
                w = torch.where(dist < EPS, torch.zeros_like(w), w / dist.clamp(min=EPS))
        C = dK_rows(i, min(n, i + b)) * w
        R[i : i + b] = torch.einsum("bm,bmr->br", C, u) * s
        if need_z:
            Rz -= torch.einsum("bm,bmr->mr", C, u) * s
    return R, Rz


def metric_grad(kernel: str, M: torch.Tensor, X, Z, R, Rz) -> torch.Tensor:
    """dL/dM from the raw sums R (n, r), Rz (m, r) of the module doc (M: (d, d) or (d,)).
    Computed in float64 (O((n + m) d^2) and one d x d eigendecomposition for l1_laplace with a
    full M), returned in M's dtype."""
    k = kernel_record(kernel)
    mu = center_of(Z).to(torch.float64)
    Xc, Zc = X.to(torch.float64) - mu, Z.to(torch.float64) - mu
    R, Rz = R.to(torch.float64), Rz.to(torch.float64)
    if M.ndim == 1:
        A = (R * Xc).sum(0) + (Rz * Zc).sum(0)
        if k.distance == "l1":
            dM = A / (2 * M.to(torch.float64).clamp(min=0).sqrt())
        else:
            dM = A / 2
        return dM.to(M.dtype)
    A = R.T @ Xc + Rz.T @ Zc
    A = (A + A.T) / 2
    if k.distance != "l1":
        return (A / 2).to(M.dtype)
    # S = M^{1/2} as rfmfast.kernels.mahalanobis_factor takes it (the same eigenvalue cut)
    w, U = torch.linalg.eigh(M.to(torch.float64))
    tol = w.max().clamp(min=0) * M.shape[0] * torch.finfo(torch.float64).eps
    sigma = torch.where(w > tol, w, torch.zeros_like(w)).sqrt()
    B = (U.T @ A @ U) / (sigma[:, None] + sigma[None, :])
    return (U @ B @ U.T).to(M.dtype)


def finish(kernel: str, M, S, X, Z, R, Rz, need_x: bool, need_z: bool, need_m: bool):
    """(dX, dZ, dM) from the raw sums, None for each one not needed. S: the l1 factor (or
    None), the right factor F of l1_laplace."""
    F = right_factor(kernel, M, S)
    dX = apply_M(R, F).contiguous() if need_x else None
    dZ = apply_M(Rz, F).contiguous() if need_z else None
    dM = metric_grad(kernel, M, X, Z, R, Rz) if need_m else None
    return dX, dZ, dM


def matrix_backward(X, Z, dK, *, kernel, bandwidth, M, need_x, need_z, need_m):
    """(dX, dZ, dM) of kernel_matrix for the upstream gradient dK (n, m), in plain PyTorch on
    X's device (pair_grads, then finish); None for each one not needed."""
    need_z_sums = need_z or need_m
    R, Rz = pair_grads(
        X,
        Z,
        lambda i0, i1: dK[i0:i1],
        kernel=kernel,
        bandwidth=bandwidth,
        M=M,
        need_z=need_z_sums,
    )
    S = l1_factor(M, kernel_record(kernel))
    return finish(kernel, M, S, X, Z, R, Rz, need_x, need_z, need_m)


def matmul_backward_by_pairs(X, Z, V, G, *, kernel, bandwidth, M, need_x, need_z, need_m):
    """(dX, dZ, dM) of kernel_matmul from exact differences in row blocks, the upstream rows
    dK = G V^T formed one block at a time ((block, m), never n x m): for backends without
    raw fused gradients (the gradient with respect to M on the Triton backend).
    Cost O(n m (t + d)); memory as pair_grads."""
    R, Rz = pair_grads(
        X,
        Z,
        lambda i0, i1: G[i0:i1] @ V.T,
        kernel=kernel,
        bandwidth=bandwidth,
        M=M,
        need_z=need_z or need_m,
    )
    S = l1_factor(M, kernel_record(kernel))
    return finish(kernel, M, S, X, Z, R, Rz, need_x, need_z, need_m)
