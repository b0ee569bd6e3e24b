"""The tolerances of the op tests: one table per backend and dtype, and named multipliers.

Errors are relative Frobenius errors against the float64 reference (tests/_cases.rel_err).
A test asserts ``rel_err(out, truth) < TOL[backend, dtype]`` (times a factor named below), or,
in reduced precision and for data far from the origin, at most a factor times plain PyTorch's
(or the reference backend's) own error on the same rounded inputs.
"""

import torch

#: kernel matrices and products against the float64 reference, per (backend, dtype)
TOL = {
    ("cpu", torch.float64): 1e-10,
    ("cpu", torch.float32): 2e-4,
    ("reference", torch.float64): 1e-12,
    ("reference", torch.float32): 2e-4,
    ("triton", torch.float64): 1e-9,
    ("triton", torch.float32): 2e-4,
}

#: kernel_grads against the reference, as multiples of TOL: the CPU backend's float32 gradients
#: sum d-vectors weighted by kernel values, one more chain of roundings than a kernel value
GRADIENT_FACTOR = {"cpu": 10, "triton": 1}
#: agop (and its diagonal, centered or not) against the reference, as multiples of TOL
AGOP_FACTOR = {"cpu": 10, "triton": 2}

#: float64 results that differ from the truth only by the order of a few roundings: the same
#: sums in chunks, a product against the matrix it stands for, exact arithmetic in the factor
FLOAT64_ROUNDING = 1e-13
#: two float64 algorithms for the same quantity (a center dropped or kept with zero weight,
#: outputs taken in groups, the property tests' float64 cases)
FLOAT64_AGREE = 1e-12
#: the Gaussian self-pair left out of the gradient: the value matrix must not cancel it
#: (it did, to 1.5e-6): cpu and triton in float64
SELF_PAIR_TOL = 1e-10
#: a centered AGOP of one query is exactly zero, to this multiple of 1 + max |reference|
CENTERED_ONE_QUERY = 1e-6

#: data far from the origin and near-duplicates: error within this factor of the reference
#: backend's on the same float32 inputs ...
DISTANCE_RULE_FACTOR = 2
#: ... plus this floor (the reference can be exact by luck on a few points)
DISTANCE_RULE_FLOOR = 1e-9
#: the property tests' floor: a few float32 roundings on 1-5 point cases with cancelling sums
PROPERTY_FLOAT32_FLOOR = 2e-6
#: an AGOP's smallest eigenvalue may be this far below 0, relative to max(1, max |AGOP|) ...
PSD_FLOOR = 1e-10
#: ... and a diagonal AGOP's entries this far (absolute)
PSD_DIAG_FLOOR = 1e-12

#: reduced precision (tf32, bf16): error at most this factor times plain PyTorch's own error
#: in the same precision
REDUCED_PRECISION_FACTOR = 2
#: Triton's two-stage AGOP with a tf32 value matmul, against the float64 reference
TF32_AGOP_TOL = 1e-3

#: the dense factorization (C++ GEMM and Cholesky): backward errors of a backward-stable
#: factorization of a well-conditioned matrix (L L^T against K, the GEMM against float64)
CHOLESKY_TOL = {torch.float32: 2e-5, torch.float64: 1e-13}
#: the factor L itself against LAPACK's: forward error, condition number times backward error
CHOLESKY_FACTOR_FACTOR = 50

#: an RFM fit on features shifted by 1000: test MSE within this factor of the unshifted fit's
SHIFTED_FIT_MSE_FACTOR = 1.05


def tol(backend: str, dtype, op: str = "kernel_matrix") -> float:
    """TOL[backend, dtype] times the op's factor (kernel_grads, agop; 1 for the others)."""
    factor = {"kernel_grads": GRADIENT_FACTOR, "agop": AGOP_FACTOR}.get(op, {}).get(backend, 1)
    return factor * TOL[backend, dtype]
