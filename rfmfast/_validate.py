"""Input checks shared by every public op: all raise before any work starts.

Under torch.compile and torch.export (torch.compiler.is_compiling()) the checks that read the
data (finite values, M symmetric and PSD, a diagonal M non-negative) are skipped, so that
tracing never stops at a data-dependent branch: a compiled graph checks shapes, dtypes and
devices only (at trace time), and its inputs are the caller's to validate (an eager call of the
same function, once, checks everything).
"""

from __future__ import annotations

import numpy as np
import torch

from .kernels import check_kernel

FLOAT_DTYPES = (torch.float32, torch.float64)


def tracing() -> bool:
    """Whether the call is being traced by torch.compile or torch.export: the data-dependent
    checks are then skipped (module doc)."""
    return torch.compiler.is_compiling()


def to_tensor(x, name: str) -> tuple[torch.Tensor, bool]:
    """(tensor, came_from_numpy). numpy arrays are wrapped without a copy where possible."""
    if isinstance(x, torch.Tensor):
        return x, False
    if isinstance(x, np.ndarray):
        if x.dtype.kind not in "f" or x.dtype not in (np.float32, np.float64):
            raise TypeError(f"{name} must be float32 or float64, got numpy dtype {x.dtype}")
        return torch.from_numpy(np.ascontiguousarray(x)), True
    raise TypeError(f"{name} must be a torch.Tensor or numpy.ndarray, got {type(x).__name__}")


def check_matrix(t: torch.Tensor, name: str, *, ndim=(2,), finite=True) -> None:
    if t.ndim not in ndim:
        want = " or ".join(f"{k}-D" for k in ndim)
        raise ValueError(f"{name} must be {want}, got shape {tuple(t.shape)}")
    if t.dtype not in FLOAT_DTYPES:
        raise TypeError(f"{name} must be float32 or float64, got {t.dtype}")
    if t.numel() == 0:
        raise ValueError(f"{name} is empty (shape {tuple(t.shape)})")
    if finite:
        check_finite(t, name)


def check_finite(t: torch.Tensor, name: str) -> None:
    """NaN and inf refused (skipped while tracing: module doc)."""
    if tracing():
        return
    if t.device.type == "meta":
        raise ValueError(f"{name} is a meta tensor: it holds no data")
    if t.device.type == "cpu":
        # numpy's check runs on the calling thread: torch's would start its OpenMP threads,
        # whose spinning waits cost far more than the check on a busy machine
        finite = bool(np.isfinite(t.detach().numpy()).all())
    else:
        finite = bool(torch.isfinite(t).all())
    if not finite:
        raise ValueError(f"{name} contains NaN or inf")


def abs_max(t: torch.Tensor) -> float:
    """max |t| (NaN if t holds one); on CPU tensors by numpy, on the calling thread (see
    check_finite)."""
    if t.device.type == "cpu":
        a = t.detach().numpy()
        return float(max(a.max(), -a.min()))
    return float(t.abs().max())


def check_same(ref: torch.Tensor, ref_name: str, **others: torch.Tensor | None) -> None:
    for name, t in others.items():
        if t is None:
            continue
        if t.dtype != ref.dtype:
            raise TypeError(
                f"{name} has dtype {t.dtype} but {ref_name} has {ref.dtype}; "
                "convert them to one dtype"
            )
        if t.device != ref.device:
            raise ValueError(
                f"{name} is on {t.device} but {ref_name} is on {ref.device}; "
                "move them to one device"
            )


def check_M(M, d: int, ref: torch.Tensor) -> torch.Tensor | None:
    """Validate the feature matrix: None, (d,) diagonal (>= 0), or (d, d) symmetric."""
    if M is None:
        return None
    M, _ = to_tensor(M, "M")
    if M.ndim not in (1, 2):
        raise ValueError(f"M must be (d, d), (d,) or None, got shape {tuple(M.shape)}")
    if M.ndim == 1 and M.shape[0] != d or M.ndim == 2 and tuple(M.shape) != (d, d):
        raise ValueError(f"M has shape {tuple(M.shape)} but the data have d = {d} features")
    if M.dtype not in FLOAT_DTYPES:
        raise TypeError(f"M must be float32 or float64, got {M.dtype}")
    if M.dtype != ref.dtype:
        raise TypeError(
            f"M has dtype {M.dtype} but the data have {ref.dtype}; convert them to one dtype"
        )
    if M.device != ref.device:
        raise ValueError(f"M is on {M.device} but the data are on {ref.device}")
    check_finite(M, "M")
    M = M.to(ref.dtype)
    if M.ndim == 1:
        if not tracing() and bool((M.detach() < 0).any()):
            raise ValueError("diagonal M must be non-negative")
        return M
    if tracing():  # the data-dependent checks skipped (module doc); M symmetrized all the same
        return (M + M.T) * 0.5
    Md = M.detach()
    scale = float(Md.abs().max())
    tol = (1e-5 if M.dtype == torch.float32 else 1e-10) * max(scale, 1e-30)
    if float((Md - Md.T).abs().max()) > tol:
        raise ValueError(
            "M must be symmetric (it is not, beyond rounding); pass (M + M.T) / 2 "
            "if that is what you meant"
        )
    M = (M + M.T) * 0.5
    w = torch.linalg.eigvalsh(M.detach().to(torch.float64))
    neg_tol = (1e-5 if M.dtype == torch.float32 else 1e-10) * max(float(w.abs().max()), 1e-300)
    if float(w.min()) < -neg_tol:
        raise ValueError(
            f"M must be positive semi-definite; its smallest eigenvalue is "
            f"{float(w.min()):.3g} (largest {float(w.max()):.3g})"
        )
    return M


def check_backend_name(backend: str) -> None:
    from .backends import BACKENDS

    if backend != "auto" and backend not in BACKENDS:
        raise ValueError(
            f"unknown backend {backend!r}; choose 'auto' or one of {', '.join(BACKENDS)}"
        )


def common(kernel, bandwidth, backend) -> None:
    check_kernel(kernel, bandwidth)
    check_backend_name(backend)


def check_d(name_a: str, a: torch.Tensor, name_b: str, b: torch.Tensor) -> None:
    if a.shape[-1] != b.shape[-1]:
        raise ValueError(
            f"{name_a} has d = {a.shape[-1]} features but {name_b} has d = {b.shape[-1]}"
        )


def check_rows(name_a: str, a: torch.Tensor, name_b: str, b: torch.Tensor) -> None:
    if a.shape[0] != b.shape[0]:
        raise ValueError(f"{name_a} has {a.shape[0]} rows but {name_b} has {b.shape[0]}")


def check_buffer(buf: torch.Tensor, name: str, shape: tuple, like: torch.Tensor) -> None:
    """A caller's buffer written in place: shape, like's dtype and device, C-contiguous."""
    if tuple(buf.shape) != tuple(shape) or buf.dtype != like.dtype or buf.device != like.device:
        raise ValueError(
            f"{name} must be {tuple(shape)} {like.dtype} on {like.device}, got "
            f"{tuple(buf.shape)} {buf.dtype} on {buf.device}"
        )
    if not buf.is_contiguous():
        raise ValueError(f"{name} must be C-contiguous")


def out_like(result: torch.Tensor, from_numpy: bool):
    return result.numpy() if from_numpy else result
