"""Bad input gets a clear error before any work, on every op and backend."""

import numpy as np
import pytest
import torch

import rfmfast
from rfmfast.backends import BackendUnavailable

BACKENDS = ["reference", "cpu"]


def X_(n=5, d=3, dtype=torch.float64):
    return torch.randn(n, d, dtype=dtype)


def calls(X, Z, V, alpha, **kw):
    """Every public op on the given inputs."""
    return [
        lambda: rfmfast.kernel_matrix(X, Z, **kw),
        lambda: rfmfast.kernel_matmul(X, Z, V, **kw),
        lambda: rfmfast.kernel_grads(X, Z, alpha, **kw),
        lambda: rfmfast.agop(X, Z, alpha, **kw),
    ]


@pytest.mark.parametrize("backend", BACKENDS)
def test_mismatched_d(backend):
    for call in calls(
        X_(5, 3),
        X_(4, 2),
        torch.randn(4, 2, dtype=torch.float64),
        torch.randn(4, 2, dtype=torch.float64),
        backend=backend,
    ):
        with pytest.raises(ValueError, match="d = 3 features but .* d = 2"):
            call()


@pytest.mark.parametrize("backend", BACKENDS)
def test_row_mismatch(backend):
    X, Z = X_(5), X_(4)
    with pytest.raises(ValueError, match="Z has 4 rows but V has 3"):
        rfmfast.kernel_matmul(X, Z, torch.randn(3, 1, dtype=torch.float64), backend=backend)
    with pytest.raises(ValueError, match="X has 4 rows but alpha has 3"):
        rfmfast.agop(X, Z, torch.randn(3, 1, dtype=torch.float64), backend=backend)


@pytest.mark.parametrize("backend", BACKENDS)
def test_wrong_dtype(backend):
    with pytest.raises(TypeError, match="float32 or float64"):
        rfmfast.kernel_matrix(torch.ones(3, 2, dtype=torch.int64), backend=backend)
    with pytest.raises(TypeError, match="float32 or float64"):
        rfmfast.kernel_matrix(X_(dtype=torch.float16), backend=backend)
    with pytest.raises(TypeError, match="float32 or float64"):
        rfmfast.kernel_matrix(np.ones((3, 2), dtype=np.int32), backend=backend)
    with pytest.raises(TypeError, match="Z has dtype torch.float32 but X has torch.float64"):
        rfmfast.kernel_matrix(X_(), X_(dtype=torch.float32), backend=backend)
    with pytest.raises(TypeError, match="torch.Tensor or numpy.ndarray"):
        rfmfast.kernel_matrix([[1.0, 2.0]], backend=backend)


def test_wrong_device():
    meta = torch.empty(4, 3, dtype=torch.float64, device="meta")
    with pytest.raises(ValueError, match="move them to one device"):
        rfmfast.kernel_matrix(X_(), meta)
    with pytest.raises(BackendUnavailable, match="takes CPU tensors"):
        rfmfast.kernel_matmul(meta, meta, meta[:, :1], backend="cpu")


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
@pytest.mark.parametrize("backend", BACKENDS)
def test_nan_inf(backend, bad):
    """Each op rejects a non-finite value in any array it reads (and in M)."""

    def poisoned(shape):
        t = torch.randn(*shape, dtype=torch.float64)
        t.view(-1)[-1] = bad
        return t

    X, Z, W = X_(5), X_(4), torch.randn(4, 2, dtype=torch.float64)
    cases = [
        lambda: rfmfast.kernel_matrix(poisoned((5, 3)), Z, backend=backend),
        lambda: rfmfast.kernel_matrix(X, poisoned((4, 3)), backend=backend),
        lambda: rfmfast.kernel_matmul(X, Z, poisoned((4, 2)), backend=backend),
        lambda: rfmfast.kernel_grads(poisoned((5, 3)), Z, W, backend=backend),
        lambda: rfmfast.kernel_grads(X, Z, poisoned((4, 2)), backend=backend),
        lambda: rfmfast.agop(X, poisoned((4, 3)), W, backend=backend),
        lambda: rfmfast.agop(X, Z, W, M=poisoned((3,)).abs(), backend=backend),
    ]
    for call in cases:
        with pytest.raises(ValueError, match="NaN or inf"):
            call()


@pytest.mark.parametrize("backend", BACKENDS)
def test_empty(backend):
    empty = torch.empty(0, 3, dtype=torch.float64)
    for call in calls(
        empty,
        X_(4),
        torch.randn(4, 1, dtype=torch.float64),
        torch.randn(4, 1, dtype=torch.float64),
        backend=backend,
    ):
        with pytest.raises(ValueError, match="X is empty|Q is empty"):
            call()
    with pytest.raises(ValueError, match="empty"):
        rfmfast.kernel_matrix(torch.empty(3, 0, dtype=torch.float64), backend=backend)


@pytest.mark.parametrize("backend", BACKENDS)
def test_bad_M(backend):
    X = X_(5, 3)
    A = torch.randn(3, 3, dtype=torch.float64)
    with pytest.raises(ValueError, match="symmetric"):
        rfmfast.kernel_matrix(X, M=A + 3 * torch.eye(3, dtype=torch.float64), backend=backend)
    with pytest.raises(ValueError, match="positive semi-definite"):
        rfmfast.kernel_matrix(X, M=-torch.eye(3, dtype=torch.float64), backend=backend)
    with pytest.raises(ValueError, match="non-negative"):
        rfmfast.kernel_matrix(X, M=-torch.ones(3, dtype=torch.float64), backend=backend)
    with pytest.raises(ValueError, match="M has shape"):
        rfmfast.kernel_matrix(X, M=torch.eye(4, dtype=torch.float64), backend=backend)
    M = torch.eye(3, dtype=torch.float64)
    M[0, 0] = float("nan")
    with pytest.raises(ValueError, match="M contains NaN"):
        rfmfast.kernel_matrix(X, M=M, backend=backend)


def test_bad_parameters():
    X = X_()
    with pytest.raises(ValueError, match="unknown kernel 'rbf'"):
        rfmfast.kernel_matrix(X, kernel="rbf")
    for bw in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="bandwidth"):
            rfmfast.kernel_matrix(X, bandwidth=bw)
    with pytest.raises(ValueError, match="unknown backend 'gpu'"):
        rfmfast.kernel_matrix(X, backend="gpu")
    with pytest.raises(ValueError, match="accumulate"):
        rfmfast.agop(X, X, X[:, :1], accumulate="float16")
    with pytest.raises(ValueError, match="must be 2-D"):
        rfmfast.kernel_matrix(torch.ones(3, dtype=torch.float64))
