"""Convert the benchmark CSVs written before the one harness into its schema (needs the git
history of this source tree: the old files are read from a commit, never changed by hand).

    python bench/convert_legacy.py [--rev 0da7618] [--out bench/results]

Every number is copied from the old rows, or derived from them (seconds from milliseconds, a
speed-up from two stored times of the same run, MB from GB); the machine, commit and date each
row was measured on are kept; what the old scripts did not record stays empty and the notes say
so. Old columns without a place in the schema go to the notes. The files keep their names:

    cpu_ops.csv                     bench/compare_cpu.py: kernel_matmul, agop, kernel_matrix
    rfm.csv                         bench/bench_rfm.py: RFM fit vs xrfm, scikit-learn datasets
    linrfm.csv                      bench/bench_linrfm.py: reference problem, ML-100K, 1M, power
    gpu_bench.csv                   bench/bench_gpu.py: H200 runs, interpreter runs, ptxas report
    offset_accuracy*.csv            bench/offset_accuracy.py (accuracy)
    distance_rule_cost*.csv         bench/compare_distance_rule.py (distance_rule)
"""

from __future__ import annotations

import argparse
import csv
import io
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from rfmfast.bench import schema  # noqa: E402

NOT_RECORDED = "not recorded by the script that measured it"


def git_show(rev: str, path: str) -> str:
    out = subprocess.run(
        ["git", "show", f"{rev}:{path}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={"GIT_OPTIONAL_LOCKS": "0", "PATH": "/usr/bin:/bin"},
    )
    if out.returncode:
        raise SystemExit(f"git show {rev}:{path}: {out.stderr.strip()}")
    return out.stdout


def git_commit_of(rev: str, path: str) -> tuple[str, str]:
    """(short hash, date) of the last commit at or before rev that changed path."""
    out = subprocess.run(
        ["git", "log", "-1", "--format=%h %ad", "--date=format:%Y-%m-%d %H:%M", rev, "--", path],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={"GIT_OPTIONAL_LOCKS": "0", "PATH": "/usr/bin:/bin"},
    ).stdout.split()
    return out[0], " ".join(out[1:])


def commit_date(commit: str) -> str:
    """The date of a commit (for rows whose script recorded no date: the code measured is at
    least that old; the notes say so)."""
    return subprocess.run(
        ["git", "log", "-1", "--format=%ad", "--date=format:%Y-%m-%d %H:%M", commit],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={"GIT_OPTIONAL_LOCKS": "0", "PATH": "/usr/bin:/bin"},
    ).stdout.strip()


DATE_NOTE = "date: the commit's (the script recorded none)"


def dict_rows(text: str) -> list[dict]:
    lines = [ln for ln in text.splitlines() if not ln.startswith("#")]
    return list(csv.DictReader(io.StringIO("\n".join(lines))))


def num(s):
    try:
        return float(s)
    except (TypeError, ValueError):
        return None


def runs(rows, key):
    """Run ids: rows of one invocation share (date, commit) and are consecutive; a repeated
    (case, impl) starts a new invocation."""
    out, seen, prev, k = [], set(), None, 0
    for r in rows:
        g = key(r)
        ident = (r.get("_case"), r.get("_impl"), r.get("_prec", ""))
        if g != prev or ident in seen:
            k += 1
            seen = set()
        seen.add(ident)
        prev = g
        out.append(f"legacy-{g[1] if len(g) > 1 else 'x'}-{k}")
    return out


def speedups(rows, groups=None):
    """speedup_vs_baseline (fastest baseline of the run and case, within a precision group)
    where the old file did not store one."""
    groups = groups or {}
    by = {}
    for r in rows:
        by.setdefault((r["run"], r["case"]), []).append(r)
    for rs in by.values():
        for r in rs:
            s = num(r.get("seconds"))
            if not s:
                continue
            g = groups.get(r.get("precision"), "")
            cands = [
                b
                for b in rs
                if b["role"] == "baseline"
                and num(b.get("seconds"))
                and b.get("status", "ok") == "ok"
                and (not g or groups.get(b.get("precision"), "") == g)
            ]
            if not cands:
                continue
            b = min(cands, key=lambda b: num(b["seconds"]))
            if r.get("speedup_vs_baseline") in (None, ""):  # else the stored ratio stays
                r["speedup_vs_baseline"] = num(b["seconds"]) / s
            r["baseline"] = r.get("baseline") or b["impl"]


def finish(rows):
    for r in rows:
        for k in list(r):
            if k.startswith("_"):
                del r[k]
        r.setdefault("status", "ok")
    return rows


# ---- cpu_ops.csv (compare_cpu.py) ---------------------------------------------------------
def cpu_ops(rev):
    out = []
    for r in dict_rows(git_show(rev, "bench/results/cpu_ops.csv")):
        impl = re.sub(r"^\([a-d]\) ", "", r["impl"])
        notes = [r["notes"]] if r["notes"] else []
        m = re.match(r"tuned blocked torch (\d+x\d+)$", impl)
        if m:
            impl = "tuned blocked torch"
            notes.insert(0, f"tiles {m.group(1)}, the fastest of 4")
        role = (
            "floor"
            if impl.startswith("floor")
            else "reference"
            if "reference" in impl
            else "rfmfast"
            if impl.startswith("rfmfast")
            else "baseline"
        )
        unit = {
            "entries/s": "kernel entries/s (n*m/s)",
            "GFLOP/s": "GFLOP/s (2 q n (c d + c) / s)",
        }[r["rate_unit"]]
        v = dict(p.split(" ", 1) for p in r["versions"].split(", "))
        mem = num(r["peak_mem_mb"])
        out.append(
            dict(
                date=r["date"],
                commit=r["commit"],
                rfmfast=v.pop("rfmfast", ""),
                bench=r["op"],
                case=r["case"],
                impl=impl,
                role=role,
                size="full",
                device="cpu",
                precision="float32",
                seconds=r["seconds"],
                rate=r["rate"],
                rate_unit=unit,
                peak_mem_mb=mem,
                notes="; ".join(notes),
                machine="x86_64, 2 cores",
                cpu="AMD EPYC",
                threads=2,
                torch=v.pop("torch", ""),
                versions=", ".join(f"{k} {x}" for k, x in v.items()) + f"; ISA path {NOT_RECORDED}",
                _case=r["case"],
                _impl=impl,
            )
        )
    for r, run in zip(out, runs(out, lambda r: (r["date"], r["commit"]))):
        r["run"] = run
    speedups(out)
    return finish(out)


# ---- rfm.csv (bench_rfm.py) -----------------------------------------------------------------
def rfm(rev):
    out = []
    for r in dict_rows(git_show(rev, "bench/results/rfm.csv")):
        synthetic = r["task"].startswith("low_rank")
        case = f"{r['task']} n={r['n']}" if synthetic else f"{r['task']} (scikit-learn)"
        method = r["method"]
        if method == "xrfm":
            impl, role = f"xrfm {r['xrfm']} RFM", "baseline"
        elif method == "rfmfast":
            impl = (
                "rfmfast RFMClassifier"
                if r["metric"] == "test_accuracy"
                else "rfmfast RFMRegressor"
            )
            role = "rfmfast"
        else:
            impl, role = method, "peer"
        rate, unit = None, ""
        if r["rate"]:
            rate, unit = float(r["rate"].split()[0]), "Mentries/s (solves * n^2 / s / 1e6)"
        notes = [r["notes"]]
        if r["solver"]:
            notes.append(f"solver {r['solver']}")
        if r["iters_run"]:
            notes.append(f"{r['iters_run']} solves")
        notes.append(f"speed-up in CPU time {r['cpu_speedup_vs_xrfm']}")
        notes.append(f"rfmfast backend {r['rfmfast_backend']}")
        out.append(
            dict(
                date=r["date"],
                commit=r["commit"],
                bench="rfm",
                case=case,
                impl=impl,
                role=role,
                params=schema.params_json({"task": r["task"], "n": int(r["n"]), "d": int(r["d"])}),
                size="full",
                device="cpu",
                precision="float32",
                seconds=r["fit_s"],
                cpu_seconds=r["cpu_s"],
                repeats=r["repeats"],
                rate=rate,
                rate_unit=unit,
                baseline=f"xrfm {r['xrfm']} RFM",
                speedup_vs_baseline=r["speedup_vs_xrfm"],
                metric=r["metric"],
                value=r["value"],
                notes="; ".join(n for n in notes if n),
                machine=f"{r['machine']}, {r['cores']} cores",
                torch=r["torch"],
                versions=f"xrfm {r['xrfm']}; ISA path and threads {NOT_RECORDED}",
                _case=case,
                _impl=impl,
            )
        )
    for r, run in zip(out, runs(out, lambda r: (r["date"], r["commit"]))):
        r["run"] = run
    return finish(out)


# ---- linrfm.csv (bench_linrfm.py) -----------------------------------------------------------
def linrfm(rev):
    src = dict_rows(git_show(rev, "bench/results/linrfm.csv"))
    out = []
    million: dict = {}
    for r in src:
        b, machine = r["bench"], r["machine"]
        cpu, _, cores = machine.partition(", ")
        torch_v = re.search(r"torch ([^,\s]+)", r["versions"]).group(1)
        common = dict(
            commit=r["commit"],
            date=commit_date(r["commit"]),
            bench="linrfm",
            size="full",
            device="cpu",
            machine=f"x86_64, {cores}",
            cpu=cpu,
            threads=r["threads"],
            torch=torch_v,
            versions=r["versions"].replace(f", torch {torch_v}", "") + f"; ISA path {NOT_RECORDED}",
            _base_notes=r["notes"] + "; " + DATE_NOTE,
        )
        if b == "reference":
            target = r["metric"].replace("time to ", "")
            case = f"{r['case']}: time to {target}"
            ours = r["method"].startswith("rfmfast")
            reached = not r["value"].startswith("not reached")
            sweeps = re.search(r"(\d+) sweeps", r["value"]).group(1)
            t = r["time_s"].lstrip(">")
            notes = [r["rate"]]
            if not reached:
                notes.insert(0, f"{r['value']} ({r['time_s']} s): seconds is a lower bound")
            speed = None
            if r["ratio"].startswith(">"):
                notes.append(f"> {r['ratio'][1:]}x the baseline, which did not reach it")
            elif r["ratio"]:
                speed = r["ratio"]
            row = dict(
                common,
                case=case,
                impl=r["method"],
                role="rfmfast" if ours else "baseline",
                precision="float64",
                seconds=t,
                status="ok" if reached else "timeout",
                metric="sweeps",
                value=sweeps,
                rate=int(sweeps) / float(t) if reached else None,
                rate_unit="sweeps/s" if reached else "",
                speedup_vs_baseline=speed,
                baseline="numpy row loop (oracle schedule)" if speed else "",
                notes="; ".join(notes),
                _case=case,
                _impl=r["method"],
            )
            out.append(row)
        elif b == "movielens":
            m = re.match(r"(ALS biased MF rank 10) \((.*)\)$", r["method"])
            f = re.match(r"(fancyimpute) (\S+) (SoftImpute) (.*)$", r["method"])
            notes = []
            if m:
                impl, notes = m.group(1), [m.group(2)]
            elif f:
                impl, notes = "fancyimpute SoftImpute", [f"fancyimpute {f.group(2)}, {f.group(4)}"]
            else:
                impl = r["method"]
            rate = re.match(r"([\d.]+) (ratings/s|sweeps/s)(?: \((.*)\))?", r["rate"])
            if rate and rate.group(3):
                notes.append(rate.group(3))
            out.append(
                dict(
                    common,
                    case=r["case"],
                    impl=impl,
                    role="rfmfast" if impl.startswith("rfmfast") else "peer",
                    seconds=r["time_s"],
                    metric="test_rmse",
                    value=r["value"],
                    rate=rate.group(1) if rate else None,
                    rate_unit=rate.group(2) if rate else "",
                    notes="; ".join(notes),
                    _case=r["case"],
                    _impl=impl,
                )
            )
        elif b == "million":
            key = (r["commit"], r["case"], r["notes"])
            million.setdefault(key, {"common": common, "rows": []})["rows"].append(r)
        elif b == "power":
            ns = r["method"].startswith("Newton")
            out.append(
                dict(
                    common,
                    case=r["case"],
                    impl=r["method"],
                    role="rfmfast" if ns else "baseline",
                    precision="float64",
                    seconds=r["time_s"],
                    rate=r["rate"].split()[0],
                    rate_unit="d^3/ns (d^3 / s / 1e9)",
                    rel_err=r["value"] if ns else None,
                    speedup_vs_baseline=r["ratio"] or None,
                    baseline="torch.linalg.eigh" if r["ratio"] else "",
                    _case=r["case"],
                    _impl=r["method"],
                )
            )
    for (_, case, _), m in million.items():
        rs = m["rows"]
        med = next(x for x in rs if x["metric"] == "median time per sweep")
        hit = next(x for x in rs if x["metric"].startswith("time to"))
        trace = ", ".join(
            f"{float(x['value']):.3g} after {x['metric'].split()[-1]}"
            for x in rs
            if x["metric"].startswith("rel err after")
        )
        reached = not hit["value"].startswith("not reached")
        out.append(
            dict(
                m["common"],
                case=case,
                impl="rfmfast LinRFMCompleter",
                role="rfmfast",
                precision=case.rsplit(", ", 1)[1],
                seconds=hit["time_s"].lstrip(">"),
                status="ok" if reached else "timeout",
                metric="sweeps to rel err<=1e-2",
                value=re.search(r"(\d+)", hit["value"]).group(1),
                rate=med["rate"].split()[0],
                rate_unit="M observed entries/s per sweep",
                notes=f"median sweep {med['time_s']} s; rel err on 200,000 sampled "
                f"missing entries: {trace}",
                _case=case,
                _impl="x",
            )
        )
    for r, run in zip(out, runs(out, lambda r: ("", r["commit"], r["_base_notes"]))):
        r["run"] = run
        r["notes"] = "; ".join(x for x in (r["_base_notes"], r.get("notes", "")) if x)
    return finish(out)


# ---- gpu_bench.csv (bench_gpu.py) -----------------------------------------------------------
GPU_GROUP = {"float32": "float32", "ieee": "float32", "tf32": "tf32", "bf16": "tf32"}


def gpu(rev):
    out = []
    for r in dict_rows(git_show(rev, "bench/results/gpu_bench.csv")):
        machine = r["machine"]
        if machine.startswith("NVIDIA"):
            dev = f"cuda:0 ({machine.split(' (')[0]})"
        elif "interpreter" in machine:
            dev = "cpu (Triton interpreter)"
        else:
            dev = "none (compiled for sm_90a, no GPU)"
        v = r["versions"].split(", ")
        torch_v = next(x.split()[1] for x in v if x.startswith("torch "))
        rf = next((x.split()[1] for x in v if x.startswith("rfmfast ")), "")
        common = dict(
            date=r["date"],
            commit=r["commit"],
            rfmfast=rf,
            size="full",
            device=dev,
            machine=machine,
            torch=torch_v,
            versions=", ".join(x for x in v if not x.startswith(("torch ", "rfmfast ")))
            + f"; CPU model and ISA path {NOT_RECORDED}",
        )
        sec = num(r["time_ms"]) / 1e3 if num(r["time_ms"]) is not None else None
        mem = num(r["peak_mem_gb"]) * 1e9 / 2**20 if num(r["peak_mem_gb"]) is not None else None
        b = r["bench"]
        if b == "kernel_matmul":
            impl = {
                "torch blocked eager": "blocked torch eager",
                "torch blocked torch.compile": "blocked torch torch.compile",
            }.get(r["impl"], r["impl"])
            out.append(
                dict(
                    common,
                    bench=b,
                    case=f"laplace {r['shape']}",
                    impl=impl,
                    role="rfmfast" if impl.startswith("rfmfast") else "baseline",
                    precision=r["precision"],
                    seconds=sec,
                    rate=r["rate"],
                    rate_unit="kernel entries/s (n*m/s)",
                    rel_err=r["rel_err"],
                    speedup_vs_baseline=r["ratio"] or None,
                    peak_mem_mb=mem,
                    notes=r["notes"],
                    _case=r["shape"],
                    _impl=impl,
                    _prec=r["precision"],
                )
            )
        elif b == "agop":
            out.append(
                dict(
                    common,
                    bench=b,
                    case=f"laplace {r['shape']}",
                    impl=r["impl"],
                    role="rfmfast" if r["impl"].startswith("rfmfast") else "baseline",
                    precision=r["precision"],
                    seconds=sec,
                    rate=r["rate"],
                    rate_unit="(query, center) pairs/s (q*n/s)",
                    rel_err=r["rel_err"],
                    speedup_vs_baseline=r["ratio"] or None,
                    peak_mem_mb=mem,
                    notes=r["notes"] + "; rel_err on a subset of the queries",
                    _case=r["shape"],
                    _impl=r["impl"],
                    _prec=r["precision"],
                )
            )
        elif b == "rfm_fit":
            n = re.search(r"n=(\d+)", r["shape"]).group(1)
            mse = re.search(r"test MSE ([\d.]+)", r["notes"]).group(1)
            out.append(
                dict(
                    common,
                    bench="rfm",
                    case=f"low_rank_d50 n={n} defaults",
                    impl="rfmfast RFMRegressor (defaults)",
                    role="rfmfast",
                    precision=r["precision"],
                    seconds=sec,
                    rate=r["rate"],
                    rate_unit=r["rate_unit"],
                    metric="test_mse",
                    value=mse,
                    notes=r["notes"],
                    _case=r["shape"],
                    _impl=r["impl"],
                )
            )
        elif b == "precision_error":
            plain = re.search(r"plain PyTorch in \w+: ([\d.e+-]+)", r["notes"]).group(1)
            case = r["impl"]
            p = r["precision"]
            for impl, role, err, ratio in (
                (f"plain PyTorch in {p}", "baseline", plain, None),
                ("rfmfast triton", "rfmfast", r["rel_err"], r["ratio"]),
            ):
                out.append(
                    dict(
                        common,
                        bench="precision",
                        case=case,
                        impl=impl,
                        role=role,
                        precision=p,
                        params=schema.params_json({"shape": r["shape"]}),
                        rel_err=err,
                        rel_err_vs_baseline=ratio,
                        baseline=f"plain PyTorch in {p}" if ratio else "",
                        notes=r["notes"],
                        _case=case,
                        _impl=impl,
                        _prec=p,
                    )
                )
        elif b == "ptxas_sm90a":
            out.append(
                dict(
                    common,
                    bench="ptxas",
                    case=r["impl"],
                    impl=r["shape"],
                    role="rfmfast",
                    precision=r["precision"],
                    metric="registers/thread",
                    value=r["rate"],
                    notes=r["notes"],
                    _case=r["impl"],
                    _impl=r["shape"],
                    _prec=r["precision"],
                )
            )
        else:
            raise SystemExit(f"gpu_bench.csv: unknown bench {b!r}")
    for r, run in zip(out, runs(out, lambda r: (r["date"], r["commit"]))):
        r["run"] = run
    speedups(out, GPU_GROUP)
    return finish(out)


# ---- offset_accuracy*.csv, distance_rule_cost*.csv ----------------------------------------
def accuracy(rev, name, commit=None):
    path = f"bench/results/{name}"
    added, date = git_commit_of(rev, path)
    commit = commit or added
    out = []
    for r in dict_rows(git_show(rev, path)):
        case = f"{r['op']} {r['kernel']} {r['dtype']} {r['case']}"
        impl = (
            "reference backend (plain PyTorch)"
            if r["backend"] == "reference"
            else f"rfmfast {r['backend']}"
        )
        failed = num(r["rel_err"]) is None or num(r["max_abs"]) is None
        out.append(
            dict(
                commit=commit,
                date=commit_date(commit),
                run=f"legacy-{name}",
                bench="accuracy",
                case=case,
                impl=impl,
                role="baseline" if r["backend"] == "reference" else "rfmfast",
                params=schema.params_json(
                    dict(
                        op=r["op"],
                        kernel=r["kernel"],
                        dtype=r["dtype"],
                        inputs=r["case"],
                        n=300,
                        m=257,
                        d=50,
                    )
                ),
                size="full",
                device="cpu",
                precision=r["dtype"],
                rel_err=None if failed else r["rel_err"],
                metric="max_abs_err",
                value=None if failed else r["max_abs"],
                status="failed" if failed else "ok",
                notes=(f"failed: {r['max_abs']}; " if failed else "")
                + (
                    f"commit: the one whose file name says so (rows added in {added})"
                    if commit != added
                    else "commit: the one that added these rows"
                )
                + f"; {DATE_NOTE}; machine, ISA path and versions {NOT_RECORDED}",
            )
        )
    by = {}
    for r in out:
        by.setdefault(r["case"], []).append(r)
    for rs in by.values():
        base = next((r for r in rs if r["role"] == "baseline"), None)
        for r in rs:
            if (
                base
                and base is not r
                and num(r.get("rel_err")) is not None
                and num(base.get("rel_err"))
            ):
                r["rel_err_vs_baseline"] = num(r["rel_err"]) / num(base["rel_err"])
                r["baseline"] = base["impl"]
    return finish(out)


def distance_rule(rev, name):
    path = f"bench/results/{name}"
    text = git_show(rev, path)
    comment = "; ".join(ln.lstrip("# ").strip() for ln in text.splitlines() if ln.startswith("#"))
    added, _ = git_commit_of(rev, path)
    out = []
    for r in dict_rows(text):
        case = f"{r['workload']}, {r['isa']}" + (" (busy machine)" if comment else "")
        for impl, role, s in (
            ("C++ kernels before the distance rule (2b43764)", "baseline", r["before_s"]),
            ("C++ kernels with the distance rule", "rfmfast", r["after_s"]),
        ):
            out.append(
                dict(
                    commit=added,
                    date=commit_date(added),
                    run=f"legacy-{name}",
                    bench="distance_rule",
                    case=case,
                    impl=impl,
                    role=role,
                    size="full",
                    device="cpu",
                    precision="float32",
                    seconds=s,
                    isa=r["isa"],
                    threads=r["threads"],
                    baseline="C++ kernels before the distance rule (2b43764)",
                    speedup_vs_baseline=(num(r["before_s"]) / num(s)),
                    notes="; ".join(
                        x
                        for x in (
                            comment,
                            "best of 3, interleaved; kernels and point preparation, no validation",
                            "commit: the one that added these rows",
                            DATE_NOTE,
                            f"machine and versions {NOT_RECORDED}",
                        )
                        if x
                    ),
                )
            )
    return finish(out)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rev", default="0da7618", help="a commit holding the old files")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results"))
    a = ap.parse_args(argv)
    out = Path(a.out)
    files = {
        "cpu_ops.csv": cpu_ops(a.rev),
        "rfm.csv": rfm(a.rev),
        "linrfm.csv": linrfm(a.rev),
        "gpu_bench.csv": gpu(a.rev),
        "offset_accuracy.csv": accuracy(a.rev, "offset_accuracy.csv"),
        "offset_accuracy_2b43764.csv": accuracy(
            a.rev, "offset_accuracy_2b43764.csv", commit="2b43764"
        ),
        "distance_rule_cost.csv": distance_rule(a.rev, "distance_rule_cost.csv"),
        "distance_rule_cost_busy.csv": distance_rule(a.rev, "distance_rule_cost_busy.csv"),
    }
    for name, rows in files.items():
        path = out / name
        if path.exists():
            path.unlink()
        schema.write_rows(path, rows)
        print(f"{path}: {len(rows)} rows")


if __name__ == "__main__":
    main()
