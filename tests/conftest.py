"""Shared test settings: the tolerance table, and Triton's interpreter on machines without a GPU."""
import os

import pytest
import torch

# Triton kernels run on CPU tensors in interpreter mode where no GPU exists. This must be set
# before any Triton kernel is defined, i.e. before rfmfast's triton modules are imported.
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

# A reference computation must not take TF32 shortcuts.
torch.backends.cuda.matmul.allow_tf32 = False
torch.backends.cudnn.allow_tf32 = False

# One tolerance table (relative error against the float64 reference), per dtype and backend.
# Kernel matrices, products and AGOPs: relative Frobenius error.
TOL = {
    ("cpu", torch.float64): 1e-10,
    ("cpu", torch.float32): 2e-4,
    ("reference", torch.float64): 1e-12,
    ("reference", torch.float32): 2e-4,
    ("triton", torch.float64): 1e-9,
    ("triton", torch.float32): 2e-4,
}


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    """Relative Frobenius error of a against b (b the float64 truth)."""
    a = torch.as_tensor(a).to(torch.float64)
    b = torch.as_tensor(b).to(torch.float64)
    assert a.shape == b.shape, (a.shape, b.shape)
    assert bool(torch.isfinite(a).all()), "non-finite entries (unwritten NaN-filled output?)"
    den = float(b.norm())
    return float((a - b).norm()) / (den if den > 0 else 1.0)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
