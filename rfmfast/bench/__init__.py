"""`rfmfast bench`: the benchmark harness installed with the package.

    rfmfast bench [--quick] [--only NAME[,NAME...]] [--device cpu|cuda] [--out DIR]
    rfmfast bench --list                       # what would run here, and which peers are missing
    rfmfast bench --report DIR [--out FILE]    # Markdown tables from the CSVs in DIR
    python -m rfmfast.bench ...                # the same

Each benchmark compares rfmfast side by side in one process with the implementations a user
would otherwise use (baselines first: blocked PyTorch written well, scikit-learn, xrfm, Falkon,
pykeops, ...; a peer that is not installed is skipped with the reason), prints a table, appends
its rows to DIR/rfmfast_bench.csv in one schema (rfmfast.bench.schema: seconds, rate and its
formula, speed-up against the fastest baseline, error against float64, machine, CPU ISA path,
threads, versions, commit) and draws DIR/<name>.png (matplotlib, the `bench` extra).

Layout: registry.py (the list of benchmarks), runner.py (records and measuring), baselines.py
(the one copy of the baselines), ops.py / solve.py / rfm.py / linrfm.py / ratings.py /
accuracy.py (the benchmarks), schema.py (CSV and machine facts), table.py, plot.py, report.py,
cli.py.
"""

from __future__ import annotations

#: benchmark names, in the order they run (the `--only` choices)
NAMES = (
    "kernel_matrix",
    "kernel_matmul",
    "kernel_grads",
    "agop",
    "solve",
    "nystroem_matmul",
    "krr",
    "nystroem_rfm",
    "rfm",
    "linrfm",
    "ratings",
    "ratings_10m",
    "accuracy",
    "precision",
    "contention",
)
#: size sets: tiny (seconds, for tests), quick (a few minutes on 2 cores), full (the docs' sizes)
SIZES = ("tiny", "quick", "full")


def register(sub) -> None:
    """Add the `bench` subcommand to `rfmfast`'s parser."""
    from .cli import register as _register

    _register(sub)


def main(argv=None) -> int:
    """Run `rfmfast bench ARGS`; returns the exit status."""
    from rfmfast.cli import main as _main

    return _main(["bench", *(argv or [])])
