"""Backend choice, `python -m rfmfast.info`, import without optional parts, torch.compile."""

import importlib.util
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
    return subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env=e,
        cwd=tempfile.gettempdir(),
    )


def test_info_prints_backends_and_versions():
    out = subprocess.run(
        [sys.executable, "-m", "rfmfast.info"],
        capture_output=True,
        text=True,
        check=True,
        cwd=tempfile.gettempdir(),
    ).stdout
    assert f"rfmfast {rfmfast.__version__}" in out and "torch" in out
    for name in ("reference", "cpu", "triton"):
        assert f"  {name}" in out


@pytest.mark.skipif(
    os.environ.get("RFMFAST_REQUIRE_CPU_BACKEND") != "1",
    reason="runs only where RFMFAST_REQUIRE_CPU_BACKEND=1 (CI)",
)
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
    r = run(
        "import torch, rfmfast\n"
        "from rfmfast.backends import BackendUnavailable\n"
        "try:\n    rfmfast.kernel_matrix(torch.randn(3, 2), backend='triton')\n"
        "except BackendUnavailable as e:\n    print('raised:', e)\n",
        TRITON_INTERPRET="0",
    )
    assert "raised: backend 'triton' is not available" in r.stdout, r.stdout + r.stderr


@cpu_only
def test_auto_and_env_override(monkeypatch):
    assert choose("auto", CPU, "kernel_matmul") == "cpu"
    monkeypatch.setenv("RFMFAST_BACKEND", "reference")
    assert choose("cpu", CPU, "kernel_matmul") == "reference"
    monkeypatch.setenv("RFMFAST_BACKEND", "nonsense")
    with pytest.raises(ValueError, match="RFMFAST_BACKEND"):
        choose("auto", CPU, "kernel_matmul")
    monkeypatch.setenv("RFMFAST_BACKEND", "cuda")  # no such backend: a clear error
    with pytest.raises(ValueError, match="not one of auto, reference, cpu, triton"):
        rfmfast.kernel_matrix(torch.randn(3, 2))


def test_backends_declare_devices_ops_and_kernel_matrix_modes_as_data():
    from rfmfast.backends import BACKENDS, not_supported_reasons

    assert set(BACKENDS) == {"reference", "cpu", "triton"}
    assert not_supported_reasons("reference", CPU, "cholesky") == []
    why = not_supported_reasons("triton", CPU, "cholesky")
    assert "backend 'triton' has no implementation of cholesky" in why
    if os.environ.get("TRITON_INTERPRET") != "1":
        assert any("takes CUDA tensors, got cpu" in w for w in why)
    for b in BACKENDS.values():
        assert {"full", "symmetric"} <= set(b.triangles) <= {"full", "symmetric", "lower"}
        for op in b.ops:  # every declared op has its module
            assert importlib.util.find_spec(f"rfmfast.ops.{op}.{b.name}") is not None, (op, b)


def test_writes_in_place_follows_the_backend_records():
    from rfmfast.ops.kernel_matrix import writes_in_place

    assert writes_in_place("cpu", "reference") is False
    if available_backends()["cpu"][0]:
        assert writes_in_place("cpu", "cpu") is True and writes_in_place("cpu") is True


def test_a_backend_without_the_op_hands_it_to_auto_only_when_asked(monkeypatch):
    monkeypatch.delenv("RFMFAST_BACKEND", raising=False)
    monkeypatch.setenv("TRITON_INTERPRET", "1")  # triton then takes CPU tensors
    from rfmfast import backends

    if not backends.available_backends()["triton"][0]:
        pytest.skip("triton unavailable")
    with pytest.raises(BackendUnavailable, match="no implementation of cholesky"):
        choose("triton", CPU, "cholesky")
    want = "cpu" if available_backends()["cpu"][0] else "reference"
    assert choose("triton", CPU, "cholesky", missing_op="auto") == want


def _register_cpu_ops():
    """The custom ops rfmfast::*_cpu exist once their op's cpu module is imported (the public
    functions import it on first use)."""
    import rfmfast.ops.agop.cpu  # noqa: F401
    import rfmfast.ops.kernel_matmul.cpu  # noqa: F401
    import rfmfast.ops.kernel_matrix.cpu  # noqa: F401


@cpu_only
def test_custom_ops_pass_opcheck():
    _register_cpu_ops()
    X = torch.randn(17, 5)
    Z = torch.randn(9, 5)
    M = torch.eye(5)
    ops = torch.ops.rfmfast
    torch.library.opcheck(ops.kernel_matrix_cpu, (X, Z, "laplace", 10.0, M, False))
    torch.library.opcheck(ops.kernel_matmul_cpu, (X, Z, torch.randn(9, 6), "gaussian", 3.0, None))
    torch.library.opcheck(ops.kernel_grads_cpu, (X, Z, torch.randn(9, 2), "laplace", 10.0, M))
    torch.library.opcheck(
        ops.agop_cpu, (X, Z, torch.randn(9, 2), "laplace", 10.0, None, False, True, "float64")
    )


@cpu_only
def test_composes_with_torch_compile():
    _register_cpu_ops()
    X = torch.randn(33, 4)
    V = torch.randn(33, 2)

    def f(X, V):
        return torch.ops.rfmfast.kernel_matmul_cpu(X * 2, X, V, "laplace", 10.0, None).sum(1)

    compiled = torch.compile(f, backend="aot_eager", fullgraph=True)
    assert torch.allclose(compiled(X, V), f(X, V))
