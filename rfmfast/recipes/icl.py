"""`rfmfast icl`: context-scaling versus task-scaling in in-context learning (arXiv 2410.12783).

Noiseless linear regression in d dimensions; error = MSE / d on prompts with unseen tasks. Two
curves: error against the context length n at a fixed number of training tasks, and error
against the number of training tasks at a fixed n, for psi alone (the kernel smoother of a
simplified transformer block without key, query and value weights), an MLP on the vectorized
prompt, and an MLP on [psi, vectorized prompt] (optionally one simplified-transformer block).
The code is rfmfast.nn.icl; the model, its sources and assumptions are in docs/icl.md.
"""

from __future__ import annotations

import argparse

LABELS = {
    "psi": "psi alone",
    "mlp": "MLP on prompt",
    "psi+mlp": "MLP on [psi, prompt]",
    "sgpt": "1-block SGPT",
}


def int_list(text: str) -> list[int]:
    """argparse type: a comma-separated list of integers >= 1."""
    try:
        vals = [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        vals = []
    if not vals or min(vals) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of integers >= 1")
    return vals


def model_list(text: str) -> list[str]:
    """argparse type: a comma-separated list of model names."""
    from ..nn.icl import MODELS

    vals = [t.strip() for t in text.split(",") if t.strip()]
    bad = [v for v in vals if v not in MODELS]
    if not vals or bad:
        raise argparse.ArgumentTypeError(
            f"{text!r}: models are a comma-separated list of {', '.join(MODELS)}"
        )
    return vals


def run(
    models=("psi", "mlp", "psi+mlp"),
    d: int = 5,
    contexts=(10, 20, 40),
    tasks_fixed: int = 4096,
    tasks=(8, 64, 512, 4096),
    n_fixed: int = 10,
    seed: int = 0,
    verbose: bool = False,
    **settings,
):
    """(context_curve, task_curve): {model: [errors]} along `contexts` (at tasks_fixed) and
    along `tasks` (at n_fixed). settings: rfmfast.nn.icl.CI_SETTINGS' keys (steps, width, ...).
    Each trained model is fit once per point; a point on both curves is shared."""
    from ..nn.icl import scaling_errors

    points = [(m, n, tasks_fixed) for m in models for n in contexts]
    points += [(m, n_fixed, t) for m in models for t in tasks]

    def progress(kind, n, t, err, sec):
        if verbose:
            print(f"  {LABELS[kind]:<22} n = {n:<4} tasks = {t:<7} error {err:.4f}  ({sec:.1f} s)")

    err = scaling_errors(points, d=d, seed=seed, progress=progress, **settings)
    ctx = {m: [err[(m, n, tasks_fixed)] for n in contexts] for m in models}
    tsk = {m: [err[(m, n_fixed, t)] for t in tasks] for m in models}
    return ctx, tsk


def table(curve: dict, xs, xname: str) -> str:
    models = list(curve)
    w = max(len(LABELS[m]) for m in models)
    head = f"{xname:>8}  " + "  ".join(f"{LABELS[m]:>{w}}" for m in models)
    lines = [head]
    for i, x in enumerate(xs):
        lines.append(f"{x:>8}  " + "  ".join(f"{curve[m][i]:>{w}.4f}" for m in models))
    return "\n".join(lines)


def plot(ctx, tsk, args, path: str) -> None:
    """PNG: error against n at fixed tasks (left), against tasks at fixed n (right); log-log."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.5))
    for m in ctx:
        ax1.plot(args.context, ctx[m], "o-", label=LABELS[m])
        ax2.plot(args.tasks, tsk[m], "o-", label=LABELS[m])
    ns = args.context
    ax1.plot(ns, [(args.d + 1) / n for n in ns], "k:", label="(d + 1) / n")
    ax1.set_xscale("log")
    ax1.set_yscale("log")
    ax1.set_xlabel("context length n")
    ax1.set_ylabel("error (MSE / d, unseen tasks)")
    ax1.set_title(f"context-scaling: {args.tasks_fixed} training tasks, d = {args.d}")
    ax2.set_xscale("log", base=2)
    ax2.set_yscale("log")
    ax2.set_xlabel("training tasks")
    ax2.set_title(f"task-scaling: n = {args.n_fixed}, d = {args.d}")
    fmt = matplotlib.ticker.FormatStrFormatter("%.2g")
    for ax in (ax1, ax2):
        ax.yaxis.set_major_formatter(fmt)
        ax.yaxis.set_minor_formatter(fmt)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _main(args) -> int:
    from ..cli import UsageError, check_plot_out

    if not 0 < args.lr < float("inf"):
        raise UsageError(f"--lr must be a positive number, got {args.lr}")
    check_plot_out(args.out, args.force)
    settings = {
        "steps": args.steps,
        "width": args.width,
        "depth": args.depth,
        "batch": args.batch,
        "lr": args.lr,
    }
    print(
        f"in-context linear regression, d = {args.d}, noiseless; error = MSE / d on unseen tasks; "
        f"MLPs: {args.depth} x {args.width} ReLU, Adam lr {args.lr}, {args.steps} steps of "
        f"{args.batch} prompts, seed {args.seed}"
    )
    ctx, tsk = run(
        args.models,
        args.d,
        args.context,
        args.tasks_fixed,
        args.tasks,
        args.n_fixed,
        args.seed,
        verbose=True,
        **settings,
    )
    print(f"\nerror against context length n ({args.tasks_fixed} training tasks)")
    print(table(ctx, args.context, "n"))
    print(f"\nerror against training tasks (n = {args.n_fixed})")
    print(table(tsk, args.tasks, "tasks"))
    if args.out:
        plot(ctx, tsk, args, args.out)
        print(f"saved {args.out}")
    return 0


def register(sub) -> None:
    from ..cli import positive_int_arg
    from ..nn.icl import CI_SETTINGS

    p = sub.add_parser(
        "icl",
        help="in-context learning: context- vs task-scaling of psi, MLPs and both",
        description=__doc__.split("\n\n")[0],
    )
    p.add_argument(
        "--models",
        type=model_list,
        default=["psi", "mlp", "psi+mlp"],
        help="comma-separated: psi, mlp, psi+mlp, sgpt (default psi,mlp,psi+mlp)",
    )
    p.add_argument("--d", type=positive_int_arg, default=5, help="input dimension (default 5)")
    p.add_argument(
        "--context",
        type=int_list,
        default=[10, 20, 40],
        help="context lengths of the first curve (default 10,20,40)",
    )
    p.add_argument(
        "--tasks-fixed",
        type=positive_int_arg,
        default=4096,
        help="training tasks along the first curve (default 4096)",
    )
    p.add_argument(
        "--tasks",
        type=int_list,
        default=[8, 64, 512, 4096],
        help="training-task counts of the second curve (default 8,64,512,4096)",
    )
    p.add_argument(
        "--n-fixed",
        type=positive_int_arg,
        default=10,
        help="context length along the second curve (default 10)",
    )
    p.add_argument("--steps", type=positive_int_arg, default=CI_SETTINGS["steps"])
    p.add_argument("--width", type=positive_int_arg, default=CI_SETTINGS["width"])
    p.add_argument("--depth", type=positive_int_arg, default=CI_SETTINGS["depth"])
    p.add_argument("--batch", type=positive_int_arg, default=CI_SETTINGS["batch"])
    p.add_argument("--lr", type=float, default=CI_SETTINGS["lr"])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="icl.png", help="PNG path ('' for none)")
    p.add_argument("--force", action="store_true", help="overwrite --out if it exists")
    p.set_defaults(func=_main)
