"""Markdown tables from benchmark CSVs in the one schema (rfmfast.bench.schema).

    python -m rfmfast.bench.report DIR_OR_CSV... [-o FILE] [--all-sizes]
    rfmfast bench --report DIR... [--out FILE]

For each benchmark and kind of device (CPU, CUDA, Triton's interpreter) every case gets the
rows of its latest run (by date, then by position in the files: rows are appended in time
order), with where and when it ran; earlier runs are counted, and stay in the CSVs. Rows of the
tiny size set (test runs) are left out unless --all-sizes, except the error benchmarks
(accuracy, precision), whose inputs are the same in every size set.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from . import NAMES, schema

HEADER = """# Benchmarks

Generated from the CSVs in `{src}` by `python -m rfmfast.bench.report {src} -o {out}`
(do not edit by hand; `bench/README.md` gives the command that re-measures each table). One CSV
schema for every row: `rfmfast/bench/schema.py`. Each table is the latest run of its case; every
earlier run stays in the CSVs.

- **seconds**: the best of the timed runs, interleaved with the other implementations in one
  process after a warm-up (unless stated otherwise in the notes).
- **speed-up**: the fastest baseline's seconds / this row's seconds (on GPU: the fastest baseline of
  the same matmul precision); the baseline is named in *vs*.
- **rel. err**: relative Frobenius error against float64 (the reference backend in float64 on the
  same inputs; on a subset of rows where the benchmark says so).
- **rate**: work / seconds, with the formula in its unit.
- Roles: *baseline* computes the same result (what one would otherwise use), *peer* another
  method or an approximation, *floor* a bound built from torch's own parts, *reference*
  rfmfast's plain-PyTorch reference, *rfmfast* this package.
