"""`rfmfast transfer`: kernel transfer learning by projection and translation on the digits
(Radhakrishnan et al., Nature Communications 2023; docs/transfer.md).

Data: scikit-learn's 8 x 8 digits (1,797 images, no download), split at random (seeded): 900
clean images train the source, the other 897 are the target task, corrupted, and of those the
last 400 are the target test set and the rest (497) the pool the training sets are drawn from.
Every row is scaled to unit norm after the corruption. Shifts:
    strong   each image rolled 1 pixel to the right (wrapping), then 30% impulse noise
    mild     10% impulse noise
impulse noise: each pixel, with that probability, becomes 0 or 16 (equally likely).
Models: Laplace kernel, bandwidth 10, ridgeless (reg 0), float64, one-hot labels, argmax.
    source      KernelRidge on the 900 clean digits (10 one-hot outputs)
    baseline    the same kernel machine on the target samples alone
    translated  source + a correction fit to the one-hot residuals (strong shift, 10 classes)
    projected   a kernel machine on the source's 10 outputs (mild shift, new task: digit mod 3)
Each is scored on the target test set at every size over the seeds (learning_curve), and the
scaling law a + b ln n is fit to the mean accuracies.
"""

from __future__ import annotations

import numpy as np

SHIFTS = {"none": (0, 0.0), "mild": (0, 0.10), "strong": (1, 0.30)}
SIZES = (20, 50, 100, 200, 400)
N_SOURCE = 900
N_TEST = 400


def corrupt(X, roll: int = 0, noise: float = 0.0, seed: int = 0) -> np.ndarray:
    """(n, 64) digit images (values 0..16) -> corrupted copies: each 8 x 8 image rolled
    ``roll`` pixels to the right (wrapping), then impulse noise: each pixel, with probability
    ``noise``, set to 0 or 16 (equally likely)."""
    if not 0 <= noise <= 1:
        raise ValueError(f"noise must be in [0, 1], got {noise}")
    img = np.asarray(X, dtype=np.float64).reshape(-1, 8, 8)
    if roll:
        img = np.roll(img, roll, axis=2)
    out = img.reshape(len(img), -1).copy()
    if noise:
        rng = np.random.default_rng(seed)
        hit = rng.random(out.shape) < noise
        out[hit] = rng.choice([0.0, 16.0], size=int(hit.sum()))
    return out


def unit_rows(X) -> np.ndarray:
    """Rows scaled to unit Euclidean norm (an all-zero row stays zero)."""
    X = np.asarray(X, dtype=np.float64)
    norm = np.linalg.norm(X, axis=1, keepdims=True)
    return X / np.where(norm > 0, norm, 1.0)


def digits_transfer(shift: str = "strong", task: str = "digits", seed: int = 0):
    """The split (module docstring) -> dict of numpy arrays: Xs, ys (900 clean source rows,
    labels 0..9), X, y (the 497-row target pool), X_test, y_test (400 target test rows).
    task "digits": target labels 0..9; "mod3": digit mod 3 (a new 3-class task)."""
    from sklearn.datasets import load_digits

    if shift not in SHIFTS:
        raise ValueError(f"unknown shift {shift!r}; choose one of {', '.join(SHIFTS)}")
    if task not in ("digits", "mod3"):
        raise ValueError(f"task must be 'digits' or 'mod3', got {task!r}")
    X, y = load_digits(return_X_y=True)
    perm = np.random.default_rng(seed).permutation(len(X))
    src, tgt = perm[:N_SOURCE], perm[N_SOURCE:]
    roll, noise = SHIFTS[shift]
    Xt = unit_rows(corrupt(X[tgt], roll, noise, seed=seed + 1))
    yt = y[tgt] if task == "digits" else y[tgt] % 3
    n_pool = len(tgt) - N_TEST
    return {
        "Xs": unit_rows(X[src]),
        "ys": y[src],
        "X": Xt[:n_pool],
        "y": yt[:n_pool],
        "X_test": Xt[n_pool:],
        "y_test": yt[n_pool:],
    }


def source_model(Xs, ys, **kw):
    """The source: KernelRidge (Laplace, bandwidth 10, ridgeless, float64) on the one-hot
    labels (10 raw outputs, as the reference's source kernel machine)."""
    from ..models.kernel_ridge import KernelRidge

    opts = dict(kernel="laplace", bandwidth=10.0, reg=0.0, dtype="float64")
    opts.update(kw)
    return KernelRidge(**opts).fit(Xs, np.eye(10)[ys])


