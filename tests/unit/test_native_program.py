"""The runtime core in C++ (runtime/cpp/program_core.*): its ctest unit tests, built with CMake on
the CPU-only CI machine, and its Python binding held equal to the Python executor's planner and
shape evaluator on a real Program."""

import importlib.util
import os
import random
import shutil
import subprocess
import sys

import pytest
import torch

from blade.runtime.program_executor import ProgramExecutor, ProgramShapeError, first_fit, module_weights

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(scope="module")
def build(tmp_path_factory):
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


def test_ctest_passes(build):
    proc = subprocess.run(["ctest", "--test-dir", str(build[0]), "--output-on-failure"], capture_output=True, text=True)
    assert proc.returncode == 0 and "100% tests passed" in proc.stdout, proc.stdout + proc.stderr


def test_native_first_fit_equals_python(build):
    native = build[1]
    rng = random.Random(1)
    for _ in range(300):
        bufs = []
        for _ in range(rng.randint(0, 14)):
            a = rng.randint(0, 15)
            bufs.append((rng.choice([0, 8, 100, 256, 777, 4096]), a, a + rng.randint(0, 5)))
        offsets, total = native.first_fit(bufs, 256)
        assert (list(offsets), total) == first_fit(bufs), bufs


def test_program_runs_its_shape_program_and_plan_natively(build):
    """The native per-call prelude (CallPlanner) gives the Python executor's slots and arena plan,
    and a call it refuses gets the Python checks' message."""
    from tests.unit.test_program import LIT_SIZES, _compile, _lit_block

    native = build[1]
    cases = [("attention", lambda b, n: [torch.randn(b, n, 16)]),
             ("conv_block", lambda b, n: [torch.randn(b, 4, n, n + 3)])]  # conv_block: sm_count symbol
    for name, make in cases:
        model, opt, prog = _compile(name)
        py = ProgramExecutor(prog, module_weights(prog, model), native=False)  # Python only
        nat = ProgramExecutor(prog, module_weights(prog, model), native=native)
        for b, n in [(2, 12), (1, 7), (3, 17), (1, 128)]:
            x = make(b, n)
            slots = py.evaluate(x)
            assert nat.prepare(x, x[0].device) == (slots, *py.arena_plan(slots))
        assert nat._planner is not None and py._planner is None
    prog, weights, _ = _lit_block()
    nat = ProgramExecutor(prog, weights, native=native)
    b, s1, s2, s3 = LIT_SIZES[0]
    nat.prepare([torch.randn(b, 32, s1, s2), torch.randn(b, s3, 24)], torch.device("cpu"))
    with pytest.raises(ProgramShapeError, match=r"violate: guard s2 != 1"):
        nat.run([torch.randn(2, 32, 4, 1), torch.randn(2, 5, 24)])
    with pytest.raises(ProgramShapeError, match=r"input 'hidden_states' has shape \(2, 31, 4, 4\)"):
        nat.run([torch.randn(2, 31, 4, 4), torch.randn(2, 5, 24)])
    with pytest.raises(ProgramShapeError, match="expected 2 inputs"):
        nat.run([torch.randn(2, 32, 4, 4)])
