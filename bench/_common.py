"""Helpers shared by the benchmark scripts: timing, peak memory, machine facts, CSV rows."""
from __future__ import annotations

import csv
import datetime as _dt
import os
import platform
import subprocess
import threading
import time
from pathlib import Path

import torch

RESULTS = Path(__file__).resolve().parent / "results"


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    if torch.cuda.is_available():
        return f"{torch.cuda.get_device_name()} + {os.cpu_count()}-core {cpu}"
    return f"{os.cpu_count()}-core {cpu} (torch threads {torch.get_num_threads()})"


def commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, cwd=Path(__file__).parent).stdout.strip() or "unknown"
    except OSError:
        return "unknown"


def versions() -> str:
    import numpy

    from rfmfast import __version__

    out = f"rfmfast {__version__}, torch {torch.__version__}, numpy {numpy.__version__}"
    try:
        import triton

        out += f", triton {triton.__version__}"
    except ImportError:
        pass
    return out


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


class PeakMemory:
    """Peak resident memory above the level at entry (MB), sampled every 5 ms."""

    def __enter__(self):
        self.base = self.peak = _rss_mb()
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()
        return self

    def _run(self):
        while not self._stop.wait(0.005):
            self.peak = max(self.peak, _rss_mb())

    def __exit__(self, *exc):
        self._stop.set()
        self._t.join()
        self.peak = max(self.peak, _rss_mb())
        self.mb = self.peak - self.base


def sync():
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def timeit(fn, repeat: int = 3, warmup: int = 1):
    """(best seconds over `repeat` runs, peak extra memory MB of the first timed run, result)."""
    for _ in range(warmup):
        fn()
    best, mem, out = float("inf"), None, None
    for i in range(repeat):
        sync()
        if i == 0:
            with PeakMemory() as pm:
                t0 = time.perf_counter()
                out = fn()
                sync()
                dt = time.perf_counter() - t0
            mem = pm.mb
        else:
            t0 = time.perf_counter()
            out = fn()
            sync()
            dt = time.perf_counter() - t0
        best = min(best, dt)
    return best, mem, out


FIELDS = ["date", "commit", "machine", "versions", "op", "case", "impl", "seconds", "rate",
          "rate_unit", "ratio_to_rfmfast", "peak_mem_mb", "notes"]


def append_rows(filename: str, rows: list[dict]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / filename
    new = not path.exists()
    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M")
    with open(path, "a", newline="") as f:
        w = csv.DictWriter(f, fieldnames=FIELDS)
        if new:
            w.writeheader()
        for r in rows:
            w.writerow({"date": stamp, "commit": commit(), "machine": machine(),
                        "versions": versions(), **r})
    return path


def table(rows: list[dict]) -> str:
    head = f"{'op':<14} {'case':<28} {'impl':<34} {'seconds':>9} {'rate':>12} {'x rfmfast':>10} {'mem MB':>8}"
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(f"{r['op']:<14} {r['case']:<28} {r['impl']:<34} {r['seconds']:>9.3f} "
                     f"{r['rate']:>9.3g} {r['rate_unit'][:2]:<2} {r['ratio_to_rfmfast']:>10.2f} "
                     f"{(r['peak_mem_mb'] if r['peak_mem_mb'] is not None else float('nan')):>8.0f}")
    return "\n".join(lines)
