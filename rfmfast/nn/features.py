"""The neural feature ansatz, measured: a layer's feature matrix W^T W / k against a power of the
AGOP of the network with respect to that layer's input (its patches, for a conv layer)."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from .. import metrics
from .agop import agop

_LAYERS = (nn.Linear, nn.Conv2d)


def _weight(layer, name: str) -> torch.Tensor:
    if isinstance(layer, torch.Tensor):
        W = layer
    elif isinstance(getattr(layer, "weight", None), torch.Tensor):
        W = layer.weight
    else:
        raise ValueError(f"{name} must be a layer with a .weight tensor or a weight tensor")
    if W.ndim < 2:
        raise ValueError(
            f"{name}'s weight must have at least 2 dims (out, in, ...), got {tuple(W.shape)}"
        )
    return W.detach().to("cpu", torch.float64).reshape(W.shape[0], -1)


def feature_matrix(layer, init=None) -> torch.Tensor:
    """W^T W / k for a layer's weight W: (k, d) -> (d, d) float64 (CPU).

    layer: an nn.Linear, an nn.Conv2d (filters (k, c, q, q) flattened to (k, c q q) in
    (channel, row, col) order, the order of ``agop(..., wrt="patches")``), any module with a
    ``weight``, or the weight tensor itself.
    init: the same layer at initialization (module or tensor): then (W - W0)^T (W - W0) / k.
    """
    W = _weight(layer, "layer")
    if init is not None:
        W0 = _weight(init, "init")
        if W0.shape != W.shape:
            raise ValueError(
                f"init's weight has shape {tuple(W0.shape)}, the layer's {tuple(W.shape)}"
            )
        W = W - W0
    return W.T @ W / W.shape[0]


@dataclass
class NFARow:
    """One layer of an ``nfa_report``: the correlations of its feature matrix with AGOP^power."""

    layer: str
    kind: str  # "linear" or "conv" (patch AGOP)
    dim: int  # D: the feature matrix is D x D
    correlation: float  # trained W^T W vs AGOP(trained)^power
    correlation_delta: float | None = (
        None  # (W - W0)^T (W - W0) vs AGOP(trained)^power; nan: W = W0
    )
    correlation_init: float | None = None  # W0^T W0 vs AGOP(init)^power


@dataclass
class NFAReport:
    """Per-layer neural feature ansatz correlations; ``str(report)`` is a table."""

    power: float
    centered: bool
    rows: list[NFARow] = field(default_factory=list)

    def __str__(self) -> str:
        kind = "Pearson" if self.centered else "cosine"
        head = f"{'layer':<20} {'kind':<7} {'D':>6} {'trained':>8} {'W-W0':>8} {'init':>8}"
        lines = [
            f"neural feature ansatz: {kind} correlation of W^T W with AGOP^{self.power:g}",
            head,
        ]

        def cell(v):
            return f"{v:8.4f}" if v is not None else f"{'-':>8}"

        for r in self.rows:
            lines.append(
                f"{r.layer:<20} {r.kind:<7} {r.dim:>6} {cell(r.correlation)} "
                f"{cell(r.correlation_delta)} {cell(r.correlation_init)}"
            )
        return "\n".join(lines)

    def as_dicts(self) -> list[dict]:
        return [dict(vars(r)) for r in self.rows]


def nfa_report(
    model: nn.Module,
    X,
    init_model: nn.Module | None = None,
    *,
    power: float = 0.5,
    layers=None,
    centered: bool = True,
    chunk: int = 256,
) -> NFAReport:
    """The neural feature ansatz per layer: corr(W^T W, AGOP^power), trained and at init.

    For each nn.Linear and nn.Conv2d of ``model`` (or the names in ``layers``), the AGOP of the
    model with respect to that layer's input (its patches for a conv layer: the convolutional
    ansatz) over X, raised to ``power`` (psd_power), against the layer's feature matrix by
    ``metrics.matrix_correlation(..., centered=centered)`` (Pearson by default).
    init_model: the same architecture at initialization (e.g. a deepcopy taken before training):
    adds the correlation of (W - W0)^T (W - W0) and the one at initialization (W0 and the initial
    model's AGOP). Cost: one AGOP per layer and model (see ``agop``); put models in eval mode.
    """
    if layers is None:
        layers = [n for n, m in model.named_modules() if isinstance(m, _LAYERS)]
        if not layers:
            raise ValueError("model has no nn.Linear or nn.Conv2d layer; pass layers=[...] names")
    report = NFAReport(power=float(power), centered=bool(centered))
    for name in layers:
        mod = model.get_submodule(name)
        conv = isinstance(mod, nn.Conv2d)
        wrt = "patches" if conv else "input"
        F = feature_matrix(mod)
        A = torch.as_tensor(agop(model, X, layer=name, wrt=wrt, chunk=chunk)).cpu()
        P = metrics.psd_power(A, power)
        row = NFARow(
            name,
            "conv" if conv else "linear",
            F.shape[0],
            metrics.matrix_correlation(F, P, centered=centered),
        )
        if init_model is not None:
            mod0 = init_model.get_submodule(name)
            Fd = feature_matrix(mod, init=mod0)  # zero when the layer did not move: no value
            row.correlation_delta = (
                metrics.matrix_correlation(Fd, P, centered=centered) if Fd.any() else float("nan")
            )
            A0 = torch.as_tensor(agop(init_model, X, layer=name, wrt=wrt, chunk=chunk)).cpu()
            row.correlation_init = metrics.matrix_correlation(
                feature_matrix(mod0), metrics.psd_power(A0, power), centered=centered
            )
        report.rows.append(row)
    return report
