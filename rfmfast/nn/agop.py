"""agop(model, X): the average gradient outer product of any torch model (or of a fitted
rfmfast predictor) with respect to its input, a layer's input, or a conv layer's patches."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ._taps import Tap

METHODS = ("auto", "backward", "vmap")

# modules whose training mode couples the samples of a batch or makes the gradients random
_TRAIN_MODE_UNSAFE = (nn.modules.batchnorm._BatchNorm, nn.modules.dropout._DropoutNd)


def _model_place(model: nn.Module):
    for t in list(model.parameters()) + list(model.buffers()):
        if t.is_floating_point():
            return t.device, t.dtype
    return torch.device("cpu"), torch.get_default_dtype()


def _check_X(X, device, dtype, keep_integers=False):
    """X as a tensor on the model's device: floats cast to the model's float dtype; integers
    (token ids for an embedding) kept as int64 when keep_integers, else cast too."""
    is_np = not isinstance(X, torch.Tensor)
    if is_np:
        a = np.asarray(X)
        if a.dtype == object or a.dtype.kind not in "biuf":
            raise ValueError(f"X must be a real numeric array, got dtype {a.dtype}")
        integer = a.dtype.kind in "biu"
        X = torch.from_numpy(np.array(a, dtype=np.int64 if integer else np.float64))
    elif X.is_complex() or not (X.is_floating_point() or X.dtype in (torch.int32, torch.int64)):
        raise ValueError(f"X must be a real tensor, got dtype {X.dtype}")
    if X.ndim < 1 or X.shape[0] == 0:
        raise ValueError(f"X must hold at least one sample along dim 0, got shape {tuple(X.shape)}")
    if not is_np and X.device != device:
        raise ValueError(f"X is on {X.device} but the model is on {device}; move one of them")
    if not bool(torch.isfinite(X).all()):
        raise ValueError("X contains NaN or inf")
    if keep_integers and not X.is_floating_point():
        return X.to(device, torch.int64), is_np
    return X.to(device, dtype), is_np


def _select(outputs, c: int):
    """outputs: None (all), an int, a sequence of ints or a slice -> index tensor into 0..c-1."""
    if outputs is None:
        return torch.arange(c)
    if isinstance(outputs, slice):
        idx = torch.arange(c)[outputs]
    else:
        idx = torch.as_tensor(outputs if np.ndim(outputs) else [outputs], dtype=torch.long)
    if idx.numel() == 0:
        raise ValueError("outputs selects no output")
    if int(idx.min()) < -c or int(idx.max()) >= c:
        raise ValueError(f"outputs {outputs!r} out of range for a model with {c} outputs")
    return idx % c


def _per_sample_backward(tap, model, Xc, idx):
    """Gradients (rows, c_sel, D) by one backward pass per output: exact when each output row
    depends on its own sample only (no coupling across the batch)."""
    leaves = []

    def supply(h):
        leaf = h.detach().requires_grad_(True)
        leaves.append(leaf)
        return leaf

    with torch.enable_grad():
        if tap.module is None:
            out = model(supply(Xc))
        else:
            with tap.hooked(supply):
                out = model(Xc)
        if len(leaves) != 1:
            raise ValueError(
                f"{tap.describe()} was used {len(leaves)} times in one forward pass; the AGOP "
                "needs a layer that runs exactly once per call"
            )
        h = leaves[0]
        if h.shape[0] != Xc.shape[0]:
            raise ValueError(
                f"{tap.describe()} has shape {tuple(h.shape)}: its first dimension is not the "
                f"batch ({Xc.shape[0]} samples); the AGOP needs batch-first layer inputs "
                "(e.g. batch_first=True)"
            )
        out = out.reshape(Xc.shape[0], -1)
        cols = [out[:, j].sum() for j in idx.tolist()]
        grads = []
        for k, s in enumerate(cols):
            if not s.requires_grad:
                grads.append(torch.zeros_like(h))
                continue
            (g,) = torch.autograd.grad(s, h, retain_graph=k + 1 < len(cols), allow_unused=True)
            grads.append(torch.zeros_like(h) if g is None else g)
    D = h.shape[-1] if tap.wrt == "patches" else h[0].numel()
    return torch.stack([g.reshape(-1, D) for g in grads], dim=1)  # (rows, c_sel, D)


def _per_sample_vmap(tap, model, Xc, idx):
    """Gradients by torch.func.vmap(jacrev(...)) over single samples: each sample runs as a
    batch of one, so the result is right even when the model couples a batch's samples."""
    from torch.func import jacrev, vmap

    natural = []
    if tap.module is None:
        H = Xc
    else:
        with torch.no_grad(), tap.hooked(lambda h: natural.append(h) or h):
            model(Xc)
        H = natural[0]

    def f(h, x):
        if tap.module is None:
            out = model(h[None])
        else:
            with tap.hooked(lambda _natural: h[None]):
                out = model(x[None])
        return out.reshape(-1)[idx]

    J = vmap(jacrev(f), in_dims=(0, 0))(H, Xc)  # (N, c_sel, *h.shape[1:])
    if tap.wrt == "patches":  # (N, c, L, D) -> (N L, c, D)
        N, c, L, D = J.shape
        return J.permute(0, 2, 1, 3).reshape(N * L, c, D)
    return J.reshape(J.shape[0], J.shape[1], -1)


