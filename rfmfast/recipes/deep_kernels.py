"""`rfmfast deep-kernels`: infinitely wide and deep networks as classifiers (PNAS 2023). Deep NNGP
kernels of chosen activations against the classifiers their infinite-depth limits become, on
2-D Dirichlet data put on the unit circle.

Data: class 0 ~ Dirichlet(alpha0), class 1 ~ Dirichlet(alpha1) (prior of class 0: ``prior``),
each point x / ||x||. Classifiers: the Bayes rule, the Hilbert estimate (weights
||x - z||^(-(D-1)), D = 2), 1-NN, the majority vote, and kernel interpolation with the depth-L
NNGP of 2d_opt (psi = rho^7/2 + rho/2: its limit is the Hilbert estimate) and of hermite_2 in the
log domain (psi = rho^2: its limit is 1-NN).
"""

from __future__ import annotations

import time

import numpy as np


def dirichlet_sphere(n, alpha0=(1.0, 2.0), alpha1=(2.0, 1.0), prior=0.4, seed=0):
    """(X, y): n points, round(n * prior) of class 0 then the rest of class 1 in a seeded random
    order, each a Dirichlet sample divided by its Euclidean norm. Resamples (with the next
    seed) until no two points coincide."""
    for attempt in range(100):
        rng = np.random.default_rng(seed + 1000 * attempt)
        n0 = int(round(n * prior))
        S = np.concatenate([rng.dirichlet(alpha0, n0), rng.dirichlet(alpha1, n - n0)])
        y = np.concatenate([np.zeros(n0, int), np.ones(n - n0, int)])
        X = S / np.linalg.norm(S, axis=1, keepdims=True)
        if len(np.unique(X.round(15), axis=0)) == n:
            perm = rng.permutation(n)
            return X[perm], y[perm]
    raise RuntimeError("could not draw distinct points")


def run(n_train=2000, n_test=2000, depth=100, log_depth=40, seed=0, backend="auto"):
    """Fit every classifier; returns {name: (test accuracy, test predictions, seconds)}."""
    from ..models.kernel_classifier import (
        DirichletBayesClassifier,
        HilbertClassifier,
        KernelClassifier,
        MajorityVoteClassifier,
        NearestNeighborClassifier,
    )

    X, y = dirichlet_sphere(n_train + n_test, seed=seed)
    Xtr, ytr, Xte, yte = X[:n_train], y[:n_train], X[n_train:], y[n_train:]
    models = {
        "Bayes": DirichletBayesClassifier((1.0, 2.0), (2.0, 1.0), prior=0.4),
        "Hilbert (a = 1)": HilbertClassifier(),
        "1-NN": NearestNeighborClassifier(),
        "majority": MajorityVoteClassifier(),
        f"NNGP 2d_opt, depth {depth}": KernelClassifier(
            "nngp", depth=depth, activation="2d_opt", backend=backend
        ),
        f"NNGP hermite_2, depth {log_depth}, log domain": KernelClassifier(
            "nngp", depth=log_depth, activation="hermite_2", log_domain=True
        ),
    }
    out = {}
    for name, model in models.items():
        t0 = time.perf_counter()
        pred = model.fit(Xtr, ytr).predict(Xte)
        out[name] = (float((pred == yte).mean()), pred, time.perf_counter() - t0)
    return out


def plot(res, Xte, path) -> None:
    """PNG: accuracies (left); each test point's angle on the circle against the class each
    classifier gives it (right): the deep kernels' decisions lie on their limits'."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(res)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.5))
    ax1.barh(names[::-1], [res[k][0] for k in names[::-1]])
    ax1.set_xlabel("test accuracy")
    ax1.set_xlim(0.5, 0.85)
    theta = np.degrees(np.arctan2(Xte[:, 1], Xte[:, 0]))
    order = np.argsort(theta)
    for i, k in enumerate(names):
        ax2.plot(theta[order], res[k][1][order] * 0.8 + 1.2 * i, lw=0.8, label=k)
    ax2.set_yticks([])
    ax2.set_xlabel("angle of the test point (degrees)")
    ax2.set_title("predicted class (0 low, 1 high), one row per classifier")
    ax2.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _main(args) -> int:
    from ..cli import check_plot_out

    check_plot_out(args.out, args.force)
    res = run(args.n_train, args.n_test, args.depth, args.log_depth, args.seed, args.backend)
    names = list(res)
    print(
        f"2-D Dirichlet (1, 2) vs (2, 1), prior 0.4, on the unit circle: {args.n_train} train, "
        f"{args.n_test} test"
    )
    print(f"{'classifier':<40} {'accuracy':>8} {'agrees with Hilbert':>20} {'1-NN':>6} {'s':>6}")
    hil, nn1 = res["Hilbert (a = 1)"][1], res["1-NN"][1]
    for name in names:
        acc, pred, sec = res[name]
        print(
            f"{name:<40} {acc:>8.4f} {(pred == hil).mean():>20.4f} {(pred == nn1).mean():>6.4f} "
            f"{sec:>6.2f}"
        )
    if args.out:
        X, _ = dirichlet_sphere(args.n_train + args.n_test, seed=args.seed)
        plot(res, X[args.n_train :], args.out)
        print(f"saved {args.out}")
    return 0


def register(sub) -> None:
    p = sub.add_parser(
        "deep-kernels",
        help="deep NNGP kernels vs the Hilbert, 1-NN, majority and Bayes classifiers",
        description=__doc__.split("\n\n")[0],
    )
    p.add_argument("--n-train", type=int, default=2000)
    p.add_argument("--n-test", type=int, default=2000)
    p.add_argument("--depth", type=int, default=100, help="depth of the 2d_opt NNGP (default 100)")
    p.add_argument(
        "--log-depth",
        type=int,
        default=40,
        help="depth of the hermite_2 NNGP, in the log domain (default 40)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--backend", default="auto")
    p.add_argument("--out", default="deep_kernels.png", help="PNG path ('' for none)")
    p.add_argument("--force", action="store_true", help="overwrite --out if it exists")
    p.set_defaults(func=_main)
