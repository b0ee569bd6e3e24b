"""Build script: compiles the C++ CPU kernels (csrc/cpu) with CMake into rfmfast._C.

The extension does not link against libtorch: Python hands it buffers. The GPU backends are
Triton kernels compiled at run time, so nothing here needs nvcc. RFMFAST_NO_EXT=1 skips the C++
build entirely (the package then runs on its reference and Triton backends only).

Without cmake or a C++ compiler the build stops at once with one line that says so and names
RFMFAST_NO_EXT=1 (docs/packaging.md).
"""

import os
import platform
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build import build
from setuptools.command.build_ext import build_ext

NO_EXT_HINT = "set RFMFAST_NO_EXT=1 for a pure-Python install (reference and Triton backends only)"
COMPILERS = ("c++", "g++", "clang++")  # what CMake tries first when CXX is unset


def find_cmake():
    """cmake on PATH, else the one of the `cmake` Python package (a build requirement)."""
    found = shutil.which("cmake")
    if found:
        return found
    try:
        import cmake
    except ImportError:
        return None
    exe = Path(cmake.CMAKE_BIN_DIR) / ("cmake.exe" if os.name == "nt" else "cmake")
    return os.fspath(exe) if exe.is_file() else None


def missing_tools():
    """The one-line reason the extension cannot be built here, or None."""
    missing = []  # (what is missing, what to do about it)
    if os.name != "nt":  # on Windows CMake finds MSVC itself; cl.exe is not on PATH there
        cxx = os.environ.get("CXX", "").strip()
        if cxx:
            if not shutil.which(shlex.split(cxx)[0]):
                missing.append((f"no C++ compiler found (tried CXX={cxx})", "install one"))
        elif not any(shutil.which(c) for c in COMPILERS):
            tried = ", ".join(COMPILERS)
            missing.append((f"no C++ compiler found (tried {tried}; or set CXX)", "install one"))
    if find_cmake() is None:
        missing.append(("no cmake found (tried PATH and the cmake Python package)", "install it"))
    if not missing:
        return None
    what = " and ".join(m for m, _ in missing)
    fix = missing[0][1] if len(missing) == 1 else "install them"
    return f"rfmfast: {what}; {fix}, or {NO_EXT_HINT}"


def check_tools(dist):
    if dist.ext_modules:
        why = missing_tools()
        if why:
            raise SystemExit(why)


class Build(build):
    def run(self):
        check_tools(self.distribution)  # before build_py prints its file list
        super().run()


class CMakeExtension(Extension):
    def __init__(self, name, sourcedir="."):
        super().__init__(name, sources=[])
        self.sourcedir = os.fspath(Path(sourcedir).resolve())


def macos_arch_args():
    """Cross-compiling on macOS (cibuildwheel sets ARCHFLAGS): tell CMake the target, so that
    CMakeLists.txt's processor test adds the x86 variants only to an x86_64 build."""
    archs = re.findall(r"-arch (\S+)", os.environ.get("ARCHFLAGS", ""))
    if sys.platform != "darwin" or not archs:
        return []
    args = ["-DCMAKE_OSX_ARCHITECTURES=" + ";".join(archs)]
    if len(archs) == 1 and archs[0] != platform.machine():
        args += ["-DCMAKE_SYSTEM_NAME=Darwin", f"-DCMAKE_SYSTEM_PROCESSOR={archs[0]}"]
    return args


class CMakeBuild(build_ext):
    def run(self):
        check_tools(self.distribution)  # editable installs come here without `build`
        super().run()

    def build_extension(self, ext):
        import pybind11

        ext_fullpath = Path.cwd() / self.get_ext_fullpath(ext.name)
        extdir = ext_fullpath.parent.resolve()
        cfg = "Debug" if os.environ.get("RFMFAST_DEBUG") else "Release"
        args = [
            f"-DCMAKE_LIBRARY_OUTPUT_DIRECTORY={extdir}{os.sep}",
            f"-DPython_EXECUTABLE={sys.executable}",
            f"-DCMAKE_BUILD_TYPE={cfg}",
            f"-Dpybind11_DIR={pybind11.get_cmake_dir()}",
            f"-DRFMFAST_EXT_NAME={ext.name.split('.')[-1]}",
            *macos_arch_args(),
        ]
        build_temp = Path(self.build_temp) / ext.name
        build_temp.mkdir(parents=True, exist_ok=True)
        jobs = str(max(1, os.cpu_count() or 1))
        cmake = find_cmake() or "cmake"
        steps = (
            ("configure", [cmake, ext.sourcedir, *args]),
            ("build", [cmake, "--build", ".", "--config", cfg, "-j", jobs]),
        )
        for step, cmd in steps:
            try:
                subprocess.run(cmd, cwd=build_temp, check=True)
            except (OSError, subprocess.CalledProcessError) as e:
                why = f"exit status {e.returncode}" if hasattr(e, "returncode") else str(e)
                raise SystemExit(
                    f"rfmfast: cmake {step} of the C++ extension failed ({why}; its output is "
                    f"above); fix that, or {NO_EXT_HINT}"
                ) from None


ext_modules = [] if os.environ.get("RFMFAST_NO_EXT") else [CMakeExtension("rfmfast._C")]
setup(ext_modules=ext_modules, cmdclass={"build": Build, "build_ext": CMakeBuild})
