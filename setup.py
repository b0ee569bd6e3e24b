"""Build script: compiles the C++ CPU kernels (csrc/cpu) with CMake into rfmfast._C.

The extension does not link against libtorch: Python hands it buffers. The GPU backends are
Triton kernels compiled at run time, so nothing here needs nvcc. RFMFAST_NO_EXT=1 skips the C++
build entirely (the package then runs on its reference and Triton backends only).
"""

import os
import subprocess
import sys
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext


class CMakeExtension(Extension):
    def __init__(self, name, sourcedir="."):
        super().__init__(name, sources=[])
        self.sourcedir = os.fspath(Path(sourcedir).resolve())


class CMakeBuild(build_ext):
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
        ]
        build_temp = Path(self.build_temp) / ext.name
        build_temp.mkdir(parents=True, exist_ok=True)
        jobs = str(max(1, os.cpu_count() or 1))
        subprocess.run(["cmake", ext.sourcedir, *args], cwd=build_temp, check=True)
        subprocess.run(
            ["cmake", "--build", ".", "--config", cfg, "-j", jobs], cwd=build_temp, check=True
        )


ext_modules = [] if os.environ.get("RFMFAST_NO_EXT") else [CMakeExtension("rfmfast._C")]
setup(ext_modules=ext_modules, cmdclass={"build_ext": CMakeBuild})
