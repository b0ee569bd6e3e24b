"""The runner: registry records (Benchmark, Case, Impl) and how a case is measured.

A case is measured side by side in one process: every implementation is checked for
availability (a missing peer gives a 'skipped' row with the reason), warmed up once in the
listed order (baselines first; the warm-up's output gives the error against float64), then
timed `repeats` times, interleaved (impl 1, impl 2, ..., impl 1, impl 2, ...), and the best run
is kept. A call past the time limit is stopped where Python can stop it (at the latest when it
returns) and its row says 'timeout'; an implementation whose first timed run is slow is not
repeated. Rates are work / seconds with the case's formula; speed-ups are against the fastest
baseline of the case (of the same matmul precision where a group is given).
"""

from __future__ import annotations

import contextlib
import functools
import gc
import math
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from . import schema


class BenchTimeout(Exception):
    """A timed call ran past its limit."""


@dataclass
class Impl:
    """One implementation of a case.

    fn(data) -> output: timed by the runner. Or measure(data, ctx) -> dict of row fields
    (seconds, cpu_seconds, rate, metric, value, notes, ...): it times itself (time to a
    target, a floor built from parts). needs() -> (ok, reason): whether it can run here.
    error(output, data) -> relative error against float64 (default: the case's).
    metric(output, data) -> (name, value). group: the matmul precision class its speed-up is
    taken within. once: a single timed run and no warm-up (slow baselines). warmup: a
    callable warmup(data) run instead of a full-size warm-up (e.g. a small fit). work(output,
    data): the work of this implementation's run when it depends on the output (the solves an
    RFM fit ran), else the case's.
    """

    name: str
    role: str
    fn: Callable[[dict], Any] | None = None
    measure: Callable[[dict, Ctx], dict] | None = None
    needs: Callable[[], tuple[bool, str]] | None = None
    precision: str = ""
    group: str = ""
    once: bool = False
    warmup: Callable[[dict], Any] | None = None
    work: Callable[[Any, dict], float] | None = None
    error: Callable[[Any, dict], float] | None = None
    metric: Callable[[Any, dict], tuple[str, float]] | None = None
    notes: str | Callable[[dict], str] = ""

    def __post_init__(self):
        if self.role not in schema.ROLES:
            raise ValueError(f"role {self.role!r} is not one of {schema.ROLES}")
        if (self.fn is None) == (self.measure is None):
            raise ValueError(f"{self.name}: give exactly one of fn and measure")


@dataclass
class Case:
    """A workload: its parameters, its data (built lazily by setup(ctx)), its implementations
    (baselines first), and the rate: work / seconds in rate_unit."""

    name: str
    params: dict
    setup: Callable[[Ctx], dict]
    impls: list[Impl]
    work: float | None = None
    rate_unit: str = ""
    error: Callable[[Any, dict], float] | None = None


@dataclass
class Benchmark:
    """A registry entry: name (`--only NAME`), what it compares, the rate formula, its cases
    for a size and device (cases(size, ctx) -> list[Case]), the devices it runs on."""

    name: str
    title: str
    rate: str
    cases: Callable[[str, Ctx], list[Case]]
    devices: tuple[str, ...] = ("cpu", "cuda")
    chart: str = "seconds"  # or "rel_err": what the PNG plots
    max_repeats: int | None = None  # fewer timed runs (error benchmarks: 1)
    device_note: str = ""  # why it does not run on the other device


@dataclass
class Ctx:
    """What a run was asked for."""

    size: str
    device: Any  # torch.device
    repeats: int
    timeout: float
    slow_s: float
    data_dir: str | None = None
    dry_run: bool = False
    quiet: bool = False
    t0: float = field(default_factory=time.perf_counter)

    @property
    def cuda(self) -> bool:
        return self.device.type == "cuda"

    @property
    def gpu(self) -> bool:
        """The GPU benchmark set: on CUDA, or (--dry-run) on CPU tensors in Triton's
        interpreter."""
        return self.cuda or self.dry_run

    def sync(self):
        if self.cuda:
            import torch

            torch.cuda.synchronize(self.device)

    def log(self, msg: str) -> None:
        if not self.quiet:
            print(
                f"[bench {time.perf_counter() - self.t0:7.1f}s] {msg}", file=sys.stderr, flush=True
            )


# ---- timing helpers ---------------------------------------------------------------------
@contextlib.contextmanager
def deadline(seconds: float):
    """Raise BenchTimeout in the main thread once `seconds` have passed (POSIX; elsewhere, and
    off the main thread, no limit)."""
    usable = (
        seconds
        and seconds > 0
        and hasattr(signal, "setitimer")
        and threading.current_thread() is threading.main_thread()
    )
    if not usable:
        yield
        return

    def _raise(signum, frame):
        raise BenchTimeout(f"past the {seconds:g} s time limit")

    old = signal.signal(signal.SIGALRM, _raise)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def _rss_mb() -> float:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError):
        return float("nan")


