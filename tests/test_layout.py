"""The codebase's shape, checked: kernels named only in rfmfast/kernels.py, the layers sealed
(estimators -> solvers -> ops -> backends, never backwards or sideways), the kernel-code table
the same in Python and C++."""

import ast
import pathlib
import re

import pytest

import rfmfast
from rfmfast.kernels import KERNELS, Kernel, kernel_record

PKG = pathlib.Path(rfmfast.__file__).parent
SOURCES = sorted(p for p in PKG.rglob("*.py") if "__pycache__" not in p.parts)


def _imports(path: pathlib.Path) -> set[str]:
    """Absolute names of the rfmfast modules a file imports (relative imports resolved)."""
    mod = ".".join(path.relative_to(PKG.parent).with_suffix("").parts)
    if path.name == "__init__.py":
        mod = mod.rsplit(".", 1)[0]
    pkg = mod if path.name == "__init__.py" else mod.rsplit(".", 1)[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = pkg.split(".")
                base = base[: len(base) - node.level + 1]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            out.add(name)
            out |= {f"{name}.{a.name}" for a in node.names}
    return {n for n in out if n.startswith("rfmfast")}


def test_sources_are_found():
    assert len(SOURCES) > 30


def test_no_kernel_name_comparison_outside_kernels_py():
    pattern = re.compile(
        r"""kernel\s*(==|!=)|(==|!=)\s*["'](laplace|gaussian|l1_laplace)["']"""
        r"""|kernel\s+(not\s+)?in\s*\("""
    )
    bad = [
        f"{p.relative_to(PKG)}:{i}: {line.strip()}"
        for p in SOURCES
        if p.name != "kernels.py"
        for i, line in enumerate(p.read_text().splitlines(), 1)
        if pattern.search(line)
    ]
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize("layer", ["models", "solvers"])
def test_estimators_and_solvers_never_import_backends(layer):
    bad = []
    for p in SOURCES:
        if p.relative_to(PKG).parts[0] != layer:
            continue
        for name in _imports(p):
            parts = name.split(".")
            if (
                name.startswith("rfmfast.backends")
                or name.startswith("rfmfast._C")
                or "_cpu" in parts
                or "_triton" in parts
                or (len(parts) > 3 and parts[1] == "ops" and parts[3] in ("cpu", "triton"))
            ):
                bad.append(f"{p.relative_to(PKG)} imports {name}")
    assert not bad, "\n".join(bad)


def test_layers_never_point_back_up():
    """ops never import solvers or models; solvers never import models."""
    bad = []
    for p in SOURCES:
        top = p.relative_to(PKG).parts[0]
        banned = {"ops": ("rfmfast.solvers", "rfmfast.models"), "solvers": ("rfmfast.models",)}.get(
            top, ()
        )
        bad += [f"{p.relative_to(PKG)} imports {n}" for n in _imports(p) if n.startswith(banned)]
    assert not bad, "\n".join(bad)


def test_no_op_imports_another_ops_files():
    ops = {p.name for p in (PKG / "ops").iterdir() if p.is_dir() and not p.name.startswith("_")}
    bad = []
    for p in SOURCES:
        rel = p.relative_to(PKG).parts
        own = rel[1] if len(rel) > 2 and rel[0] == "ops" else None
        for name in _imports(p):
            parts = name.split(".")
            if (
                len(parts) > 3
                and parts[1] == "ops"
                and parts[2] in ops
                and parts[2] != own
                and rel[0] == "ops"
            ):
                bad.append(f"{p.relative_to(PKG)} imports {name}")
    assert not bad, "\n".join(bad)


def test_kernel_records():
    assert list(KERNELS) == ["laplace", "gaussian", "l1_laplace"]
    assert sorted(k.code for k in KERNELS.values()) == list(range(len(KERNELS)))
    for name, k in KERNELS.items():
        assert isinstance(k, Kernel) and k.name == name and kernel_record(name) is k
        assert k.distance in ("l1", "l2") and k.factor in ("eig", "sqrt")
        L = 3.0
        assert k.exp2_scale(L) == pytest.approx(-k.scale(L) / 0.6931471805599453)
        assert k.grad_scale(L) == pytest.approx(-1 / L**2 if k.squared else -1 / L)
    with pytest.raises(ValueError, match="unknown kernel 'rbf'"):
        kernel_record("rbf")
    with pytest.raises(AttributeError):
        KERNELS["laplace"].code = 5  # frozen


def test_kernel_codes_agree_with_the_cpp_table():
    _C = pytest.importorskip("rfmfast._C", reason="C++ extension not built")
    assert _C.kernel_codes() == {name: k.code for name, k in KERNELS.items()}


def test_every_op_has_its_test_file():
    """tests/test_<op>.py per op folder (kernel_grads lives with agop, in ops/agop/)."""
    tests = pathlib.Path(__file__).parent
    ops = sorted(
        p.name for p in (PKG / "ops").iterdir() if p.is_dir() and not p.name.startswith("_")
    )
    assert ops and not [op for op in ops if not (tests / f"test_{op}.py").exists()], ops
