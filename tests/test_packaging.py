"""Packaging (docs/packaging.md): the sdist carries what a build needs and nothing it must not,
a wheel built from that sdist (C++ extension included) installs and imports, and a machine
without a C++ compiler or cmake gets one line that names RFMFAST_NO_EXT=1.

Everything is built in temporary directories from a copy of this tree, offline, in the running
environment (`pip wheel --no-build-isolation`): nothing is written to the source tree and
nothing is downloaded. The sdist is made by setuptools' PEP 517 hook, which is what
`python -m build --sdist --no-isolation` calls (`build` is not a dependency). One sdist and one
compiled wheel serve the whole module; the compile takes about 45 s on 2 cores.

Without a compiler, cmake, pybind11 or setuptools >= 77 the tests that need them skip, except
where RFMFAST_REQUIRE_CPU_BACKEND=1 (CI, .ci/run): there they fail.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path, PurePosixPath

import pytest

ROOT = Path(__file__).resolve().parents[1]
VERSION = "0.2.0"
HINT = "RFMFAST_NO_EXT=1"
REQUIRED = os.environ.get("RFMFAST_REQUIRE_CPU_BACKEND") == "1"

pytestmark = pytest.mark.skipif(
    not (ROOT / "setup.py").is_file() or not (ROOT / "MANIFEST.in").is_file(),
    reason="needs the source tree (setup.py, MANIFEST.in)",
)

# What a fresh checkout does not have: left out of the copy the sdist is built from.
COPY_IGNORE = shutil.ignore_patterns(
    ".git",
    "build",
    "dist",
    "*.egg-info",
    "__pycache__",
    ".hypothesis",
    ".pytest_cache",
    ".ruff_cache",
    ".benchmarks",
    ".venv",
    "*.so",
    "*.pyd",
    "out",
    "rfmfast-bench",
)
# Build output, bytecode and data planted in the copy: none of it may reach the sdist.
PLANTED = (
    "build/lib/rfmfast/_C.planted.so",
    "build/temp/rfmfast._C/CMakeCache.txt",
    "rfmfast/_C.planted.so",
    "rfmfast/planted.csv",
    "csrc/cpu/build/CMakeCache.txt",
    "csrc/cpu/build/pool.o",
    "tests/__pycache__/planted.cpython-311.pyc",
    "tests/data/planted.csv",
    "bench/results/planted.csv",
)
SDIST_TOP = {
    "CMakeLists.txt",
    "setup.py",
    "setup.cfg",  # written by setuptools' sdist (egg_info options)
    "pyproject.toml",
    "MANIFEST.in",
    "LICENSE",
    "README.md",
    "CHANGELOG.md",
    "PKG-INFO",
    "csrc",
    "docs",
    "tests",
    "rfmfast",
    "rfmfast.egg-info",
}


def run(cmd, cwd, env=None, timeout=600):
    """cmd's exit status and its stdout and stderr together, in order."""
    r = subprocess.run(
        cmd,
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=timeout,
    )
    return r.returncode, r.stdout


def build_env(**changes):
    """This environment, offline and without settings that change what gets built."""
    env = dict(os.environ)
    for name in ("RFMFAST_NO_EXT", "RFMFAST_BACKEND", "PYTHONPATH", "PIP_REQUIRE_VIRTUALENV"):
        env.pop(name, None)
    env.update(PIP_NO_INPUT="1", PIP_DISABLE_PIP_VERSION_CHECK="1", PYTHONNOUSERSITE="1")
    for name, value in changes.items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    return env


def pip(*args):
    return [sys.executable, "-m", "pip", *args, "--no-index", "--no-cache-dir"]


def missing_for_sdist():
    try:
        import setuptools
    except ImportError:
        return "setuptools is not installed"
    major = int(setuptools.__version__.split(".")[0])
    if major < 77:  # pyproject's `license = "MIT"` (PEP 639) needs it
        return f"setuptools {setuptools.__version__} < 77"
    return None


def missing_for_wheel():
    """Why the C++ extension cannot be built here (setup.py's own test, plus pybind11)."""
    why = missing_for_sdist()
    if why:
        return why
    try:
        import pybind11  # noqa: F401
    except ImportError:
        return "pybind11 is not installed"
    cxx = os.environ.get("CXX", "").strip()
    if cxx and not shutil.which(shlex.split(cxx)[0]):
        return f"no C++ compiler (CXX={cxx} not found)"
    if not cxx and not any(shutil.which(c) for c in ("c++", "g++", "clang++")):
        return "no C++ compiler (c++, g++, clang++)"
    if not shutil.which("cmake"):
        try:
            import cmake  # noqa: F401
        except ImportError:
            return "no cmake"
    return None


def need(why):
    """Skip for `why`, or fail where the build must work (CI)."""
    if why:
        if REQUIRED:
            pytest.fail(f"RFMFAST_REQUIRE_CPU_BACKEND=1 but {why}")
        pytest.skip(why)


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    return tmp_path_factory.mktemp("packaging")


