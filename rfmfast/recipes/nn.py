"""`rfmfast nn EXPERIMENT`: the feature-learning papers' experiments on the CPU, with a table and a
plot: nfa (the neural feature ansatz), catapults (GD and SGD spikes and AGOP alignment),
quadratic (the quadratic model's catapult phase). The code is rfmfast.nn.experiments."""

from __future__ import annotations

import time

import numpy as np

EXPERIMENTS = ("nfa", "catapults", "quadratic")
#: (paper, small) settings per experiment; small is the test suite's size
SIZES = {
    "catapults": (
        {"width": 1024, "steps": 1000, "epochs": 100},
        {"width": 512, "steps": 500, "epochs": 50},
    ),
    "quadratic": ({"width": 4096, "steps": 200}, {"width": 2048, "steps": 150}),
}
GD_C = (0.5, 0.9, 1.2, 1.5, 1.8)
SGD_BATCHES = (8, 32, 128)
KAPPAS = (1.5, 3.0, 3.8, 4.6)


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def run_nfa(args):
    from ..nn import experiments as E

    rows = []
    for target in ("x0x1", "lowrank"):
        r = E.nfa_experiment(target=target, seed=args.seed)
        rows.append((target, r))
    print("neural feature ansatz: 2-layer ReLU MLP, d = 50, width 256, n = 1000, SGD lr 0.05,")
    print("batch 128, 100 epochs; Pearson correlation of the first layer's W^T W with AGOP^p")
    print(
        f"{'target':<8} {'p=1/2':>7} {'p=1':>7} {'init p=1/2':>11} {'test MSE':>9} "
        f"{'var y':>7} {'s':>5}"
    )
    for target, r in rows:
        print(
            f"{target:<8} {r['corr_p0.5']:>7.4f} {r['corr_p1']:>7.4f} {r['corr_init_p0.5']:>11.4f} "
            f"{r['test_mse']:>9.4f} {r['target_var']:>7.4f} {r['seconds']:>5.1f}"
        )
    return rows


def run_catapults(args):
    from ..nn import experiments as E

    size = SIZES["catapults"][args.size == "small"]
    gd = [E.catapult_run(c, width=size["width"], steps=size["steps"], seed=args.seed) for c in GD_C]
    sgd = [
        E.catapult_run(0.9, batch=b, epochs=size["epochs"], width=size["width"], seed=args.seed)
        for b in SGD_BATCHES
    ]
    print(
        "catapults: f(x) = v^T relu(U x / sqrt(d)) / sqrt(m), d = 20, "
        f"m = {size['width']}, n = 256,"
    )
    print("y = x0 x1, eta = c * 2 / lambda_0; alignment of the network's AGOP with the target's")
    print(f"{'run':<14} {'catapults':>9} {'test MSE':>9} {'alignment':>9}")
    for r in gd + sgd:
        name = f"GD c={r['c']:g}" if r["batch"] is None else f"SGD b={r['batch']} c={r['c']:g}"
        print(f"{name:<14} {len(r['spikes']):>9} {r['test_mse']:>9.4f} {r['alignment']:>9.4f}")
    return gd, sgd


def run_quadratic(args):
    from ..nn import experiments as E

    size = SIZES["quadratic"][args.size == "small"]
    runs = [
        E.quadratic_run(k, width=size["width"], steps=size["steps"], seed=args.seed) for k in KAPPAS
    ]
    print(
        f"quadratic model: shallow ReLU net, n = 64, d = 10, width {size['width']}, "
        "GD at eta = kappa / lambda_0"
    )
    print(
        f"{'kappa':>5}  {'network':>22}  {'quadratic':>22}  {'linear':>22}   (peak/L0, final loss)"
    )
    for r in runs:
        cells = []
        for name in ("network", "quadratic", "linear"):
            L = r[name]["losses"]
            cells.append(f"{np.max(L) / L[0]:>10.3g} {L[-1]:>11.3g}")
        print(f"{r['kappa']:>5g}  " + "  ".join(cells))
    return runs


def plot(kind, result, path):
    plt = _plt()
    if kind == "nfa":
        fig, axes = plt.subplots(1, 2, figsize=(9, 4))
        for ax, (target, r) in zip(axes, result):
            ax.bar(
                ["p=1/2", "p=1", "init p=1/2"], [r["corr_p0.5"], r["corr_p1"], r["corr_init_p0.5"]]
            )
            ax.set_ylim(0, 1)
            ax.set_title(f"target {target}: corr(W^T W, AGOP^p)")
    elif kind == "catapults":
        gd, sgd = result
        fig, axes = plt.subplots(1, 2, figsize=(11, 4))
        for r in gd:
            axes[0].semilogy(r["losses"], label=f"c={r['c']:g} ({len(r['spikes'])} spikes)")
        axes[0].set_title("GD: training loss")
        for r in sgd:
            axes[1].semilogy(
                r["losses"], label=f"batch {r['batch']} ({len(r['spikes'])} spikes)", lw=0.7
            )
        axes[1].set_title("SGD at c = 0.9: training loss")
        for ax in axes:
            ax.set_xlabel("step")
            ax.legend(fontsize=8)
    else:
        fig, axes = plt.subplots(1, len(result), figsize=(4 * len(result), 3.6))
        for ax, r in zip(axes, result):
            for name in ("network", "quadratic", "linear"):
                L = r[name]["losses"]
                ax.semilogy(np.where(np.isfinite(L), L, np.nan), label=name)
            ax.set_title(f"eta = {r['kappa']:g} / lambda_0")
            ax.set_xlabel("step")
            ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _main(args) -> int:
    from ..cli import check_plot_out

    out = args.out if args.out is not None else f"nn_{args.experiment}.png"
    check_plot_out(out, args.force)
    t0 = time.perf_counter()
    result = {"nfa": run_nfa, "catapults": run_catapults, "quadratic": run_quadratic}[
        args.experiment
    ](args)
    print(f"({time.perf_counter() - t0:.1f} s)")
    if out:
        plot(args.experiment, result, out)
        print(f"saved {out}")
    return 0


def register(sub) -> None:
    p = sub.add_parser(
        "nn",
        help="feature learning in neural nets: the ansatz, catapults, the quadratic model",
        description=__doc__.split("\n\n")[0],
    )
    p.add_argument("experiment", choices=EXPERIMENTS, help="which experiment to run")
    p.add_argument(
        "--size",
        choices=("paper", "small"),
        default="paper",
        help="paper: the settings of docs/nn.md; small: the test suite's (faster)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None, help="PNG path (default nn_EXPERIMENT.png; '' for none)")
    p.add_argument("--force", action="store_true", help="overwrite --out if it exists")
    p.set_defaults(func=_main)
