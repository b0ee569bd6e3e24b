"""The one CSV schema of every benchmark result, and the machine facts each row carries.

One row per (benchmark, case, implementation) of one run. Columns, in order:

    run                  id of the harness invocation that measured the row (date-time + pid)
    date                 UTC, YYYY-MM-DD HH:MM
    commit               git commit of the source tree rfmfast was imported from ("+dirty" when
                         tracked files differ from it), or "v<version>" for an installed package
    rfmfast              rfmfast version
    bench                benchmark name (`rfmfast bench --only NAME`)
    case                 workload, e.g. "laplace n=m=20000 d=50 t=1"
    impl                 implementation measured
    role                 baseline (computes the same result; a user's alternative), peer (another
                         method or an approximation), floor (a bound built from torch's parts),
                         reference (float64 truth), rfmfast
    params               the case's parameters, JSON
    size                 tiny | quick | full (the harness's size set)
    device               cpu, cuda:N (+ name)
    precision            float32/float64 of the inputs, or the matmul precision (ieee, tf32, bf16)
    seconds              best wall time of `repeats` runs (interleaved with the other impls)
    cpu_seconds          process CPU time of that best run (all threads)
    repeats              timed runs
    rate, rate_unit      work / seconds; rate_unit states the formula, e.g. "entries/s (n*m/s)"
    baseline             the row that speedup_vs_baseline refers to: the fastest baseline of the
                         case (of the same matmul precision on GPU)
    speedup_vs_baseline  baseline seconds / seconds (> 1: faster than the baseline)
    rel_err              relative Frobenius error against float64 (the reference backend in
                         float64 on the same inputs, on a subset of rows where stated)
    rel_err_vs_baseline  rel_err / the baseline's rel_err (the accuracy rule: <= 2)
    metric, value        a quality figure: test MSE, accuracy, RMSE, sweeps to a target
    peak_mem_mb          peak memory above the level before the call (resident set on CPU,
                         allocated device memory on CUDA), MB
    status               ok | skipped | timeout | failed
    notes                why skipped/failed, configuration chosen, anything a reader needs
    machine, cpu, isa, threads, torch, versions   where it ran: architecture and core count
                         (GPU name on CUDA), CPU model, the C++ kernels' ISA path, torch threads,
                         torch version, the other packages' versions
"""

from __future__ import annotations

import csv
import datetime as _dt
import functools
import json
import os
import platform
import subprocess
from pathlib import Path

FIELDS = [
    "run",
    "date",
    "commit",
    "rfmfast",
    "bench",
    "case",
    "impl",
    "role",
    "params",
    "size",
    "device",
    "precision",
    "seconds",
    "cpu_seconds",
    "repeats",
    "rate",
    "rate_unit",
    "baseline",
    "speedup_vs_baseline",
    "rel_err",
    "rel_err_vs_baseline",
    "metric",
    "value",
    "peak_mem_mb",
    "status",
    "notes",
    "machine",
    "cpu",
    "isa",
    "threads",
    "torch",
    "versions",
]

ROLES = ("baseline", "peer", "floor", "reference", "rfmfast")
STATUSES = ("ok", "skipped", "timeout", "failed")
CSV_NAME = "rfmfast_bench.csv"
# peers whose versions are recorded when installed (distribution names)
PEERS = (
    "numpy",
    "scipy",
    "scikit-learn",
    "triton",
    "xrfm",
    "falkon",
    "pykeops",
    "scikit-surprise",
    "implicit",
    "fancyimpute",
    "matplotlib",
)


class SchemaError(ValueError):
    """A CSV file that is not in this schema."""


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def isa() -> str:
    """The C++ kernels' code path in use (avx512, avx2, generic), or '-' without the extension."""
    try:
        from rfmfast import _C

        return str(_C.isa())
    except Exception:  # noqa: BLE001 - no extension (or a broken one): no ISA path
        return "-"


