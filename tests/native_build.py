"""Builds Blade's C++ runtime (CMakeLists.txt) into a temporary folder for the tests that check it
(ctest, the native shape evaluator, the cubin launcher's packing): skipped where pybind11 or CMake
is missing, a failure where the build fails."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def build_native(tmp_path_factory):
    """(build folder, the loaded ``_native`` module)."""
    pybind11 = pytest.importorskip("pybind11")
    if shutil.which("cmake") is None or shutil.which("ctest") is None:
        pytest.skip("cmake/ctest are not installed")
    build, out = tmp_path_factory.mktemp("build"), tmp_path_factory.mktemp("native")
    cfg = subprocess.run(["cmake", "-S", ROOT, "-B", str(build), f"-Dpybind11_DIR={pybind11.get_cmake_dir()}",
                          f"-DPython_EXECUTABLE={sys.executable}", f"-DBLADE_NATIVE_OUTPUT_DIR={out}"],
                         capture_output=True, text=True)
    assert cfg.returncode == 0, cfg.stdout + cfg.stderr
    bld = subprocess.run(["cmake", "--build", str(build), "-j2"], capture_output=True, text=True)
    assert bld.returncode == 0, bld.stdout + bld.stderr
    (lib,) = [p for p in out.iterdir() if p.name.startswith("_native")]
    spec = importlib.util.spec_from_file_location("_native", lib)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return build, module
