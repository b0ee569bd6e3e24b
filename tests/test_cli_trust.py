"""The command line: user errors end in one line `rfmfast: error: ...` (exit 2 for the command
line, 1 for unusable input), --out is checked before any work and never overwritten silently."""

import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from rfmfast.cli import main


@pytest.fixture
def ratings(tmp_path):
    rng = np.random.default_rng(0)
    U, V = rng.standard_normal((30, 2)), rng.standard_normal((2, 25))
    R = np.clip(np.round(3 + U @ V), 1, 5)
    obs = np.argwhere(rng.random(R.shape) < 0.4)
    path = tmp_path / "u.data"
    path.write_text("".join(f"{u + 1}\t{i + 1}\t{int(R[u, i])}\t0\n" for u, i in obs))
    return path


def one_line_error(capsys, code, status, match):
    out, err = capsys.readouterr()
    assert code == status, (code, out, err)
    assert err.startswith("rfmfast: error: ") and err.count("\n") == 1, err
    assert match in err, err
    return out


def test_missing_and_malformed_files(tmp_path, capsys):
    one_line_error(capsys, main(["complete", str(tmp_path / "nope.data")]), 1, "no ratings file")
    bad = tmp_path / "bad.data"
    bad.write_text("1\t2\t3\t4\n1\t2\tthree\t4\n")
    one_line_error(capsys, main(["complete", str(bad)]), 1, "line 2: non-numeric rating")


def test_empty_test_set_is_an_error(ratings, capsys):
    code = main(["complete", str(ratings), "--test-fraction", "0.001", "--quiet"])
    out = one_line_error(capsys, code, 1, "both must be non-empty")
    assert "RMSE" not in out


@pytest.mark.parametrize(
    "args, match",
    [
        (["--test-fraction", "1.5"], "argument --test-fraction: '1.5' is not a number in (0, 1)"),
        (["--max-iter", "0"], "argument --max-iter: '0' is not an integer >= 1"),
        (["--device", "gpu"], "'gpu' is not a device"),
        (["--holdout", "0.7"], "'holdout' parameter"),
        (["--bias", "user"], "invalid choice"),
    ],
)
def test_bad_options(ratings, capsys, args, match):
    out = one_line_error(capsys, main(["complete", str(ratings), *args]), 2, match)
    assert out == ""  # nothing ran


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the machine without CUDA")
def test_cuda_without_cuda(ratings, capsys):
    code = main(["complete", str(ratings), "--device", "cuda"])
    one_line_error(capsys, code, 2, "cuda: torch sees no CUDA device here; use --device cpu")


def test_out_checked_before_the_fit(ratings, tmp_path, capsys):
    one_line_error(
        capsys,
        main(["complete", str(ratings), "--out", str(tmp_path / "no" / "p.csv")]),
        2,
        "does not exist",
    )
    one_line_error(
        capsys, main(["complete", str(ratings), "--out", str(tmp_path)]), 2, "is a directory"
    )
    if os.path.isdir("/proc"):  # not writable, even for root
        one_line_error(
            capsys, main(["complete", str(ratings), "--out", "/proc/p.csv"]), 2, "cannot write"
        )
    assert capsys.readouterr().out == ""


def test_out_is_never_overwritten_without_force(ratings, tmp_path, capsys):
    out = tmp_path / "pred.csv"
    out.write_text("precious\n")
    args = ["complete", str(ratings), "--out", str(out), "--max-iter", "3", "--quiet"]
    one_line_error(capsys, main(args), 2, "exists; pass --force")
    assert out.read_text() == "precious\n"
    assert main(args + ["--force"]) == 0
    assert out.read_text().startswith("user,item,rating,prediction\n")


def test_grokking_out_checked_before_the_fit(tmp_path, capsys):
    out = tmp_path / "g.png"
    out.write_bytes(b"x")
    one_line_error(
        capsys,
        main(["grokking", "--p", "5", "--iters", "1", "--out", str(out)]),
        2,
        "exists; pass --force",
    )
    one_line_error(capsys, main(["grokking", "--p", "1", "--out", ""]), 1, "p must be >= 2")


def test_usage_errors_are_one_line(capsys):
    one_line_error(capsys, main(["complete"]), 2, "the following arguments are required: ratings")
    one_line_error(capsys, main(["nosuchcommand"]), 2, "invalid choice")


def test_subprocess_exit_status_and_no_traceback(ratings, tmp_path):
    """As a program: the UsageError a recipe raises is reported as such (exit 2, one line)."""
    out = tmp_path / "taken.csv"
    out.write_text("x\n")
    p = subprocess.run(
        [sys.executable, "-m", "rfmfast.cli", "complete", str(ratings), "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert p.returncode == 2, p.stderr
    assert p.stderr.startswith("rfmfast: error: --out") and p.stderr.count("\n") == 1, p.stderr
    assert "exists; pass --force" in p.stderr and "Traceback" not in p.stderr


def test_every_command_takes_threads(capsys):
    from rfmfast.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    assert set(sub.choices) >= {"demo", "info", "bench", "complete", "grokking"}
    for name, command in sub.choices.items():
        assert any("--threads" in a.option_strings for a in command._actions), name
    before = torch.get_num_threads()
    try:
        assert main(["info", "--threads", "1"]) == 0
        assert "torch threads 1" in capsys.readouterr().out
    finally:
        torch.set_num_threads(before)
    assert main(["info", "--threads", "0"]) == 2
    assert "--threads" in capsys.readouterr().err
