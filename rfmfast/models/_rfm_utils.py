"""Helpers of the RFM estimators: input conversion and checks, the M update, progress lines."""
from __future__ import annotations

import numpy as np
import torch

NORMALIZATIONS = ("max", None)


def torch_dtype(dtype) -> torch.dtype:
    """'float32' | 'float64' | torch dtype | numpy dtype -> torch dtype."""
    if isinstance(dtype, torch.dtype) and dtype in (torch.float32, torch.float64):
        return dtype
    name = str(getattr(dtype, "name", dtype))
    if name in ("float32", "float64"):
        return getattr(torch, name)
    raise ValueError(f"dtype must be 'float32' or 'float64', got {dtype!r}")


def resolve_device(device) -> torch.device:
    """'auto' -> cuda if torch sees a GPU, else cpu; 'cpu' / 'cuda' / 'cuda:1' as given."""
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device='cuda' was requested but torch sees no CUDA device; "
                         "use device='cpu' or 'auto'")
    return dev


def as_array(x, name: str):
    """numpy, torch, pandas or a nested list -> (torch tensor or numpy array, is_torch).

    pandas DataFrames / Series become numpy arrays; torch tensors are kept (device and all).
    """
    if isinstance(x, torch.Tensor):
        return x.detach(), True
    if hasattr(x, "to_numpy") and hasattr(x, "shape"):      # pandas DataFrame / Series
        x = x.to_numpy()
    try:
        a = np.asarray(x)
    except Exception as e:  # noqa: BLE001 - report any conversion failure the same way
        raise TypeError(f"{name} could not be converted to an array: {e}") from None
    if a.dtype == object:
        raise TypeError(f"{name} must be numeric (numpy, torch or pandas), got object entries")
    return a, False


def features(X, name: str, dtype: torch.dtype, device: torch.device) -> tuple[torch.Tensor, bool]:
    """Validated features: (n, d) float tensor on device, and whether the input was torch."""
    a, is_torch = as_array(X, name)
    t = a if is_torch else None
    if not is_torch:
        if a.dtype.kind not in "biuf":
            raise TypeError(f"{name} must be numeric, got dtype {a.dtype}")
        t = torch.from_numpy(np.array(a, dtype=np.float64))  # a writable copy
    if t.ndim != 2:
        raise ValueError(f"{name} must be 2-D (n_samples, n_features), got shape {tuple(t.shape)}; "
                         "reshape a single feature with X.reshape(-1, 1)")
    if t.shape[0] == 0 or t.shape[1] == 0:
        raise ValueError(f"{name} is empty (shape {tuple(t.shape)})")
    if t.is_complex() or not (t.is_floating_point() or t.dtype in (torch.int32, torch.int64,
                                                                      torch.int16, torch.int8,
                                                                      torch.uint8, torch.bool)):
        raise TypeError(f"{name} must be real numbers, got {t.dtype}")
    t = t.to(device=device, dtype=dtype)
    if not bool(torch.isfinite(t).all()):
        bad = int((~torch.isfinite(t)).any(1).sum())
        raise ValueError(f"{name} contains NaN or inf (in {bad} row(s)); impute or drop them first")
    return t, is_torch


def targets(y, name: str, dtype: torch.dtype, device: torch.device) -> tuple[torch.Tensor, bool]:
    """Regression targets: (n,) or (n, c) -> (n, c) float tensor, and whether y was 1-D."""
    a, is_torch = as_array(y, name)
    t = a.to(torch.float64) if is_torch else torch.from_numpy(np.array(a, dtype=np.float64))
    if t.ndim not in (1, 2):
        raise ValueError(f"{name} must be 1-D or 2-D, got shape {tuple(t.shape)}")
    one_d = t.ndim == 1
    t = (t[:, None] if one_d else t).to(device=device, dtype=dtype)
    if not bool(torch.isfinite(t).all()):
        raise ValueError(f"{name} contains NaN or inf")
    return t, one_d


def labels(y, name: str) -> np.ndarray:
    """Class labels as a 1-D numpy array (any hashable dtype)."""
    a, is_torch = as_array(y, name)
    a = a.cpu().numpy() if is_torch else a
    if a.ndim == 2 and a.shape[1] == 1:
        a = a[:, 0]
    if a.ndim != 1:
        raise ValueError(f"{name} must be 1-D class labels, got shape {a.shape}")
    if a.dtype.kind == "f" and not np.isfinite(a).all():
        raise ValueError(f"{name} contains NaN or inf")
    return a


def check_rows(nx: int, ny: int, xname="X", yname="y") -> None:
    if nx != ny:
        raise ValueError(f"{xname} has {nx} rows but {yname} has {ny}; they must match")


def agop_to_M(A: torch.Tensor, power: float, normalize) -> torch.Tensor:
    """The M update: normalize(A ** power).

    A: (d, d) symmetric PSD (or (d,) diagonal). power 1: A itself; other powers through an
    eigendecomposition in float64 (negative eigenvalues from rounding clipped to 0).
    normalize: "max" divides by the largest entry (xRFM, Science 2024), None leaves the scale.
    The result is symmetrized exactly ((A + A^T) / 2): blocked sums leave rounding asymmetry.
    """
    if A.ndim == 2:
        A = (A + A.T) * 0.5
    if power != 1:
        if A.ndim == 1:
            A = A.clamp(min=0).to(torch.float64).pow(power).to(A.dtype)
        else:
            w, U = torch.linalg.eigh(A.to(torch.float64))
            A = ((U * w.clamp(min=0).pow(power)) @ U.T).to(A.dtype)
            A = (A + A.T) * 0.5
    if normalize == "max":
        top = float(A.max())
        if top > 0:
            A = A / top
    return A


def progress_line(t: int, iters: int, row: dict, metric: str) -> str:
    """One verbose line: a bar, the iteration, train/validation metrics and timings."""
    width = 20
    done = int(round(width * (t + 1) / (iters + 1)))
    bar = "#" * done + "." * (width - done)
    parts = [f"[{bar}] iter {t}/{iters}"]
    for key in (f"train_{metric}", f"val_{metric}"):
        if row.get(key) is not None:
            parts.append(f"{key} {row[key]:.5g}")
    parts.append(f"solve {row['solve_s']:.2f}s")
    if row.get("agop_s") is not None:
        parts.append(f"agop {row['agop_s']:.2f}s")
    if row.get("jitter"):
        parts.append(f"jitter {row['jitter']:.2g}")
    if row.get("cg_iterations"):
        parts.append(f"cg {row['cg_iterations']} it")
    return "  ".join(parts)
