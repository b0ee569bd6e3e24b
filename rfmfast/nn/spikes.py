"""catapults(losses): loss spikes in a training curve, by one stated rule."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Spike:
    """One spike of a loss curve: steps [start, end), its peak, and the reference loss."""

    start: int  # first step above factor * reference
    peak: int  # step of the largest loss within the spike
    end: int | None  # first step back at or below factor * reference; None: never came back
    reference: float  # the lowest loss before the spike (since the previous spike ended)
    height: float  # loss[peak] / reference


def catapults(losses, factor: float = 2.0) -> list[Spike]:
    """Spikes (catapults) in a sequence of losses, e.g. the training loss after each step.

    The rule: the reference is the lowest loss seen so far outside spikes. A spike starts at
    the first step whose loss exceeds ``factor`` times the reference, and ends at the first
    later step whose loss is back at or below ``factor`` times that same reference (end=None if
    it never returns: divergence). Losses inside a spike do not lower the reference; after it
    ends the reference continues from its value before the spike, then follows the new lows.
    A non-finite loss (overflow) counts as above any threshold.
    losses: 1-D sequence of floats, at least one. factor: > 1.
    Returns the spikes in order; ``len(catapults(losses))`` is the number of catapults.
    """
    a = np.asarray(losses, dtype=np.float64)
    if a.ndim != 1 or a.size == 0:
        raise ValueError(f"losses must be a non-empty 1-D sequence, got shape {a.shape}")
    if not np.isfinite(factor) or factor <= 1:
        raise ValueError(f"factor must be a finite number > 1, got {factor}")
    if not np.isfinite(a[0]) or a[0] < 0:
        raise ValueError(f"the first loss must be a finite number >= 0, got {a[0]}")
    a = np.where(np.isnan(a), np.inf, a)
    spikes = []
    ref = a[0]
    start = None
    for t in range(1, a.size):
        x = a[t]
        if start is None:
            if x > factor * ref:
                start = t
            else:
                ref = min(ref, x)
        elif x <= factor * ref:
            peak = start + int(np.argmax(a[start:t]))
            spikes.append(
                Spike(start, peak, t, float(ref), float(a[peak] / ref) if ref > 0 else np.inf)
            )
            start = None
            ref = min(ref, x)
    if start is not None:
        peak = start + int(np.argmax(a[start:]))
        spikes.append(
            Spike(start, peak, None, float(ref), float(a[peak] / ref) if ref > 0 else np.inf)
        )
    return spikes
