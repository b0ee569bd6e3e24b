"""An xRFM kernel that computes with rfmfast's ops: ``xrfm.RFM(kernel=RfmfastKernel())``.

Works with xrfm 0.4.5 (``pip install xrfm==0.4.5``): RFM and the leaves of xRFM's tree take any
object with xRFM's Kernel interface. This one answers the calls RFM makes

    get_kernel_matrix(x, z, mat)                       -> (n_x, n_z)   rfmfast.kernel_matrix
    get_function_grads(x, z, coefs, mat)               -> (f, n_z, d)  rfmfast.kernel_grads
    get_agop(x, z, coefs, mat, center_grads)           -> (d, d)       rfmfast.agop (x n_z: a sum)
    get_agop_diag(x, z, coefs, mat, center_grads)      -> (d,)

with ``use_sqrtM = False``, so RFM hands over M itself (its max-normalized AGOP) and skips the
matrix square root: ||x - z||_M is the distance xRFM's LaplaceKernel computes from sqrtM = M^{1/2},
so "laplace" here gives xRFM's ``kernel='laplace'`` (exponent 1) results. An M whose two
triangles differ only by rounding (xRFM computes it in the data's precision) is averaged with
its transpose before it reaches the ops (``symmetrized``).
Not supported (an error says so): adaptive bandwidth, xRFM's categorical feature handling,
exponents other than 1 (xRFM's exp(-||x - z||^q / L^q) for q != 1: rfmfast's ops have no such
kernel; q = 2 is rfmfast's "gaussian" with bandwidth L / sqrt(2)).
"""

from __future__ import annotations

try:
    from xrfm.rfm_src.kernels import Kernel as _XrfmKernel
except ImportError as e:  # pragma: no cover - exercised only where xrfm is missing
    raise ImportError(
        f"rfmfast.xrfm_plugin needs xrfm: pip install xrfm==0.4.5 (import failed: {e})"
    ) from e

import torch

from .kernels import check_kernel
from .ops.agop import agop, kernel_grads
from .ops.kernel_matrix import kernel_matrix


def symmetrized(mat):
    """(M + M^T) / 2 for a (d, d) M that is symmetric up to rounding; anything else unchanged.

    xRFM's M (a sum of AGOP batches over its largest entry) is symmetric by definition, but
    it is computed in the data's precision and its two triangles can differ: a float32 AGOP
    formed as a product of d x d matrices can differ by ~2e-3 of max |M|, more than rfmfast's
    ops accept as rounding. Up to eps^(1/3) max |M| (4.9e-3 in float32, 6.1e-6 in float64)
    the difference is taken as rounding and averaged away (v^T M v, hence every Euclidean
    distance, only sees the symmetric part). A larger difference, a vector, None, or
    non-finite entries pass through unchanged, for the ops' own checks to refuse.
    """
    if not (
        torch.is_tensor(mat)
        and mat.is_floating_point()
        and mat.ndim == 2
        and mat.shape[0] == mat.shape[1]
        and mat.numel() > 0
    ):
        return mat
    tol = torch.finfo(mat.dtype).eps ** (1 / 3) * float(mat.abs().max())
    if float((mat - mat.T).abs().max()) <= tol:  # False for NaN / inf entries
        return (mat + mat.T) * 0.5
    return mat


class RfmfastKernel(_XrfmKernel):
    """xRFM kernel object backed by rfmfast. kernel: "laplace" | "gaussian" | "l1_laplace"
    (xRFM's "l1"/"product_laplace" with exponent 1); bandwidth L; backend: rfmfast op backend."""

    def __init__(
        self,
        kernel: str = "laplace",
        bandwidth: float = 10.0,
        backend: str = "auto",
        exponent: float = 1.0,
    ):
        super().__init__()
        check_kernel(kernel, bandwidth)
        if float(exponent) != 1.0:
            raise ValueError(
                f"RfmfastKernel supports exponent 1 only, got {exponent}: "
                "rfmfast's ops have no exp(-(||x - z|| / L)^q) kernel for q != 1 "
                "(q = 2 is kernel='gaussian' with bandwidth L / sqrt(2))"
            )
        self.kernel = kernel
        self.bandwidth = float(bandwidth)
        self.base_bandwidth = float(bandwidth)
        self.exponent = 1.0
        self.backend = backend
        self.bandwidth_mode = "constant"
        self.use_sqrtM = False

    def _opts(self, mat):
        return dict(
            kernel=self.kernel, bandwidth=self.bandwidth, M=symmetrized(mat), backend=self.backend
        )

    def _check(self):
        if self.handle_categorical:
            raise NotImplementedError(
                "RfmfastKernel does not implement xRFM's categorical "
                "feature handling; one-hot encode the features instead"
            )

    def _reset_adaptive_bandwidth(self):
        raise NotImplementedError(
            "RfmfastKernel has a constant bandwidth; use bandwidth_mode='constant'"
        )

    def get_kernel_matrix(self, x: torch.Tensor, z: torch.Tensor, mat=None) -> torch.Tensor:
        """x: (n_x, d), z: (n_z, d), mat: M (d, d) / (d,) / None -> K (n_x, n_z)."""
        self._check()
        if x is z:
            return kernel_matrix(x, **self._opts(mat))
        return kernel_matrix(x, z, **self._opts(mat))

    def get_kernel_matrix_symm(self, x: torch.Tensor, mat=None) -> torch.Tensor:
        self._check()
        return kernel_matrix(x, **self._opts(mat))

    def get_function_grads(self, x, z, coefs, mat=None) -> torch.Tensor:
        """Gradients of f_l = sum_i coefs[l, i] k(x_i, .) at z: x (n_x, d) centers, z (n_z, d),
        coefs (f, n_x) -> (f, n_z, d)."""
        self._check()
        return kernel_grads(z, x, coefs.T, **self._opts(mat)).permute(1, 0, 2)

    def _agop_sum(self, x, z, coefs, mat, center_grads, diag):
        self._check()
        q = z.shape[0]
        if center_grads and coefs.shape[0] > 1:
            # xRFM centers over outputs and samples together (one mean gradient), which differs
            # from rfmfast's per-output centering: reproduce xRFM's definition here.
            G = kernel_grads(z, x, coefs.T, **self._opts(mat)).reshape(-1, z.shape[1])
            G = G - G.mean(0, keepdim=True)
            return (G * G).sum(0) if diag else G.T @ G
        A = agop(z, x, coefs.T, diag=diag, centering=bool(center_grads), **self._opts(mat))
        return A * q  # xRFM sums over the batch; rfmfast averages

    def get_agop(self, x, z, coefs, mat=None, center_grads=False) -> torch.Tensor:
        """sum over z and outputs of grad grad^T: (d, d) (xRFM adds these up over batches)."""
        return self._agop_sum(x, z, coefs, mat, center_grads, diag=False)

    def get_agop_diag(self, x, z, coefs, mat=None, center_grads=False) -> torch.Tensor:
        """The diagonal of get_agop: (d,)."""
        return self._agop_sum(x, z, coefs, mat, center_grads, diag=True)
