"""Learning curves over target-sample sizes, with a scaling-law fit (kernel transfer learning,
Radhakrishnan et al., Nature Communications 2023; docs/transfer.md).

    learning_curve(estimator, X, y, sizes, seeds, X_test, y_test) -> LearningCurve

For every size n and seed s: draw n rows of (X, y) at random without replacement (a generator
seeded by (s, n), so each (size, seed) draw is independent, as the reference draws a fresh
random subset per size and repetition), fit a clone of the estimator on them and score it on
(X_test, y_test) (or, when no test set is given, on the rows that draw left out). Per size: the
mean and standard deviation (ddof 0) of the score over the seeds.

The scaling law fit to the per-size mean scores (least squares):

    law="log"    score(n) = a + b ln(n)                 (the default)
    law="power"  1 - score(n) = c n^(-beta)             (fit as a line in log-log; every
                                                         mean score must be below 1)

The paper reports that the performance of transferred kernels (test accuracy on the image
tasks, Pearson r on drug screening) follows a simple scaling law in the number of target
examples, and derives exact laws in a linear setting. Its text could not be retrieved when this
was written, and the reference code (github.com/uhlerlab/kernel_tf: the scaling_*.py scripts)
only records the accuracies per subset size, without a fit; the logarithmic form "a + b log n"
is what was assumed as the paper's empirical law (its curves are drawn against log-scaled
sample counts). The power law is offered for comparison.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from numbers import Integral

import numpy as np
from sklearn.base import clone

__all__ = ["learning_curve", "LearningCurve", "ScalingLaw", "fit_scaling_law"]

LAWS = ("log", "power")


@dataclass
class ScalingLaw:
    """A fitted scaling law; call it on sample sizes to evaluate it.

    law "log": score(n) = a + b ln n (params a, b); "power": score(n) = 1 - c n^(-beta)
    (params c, beta). r2: the coefficient of determination of the fit on the mean scores."""

    law: str
    params: dict
    r2: float

    def __call__(self, n):
        n = np.asarray(n, dtype=np.float64)
        if self.law == "log":
            return self.params["a"] + self.params["b"] * np.log(n)
        return 1.0 - self.params["c"] * n ** (-self.params["beta"])

    def __str__(self):
        if self.law == "log":
            a, b = self.params["a"], self.params["b"]
            return f"score(n) = {a:.4g} + {b:.4g} ln n (R^2 {self.r2:.3f})"
        c, beta = self.params["c"], self.params["beta"]
        return f"score(n) = 1 - {c:.4g} n^(-{beta:.4g}) (R^2 {self.r2:.3f})"


@dataclass
class LearningCurve:
    """sizes (k,), seeds (s,), scores (k, s): one per (size, seed); mean / std (k,) over the
    seeds (ddof 0); law: the ScalingLaw fit to the means (None with a single size); seconds:
    the wall time of all the fits and scores."""

    sizes: np.ndarray
    seeds: np.ndarray
    scores: np.ndarray
    mean: np.ndarray
    std: np.ndarray
    law: ScalingLaw | None
    seconds: float = 0.0
    label: str = field(default="")

    def table(self) -> str:
        head = f"{'n':>6}  {'mean':>7}  {'std':>6}" + ("  law" if self.law else "")
        rows = [head]
        for n, m, s in zip(self.sizes, self.mean, self.std):
            fit = f"  {float(self.law(n)):.4f}" if self.law else ""
            rows.append(f"{int(n):>6}  {m:>7.4f}  {s:>6.4f}{fit}")
        return "\n".join(rows)


def fit_scaling_law(sizes, scores, law: str = "log") -> ScalingLaw:
    """Least-squares fit of ``law`` ("log" or "power", see the module docstring) to the scores
    (k,) at the sizes (k,), k >= 2 distinct sizes."""
    if law not in LAWS:
        raise ValueError(f"law must be one of {LAWS}, got {law!r}")
    n = np.asarray(sizes, dtype=np.float64)
    s = np.asarray(scores, dtype=np.float64)
    if n.shape != s.shape or n.ndim != 1:
        raise ValueError(f"sizes and scores must be 1-D of one length, got {n.shape}, {s.shape}")
    if len(np.unique(n)) < 2:
        raise ValueError("a scaling law needs scores at two or more distinct sizes")
    if not (np.isfinite(s).all() and (n > 0).all()):
        raise ValueError("sizes must be positive and scores finite")
    x = np.log(n)
    if law == "log":
        target = s
    else:
        if (s >= 1).any():
            raise ValueError("law='power' fits 1 - score: every mean score must be below 1")
        target = np.log1p(-s)
    A = np.stack([np.ones_like(x), x], axis=1)
    coef, *_ = np.linalg.lstsq(A, target, rcond=None)
    if law == "log":
        fit = ScalingLaw("log", {"a": float(coef[0]), "b": float(coef[1])}, 0.0)
    else:
        fit = ScalingLaw("power", {"c": float(np.exp(coef[0])), "beta": float(-coef[1])}, 0.0)
    resid = s - fit(n)
    tot = float(((s - s.mean()) ** 2).sum())
    fit.r2 = 1.0 - float((resid**2).sum()) / tot if tot > 0 else 1.0
    return fit


def _int_list(values, name: str, low: int) -> np.ndarray:
    try:
        a = np.atleast_1d(np.asarray(values))
    except Exception:  # noqa: BLE001
        a = None
    if a is None or a.ndim != 1 or a.size == 0:
        raise ValueError(f"{name} must be a non-empty 1-D list of integers, got {values!r}")
    if not all(isinstance(v, Integral) and not isinstance(v, bool) for v in a.tolist()):
        raise ValueError(f"{name} must be integers, got {values!r}")
    a = a.astype(np.int64)
    if (a < low).any():
        raise ValueError(f"{name} must be >= {low}, got {values!r}")
    return a


def learning_curve(
    estimator,
    X,
    y,
    sizes,
    seeds=(0, 1, 2),
    X_test=None,
    y_test=None,
    *,
    scoring=None,
    law: str = "log",
    label: str = "",
) -> LearningCurve:
    """Mean / std score over seeds at each training-set size, and the scaling-law fit.

    estimator: an unfitted (or fitted: it is cloned) scikit-learn estimator; each fit is on a
        clone (transfer estimators keep their pre-trained source, see rfmfast.models.transfer)
    X: (N, d), y: (N,) or (N, c): the pool the training sets are drawn from
    sizes: sample sizes n, 1 <= n <= N (n < N without a test set); seeds: integers >= 0
    X_test, y_test: the test set (both or neither); neither: each fit is scored on the pool
        rows its draw left out
    scoring: None (estimator.score: accuracy for a classifier, R^2 for a regressor) or a
        callable (fitted_estimator, X, y) -> float
    law: "log" or "power" (module docstring)

    Every argument is checked before the first fit. Time: len(sizes) x len(seeds) fits.
    Memory: one fitted estimator at a time.
    """
    if not (hasattr(estimator, "fit") and hasattr(estimator, "get_params")):
        raise TypeError(f"estimator must be a scikit-learn estimator, got {type(estimator)!r}")
    if scoring is None and not hasattr(estimator, "score"):
        raise TypeError("the estimator has no score method: pass scoring=(est, X, y) -> float")
    if scoring is not None and not callable(scoring):
        raise TypeError(f"scoring must be None or a callable, got {scoring!r}")
    if law not in LAWS:
        raise ValueError(f"law must be one of {LAWS}, got {law!r}")
    if (X_test is None) != (y_test is None):
        raise ValueError("pass both X_test and y_test, or neither")
    N = len(X)
    if len(y) != N:
        raise ValueError(f"X has {N} rows but y has {len(y)}")
    if X_test is not None and len(X_test) != len(y_test):
        raise ValueError(f"X_test has {len(X_test)} rows but y_test has {len(y_test)}")
    sizes = _int_list(sizes, "sizes", 1)
    seeds = _int_list(seeds, "seeds", 0)
    top = N if X_test is not None else N - 1
    if sizes.max() > top:
        raise ValueError(
            f"sizes go up to {int(sizes.max())} but the pool has {N} rows"
            + ("" if X_test is not None else " (without a test set one row must be left out)")
        )
    score = scoring or (lambda est, Xs, ys: est.score(Xs, ys))

    def take(A, idx):
        return A.iloc[idx] if hasattr(A, "iloc") else A[idx]

    t0 = time.perf_counter()
    scores = np.empty((len(sizes), len(seeds)))
    for i, n in enumerate(sizes):
        for j, s in enumerate(seeds):
            rng = np.random.default_rng([int(s), int(n)])
            idx = rng.choice(N, size=int(n), replace=False)
            est = clone(estimator)
            try:
                est.fit(take(X, idx), take(y, idx))
                if X_test is None:
                    rest = np.setdiff1d(np.arange(N), idx)
                    scores[i, j] = float(score(est, take(X, rest), take(y, rest)))
                else:
                    scores[i, j] = float(score(est, X_test, y_test))
            except Exception as e:
                e.add_note(f"(learning_curve: the fit at n = {int(n)}, seed {int(s)})")
                raise
    mean, std = scores.mean(axis=1), scores.std(axis=1)
    law_fit = fit_scaling_law(sizes, mean, law) if len(np.unique(sizes)) >= 2 else None
    return LearningCurve(
        sizes=sizes,
        seeds=seeds,
        scores=scores,
        mean=mean,
        std=std,
        law=law_fit,
        seconds=time.perf_counter() - t0,
        label=label,
    )
