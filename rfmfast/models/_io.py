"""The rfmfast model file: a checksummed container around torch.save, and checks of its contents.

Layout::

    MAGIC (8 bytes) | sha256 of the payload (32 bytes) | payload (torch.save of a dict)

The payload holds tensors and plain values only (numpy scalars are saved as Python numbers).
``load`` checks the header and the checksum
before reading the payload, and reads it with ``torch.load(weights_only=True)``, which builds
tensors, containers, numbers and strings and refuses anything else: nothing in a file runs code.
The checksum catches accidental damage (a bad disk, a truncated copy), not a deliberate edit.
The estimators then check what the payload holds (keys, types, dtypes, shapes) with ``get`` and
``tensor``. Every failure is one ValueError:
"<path>: not an rfmfast model file (or corrupted): <why>".
"""

from __future__ import annotations

import hashlib
import io
import os

import numpy as np
import torch

MAGIC = b"RFMFAST\x01"  # the last byte is the container version
_HEAD = len(MAGIC) + 32


def corrupt(path, why: str) -> ValueError:
    return ValueError(f"{os.fspath(path)}: not an rfmfast model file (or corrupted): {why}")


def save(path, payload: dict) -> None:
    """Write ``payload`` to ``path`` in the container; the file appears whole or not at all."""
    path = os.fspath(path)
    buf = io.BytesIO()
    torch.save(_plain(payload), buf)
    body = buf.getvalue()
    tmp = f"{path}.{os.getpid()}.tmp"
    try:
        with open(tmp, "wb") as f:
            f.write(MAGIC + hashlib.sha256(body).digest() + body)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def load(path, format_tag: str) -> dict:
    """The payload dict of the file at ``path``, whose "format" entry must be ``format_tag``."""
    with open(os.fspath(path), "rb") as f:
        data = f.read()
    if data[: len(MAGIC)] != MAGIC:
        why = "it does not start with the rfmfast header"
        if data[:4] == b"PK\x03\x04":
            why += " (a plain torch.save file, or a model saved before files had checksums)"
        raise corrupt(path, why)
    if len(data) < _HEAD or hashlib.sha256(data[_HEAD:]).digest() != data[len(MAGIC) : _HEAD]:
        raise corrupt(path, "the checksum does not match its contents")
    try:
        blob = torch.load(io.BytesIO(data[_HEAD:]), map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - whatever the payload is, the answer is the same
        raise corrupt(
            path, f"its payload cannot be read safely ({str(e).splitlines()[0][:200]})"
        ) from None
    if not isinstance(blob, dict):
        raise corrupt(path, f"the payload is a {type(blob).__name__}, not a dict")
    if blob.get("format") != format_tag:
        raise corrupt(path, f"format tag {blob.get('format')!r}, expected {format_tag!r}")
    return blob


def get(d: dict, key: str, types, path, *, where: str = ""):
    """``d[key]``, which must exist and be an instance of ``types`` (bools never pass as
    numbers)."""
    name = f"{where}[{key!r}]" if where else repr(key)
    if key not in d:
        raise corrupt(path, f"{name} is missing")
    v = d[key]
    if not isinstance(v, types) or (isinstance(v, bool) and bool not in _as_tuple(types)):
        raise corrupt(path, f"{name} is a {type(v).__name__}")
    return v


def tensor(
    d: dict, key: str, path, shape: tuple, dtype=None, *, where: str = "state"
) -> torch.Tensor:
    """``d[key]``: a finite float32/float64 tensor of ``shape`` (None: any size) and ``dtype``."""
    t = get(d, key, torch.Tensor, path, where=where)
    name = f"{where}[{key!r}]"
    if t.dtype not in (torch.float32, torch.float64) or (dtype is not None and t.dtype != dtype):
        want = dtype or "float32 or float64"
        raise corrupt(path, f"{name} has dtype {t.dtype}, expected {want}")
    if t.ndim != len(shape) or any(s is not None and s != k for s, k in zip(shape, t.shape)):
        want = tuple("*" if s is None else s for s in shape)
        raise corrupt(path, f"{name} has shape {tuple(t.shape)}, expected {want}")
    if not bool(torch.isfinite(t).all()):
        raise corrupt(path, f"{name} holds NaN or inf")
    return t


def _plain(obj):
    """``obj`` with numpy scalars as Python numbers (torch.load(weights_only=True) refuses them)."""
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_plain(v) for v in obj)
    return obj


def _as_tuple(types) -> tuple:
    return types if isinstance(types, tuple) else (types,)
