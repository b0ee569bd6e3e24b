"""The `rfmfast bench` subcommand: options, their checks (before any work), and the run loop."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from pathlib import Path

from . import NAMES, SIZES

ALIASES = {
    "kernel_solve": "solve",
    "lin-rfm": "linrfm",
    "lin_rfm": "linrfm",
    "grads": "kernel_grads",
}
DEFAULTS = {  # size: (repeats, per-call time limit s, slower than this: one timed run)
    "tiny": (1, 120.0, 5.0),
    "quick": (2, 120.0, 3.0),
    "full": (3, 1800.0, 30.0),
}


def _positive_float(text):
    try:
        x = float(text)
    except ValueError:
        x = 0.0
    if not x > 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number > 0")
    return x


def register(sub) -> None:
    from rfmfast.cli import positive_int_arg

    p = sub.add_parser(
        "bench",
        help="benchmarks: rfmfast against blocked PyTorch and the installed peers",
        description="Run rfmfast's benchmarks side by side with the implementations a user "
        "would otherwise use (baselines first), print the tables, append the rows to "
        "DIR/rfmfast_bench.csv (one schema: rfmfast.bench.schema) and draw DIR/<name>.png.",
        epilog=f"benchmarks: {', '.join(NAMES)}. Without --quick the sizes are the docs' "
        "(tens of minutes on 2 cores). RFMFAST_CPU_ISA=avx2|generic picks the C++ code path; "
        "the ISA used is recorded in each row.",
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help="small sizes: all benchmarks in a few minutes on 2 cores",
    )
    p.add_argument("--size", choices=SIZES, default=None, help=argparse.SUPPRESS)
    p.add_argument(
        "--only",
        action="append",
        metavar="NAME[,NAME]",
        help="run only these benchmarks, in this order (repeatable): " + ", ".join(NAMES),
    )
    p.add_argument(
        "--device",
        default="cpu",
        metavar="cpu|cuda|cuda:N",
        help="where the data lives (default cpu); cuda runs the Triton backend "
        "against GPU baselines",
    )
    p.add_argument(
        "--out",
        default=None,
        metavar="DIR",
        help="results directory (default ./rfmfast-bench; created); with --report, "
        "the Markdown file to write",
    )
    p.add_argument(
        "--threads",
        type=positive_int_arg,
        default=None,
        metavar="N",
        help="torch (and BLAS) threads for every side (default: torch's)",
    )
    p.add_argument(
        "--repeats",
        type=positive_int_arg,
        default=None,
        metavar="K",
        help="timed runs per implementation, interleaved; the best is kept "
        "(default 2 with --quick, 3 otherwise, at least 5 on CUDA)",
    )
    p.add_argument(
        "--timeout",
        type=_positive_float,
        default=None,
        metavar="S",
        help="time limit of one call in seconds (default 120; 1800 at full size)",
    )
    p.add_argument(
        "--budget",
        type=_positive_float,
        default=None,
        metavar="S",
        help="start no new case after S seconds (the rest is recorded as skipped)",
    )
    p.add_argument(
        "--data",
        default=None,
        metavar="DIR",
        help="directory holding ml-100k/u.data (MovieLens 100K) for ratings "
        "(or $RFMFAST_BENCH_DATA)",
    )
    p.add_argument("--no-plot", action="store_true", help="no PNG charts")
    p.add_argument(
        "--list",
        action="store_true",
        help="list the benchmarks, cases and implementations that would run here",
    )
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="with --device cuda where there is no GPU: the GPU benchmarks at tiny "
        "sizes on CPU tensors in Triton's interpreter (checks the harness: the times "
        "mean nothing, the errors are real)",
    )
    p.add_argument(
        "--report",
        nargs="+",
        default=None,
        metavar="DIR",
        help="write Markdown tables from the CSVs (this schema) in DIR... to --out "
        "FILE, or print them; runs nothing",
    )
    p.set_defaults(func=run)


# ---- checks -------------------------------------------------------------------------------
def _selected(only) -> list[str]:
    from rfmfast.cli import UsageError

    if not only:
        return list(NAMES)
    names = []
    for item in only:
        for name in (s.strip() for s in item.split(",")):
            if not name:
                continue
            name = ALIASES.get(name, name)
            if name not in NAMES:
                raise UsageError(
                    f"--only {name!r} is not a benchmark: choose from {', '.join(NAMES)}"
                )
            if name not in names:
                names.append(name)
    if not names:
        raise UsageError("--only names no benchmark")
    return names


def _device(args):
    import torch

    from rfmfast.cli import UsageError

    try:
        dev = torch.device(args.device)
    except (RuntimeError, ValueError):
        dev = None
    if dev is None or dev.type not in ("cpu", "cuda"):
        raise UsageError(f"--device {args.device!r} is not a device: use cpu, cuda or cuda:N")
    if args.dry_run and dev.type != "cuda":
        raise UsageError("--dry-run checks the GPU benchmarks: it goes with --device cuda")
    if dev.type == "cuda":
        if torch.cuda.is_available():
            if dev.index is not None and dev.index >= torch.cuda.device_count():
                raise UsageError(
                    f"--device {args.device}: torch sees {torch.cuda.device_count()} CUDA device(s)"
                )
            return dev if dev.index is not None else torch.device("cuda", 0)
        if not args.dry_run:
            raise UsageError(
                f"--device {args.device}: torch sees no CUDA device here; use "
                "--device cpu, or add --dry-run to check the GPU benchmarks in "
                "Triton's interpreter"
            )
        triton_loaded = [
            m for m in sys.modules if m.startswith("rfmfast.ops") and m.endswith("triton")
        ]
        if os.environ.get("TRITON_INTERPRET") != "1" and triton_loaded:
            raise UsageError(
                "--dry-run needs Triton's interpreter, which must be chosen before "
                "the Triton kernels load: run with TRITON_INTERPRET=1 set"
            )
        os.environ["TRITON_INTERPRET"] = "1"
        return torch.device("cpu")
    return dev


def _size(args) -> str:
    from rfmfast.cli import UsageError

    if args.dry_run:
        if args.size not in (None, "tiny") or args.quick:
            raise UsageError("--dry-run runs the tiny sizes: drop --quick / --size")
        return "tiny"
    if args.quick and args.size not in (None, "quick"):
        raise UsageError(f"--quick and --size {args.size} disagree")
    return "quick" if args.quick else (args.size or "full")


def _out_dir(args) -> Path:
    from rfmfast.cli import UsageError

    out = Path(args.out or "rfmfast-bench")
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {str(out)!r} is a file, not a directory")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UsageError(f"--out {str(out)!r}: cannot create it ({e.strerror})") from None
    if not os.access(out, os.W_OK):
        raise UsageError(f"--out {str(out)!r}: cannot write in it")
    return out


# ---- the run ------------------------------------------------------------------------------
def run(args) -> int:
    from rfmfast.cli import UsageError

    if args.report is not None:
        from .report import write_report

        return write_report(args.report, args.out)
    names = _selected(args.only)
    size = _size(args)
    device = _device(args)
    out = None if args.list else _out_dir(args)
    from .runner import Ctx

    repeats, timeout, slow = DEFAULTS[size]
    if device.type == "cuda":
        repeats = max(repeats, 5) if size != "tiny" else repeats
    ctx = Ctx(
        size=size,
        device=device,
        repeats=args.repeats or repeats,
        timeout=args.timeout or timeout,
        slow_s=slow,
        data_dir=args.data,
        dry_run=args.dry_run,
    )
    import torch

    from .registry import BENCHMARKS

    kind = "cuda" if ctx.gpu else "cpu"
    explicit = bool(args.only)
    benches = []
    for name in names:
        b = BENCHMARKS[name]
        if kind not in b.devices:
            if explicit:
                raise UsageError(
                    f"{name} runs on {' / '.join(b.devices)} only"
                    + (f" ({b.device_note})" if b.device_note else "")
                )
            continue
        benches.append(b)
    if args.list:
        return _list(benches, size, ctx)
    limiter = None
    if args.threads:
        torch.set_num_threads(args.threads)
        try:
            from threadpoolctl import threadpool_limits

            limiter = threadpool_limits(args.threads)
        except ImportError:
            pass
    torch.backends.cuda.matmul.allow_tf32 = False  # baselines ask for TF32 explicitly
    return _run(benches, size, ctx, out, args, limiter)


def _list(benches, size, ctx) -> int:
    print(f"size {size}, device {ctx.device}{' (dry run)' if ctx.dry_run else ''}")
    for b in benches:
        print(f"\n{b.name}: {b.title}\n  rate: {b.rate}")
        for case in b.cases(size, ctx):
            print(f"  case {case.name}")
            for i in case.impls:
                ok, why = i.needs() if i.needs else (True, "")
                prec = f" [{i.precision}]" if i.precision else ""
                print(f"    {i.role:<9} {i.name}{prec}" + ("" if ok else f"  -- skipped: {why}"))
    return 0


def _terminated(signum, frame):
    raise SystemExit(f"rfmfast bench: stopped by signal {signum}; the finished cases are saved")


def _run(benches, size, ctx, out: Path, args, limiter) -> int:
    old = signal.signal(signal.SIGTERM, _terminated)  # a killed run keeps its finished cases
    try:
        return _run_all(benches, size, ctx, out, args)
    finally:
        signal.signal(signal.SIGTERM, old)
        del limiter


def _run_all(benches, size, ctx, out: Path, args) -> int:
    from . import plot, schema
    from .runner import run_case
    from .table import format_rows

    base = {
        "run": schema.new_run_id(),
        "date": schema.now(),
        "size": size,
        **schema.facts(ctx.device),
    }
    if ctx.dry_run and not ctx.cuda:
        base["device"] = "cpu (Triton interpreter, dry run)"
    csv_path = out / schema.CSV_NAME
    if csv_path.exists() and csv_path.stat().st_size:  # refuse another schema before any work
        with open(csv_path, newline="") as f:
            import csv

            schema.check_header(csv_path, next(csv.reader(f), []))
    can_plot, why = plot.available()
    print(
        f"rfmfast bench: {len(benches)} benchmark(s), size {size}, device "
        f"{base['device']}{' (dry run: nothing here is a measurement)' if ctx.dry_run else ''}"
    )
    print(
        f"machine: {base['machine']}; {base['cpu']}; C++ ISA path {base['isa']}; "
        f"{base['threads']} torch threads"
    )
    print(
        f"rfmfast {base['rfmfast']} ({base['commit']}), torch {base['torch']}; {base['versions']}"
    )
    print(f"results: {csv_path}" + ("" if can_plot or args.no_plot else f" ({why})"), flush=True)
    t0 = time.perf_counter()
    failed = []
    repeats = ctx.repeats
    for k, bench in enumerate(benches, 1):
        ctx.log(f"{bench.name} ({k}/{len(benches)}): {bench.title}")
        ctx.repeats = min(repeats, bench.max_repeats or repeats)
        rows = []
        try:
            cases = bench.cases(size, ctx)
        except Exception as e:  # noqa: BLE001 - a benchmark that cannot list its cases
            failed.append(f"{bench.name}: {type(e).__name__}: {e}")
            ctx.log(f"  cannot build the cases: {type(e).__name__}: {e}")
            continue
        for i, case in enumerate(cases, 1):
            if args.budget and time.perf_counter() - t0 > args.budget:
                crow = [
                    dict(
                        base,
                        bench=bench.name,
                        case=case.name,
                        impl=impl.name,
                        role=impl.role,
                        params=schema.params_json(case.params),
                        precision=impl.precision,
                        status="skipped",
                        notes=f"time budget ({args.budget:g} s) used up",
                    )
                    for impl in case.impls
                ]
            else:
                ctx.log(f" case {i}/{len(cases)}: {case.name}")
                crow = run_case(bench, case, ctx, base)
            schema.write_rows(csv_path, crow)
            rows += crow
        failed += [
            f"{bench.name} / {r['case']} / {r['impl']}: {r['notes']}"
            for r in rows
            if r["role"] == "rfmfast" and r["status"] == "failed"
        ]
        print(
            f"\n{bench.name}: {bench.title}\nrate: {bench.rate}; speed-up = fastest baseline "
            "seconds / seconds"
        )
        print(format_rows(rows), flush=True)
        if can_plot and not args.no_plot:
            try:
                png = plot.chart(
                    bench,
                    rows,
                    out / f"{bench.name}.png",
                    f"\n{base['machine']}, {base['isa']}, {base['threads']} threads,"
                    f" {base['commit']}, {size} size",
                )
                if png:
                    print(f"chart: {png}", flush=True)
            except Exception as e:  # noqa: BLE001 - a chart must not lose the results
                print(f"chart of {bench.name} failed: {type(e).__name__}: {e}", file=sys.stderr)
    print(f"\nrows appended to {csv_path}; {time.perf_counter() - t0:.0f} s in all", flush=True)
    if failed:
        print(
            "rfmfast: error: rfmfast implementations failed:\n  " + "\n  ".join(failed),
            file=sys.stderr,
        )
        return 1
    return 0