@pytest.fixture(scope="module")
def source(work):
    """A copy of this tree as a checkout has it, plus the planted files."""
    src = work / "src"
    shutil.copytree(ROOT, src, ignore=COPY_IGNORE)
    for rel in PLANTED:
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        (src / rel).write_bytes(b"planted")
    return src


@pytest.fixture(scope="module")
def sdist(source, work):
    need(missing_for_sdist())
    out = work / "sdist"
    hook = "import sys; from setuptools import build_meta as b; print(b.build_sdist(sys.argv[1]))"
    rc, log = run([sys.executable, "-c", hook, str(out)], cwd=source, env=build_env())
    assert rc == 0, log
    (path,) = out.glob("rfmfast-*.tar.gz")
    return path


@pytest.fixture(scope="module")
def sdist_files(sdist):
    """The sdist's files, relative to its top folder rfmfast-<version>/."""
    with tarfile.open(sdist) as tar:
        tops = {PurePosixPath(m.name).parts[0] for m in tar.getmembers()}
        assert tops == {f"rfmfast-{VERSION}"}, tops
        return {
            str(PurePosixPath(*PurePosixPath(m.name).parts[1:]))
            for m in tar.getmembers()
            if m.isfile()
        }


@pytest.fixture(scope="module")
def wheel(sdist, work):
    """The wheel pip builds from the sdist, with the C++ extension."""
    need(missing_for_wheel())
    out = work / "wheel"
    cmd = pip("wheel", "--no-deps", "--no-build-isolation", "-w", str(out), str(sdist))
    rc, log = run(cmd, cwd=work, env=build_env())
    assert rc == 0, log[-6000:]
    (path,) = out.glob(f"rfmfast-{VERSION}-*.whl")
    return path


@pytest.fixture(scope="module")
def installed(wheel, work):
    target = work / "site"
    cmd = pip("install", "--no-deps", "--target", str(target), str(wheel))
    rc, log = run(cmd, cwd=work, env=build_env())
    assert rc == 0, log
    return target


def sdist_member(sdist, rel):
    with tarfile.open(sdist) as tar:
        return tar.extractfile(f"rfmfast-{VERSION}/{rel}").read().decode()


def test_sdist_has_what_a_build_and_the_tests_need(sdist_files):
    for rel in (
        "CMakeLists.txt",
        "setup.py",
        "pyproject.toml",
        "MANIFEST.in",
        "LICENSE",
        "README.md",
        "CHANGELOG.md",
        "rfmfast/__init__.py",
        "rfmfast/_version.py",
        "rfmfast/py.typed",
        "tests/conftest.py",
    ):
        assert rel in sdist_files, rel
    assert any(PurePosixPath(f).match("csrc/cpu/*.h") for f in sdist_files)
    # every C++ source, test module (helpers included) and document of this tree
    want = {
        p.relative_to(ROOT).as_posix()
        for pattern in ("csrc/**/*.h", "csrc/**/*.cpp", "tests/*.py", "docs/*.md")
        for p in ROOT.glob(pattern)
    }
    assert want and not want - sdist_files, sorted(want - sdist_files)
    assert {"tests/_cases.py", "tests/_tolerances.py"} <= sdist_files


def test_sdist_leaves_out_build_output_bench_and_data(sdist_files):
    assert {f.split("/")[0] for f in sdist_files} <= SDIST_TOP, sorted(sdist_files)
    bad_suffixes = (".so", ".pyd", ".dylib", ".o", ".a", ".pyc", ".csv")
    for f in sdist_files:
        parts = PurePosixPath(f).parts
        assert not f.endswith(bad_suffixes), f
        assert "build" not in parts and "__pycache__" not in parts, f
        assert "CMakeCache.txt" not in parts and not f.startswith("bench/"), f
    assert not set(PLANTED) & sdist_files


def test_sdist_metadata(sdist):
    info = sdist_member(sdist, "PKG-INFO")
    for line in (
        f"Version: {VERSION}",
        "License-Expression: MIT",
        "License-File: LICENSE",
        "Requires-Python: >=3.11",
        "Author: rfmfast developers",
        "Project-URL: Source, https://github.com/rfmfast/rfmfast",
        "Classifier: Typing :: Typed",
    ):
        assert line in info.splitlines(), line
    assert "MIT License" in sdist_member(sdist, "LICENSE")
    assert f"## {VERSION}" in sdist_member(sdist, "CHANGELOG.md")


def test_wheel_from_the_sdist_ships_the_extension_and_markers(wheel):
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
        metadata = z.read(f"rfmfast-{VERSION}.dist-info/METADATA").decode()
    assert {n.split("/")[0] for n in names} == {"rfmfast", f"rfmfast-{VERSION}.dist-info"}
    assert [n for n in names if n.startswith("rfmfast/_C.") and n.endswith((".so", ".pyd"))]
    assert "rfmfast/py.typed" in names
    assert f"rfmfast-{VERSION}.dist-info/licenses/LICENSE" in names
    assert f"Version: {VERSION}" in metadata.splitlines()


