"""Backend choice, `python -m rfmfast.info`, import without optional parts, torch.compile."""
import os
import subprocess
import sys
import tempfile

import pytest
import torch

import rfmfast
from rfmfast.backends import BackendUnavailable, available_backends, choose

cpu_only = pytest.mark.skipif(not available_backends()["cpu"][0], reason="C++ extension not built")
CPU = torch.device("cpu")


def run(code, **env):
    e = {**os.environ, **env}
    # run outside the source tree, so the installed package is the one imported
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=e,
                          cwd=tempfile.gettempdir())


def test_info_prints_backends_and_versions():
    out = subprocess.run([sys.executable, "-m", "rfmfast.info"], capture_output=True, text=True,
                         check=True, cwd=tempfile.gettempdir()).stdout
    assert f"rfmfast {rfmfast.__version__}" in out and "torch" in out
    for name in ("reference", "cpu", "triton", "cuda"):
        assert f"  {name}" in out


@pytest.mark.skipif(os.environ.get("RFMFAST_REQUIRE_CPU_BACKEND") != "1",
                    reason="runs only where RFMFAST_REQUIRE_CPU_BACKEND=1 (CI)")
def test_required_cpu_backend_is_built():
    """Where the C++ backend must exist (.ci/run sets the variable), its absence is a failure,
    not a row of skipped tests."""
    ok, why = available_backends()["cpu"]
    assert ok, why


def test_import_without_triton_or_extension():
    """Blocking triton and the C++ module: import works, auto falls back, explicit raises."""
    code = (
        "import sys; sys.modules['triton'] = None; sys.modules['rfmfast._C'] = None\n"
        "import torch, rfmfast\n"
        "X = torch.randn(5, 3, dtype=torch.float64)\n"
        "rfmfast.kernel_matrix(X)\n"
        "from rfmfast.backends import available_backends, BackendUnavailable\n"
        "assert not available_backends()['triton'][0] and not available_backends()['cpu'][0]\n"
        "try:\n    rfmfast.kernel_matrix(X, backend='cpu')\nexcept BackendUnavailable as e:\n"
        "    print('raised:', e)\n"
        "try:\n    rfmfast.kernel_matrix(X, backend='triton')\nexcept BackendUnavailable as e:\n"
        "    print('raised:', e)\n"
    )
    r = run(code, TRITON_INTERPRET="0")
    assert r.returncode == 0, r.stderr
    assert "raised: backend 'cpu' is not available: the C++ extension" in r.stdout
    assert "raised: backend 'triton' is not available: triton is not installed" in r.stdout


def test_triton_without_gpu_raises_clearly():
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    r = run("import torch, rfmfast\n"
            "from rfmfast.backends import BackendUnavailable\n"
            "try:\n    rfmfast.kernel_matrix(torch.randn(3, 2), backend='triton')\n"
            "except BackendUnavailable as e:\n    print('raised:', e)\n",
            TRITON_INTERPRET="0")
    assert "raised: backend 'triton' is not available" in r.stdout, r.stdout + r.stderr


@cpu_only
def test_auto_and_env_override(monkeypatch):
    assert choose("auto", CPU, "kernel_matmul") == "cpu"
    monkeypatch.setenv("RFMFAST_BACKEND", "reference")
    assert choose("cpu", CPU, "kernel_matmul") == "reference"
    monkeypatch.setenv("RFMFAST_BACKEND", "nonsense")
    with pytest.raises(ValueError, match="RFMFAST_BACKEND"):
        choose("auto", CPU, "kernel_matmul")
    monkeypatch.setenv("RFMFAST_BACKEND", "cuda")
    with pytest.raises(BackendUnavailable):
        rfmfast.kernel_matrix(torch.randn(3, 2))


@cpu_only
def test_custom_ops_pass_opcheck():
    X = torch.randn(17, 5)
    Z = torch.randn(9, 5)
    M = torch.eye(5)
    ops = torch.ops.rfmfast
    torch.library.opcheck(ops.kernel_matrix_cpu, (X, Z, "laplace", 10.0, M, False))
    torch.library.opcheck(ops.kernel_matmul_cpu, (X, Z, torch.randn(9, 6), "gaussian", 3.0, None))
    torch.library.opcheck(ops.kernel_grads_cpu, (X, Z, torch.randn(9, 2), "laplace", 10.0, M))
    torch.library.opcheck(ops.agop_cpu, (X, Z, torch.randn(9, 2), "laplace", 10.0, None, False,
                                         True, "float64"))


@cpu_only
def test_composes_with_torch_compile():
    X = torch.randn(33, 4)
    V = torch.randn(33, 2)

    def f(X, V):
        return torch.ops.rfmfast.kernel_matmul_cpu(X * 2, X, V, "laplace", 10.0, None).sum(1)

    compiled = torch.compile(f, backend="aot_eager", fullgraph=True)
    assert torch.allclose(compiled(X, V), f(X, V))
