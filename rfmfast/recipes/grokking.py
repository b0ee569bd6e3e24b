"""`rfmfast grokking`: RFM learns modular arithmetic (grokking with the AGOP, ICML 2025).

Data: all p^2 pairs (a, b), input = one-hot(a) ++ one-hot(b) (2p features), target
one-hot(a op b mod p) (p classes), split at random (seeded) into train / test.
Model: RFMClassifier with the grokking convention: Gaussian kernel, bandwidth 2.5, reg 0,
centered AGOP, M <- AGOP^(1/2) (eigh), no normalization. Test accuracy stays near 0 for several
iterations, then jumps to 1 as the off-diagonal p x p block of M becomes circulant.
The test set is passed as validation data with keep_best=False: it is only monitored.
"""

from __future__ import annotations

import numpy as np

OPS = {
    "x+y": lambda a, b, p: (a + b) % p,
    "x-y": lambda a, b, p: (a - b) % p,
    "x*y": lambda a, b, p: (a * b) % p,
    "x^2+y^2": lambda a, b, p: (a * a + b * b) % p,
    "x^2+xy+y^2": lambda a, b, p: (a * a + a * b + b * b) % p,
}


def modular_data(op: str = "x+y", p: int = 61, train_fraction: float = 0.5, seed: int = 0):
    """(X_train, y_train, X_test, y_test): X (m, 2p) one-hot pairs (float32), y (m,) in 0..p-1."""
    if op not in OPS:
        raise ValueError(f"unknown op {op!r}; choose one of {', '.join(OPS)}")
    if p < 2:
        raise ValueError(f"p must be >= 2, got {p}")
    if not 0 < train_fraction < 1:
        raise ValueError(f"train_fraction must be in (0, 1), got {train_fraction}")
    a, b = (g.ravel() for g in np.meshgrid(np.arange(p), np.arange(p), indexing="ij"))
    X = np.zeros((p * p, 2 * p), dtype=np.float32)
    X[np.arange(p * p), a] = 1
    X[np.arange(p * p), p + b] = 1
    y = OPS[op](a, b, p)
    perm = np.random.default_rng(seed).permutation(p * p)
    n_tr = int(round(train_fraction * p * p))
    tr, te = perm[:n_tr], perm[n_tr:]
    return X[tr], y[tr], X[te], y[te]


def run(
    op: str = "x+y",
    p: int = 61,
    iters: int = 30,
    train_fraction: float = 0.5,
    seed: int = 0,
    bandwidth: float = 2.5,
    dtype: str = "float32",
    backend: str = "auto",
    verbose=False,
    stop_at: float | None = None,
):
    """Fit RFM on modular arithmetic; returns (model, X_train, y_train, X_test, y_test).

    model.history_[t]["val_accuracy"] is the test accuracy after iteration t's solve.
    stop_at: stop once the test accuracy reaches this value (None: run all iterations).
    Time: iters + 1 solves of size p^2/2 and iters AGOPs (p^2/2 queries, p outputs, 2p dims).
    """
    from ..models.rfm import RFMClassifier

    Xtr, ytr, Xte, yte = modular_data(op, p, train_fraction, seed)
    model = RFMClassifier(
        kernel="gaussian",
        bandwidth=bandwidth,
        reg=0.0,
        iters=iters,
        centering=True,
        agop_power=0.5,
        normalize=None,
        keep_best=False,
        dtype=dtype,
        backend=backend,
        random_state=seed,
        verbose=verbose,
    )
    callback = None if stop_at is None else (lambda row: row["val_accuracy"] >= stop_at)
    model.fit(Xtr, ytr, Xte, yte, callback=callback)
    return model, Xtr, ytr, Xte, yte


def table(history) -> str:
    """The per-iteration table: iteration, train / test accuracy, solve and AGOP seconds."""
    lines = [f"{'iter':>4}  {'train acc':>9}  {'test acc':>8}  {'solve s':>7}  {'agop s':>6}"]
    for row in history:
        agop = "" if row["agop_s"] is None else f"{row['agop_s']:.2f}"
        lines.append(
            f"{row['iter']:>4}  {row['train_accuracy']:>9.4f}  {row['val_accuracy']:>8.4f}"
            f"  {row['solve_s']:>7.2f}  {agop:>6}"
        )
    return "\n".join(lines)


def plot(model, op: str, p: int, path: str) -> None:
    """PNG: test accuracy per iteration (left), the learned M as a heat map (right)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    it = [r["iter"] for r in model.history_]
    acc = [r["val_accuracy"] for r in model.history_]
    tra = [r["train_accuracy"] for r in model.history_]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.5))
    ax1.plot(it, acc, "o-", label="test")
    ax1.plot(it, tra, "--", label="train")
    ax1.set_xlabel("RFM iteration")
    ax1.set_ylabel("accuracy")
    ax1.set_ylim(-0.02, 1.02)
    ax1.set_title(f"{op} mod {p}")
    ax1.legend()
    M = np.asarray(model.M_)
    im = ax2.imshow(M if M.ndim == 2 else np.diag(M), cmap="viridis")
    ax2.set_title(f"learned M (iteration {model.best_iter_}); blocks: a, b")
    fig.colorbar(im, ax=ax2, fraction=0.046)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _main(args) -> int:
    from ..cli import check_plot_out

    check_plot_out(args.out, args.force)
    model, *_ = run(
        args.op,
        args.p,
        args.iters,
        args.train_fraction,
        args.seed,
        dtype=args.dtype,
        backend=args.backend,
        verbose=False,
    )
    print(
        f"RFM on {args.op} mod {args.p}: {model.alpha_.shape[0]} "
        f"training pairs, Gaussian L = 2.5, reg 0, centered AGOP, M <- AGOP^(1/2)"
    )
    print(table(model.history_))
    if args.out:
        plot(model, args.op, args.p, args.out)
        print(f"saved {args.out}")
    return 0


def register(sub) -> None:
    from ..cli import fraction_arg

    p = sub.add_parser(
        "grokking",
        help="RFM on modular arithmetic: test accuracy jumps to 1",
        description=__doc__.split("\n\n")[0],
    )
    p.add_argument("--op", default="x+y", choices=sorted(OPS), help="the operation (default x+y)")
    p.add_argument("--p", type=int, default=61, help="the modulus (default 61)")
    p.add_argument("--iters", type=int, default=30, help="RFM iterations (default 30)")
    p.add_argument(
        "--train-fraction",
        type=fraction_arg,
        default=0.5,
        help="share of pairs for training, in (0, 1)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--dtype", default="float32", choices=("float32", "float64"))
    p.add_argument("--backend", default="auto")
    p.add_argument("--out", default="grokking.png", help="PNG path ('' for none)")
    p.add_argument("--force", action="store_true", help="overwrite --out if it exists")
    p.set_defaults(func=_main)