def _predictor_agop(est, X, outputs, centering, layer, wrt):
    from ..ops.agop import agop as fused_agop

    if layer is not None or wrt != "input":
        raise ValueError("a fitted rfmfast predictor takes only its input: layer=None, wrt='input'")
    centers = np.asarray(est.centers_)
    alpha = np.asarray(est.alpha_)
    alpha = alpha[:, None] if alpha.ndim == 1 else alpha
    alpha = alpha[:, _select(outputs, alpha.shape[1]).numpy()]
    M = getattr(est, "M_", None)
    if M is None:
        M = getattr(est, "M", None)
    is_torch = isinstance(X, torch.Tensor)
    Xq = np.asarray(X.detach().cpu() if is_torch else X, dtype=centers.dtype)
    A = fused_agop(
        Xq,
        centers,
        np.ascontiguousarray(alpha),
        kernel=est.kernel,
        bandwidth=float(est.bandwidth),
        M=M,
        centering=centering,
        accumulate="float64",
        backend=getattr(est, "backend", "auto"),
    )
    A = np.asarray(A, dtype=np.float64)
    return torch.from_numpy(A).to(X.device) if is_torch else A


def agop(
    model,
    X,
    *,
    layer: str | None = None,
    outputs=None,
    centering: bool = False,
    wrt: str = "input",
    chunk: int = 256,
    method: str = "auto",
):
    """Average gradient outer product of a model over the samples X.

        AGOP = (1/s) sum_{samples i} sum_{outputs c} sum_{copies p} g_icp g_icp^T,
        g_icp = d f_c(x_i) / d h_ip

    where h is the tapped variable: the model's input (layer=None), the input of the submodule
    named ``layer`` (made a leaf: only paths through that layer count), or with wrt="patches"
    the patches of the nn.Conv2d named ``layer``, each of its L positions an independent copy
    (the convolutional feature ansatz's patch AGOP; patches ordered (channel, row, col)).
    s is the number of samples, so a patch AGOP sums over positions and averages over images.

    model: an nn.Module taking a batch X[chunk] -> (N, ...) outputs (flattened to c per sample),
        or a fitted rfmfast predictor (RFMRegressor, RFMClassifier, KernelRidge): then the fused
        op rfmfast.agop runs on its centers, coefficients and M.
    X: (s, ...) samples, numpy or torch (cast to the model's dtype; a tensor must be on the
        model's device). outputs: None (all), an index, a list of indices or a slice.
    centering: subtract each output's mean gradient (over all samples and copies) first.
    method: "backward" (one backward pass per output and chunk: exact when each output row
        depends on its own sample only, which holds for MLPs, CNNs and transformers over their
        sequence, but not for batch norm in training mode), "vmap" (torch.func vmap of jacrev,
        each sample a batch of one), or "auto" (= "backward"). Batch norm or dropout in
        training mode is refused: call model.eval() first.
    Returns (D, D) float64 (D the tapped variable's size per sample / per patch), a tensor on
    X's device for tensor X, else a numpy array.
    Memory: one chunk's forward graph plus its gradients, chunk * L * c * D entries, and the
    D x D float64 sums; never all samples at once.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if int(chunk) < 1:
        raise ValueError(f"chunk must be a positive integer, got {chunk!r}")
    if not isinstance(model, nn.Module):
        if hasattr(model, "alpha_") and hasattr(model, "centers_"):
            return _predictor_agop(model, X, outputs, bool(centering), layer, wrt)
        if hasattr(model, "kernel") and hasattr(model, "fit"):
            raise ValueError(f"{type(model).__name__} is not fitted: call fit first")
        raise ValueError(
            "model must be a torch nn.Module or a fitted rfmfast predictor, "
            f"got {type(model).__name__}"
        )
    bad = [
        n or type(m).__name__
        for n, m in model.named_modules()
        if isinstance(m, _TRAIN_MODE_UNSAFE) and m.training
    ]
    if bad:
        raise ValueError(
            f"modules {bad[:4]} are in training mode (batch norm couples the samples, dropout "
            "makes the gradients random): call model.eval() before taking the AGOP"
        )
    tap = Tap(model, layer, wrt)
    device, dtype = _model_place(model)
    X, is_np = _check_X(X, device, dtype, keep_integers=tap.module is not None)
    s = X.shape[0]
    with torch.no_grad():
        c = model(X[:1]).reshape(1, -1).shape[1]
    idx = _select(outputs, c)
    per_sample = _per_sample_vmap if method == "vmap" else _per_sample_backward
    A = G_sum = shift = None
    rows = 0
    for start in range(0, s, int(chunk)):
        G = per_sample(tap, model, X[start : start + int(chunk)], idx).to(torch.float64)
        G = G.detach()
        if centering:
            # sums of g - shift, shift = the first chunk's mean gradient: the centered AGOP is
            # then a small difference of small sums, not of large ones (gradients that are
            # nearly constant over the samples would otherwise cancel to round-off)
            shift = G.mean(0) if shift is None else shift
            G = G - shift
            G_sum = G.sum(0) if G_sum is None else G_sum + G.sum(0)
        rows += G.shape[0]
        flat = G.reshape(-1, G.shape[-1])
        A = flat.T @ flat if A is None else A.addmm_(flat.T, flat)
    if centering:
        mean = G_sum / rows  # (c_sel, D): the mean gradient minus the shift
        A -= rows * (mean.T @ mean)
    A = (A + A.T) / (2 * s)
    if is_np:
        return A.cpu().numpy()
    return A