def run(sizes=SIZES, seeds=(0, 1, 2, 3, 4), seed: int = 0, law: str = "log", backend="auto"):
    """Both experiments -> dict:
    "translation": {"baseline", "translated": LearningCurve, "source": accuracy of the source
        alone on the strong-shift test set}
    "projection": {"baseline", "projected": LearningCurve}
    Time: 4 x len(sizes) x len(seeds) ridgeless solves of n <= max(sizes), and the source's
    900-point solve."""
    from ..models.learning_curve import learning_curve
    from ..models.transfer import (
        ProjectedKernelClassifier,
        TranslatedKernelClassifier,
        identity,
    )

    kw = dict(backend=backend)
    strong = digits_transfer("strong", "digits", seed)
    mild = digits_transfer("mild", "mod3", seed)
    src = source_model(strong["Xs"], strong["ys"], backend=backend)
    digits, mod3 = np.arange(10), np.arange(3)

    def curve(est, data, label):
        return learning_curve(
            est,
            data["X"],
            data["y"],
            sizes,
            seeds,
            data["X_test"],
            data["y_test"],
            law=law,
            label=label,
        )

    src_acc = float(np.mean(src.predict(strong["X_test"]).argmax(1) == strong["y_test"]))
    return {
        "translation": {
            "baseline": curve(
                ProjectedKernelClassifier(identity, classes=digits, **kw), strong, "baseline"
            ),
            "translated": curve(
                TranslatedKernelClassifier(src, classes=digits, **kw), strong, "translated"
            ),
            "source": src_acc,
        },
        "projection": {
            "baseline": curve(
                ProjectedKernelClassifier(identity, classes=mod3, **kw), mild, "baseline"
            ),
            "projected": curve(
                ProjectedKernelClassifier(src, classes=mod3, **kw), mild, "projected"
            ),
        },
    }


def table(results) -> str:
    """Per experiment: n, then mean +- std accuracy of each model over the seeds."""
    lines = []
    titles = {
        "translation": "translation, strong shift (roll 1 + 30% impulse noise), 10 classes",
        "projection": "projection, mild shift (10% impulse noise), new task digit mod 3",
    }
    for key, res in results.items():
        curves = {k: v for k, v in res.items() if k != "source"}
        first = next(iter(curves.values()))
        lines.append(f"{titles[key]}; {len(first.seeds)} seeds")
        if "source" in res:
            lines.append(f"  source alone: {res['source']:.3f}")
        lines.append("  " + f"{'n':>5}" + "".join(f"  {k:>15}" for k in curves))
        for i, n in enumerate(first.sizes):
            cells = "".join(f"  {c.mean[i]:>7.3f} +- {c.std[i]:.3f}" for c in curves.values())
            lines.append(f"  {int(n):>5}{cells}")
        for k, c in curves.items():
            if c.law is not None:
                lines.append(f"  {k} law: {c.law}")
        lines.append("")
    return "\n".join(lines).rstrip()


def plot(results, path: str) -> None:
    """PNG: the learning curves (mean +- std over seeds, log n) and their scaling-law fits."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib import ticker

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.5))
    titles = {
        "translation": "translation: strong shift, 10 digits",
        "projection": "projection: mild shift, digit mod 3",
    }
    for ax, (key, res) in zip(axes, results.items()):
        first = next(c for k, c in res.items() if k != "source")
        for name, c in res.items():
            if name == "source":
                ax.axhline(c, color="gray", ls=":", label=f"source alone ({c:.3f})")
                continue
            line = ax.errorbar(c.sizes, c.mean, yerr=c.std, fmt="o-", capsize=3, label=name)
            if c.law is not None:
                grid = np.geomspace(c.sizes.min(), c.sizes.max(), 50)
                ax.plot(grid, c.law(grid), "--", color=line[0].get_color(), alpha=0.7)
        ax.set_xscale("log")
        ax.xaxis.set_major_locator(ticker.FixedLocator(first.sizes))
        ax.xaxis.set_major_formatter(ticker.FormatStrFormatter("%d"))
        ax.xaxis.set_minor_formatter(ticker.NullFormatter())
        ax.set_xlabel("target training samples n")
        ax.set_ylabel("test accuracy")
        ax.set_title(titles[key])
        ax.legend()
    fig.suptitle("kernel transfer on digits (Laplace L = 10, ridgeless); dashed: a + b ln n")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _sizes_arg(text: str):
    import argparse

    try:
        sizes = tuple(int(t) for t in text.split(","))
    except ValueError:
        sizes = ()
    pool = 1797 - N_SOURCE - N_TEST
    if not sizes or any(not 1 <= s <= pool for s in sizes):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a comma-separated list of sizes in 1..{pool}"
        )
    return sizes


def _main(args) -> int:
    from ..cli import check_plot_out

    check_plot_out(args.out, args.force)
    results = run(args.sizes, tuple(range(args.seeds)), args.seed, args.law, args.backend)
    print(
        f"digits: source = KernelRidge on {N_SOURCE} clean digits; target test set {N_TEST}; "
        "Laplace L = 10, ridgeless"
    )
    print(table(results))
    if args.out:
        plot(results, args.out)
        print(f"saved {args.out}")
    return 0


def register(sub) -> None:
    from ..cli import positive_int_arg

    p = sub.add_parser(
        "transfer",
        help="kernel transfer learning on digits: projection and translation",
        description=__doc__.split("\n\n")[0],
    )
    p.add_argument(
        "--sizes",
        type=_sizes_arg,
        default=SIZES,
        help="target sample sizes, comma-separated (default 20,50,100,200,400)",
    )
    p.add_argument("--seeds", type=positive_int_arg, default=5, help="draws per size (default 5)")
    p.add_argument("--seed", type=int, default=0, help="the data split's seed (default 0)")
    p.add_argument("--law", default="log", choices=("log", "power"), help="scaling law to fit")
    p.add_argument("--backend", default="auto")
    p.add_argument("--out", default="transfer.png", help="PNG path ('' for none)")
    p.add_argument("--force", action="store_true", help="overwrite --out if it exists")
    p.set_defaults(func=_main)