def test_wheel_from_the_sdist_installs_and_imports(installed, work):
    code = (
        "import json, torch, rfmfast, rfmfast._C\n"
        "X = torch.randn(9, 4, dtype=torch.float64)\n"
        "K = rfmfast.kernel_matrix(X, backend='cpu')\n"
        "R = rfmfast.kernel_matrix(X, backend='reference')\n"
        "print(json.dumps({'file': rfmfast.__file__, 'ext': rfmfast._C.__file__,\n"
        "                  'version': rfmfast.__version__, 'err': float((K - R).abs().max())}))\n"
    )
    cwd = work / "import-here"  # empty: no source tree on sys.path
    cwd.mkdir(exist_ok=True)
    env = build_env(PYTHONPATH=str(installed), TRITON_INTERPRET="1")
    rc, out = run([sys.executable, "-c", code], cwd=cwd, env=env, timeout=300)
    assert rc == 0, out
    got = json.loads(out.strip().splitlines()[-1])
    assert got["version"] == VERSION
    site = installed.resolve()
    assert Path(got["file"]).resolve().is_relative_to(site), got  # the installed copy, not ROOT's
    assert Path(got["ext"]).resolve().is_relative_to(site), got
    assert got["err"] < 1e-10, got


def test_pure_python_wheel_without_a_compiler(sdist, work):
    """RFMFAST_NO_EXT=1, what the missing-compiler line suggests, does build on such a machine."""
    out = work / "pure"
    env = build_env(RFMFAST_NO_EXT="1", CXX="/nonexistent/rfmfast-test-c++")
    cmd = pip("wheel", "--no-deps", "--no-build-isolation", "-w", str(out), str(sdist))
    rc, log = run(cmd, cwd=work, env=env)
    assert rc == 0, log
    (path,) = out.glob(f"rfmfast-{VERSION}-py3-none-any.whl")
    with zipfile.ZipFile(path) as z:
        assert not [n for n in z.namelist() if n.endswith((".so", ".pyd"))]


def hint_lines(log):
    return [line for line in log.splitlines() if HINT in line]


def test_no_compiler_via_pip_is_one_line(sdist, work):
    """What `pip install` shows on a machine without a C++ compiler: short, one line naming
    RFMFAST_NO_EXT=1, no traceback."""
    env = build_env(CXX="/nonexistent/rfmfast-test-c++")
    cmd = pip("wheel", "--no-deps", "--no-build-isolation", "-w", str(work / "none"), str(sdist))
    rc, log = run(cmd, cwd=work, env=env)
    assert rc != 0, log
    (line,) = hint_lines(log)
    assert "no C++ compiler found (tried CXX=/nonexistent/rfmfast-test-c++)" in line
    assert "Traceback" not in log and len(log.splitlines()) < 30, log


def test_no_compiler_or_cmake_on_path(source, work):
    """PATH without any compiler, and the cmake Python package blocked: setup.py names both,
    in one line, before running anything."""
    need(missing_for_sdist())
    empty = work / "empty-bin"
    empty.mkdir(exist_ok=True)
    blocked = work / "no-cmake-package"
    (blocked / "cmake").mkdir(parents=True, exist_ok=True)
    (blocked / "cmake" / "__init__.py").write_text("raise ImportError('blocked by the test')\n")
    cmd = [sys.executable, "setup.py", "build_ext"]

    env = build_env(PATH=str(empty), CXX=None)
    rc, log = run(cmd, cwd=source, env=env, timeout=120)
    assert rc != 0, log
    (line,) = hint_lines(log)
    assert "no C++ compiler found (tried c++, g++, clang++" in line, log

    env = build_env(PATH=str(empty), CXX=None, PYTHONPATH=str(blocked))
    rc, log = run(cmd, cwd=source, env=env, timeout=120)
    assert rc != 0, log
    (line,) = hint_lines(log)
    assert "no C++ compiler found" in line and "no cmake found" in line, log
    assert "Traceback" not in log and len(log.splitlines()) < 5, log


def test_cmake_failure_ends_with_the_hint(source, work):
    """A compiler that exists but cannot compile: cmake's own message, then one line."""
    need(missing_for_sdist())
    false = shutil.which("false")
    if os.name == "nt" or not false:
        pytest.skip("needs a POSIX `false`")
    if not shutil.which("cmake"):
        pytest.skip("no cmake on PATH")
    pytest.importorskip("pybind11")
    cmd = [
        sys.executable,
        "setup.py",
        "build_ext",
        "--build-temp",
        str(work / "false-temp"),
        "--build-lib",
        str(work / "false-lib"),
    ]
    rc, log = run(cmd, cwd=source, env=build_env(CXX=false), timeout=300)
    assert rc != 0, log
    last = log.strip().splitlines()[-1]
    assert last.startswith("rfmfast: cmake configure of the C++ extension failed"), log
    assert HINT in last and "Traceback" not in log, log