def _dist_version(name: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


@functools.cache
def commit() -> str:
    """Short git commit of the source tree rfmfast is imported from, '+dirty' when tracked files
    differ; 'v<version>' for an installed copy (no git checkout around it)."""
    import rfmfast

    root = Path(rfmfast.__file__).resolve().parent.parent
    env = dict(os.environ, GIT_OPTIONAL_LOCKS="0")  # read only: never write the index
    try:
        top = subprocess.run(
            ["git", "rev-parse", "--show-toplevel"],
            cwd=root,
            env=env,
            capture_output=True,
            text=True,
            timeout=10,
        )
        if top.returncode or Path(top.stdout.strip()).resolve() != root:
            return f"v{rfmfast.__version__}"
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=root,
            env=env,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "--no-optional-locks", "status", "--porcelain", "--untracked-files=no"],
            cwd=root,
            env=env,
            capture_output=True,
            text=True,
            timeout=30,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return f"v{rfmfast.__version__}"
    return (head + ("+dirty" if dirty else "")) if head else f"v{rfmfast.__version__}"


def facts(device) -> dict:
    """The machine columns of a row measured on ``device`` (a torch.device)."""
    import torch

    import rfmfast

    machine = f"{platform.machine()}, {os.cpu_count()} logical CPUs"
    dev = str(device)
    if device.type == "cuda":
        p = torch.cuda.get_device_properties(device)
        machine = (
            f"{p.name} ({p.multi_processor_count} SMs, {p.total_memory / 2**30:.0f} GiB); "
            + machine
        )
        dev = f"{device} ({p.name})"
    versions = [f"python {platform.python_version()}"]
    for name in PEERS:
        v = _dist_version(name)
        if v:
            versions.append(f"{name} {v}")
    if device.type == "cuda" and torch.version.cuda:
        versions.append(f"CUDA {torch.version.cuda}")
    return {
        "commit": commit(),
        "rfmfast": rfmfast.__version__,
        "device": dev,
        "machine": machine,
        "cpu": cpu_model(),
        "isa": isa(),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "versions": ", ".join(versions),
    }


def new_run_id() -> str:
    now = _dt.datetime.now(_dt.timezone.utc)
    return f"{now:%Y%m%dT%H%M%S}-{os.getpid()}"


def now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M")


def params_json(params: dict) -> str:
    return json.dumps(params, sort_keys=True, separators=(",", ":"))


def _fmt(v) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        if v != v:  # nan
            return ""
        return f"{v:.6g}"
    return str(v)


def check_header(path: Path, header: list[str]) -> None:
    if header != FIELDS:
        missing = [f for f in FIELDS if f not in header]
        extra = [f for f in header if f not in FIELDS]
        raise SchemaError(
            f"{path} is not in rfmfast's benchmark CSV schema (missing columns: "
            f"{', '.join(missing) or 'none'}; other columns: "
            f"{', '.join(extra) or 'none'}; or another order)"
        )


def write_rows(path, rows: list[dict]) -> Path:
    """Append rows to the CSV at path (created with the header when new; an existing file must
    have this schema's header)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    new = not path.exists() or path.stat().st_size == 0
    if not new:
        with open(path, newline="") as f:
            check_header(path, next(csv.reader(f), []))
    with open(path, "a", newline="") as f:
        w = csv.DictWriter(f, fieldnames=FIELDS)
        if new:
            w.writeheader()
        for r in rows:
            unknown = set(r) - set(FIELDS)
            if unknown:
                raise KeyError(f"row has columns outside the schema: {sorted(unknown)}")
            w.writerow({k: _fmt(r.get(k)) for k in FIELDS})
    return path


def read_rows(path) -> list[dict]:
    """Rows of one CSV in this schema (strings, as stored)."""
    path = Path(path)
    with open(path, newline="") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if header is None:
            return []
        check_header(path, header)
        return [dict(zip(FIELDS, row)) for row in reader if row]


def to_float(s) -> float | None:
    """A CSV cell as a float, None when empty."""
    if s is None or s == "":
        return None
    try:
        return float(s)
    except ValueError:
        return None
