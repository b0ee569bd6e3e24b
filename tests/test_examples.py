"""Every script in examples/ runs at a small size (`python examples/<name>.py ...`): exit status
0 and its key line of output. The whole file takes well under a minute on two cores."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"

# script, small-size arguments, a line the output must contain
CASES = [
    ("tabular_rfm.py", ["--iters", "2"], "RFM, 2 iterations"),
    (
        "movielens_completion.py",
        ["--users", "120", "--items", "80"],
        "lin-RFM            test RMSE",
    ),
    ("nystroem_fit.py", ["--rows", "3000", "--centers", "200", "--iters", "2"], "test mse"),
    ("xrfm_dropin.py", ["--n", "400", "--iters", "1"], "relative difference"),
]


def run(args, **kw):
    env = dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "2"))
    return subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, timeout=120, env=env, **kw
    )


def test_every_example_is_tested():
    assert sorted(p.name for p in EXAMPLES.glob("*.py")) == sorted(c[0] for c in CASES)


@pytest.mark.parametrize("script, args, key", CASES, ids=[c[0] for c in CASES])
def test_example_runs(script, args, key):
    if script == "xrfm_dropin.py":
        pytest.importorskip("xrfm")
    r = run([str(EXAMPLES / script), *args])
    assert r.returncode == 0, r.stdout + r.stderr
    assert key in r.stdout, r.stdout


def test_xrfm_example_skips_cleanly_without_xrfm():
    code = (
        "import runpy, sys; sys.modules['xrfm'] = None; "
        f"sys.argv = [{str(EXAMPLES / 'xrfm_dropin.py')!r}]; "
        "runpy.run_path(sys.argv[0], run_name='__main__')"
    )
    r = run(["-c", code])
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.startswith("skipped: xrfm is not installed (pip install xrfm==0.4.5)")
