"""`rfmfast bench`: the harness at tiny sizes through the command line (a subprocess in a
temporary folder, the package under test), its one CSV schema, charts and report, and its
refusal of bad options before any work. No timing is asserted."""

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import rfmfast
from rfmfast.bench import NAMES, schema
from rfmfast.cli import main

# the package under test (not a source tree that happens to be the working directory)
PKG_PARENT = str(Path(rfmfast.__file__).resolve().parent.parent)
CPU_NAMES = [n for n in NAMES if n != "precision"]


def run_bench(args, cwd, timeout=1500):
    env = dict(
        os.environ,
        PYTHONPATH=os.pathsep.join(p for p in (PKG_PARENT, os.environ.get("PYTHONPATH")) if p),
    )
    env.pop("TRITON_INTERPRET", None)
    return subprocess.run(
        [sys.executable, "-m", "rfmfast.cli", "bench", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """Every CPU benchmark at the tiny sizes, once for the module."""
    cwd = tmp_path_factory.mktemp("bench")
    p = run_bench(["--size", "tiny", "--out", "out"], cwd)
    return cwd, p


def read_csv(path):
    with open(path, newline="") as f:
        r = csv.reader(f)
        header = next(r)
        return header, [dict(zip(header, row)) for row in r]


def test_tiny_run_succeeds_and_prints_every_table(tiny_run):
    cwd, p = tiny_run
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    assert "Traceback" not in p.stderr
    for name in CPU_NAMES:
        assert f"\n{name}: " in p.stdout, name
    assert "C++ ISA path" in p.stdout and "torch threads" in p.stdout
    assert "[bench" in p.stderr  # progress lines


def test_csv_has_the_one_schema_and_every_benchmark(tiny_run):
    cwd, p = tiny_run
    header, rows = read_csv(cwd / "out" / schema.CSV_NAME)
    assert header == schema.FIELDS
    assert {r["bench"] for r in rows} == set(CPU_NAMES)
    assert len({r["run"] for r in rows}) == 1
    for r in rows:
        assert r["role"] in schema.ROLES and r["status"] in schema.STATUSES, r
        assert r["size"] == "tiny" and r["device"] == "cpu"
        for col in (
            "date",
            "commit",
            "rfmfast",
            "machine",
            "cpu",
            "isa",
            "threads",
            "torch",
            "versions",
            "case",
            "impl",
        ):
            assert r[col], (col, r)
        assert r["rfmfast"] == rfmfast.__version__
        if r["status"] == "skipped":
            assert r["notes"], r  # a reason
        if r["role"] == "rfmfast":
            assert r["status"] == "ok", r
    # every rfmfast op row: a time, a positive rate, small error against float64
    for r in rows:
        if (
            r["bench"] in ("kernel_matrix", "kernel_matmul", "kernel_grads", "agop")
            and r["role"] == "rfmfast"
        ):
            assert float(r["seconds"]) > 0 and float(r["rate"]) > 0, r
            assert "/s" in r["rate_unit"], r
            assert float(r["rel_err"]) < 1e-3, r
        if r["bench"] == "accuracy" and r["role"] == "rfmfast":
            assert float(r["rel_err_vs_baseline"]) <= 2.0, r


def test_baselines_first_and_speedups_name_their_baseline(tiny_run):
    cwd, _ = tiny_run
    _, rows = read_csv(cwd / "out" / schema.CSV_NAME)
    cases = {}
    for r in rows:
        cases.setdefault((r["bench"], r["case"]), []).append(r)
    for key, rs in cases.items():
        roles = [r["role"] for r in rs]
        if "baseline" in roles and "rfmfast" in roles:
            assert roles.index("baseline") < roles.index("rfmfast"), key
        names = {r["impl"] for r in rs if r["role"] == "baseline"}
        for r in rs:
            if r["speedup_vs_baseline"]:
                assert r["baseline"] in names, (key, r)
                b = next(x for x in rs if x["impl"] == r["baseline"] and x["seconds"])
                want = float(b["seconds"]) / float(r["seconds"])
                assert abs(float(r["speedup_vs_baseline"]) - want) <= 1e-4 * want, r


def test_a_chart_per_benchmark(tiny_run):
    pytest.importorskip("matplotlib")
    cwd, _ = tiny_run
    for name in CPU_NAMES:
        png = cwd / "out" / f"{name}.png"
        assert png.is_file(), name
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_report_from_the_csv(tiny_run, tmp_path):
    cwd, _ = tiny_run
    md = tmp_path / "benchmarks.md"
    assert main(["bench", "--report", str(cwd / "out"), "--out", str(md)]) == 0
    assert "no benchmark rows" not in md.read_text()
    md2 = tmp_path / "all.md"
    from rfmfast.bench import report

    assert report.main([str(cwd / "out"), "--all-sizes", "-o", str(md2)]) == 0
    text = md2.read_text()
    for name in CPU_NAMES:
        assert f"## {name}" in text
    assert "| implementation |" in text and "speed-up" in text


def test_second_run_appends_and_only_selects(tiny_run):
    cwd, _ = tiny_run
    before = read_csv(cwd / "out" / schema.CSV_NAME)[1]
    p = run_bench(["--size", "tiny", "--out", "out", "--only", "kernel_grads", "--no-plot"], cwd)
    assert p.returncode == 0, p.stderr[-3000:]
    header, after = read_csv(cwd / "out" / schema.CSV_NAME)
    new = after[len(before) :]
    assert header == schema.FIELDS and new
    assert {r["bench"] for r in new} == {"kernel_grads"}
    assert len({r["run"] for r in new}) == 1 and new[0]["run"] != before[0]["run"]


@pytest.mark.parametrize("name", NAMES)
def test_only_accepts_every_name(name, capsys):
    """--list resolves every benchmark name (no work); precision is a CUDA benchmark."""
    code = main(["bench", "--size", "tiny", "--only", name, "--list"])
    out, err = capsys.readouterr()
    if name == "precision" and not torch.cuda.is_available():
        assert code == 2 and "runs on cuda only" in err
    else:
        assert code == 0, err
        assert f"\n{name}: " in out and "case " in out


def test_another_schema_in_out_is_refused(tmp_path, capsys):
    (tmp_path / schema.CSV_NAME).write_text("a,b\n1,2\n")
    code = main(["bench", "--size", "tiny", "--only", "agop", "--out", str(tmp_path)])
    assert code == 1
    assert "not in rfmfast's benchmark CSV schema" in capsys.readouterr().err


@pytest.mark.parametrize(
    "args, message",
    [
        (["--only", "nope"], "is not a benchmark"),
        (["--only", ","], "names no benchmark"),
        (["--device", "tpu"], "is not a device"),
        (["--dry-run"], "goes with --device cuda"),
        (["--threads", "0"], "is not an integer >= 1"),
        (["--repeats", "x"], "is not an integer >= 1"),
        (["--timeout", "-1"], "is not a number > 0"),
        (["--quick", "--size", "full"], "disagree"),
        (["--size", "huge"], "invalid choice"),
    ],
)
def test_bad_options_are_one_line_usage_errors(args, message, capsys):
    code = main(["bench", *args])
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.startswith("rfmfast: error:") and message in err and err.count("\n") == 1, err


def test_cuda_without_a_gpu_says_so(capsys):
    if torch.cuda.is_available():
        pytest.skip("a CUDA device is visible")
    assert main(["bench", "--device", "cuda"]) == 2
    err = capsys.readouterr().err
    assert "no CUDA device" in err and "--dry-run" in err


def test_out_that_is_a_file(tmp_path, capsys):
    f = tmp_path / "x"
    f.write_text("")
    assert main(["bench", "--size", "tiny", "--out", str(f)]) == 2
    assert "is a file" in capsys.readouterr().err


def test_report_of_nothing(tmp_path, capsys):
    assert main(["bench", "--report", str(tmp_path / "missing")]) == 1
    assert "no such file or directory" in capsys.readouterr().err
    assert main(["bench", "--report", str(tmp_path)]) == 1
    assert "no benchmark rows" in capsys.readouterr().err
