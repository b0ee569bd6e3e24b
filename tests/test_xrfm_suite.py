"""xRFM's own tests with every kernel routed through RfmfastKernel, and the routing itself.

The suite run is opt-in: set RFMFAST_XRFM_TESTS to the tests/ folder of an xRFM checkout
whose tests match the installed xrfm (for xrfm 0.4.5: github.com/dmbeaglehole/xRFM at tag
v0.4.4, the last change to its tests). xRFM's tests are not copied into this repository.
"""

import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import torch

xrfm = pytest.importorskip("xrfm", reason="xrfm is not installed (pip install xrfm==0.4.5)")

from _xrfm_suite_helpers import rfmfast_kernel_for, route_kernels  # noqa: E402

from rfmfast.xrfm_plugin import RfmfastKernel  # noqa: E402

SUITE = os.environ.get("RFMFAST_XRFM_TESTS")
# The refusals that mark a setting rfmfast does not support (the plug-in's and the router's).
UNSUPPORTED = (
    "exponent 1 only",
    "constant bandwidth",
    "no L^p Laplace kernel",
    "no counterpart of xRFM's kernel",
)


@pytest.mark.parametrize(
    "name, norm_p, kernel",
    [
        ("l2", None, "laplace"),
        ("laplace", None, "laplace"),
        ("l2_high_dim", None, "laplace"),
        ("l1", None, "l1_laplace"),
        ("product_laplace", None, "l1_laplace"),
        ("lpq", 2.0, "laplace"),
        ("lpq", None, "laplace"),
        ("lpq_legacy", 1.0, "l1_laplace"),
    ],
)
def test_xrfm_names_map_to_rfmfast_kernels(name, norm_p, kernel):
    k = rfmfast_kernel_for(name, 3.0, 1.0, norm_p)
    assert isinstance(k, RfmfastKernel) and k.kernel == kernel and k.bandwidth == 3.0


def test_unsupported_xrfm_settings_say_why():
    with pytest.raises(NotImplementedError, match="p = 1.5"):
        rfmfast_kernel_for("lpq", 3.0, 1.0, 1.5)
    with pytest.raises(NotImplementedError, match="sum_power_laplace"):
        rfmfast_kernel_for("sum_power_laplace", 3.0, 1.0)
    with pytest.raises(ValueError, match="exponent 1 only"):
        rfmfast_kernel_for("l2", 3.0, 0.8)


def test_routed_rfm_and_tree_leaves_compute_with_rfmfast(monkeypatch):
    route_kernels(monkeypatch)
    assert isinstance(xrfm.RFM(kernel="l2_high_dim", device="cpu").kernel_obj, RfmfastKernel)
    g = torch.Generator().manual_seed(0)
    X = torch.randn(200, 6, generator=g)
    y = X[:, :1] * X[:, 1:2]
    m = xrfm.xRFM(
        max_leaf_size=10_000,
        device="cpu",
        n_threads=1,
        verbose=False,
        rfm_params={
            "model": {"kernel": "l2", "bandwidth": 5.0, "diag": False},
            "fit": {"reg": 1e-3, "iters": 1, "verbose": False},
        },
    )
    m.fit(X[:150], y[:150], X[150:], y[150:])
    assert isinstance(m.trees[0]["model"].kernel_obj, RfmfastKernel)


def junit_results(path):
    """{test id: None (passed) | "skipped" | failure message} from a JUnit XML report."""
    out = {}
    for case in ET.parse(path).getroot().iter("testcase"):
        name = f"{case.get('classname')}::{case.get('name')}"
        bad = case.find("failure") if case.find("failure") is not None else case.find("error")
        if bad is not None:
            out[name] = f"{bad.get('message', '')}\n{bad.text or ''}"
        else:
            out[name] = "skipped" if case.find("skipped") is not None else None
    return out


@pytest.mark.slow
@pytest.mark.skipif(
    not SUITE,
    reason="set RFMFAST_XRFM_TESTS to the tests/ folder of an xRFM "
    "checkout to run xRFM's own tests through the plug-in",
)
def test_xrfm_suite_fails_only_where_a_setting_is_unsupported(tmp_path):
    suite = Path(SUITE).resolve()
    report = tmp_path / "xrfm_suite.xml"
    here = str(Path(__file__).resolve().parent)
    env = dict(
        os.environ, PYTHONPATH=os.pathsep.join(p for p in (here, os.environ.get("PYTHONPATH")) if p)
    )
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "_xrfm_suite_helpers",
            "-p",
            "no:cacheprovider",
            f"--junitxml={report}",
            str(suite),
        ],
        cwd=suite.parent,
        env=env,
        capture_output=True,
        text=True,
        timeout=3600,
    )
    results = junit_results(report)
    passed = [t for t, r in results.items() if r is None]
    failed = {t: r for t, r in results.items() if r not in (None, "skipped")}
    unexpected = {
        t: r.splitlines()[0] for t, r in failed.items() if not any(u in r for u in UNSUPPORTED)
    }
    print(
        f"xRFM suite through RfmfastKernel: {len(passed)} passed, {len(failed)} failed "
        f"({len(failed) - len(unexpected)} on unsupported settings), "
        f"{len(results) - len(passed) - len(failed)} skipped"
    )
    assert passed, "no test of xRFM's suite passed (wrong RFMFAST_XRFM_TESTS folder?)"
    assert not unexpected, unexpected
