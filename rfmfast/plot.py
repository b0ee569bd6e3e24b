"""Plots of what an RFM learned, on matplotlib (an optional extra: ``pip install matplotlib``
or ``pip install rfmfast[plot]``; importing rfmfast.plot works without it, a plot call says
what to install).

    plot_M(model_or_M, ax=None, top=3)         M as a heat map, and its top eigenvectors
    plot_history(model, metrics=None, ax=None) per-iteration metrics from ``history_``

Both return the matplotlib Axes they drew on and never call ``show()``.
"""

from __future__ import annotations

import numpy as np


def _pyplot():
    try:
        import matplotlib.pyplot as plt
    except ImportError as e:
        raise ImportError(
            f"rfmfast.plot needs matplotlib: pip install matplotlib (import failed: {e})"
        ) from None
    return plt


def _as_M(model_or_M) -> np.ndarray:
    """model_or_M: an estimator with ``M_`` (RFMRegressor / RFMClassifier, or RFMFeatures
    through its ``estimator_``), a (d, d) matrix or a (d,) diagonal -> (d, d) float64."""
    M = model_or_M
    if hasattr(M, "estimator_") and not hasattr(M, "M_"):
        M = M.estimator_
    if hasattr(M, "M_"):
        M = M.M_
    elif hasattr(M, "fit"):
        raise ValueError(f"{type(M).__name__} has no M_: fit it first")
    if hasattr(M, "detach"):  # a torch tensor
        M = M.detach().cpu().numpy()
    M = np.asarray(M, dtype=np.float64)
    if M.ndim == 1:
        M = np.diag(M)
    if M.ndim != 2 or M.shape[0] != M.shape[1] or M.size == 0:
        raise ValueError(f"M must be (d, d) or its (d,) diagonal, got shape {M.shape}")
    return M


def plot_M(model_or_M, ax=None, top: int = 3):
    """Heat map of M (diverging colours centred at 0) and, next to it, the ``top`` eigenvectors
    of M with the largest eigenvalues, entry by input feature (the directions the RFM
    stretches most; labelled with their eigenvalues over the largest).

    model_or_M: a fitted RFM estimator (or RFMFeatures), or M itself ((d, d) or (d,) diagonal,
    numpy or torch). ax: None (a new figure: one axes for the heat map, a second for the
    eigenvectors when top > 0), one Axes (the heat map only; top must then be 0), or a pair
    (heat map axes, eigenvector axes). Returns the list of Axes drawn on.
    """
    if not isinstance(top, (int, np.integer)) or isinstance(top, bool) or top < 0:
        raise ValueError(f"top must be an integer >= 0, got {top!r}")
    M = _as_M(model_or_M)
    plt = _pyplot()
    if ax is None:
        ncols = 2 if top > 0 else 1
        _, axes = plt.subplots(1, ncols, figsize=(5 * ncols, 4), squeeze=False)
        axes = list(axes[0])
    elif isinstance(ax, (list, tuple, np.ndarray)):
        axes = list(np.ravel(ax))
        if len(axes) != (2 if top > 0 else 1):
            raise ValueError(f"ax: pass {2 if top > 0 else 1} axes for top={top}")
    else:
        if top > 0:
            raise ValueError("one Axes takes the heat map only: pass top=0, or two axes")
        axes = [ax]
    vmax = float(np.abs(M).max()) or 1.0
    im = axes[0].imshow(M, cmap="RdBu_r", vmin=-vmax, vmax=vmax, interpolation="nearest")
    axes[0].set_title("M")
    axes[0].set_xlabel("feature")
    axes[0].set_ylabel("feature")
    axes[0].figure.colorbar(im, ax=axes[0])
    if top > 0:
        w, V = np.linalg.eigh((M + M.T) / 2)
        order = np.argsort(w)[::-1][: min(top, len(w))]
        scale = float(w[order[0]]) if w[order[0]] > 0 else 1.0
        for k, i in enumerate(order):
            v = V[:, i] * (np.sign(V[np.argmax(np.abs(V[:, i])), i]) or 1.0)
            axes[1].plot(np.arange(len(v)), v, marker="o", label=f"v{k + 1} ({w[i] / scale:.2g})")
        axes[1].axhline(0, color="0.7", lw=0.8)
        axes[1].set_title(f"top {len(order)} eigenvectors of M")
        axes[1].set_xlabel("feature")
        axes[1].legend()
    return axes


def plot_history(model, metrics=None, ax=None):
    """Per-iteration metrics of a fitted model's ``history_`` (a list of dicts, one per
    iteration, as RFMRegressor / RFMClassifier record), against ``iter``; a dashed line marks
    ``best_iter_`` when the model has one.

    model: a fitted estimator with ``history_``, or that list itself. metrics: names of
    history keys to plot (default: every ``train_*`` / ``val_*`` key with a number in it).
    ax: an Axes, or None (a new figure). Returns the Axes.
    """
    history = getattr(model, "history_", model)
    if not isinstance(history, (list, tuple)) or not all(isinstance(r, dict) for r in history):
        raise ValueError("model has no history_ (a list of per-iteration dicts): fit it first")
    if not history:
        raise ValueError("history_ is empty: nothing to plot")
    keys = list(history[0])
    for row in history[1:]:
        keys += [k for k in row if k not in keys]

    def numeric(k):
        return any(
            isinstance(r.get(k), (int, float, np.number)) and not isinstance(r.get(k), bool)
            for r in history
        )

    if metrics is None:
        metrics = [k for k in keys if k.startswith(("train_", "val_")) and numeric(k)]
    elif isinstance(metrics, str):
        metrics = [metrics]
    unknown = [m for m in metrics if m not in keys]
    if unknown:
        raise ValueError(f"not in history_: {unknown}; it has {keys}")
    plt = _pyplot()
    if ax is None:
        _, ax = plt.subplots(figsize=(5, 3.5))
    xs = [r.get("iter", i) for i, r in enumerate(history)]
    for m in metrics:
        ys = [np.nan if r.get(m) is None else float(r[m]) for r in history]
        ax.plot(xs, ys, marker="o", label=m)
    best = getattr(model, "best_iter_", None)
    if best is not None:
        ax.axvline(best, color="0.5", ls="--", lw=1, label=f"best ({best})")
    ax.set_xlabel("iteration")
    ax.legend()
    return ax