"""

ERROR_BENCHES = ("accuracy", "precision")  # measure errors, at the same sizes in every set
MANY_CASES = 12  # more cases than this: one table per run with a case column
KIND_TITLE = {
    "cpu": "CPU",
    "cuda": "CUDA",
    "interpreter": "Triton interpreter (CPU)",
    "compile": "compile only (no GPU)",
}


def kind(row) -> str:
    dev = row.get("device", "")
    if dev.startswith("cuda"):
        return "cuda"
    if "interpreter" in dev:
        return "interpreter"
    if dev.startswith("none"):
        return "compile"
    return "cpu"


def load(paths) -> list[dict]:
    """All rows of the CSVs under paths (directories: their *.csv), each with its order."""
    rows = []
    files = []
    for p in paths:
        p = Path(p)
        if p.is_dir():
            files += sorted(p.glob("*.csv"))
        elif p.is_file():
            files.append(p)
        else:
            raise FileNotFoundError(f"{p}: no such file or directory")
    for f in files:
        for i, r in enumerate(schema.read_rows(f)):
            r["_file"], r["_order"] = f.name, (len(rows), i)
            rows.append(r)
    return rows


def _cell(v, fmt=None) -> str:
    if v in (None, ""):
        return ""
    if fmt:
        try:
            return format(float(v), fmt)
        except ValueError:
            return str(v)
    return str(v).replace("|", "\\|")


def _rate(r) -> str:
    if r.get("rate") in (None, ""):
        return ""
    return f"{_cell(r['rate'], '.3g')} {r.get('rate_unit', '')}".strip()


def _table(rows, with_case=False) -> list[str]:
    cols = [("case", lambda r: _cell(r["case"]))] if with_case else []
    cols += [
        ("implementation", lambda r: _cell(r["impl"])),
        ("role", lambda r: r["role"]),
        ("precision", lambda r: r.get("precision", "")),
        ("seconds", lambda r: _cell(r.get("seconds"), ".4g")),
        ("rate", _rate),
        (
            "speed-up",
            lambda r: (
                (_cell(r.get("speedup_vs_baseline"), ".2f") + "x")
                if r.get("speedup_vs_baseline")
                else ""
            ),
        ),
        ("vs", lambda r: _cell(r.get("baseline")) if r.get("baseline") != r["impl"] else ""),
        ("rel. err", lambda r: _cell(r.get("rel_err"), ".2g")),
        ("err / baseline's", lambda r: _cell(r.get("rel_err_vs_baseline"), ".2f")),
        (
            "metric",
            lambda r: f"{r['metric']} {_cell(r.get('value'), '.5g')}" if r.get("metric") else "",
        ),
        ("peak MB", lambda r: _cell(r.get("peak_mem_mb"), ".0f")),
        (
            "notes",
            lambda r: (
                ("" if r.get("status") in ("ok", "") else f"**{r['status']}**: ")
                + _cell(r.get("notes"))
            ),
        ),
    ]
    cells = [[f(r) for _, f in cols] for r in rows]
    keep = [j for j in range(len(cols)) if any(c[j] for c in cells)]
    out = [
        "| " + " | ".join(cols[j][0] for j in keep) + " |",
        "|" + "|".join("---" for _ in keep) + "|",
    ]
    out += ["| " + " | ".join(c[j] for j in keep) + " |" for c in cells]
    return out


def _where(rows) -> str:
    r = rows[0]
    same = {k: len({x.get(k, "") for x in rows}) == 1 for k in ("isa", "threads")}
    bits = [
        f"{r['date']} UTC" if r.get("date") else "date not recorded",
        f"commit {r['commit']}" if r.get("commit") else "commit not recorded",
        r.get("machine") or "machine not recorded",
    ]
    if r.get("cpu"):
        bits.append(r["cpu"])
    if r.get("isa"):
        bits.append(f"ISA path {r['isa']}" if same["isa"] else "ISA path per case")
    if r.get("threads"):
        bits.append(f"{r['threads']} threads" if same["threads"] else "threads per case")
    if r.get("torch"):
        bits.append(f"torch {r['torch']}")
    if r.get("versions"):
        bits.append(r["versions"])
    if r.get("size"):
        bits.append(f"size {r['size']}")
    return "; ".join(bits)


def render(rows, src="bench/results", out="docs/benchmarks.md", all_sizes=False) -> str:
    if not all_sizes:  # tiny sizes time nothing; their errors are still errors
        rows = [r for r in rows if r.get("size") != "tiny" or r["bench"] in ERROR_BENCHES]
    lines = [HEADER.format(src=src, out=out)]
    benches = list(dict.fromkeys(r["bench"] for r in rows))
    benches = [b for b in NAMES if b in benches] + sorted(b for b in benches if b not in NAMES)
    lines.append("Contents: " + ", ".join(f"[{b}](#{b})" for b in benches) + "\n")
    for b in benches:
        lines.append(f"## {b}\n")
        brows = [r for r in rows if r["bench"] == b]
        for k in ("cpu", "cuda", "interpreter", "compile"):
            krows = [r for r in brows if kind(r) == k]
            if not krows:
                continue
            lines.append(f"### {b}, {KIND_TITLE[k]}\n")
            latest = []
            for case in dict.fromkeys(r["case"] for r in krows):
                runs: dict[str, list] = {}
                for r in krows:
                    if r["case"] == case:
                        runs.setdefault(r["run"], []).append(r)
                last = max(runs.values(), key=lambda rs: (rs[0].get("date", ""), rs[-1]["_order"]))
                latest.append((case, last, len(runs) - 1))
            if len(latest) > MANY_CASES:  # one table per run, the case as a column
                for run in dict.fromkeys(last[0]["run"] for _, last, _ in latest):
                    rs = [r for _, last, _ in latest if last[0]["run"] == run for r in last]
                    earlier = sum(e for _, last, e in latest if last[0]["run"] == run)
                    lines.append(
                        f"Measured: {_where(rs)} ({rs[0]['_file']})"
                        + (f"; {earlier} earlier case runs in the CSVs" if earlier else "")
                        + ".\n"
                    )
                    lines += _table(rs, with_case=True)
                    lines.append("")
                continue
            last_run = None
            for case, last, earlier in latest:
                run = last[0]["run"]
                if run != last_run:
                    block = [r for _, ls, _ in latest if ls[0]["run"] == run for r in ls]
                    lines.append(f"Measured: {_where(block)} ({last[0]['_file']}).\n")
                    last_run = run
                lines.append(
                    f"**{case}**"
                    + (
                        f" ({earlier} earlier run{'s' if earlier > 1 else ''} in the CSVs)"
                        if earlier
                        else ""
                    )
                    + "\n"
                )
                lines += _table(last)
                lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def write_report(paths, out=None, all_sizes=False) -> int:
    rows = load(paths)
    if not rows:
        raise ValueError(f"no benchmark rows in {', '.join(map(str, paths))}")
    text = render(rows, src=" ".join(map(str, paths)), out=out or "FILE", all_sizes=all_sizes)
    if out:
        if Path(out).is_dir():
            raise ValueError(f"--out {out!r} is a directory: give the Markdown file to write")
        Path(out).write_text(text)
        print(f"wrote {out} ({len(rows)} rows)")
    else:
        sys.stdout.write(text)
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m rfmfast.bench.report", description=__doc__.split("\n")[0]
    )
    ap.add_argument("paths", nargs="+", help="CSV files or directories of them")
    ap.add_argument("-o", "--out", default=None, help="Markdown file to write (default: print)")
    ap.add_argument("--all-sizes", action="store_true", help="keep the tiny (test) rows too")
    a = ap.parse_args(argv)
    try:
        return write_report(a.paths, a.out, a.all_sizes)
    except (ValueError, OSError) as e:
        print(f"rfmfast: error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
