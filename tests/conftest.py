"""Shared test settings: markers, Triton's interpreter on machines without a GPU, NaN outputs."""

import importlib
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

MARKERS = {
    "slow": "longer reproduction tests (still CPU-sized)",
    "gpu": "needs a CUDA device",
}

# The modules of the Triton backends that allocate outputs (and workspaces) with torch.empty:
# each one that imports torch gets the NaN-filling one.
TRITON_MODULES = (
    "rfmfast.ops._triton.common",
    "rfmfast.ops._triton.matrix",
    "rfmfast.ops._triton.product",
    "rfmfast.ops.kernel_matrix.triton",
    "rfmfast.ops.kernel_matmul.triton",
    "rfmfast.ops.agop.triton",
)


def pytest_configure(config):
    for name, doc in MARKERS.items():
        config.addinivalue_line("markers", f"{name}: {doc}")


class _NanTorch:
    """torch, except that empty() returns NaN-filled tensors."""

    def __getattr__(self, name):
        return getattr(torch, name)

    @staticmethod
    def empty(*args, **kwargs):
        return torch.empty(*args, **kwargs).fill_(float("nan"))


@pytest.fixture
def nan_outputs(monkeypatch):
    """The Triton backends' torch.empty returns NaN-filled tensors, so an element a kernel
    forgets to write fails rel_err's finiteness check (nothing to patch without triton)."""
    try:
        import triton  # noqa: F401
    except ImportError:
        yield
        return
    for name in TRITON_MODULES:
        mod = importlib.import_module(name)
        if hasattr(mod, "torch"):
            monkeypatch.setattr(mod, "torch", _NanTorch())
    yield


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