class PeakMemory:
    """Peak memory above the level at entry, MB: resident set sampled every 5 ms on CPU,
    torch's allocator peak on CUDA."""

    def __init__(self, ctx: Ctx):
        self.ctx = ctx
        self.mb = None

    def __enter__(self):
        if self.ctx.cuda:
            import torch

            self.ctx.sync()
            self.base = torch.cuda.memory_allocated(self.ctx.device)
            torch.cuda.reset_peak_memory_stats(self.ctx.device)
            return self
        self.base = self.peak = _rss_mb()
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._sample, daemon=True)
        self._t.start()
        return self

    def _sample(self):
        while not self._stop.wait(0.005):
            self.peak = max(self.peak, _rss_mb())

    def __exit__(self, *exc):
        if self.ctx.cuda:
            import torch

            self.ctx.sync()
            self.mb = (torch.cuda.max_memory_allocated(self.ctx.device) - self.base) / 2**20
            return
        self._stop.set()
        self._t.join()
        self.peak = max(self.peak, _rss_mb())
        self.mb = self.peak - self.base


def timed(fn, ctx: Ctx, memory: bool = False):
    """(wall seconds, process CPU seconds, peak MB or None, output) of one call of fn()."""
    ctx.sync()
    pm = PeakMemory(ctx) if memory else contextlib.nullcontext()
    with pm:
        c0, t0 = time.process_time(), time.perf_counter()
        out = fn()
        ctx.sync()
        t1, c1 = time.perf_counter(), time.process_time()
    return t1 - t0, c1 - c0, (pm.mb if memory else None), out


def rel_err(a, b) -> float:
    """Relative Frobenius error of a against b (as float64)."""
    import torch

    a = torch.as_tensor(a).detach().to("cpu", torch.float64)
    b = torch.as_tensor(b).detach().to("cpu", torch.float64)
    den = float(b.norm())
    return float((a - b).norm()) / (den if den > 0 else 1.0)


def _short(e: BaseException) -> str:
    return f"{type(e).__name__}: {' '.join(str(e).split())[:200]}"


# ---- measuring a case -------------------------------------------------------------------
def run_case(bench: Benchmark, case: Case, ctx: Ctx, base: dict) -> list[dict]:
    """Measure one case; returns its rows (schema fields), in the case's order."""
    rows: list[dict] = []
    todo: list[tuple[Impl, dict]] = []
    for impl in case.impls:
        row = dict(
            base,
            bench=bench.name,
            case=case.name,
            impl=impl.name,
            role=impl.role,
            params=schema.params_json(case.params),
            precision=impl.precision or case.params.get("dtype", ""),
            status="ok",
            notes="",
        )
        rows.append(row)
        ok, why = impl.needs() if impl.needs else (True, "")
        if not ok:
            row.update(status="skipped", notes=why)
            ctx.log(f"  {_label(impl)}: skipped ({why})")
            continue
        todo.append((impl, row))
    if not todo:
        return rows
    try:
        with deadline(ctx.timeout):
            data = case.setup(ctx)
    except Exception as e:  # noqa: BLE001 - a case that cannot be built is reported
        for _, row in todo:
            row.update(status="failed", notes=f"case setup failed: {_short(e)}")
        return rows

    def fail(impl, row, e):
        late = isinstance(e, BenchTimeout) or "BenchTimeout" in str(e)  # wrapped by Triton
        row.update(status="timeout" if late else "failed", notes=_short(e))
        ctx.log(f"  {_label(impl)}: {row['status']} ({row['notes']})")

    works: dict[int, float] = {}

    def finish_output(impl, row, out):
        err = impl.error or case.error
        if err is not None and out is not None:
            try:
                row["rel_err"] = err(out, data)
            except Exception as e:  # noqa: BLE001
                row["notes"] = _join(row["notes"], f"error check failed: {_short(e)}")
        if impl.work is not None and out is not None:
            try:
                works[id(impl)] = impl.work(out, data)
            except Exception as e:  # noqa: BLE001
                row["notes"] = _join(row["notes"], f"work count failed: {_short(e)}")
        if impl.metric is not None and out is not None:
            try:
                row["metric"], row["value"] = impl.metric(out, data)
            except Exception as e:  # noqa: BLE001
                row["notes"] = _join(row["notes"], f"metric failed: {_short(e)}")

    timed_impls = []
    checked: set[int] = set()  # impls whose output was checked
    # phase 1, in the listed order: self-timed implementations run; the others warm up
    for impl, row in todo:
        if impl.measure is not None:
            ctx.log(f"  {_label(impl)} ...")
            try:
                with deadline(ctx.timeout):
                    got = impl.measure(data, ctx)
            except (Exception, BenchTimeout) as e:  # noqa: BLE001
                fail(impl, row, e)
                continue
            out = got.pop("output", None)
            row.update(got)
            finish_output(impl, row, out)
            continue
        if impl.once:
            timed_impls.append((impl, row))
            continue
        try:
            with deadline(ctx.timeout):
                ctx.sync()
                out = (impl.warmup or impl.fn)(data)
                ctx.sync()
        except (Exception, BenchTimeout) as e:  # noqa: BLE001
            fail(impl, row, e)
            continue
        if impl.warmup is None:
            finish_output(impl, row, out)
            checked.add(id(impl))
        del out
        timed_impls.append((impl, row))
    # phase 2: interleaved timed runs, best kept
    best: dict[int, tuple] = {}
    done: set[int] = set()
    for rep in range(ctx.repeats):
        for impl, row in timed_impls:
            key = id(impl)
            if key in done or row["status"] != "ok":
                continue
            try:
                with deadline(ctx.timeout):
                    s, c, mem, out = timed(functools.partial(impl.fn, data), ctx, memory=rep == 0)
            except (Exception, BenchTimeout) as e:  # noqa: BLE001
                if key in best:  # keep what was measured
                    row["notes"] = _join(row["notes"], f"run {rep + 1}: {_short(e)}")
                    done.add(key)
                else:
                    fail(impl, row, e)
                continue
            if key not in checked:
                finish_output(impl, row, out)
                checked.add(key)
            del out
            if rep == 0:
                row["peak_mem_mb"] = mem
            n = best.get(key, (None, None, 0))[2] + 1
            if key not in best or s < best[key][0]:
                best[key] = (s, c, n)
            else:
                best[key] = (best[key][0], best[key][1], n)
            if impl.once or s > ctx.slow_s:
                done.add(key)
        gc.collect()
    for impl, row in timed_impls:
        if id(impl) in best:
            s, c, n = best[id(impl)]
            row.update(seconds=s, cpu_seconds=c, repeats=n)
            if n == 1 and ctx.repeats > 1 and not impl.once:
                row["notes"] = _join(row["notes"], f"1 run (slower than {ctx.slow_s:g} s)")
    # rates, notes, speed-ups
    for impl, row in todo:
        note = impl.notes(data) if callable(impl.notes) else impl.notes
        row["notes"] = _join(note, row["notes"])
        s = schema.to_float(row.get("seconds")) if row.get("seconds") not in (None, "") else None
        work = works.get(id(impl), case.work)
        if s and "rate" not in row and work:
            row["rate"] = work / s
            row["rate_unit"] = case.rate_unit
        if row["status"] == "ok":
            ctx.log(f"  {_label(impl)}: {_progress(row)}")
    _speedups(case, rows)
    return rows


