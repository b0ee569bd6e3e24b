"""singular_kernel: ||x - z||^(-alpha) with exact near pairs and the coincident-pair rule."""

import numpy as np
import pytest
import torch

from rfmfast.ops.singular_kernel import singular_kernel


def brute(X, Z, alpha):
    D = torch.cdist(X.double(), Z.double())
    return D.pow(-alpha)


@pytest.mark.parametrize("where", ["origin", "far", "near_duplicates"])
def test_against_differences(where):
    g = torch.Generator().manual_seed(0)
    X = torch.randn(23, 4, generator=g, dtype=torch.float64)
    Z = torch.randn(17, 4, generator=g, dtype=torch.float64)
    if where == "far":
        X, Z = X + 1e4, Z + 1e4
    if where == "near_duplicates":
        Z[:5] = X[:5] + 1e-9
    K = singular_kernel(X, Z, 1.5)
    diff = X[:, None, :] - Z[None, :, :]
    truth = (diff * diff).sum(-1).pow(-0.75)
    assert torch.allclose(K, truth, rtol=1e-10)


def test_coincident_pairs():
    X = torch.tensor([[0.0, 1.0], [1.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
    K = singular_kernel(X, alpha=1.0)
    assert torch.isinf(K[0, 0]) and torch.isinf(K[0, 2]) and K[0, 1] == pytest.approx(2**-0.5)
    K0 = singular_kernel(X, alpha=1.0, coincident="zero")
    assert K0[0, 0] == 0 and K0[0, 2] == 0
    assert isinstance(singular_kernel(X.numpy(), alpha=2.0), np.ndarray)
    with pytest.raises(ValueError, match="alpha"):
        singular_kernel(X, alpha=0)
    with pytest.raises(ValueError, match="coincident"):
        singular_kernel(X, alpha=1.0, coincident="nan")
    with pytest.raises(ValueError, match="NaN"):
        singular_kernel(X * float("nan"), alpha=1.0)