def _label(impl: Impl) -> str:
    return impl.name + (f" [{impl.precision}]" if impl.precision else "")


def _join(a: str, b: str) -> str:
    return "; ".join(x for x in (a, b) if x)


def _progress(row) -> str:
    parts = []
    if row.get("seconds") not in (None, ""):
        parts.append(f"{float(row['seconds']):.4g} s")
    if row.get("rate") not in (None, ""):
        parts.append(f"{float(row['rate']):.3g} {row.get('rate_unit', '')}")
    if row.get("rel_err") not in (None, ""):
        parts.append(f"rel. err {float(row['rel_err']):.1e}")
    if row.get("metric"):
        parts.append(
            f"{row['metric']} {row['value']:.5g}"
            if isinstance(row.get("value"), float)
            else f"{row['metric']} {row.get('value')}"
        )
    return ", ".join(parts) or "done"


def _speedups(case: Case, rows: list[dict]) -> None:
    groups = {id(r): i.group for i, r in zip(case.impls, rows)}
    for row in rows:
        s = _num(row.get("seconds"))
        if s is None or row["status"] != "ok":
            continue
        g = groups.get(id(row), "")
        cands = [
            r
            for r in rows
            if r["role"] == "baseline"
            and r["status"] == "ok"
            and _num(r.get("seconds"))
            and (not g or groups.get(id(r), "") == g)
        ]
        if not cands:  # none of the same precision: all baselines
            cands = [
                r
                for r in rows
                if r["role"] == "baseline" and r["status"] == "ok" and _num(r.get("seconds"))
            ]
        if not cands:
            continue
        b = min(cands, key=lambda r: _num(r["seconds"]))
        row["baseline"] = b["impl"]
        row["speedup_vs_baseline"] = _num(b["seconds"]) / s
        e, eb = _num(row.get("rel_err")), _num(b.get("rel_err"))
        if e is not None and eb:
            row["rel_err_vs_baseline"] = e / eb
    # error-only rows (accuracy): the baseline's error, no time needed
    for row in rows:
        if row.get("rel_err_vs_baseline") not in (None, "") or row["status"] != "ok":
            continue
        e = _num(row.get("rel_err"))
        bases = [r for r in rows if r["role"] == "baseline" and _num(r.get("rel_err"))]
        if e is not None and bases:
            row["rel_err_vs_baseline"] = e / _num(bases[0]["rel_err"])
            row.setdefault("baseline", bases[0]["impl"])


def _num(v) -> float | None:
    if v is None or v == "":
        return None
    try:
        x = float(v)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(x) else x
