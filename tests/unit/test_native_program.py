"""The runtime core in C++ (runtime/cpp/program_core.*): its ctest unit tests, built with CMake on
the CPU-only CI machine, and its Python binding held equal to the Python executor's planner and
shape evaluator on a real Program."""

import random
import subprocess

import pytest
import torch

from blade.runtime.program_executor import ProgramExecutor, ProgramShapeError, first_fit, module_weights
from tests.native_build import build_native
from blade.ir import parse_module
from blade.lower_program import lower_module
from tests.unit.test_program import random_buffers


@pytest.fixture(scope="module")
def build(tmp_path_factory):
    return build_native(tmp_path_factory)


def test_ctest_passes(build):
    proc = subprocess.run(["ctest", "--test-dir", str(build[0]), "--output-on-failure"], capture_output=True, text=True)
    assert proc.returncode == 0 and "100% tests passed" in proc.stdout, proc.stdout + proc.stderr


def test_native_first_fit_equals_python(build):
    native = build[1]
    rng = random.Random(1)
    for _ in range(300):
        bufs = random_buffers(rng, most=14, steps=15)
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


def test_cubin_launcher_packs_parameters_and_says_why_it_cannot_launch(build, monkeypatch):
    """The C++ cubin launcher (runtime/cpp/cuda_driver.h): one 8-byte slot per argument in its
    kernel type plus Triton's two null scratch pointers; on a machine without a GPU every launch
    raises naming the kernel, and the Program executor says why it cannot launch."""
    import struct

    from blade.runtime import program_executor, shape_eval
    from blade.runtime.kernel_runner import KernelRunner as _KernelRunner
    from blade.runtime.kernel_runner import type_code as _type_code
    from blade.runtime.program_executor import ProgramRunError

    native = build[1]
    raw = native.pack_params("pilfdb", [0x7F00DEADBEEF, -3, 1 << 40, 1.5, -2.25, 1])
    assert len(raw) == 8 * 8
    slots = [raw[i:i + 8] for i in range(0, len(raw), 8)]
    assert struct.unpack("<Q", slots[0])[0] == 0x7F00DEADBEEF
    assert struct.unpack("<i", slots[1][:4])[0] == -3
    assert struct.unpack("<q", slots[2])[0] == 1 << 40
    assert struct.unpack("<f", slots[3][:4])[0] == 1.5
    assert struct.unpack("<d", slots[4])[0] == -2.25
    assert slots[5][0] == 1 and slots[6] == slots[7] == bytes(8)
    with pytest.raises(ValueError, match="unknown type code 'x'"):
        native.pack_params("x", [1])
    assert [_type_code("k", t) for t in ("*fp16", "*i1", "i32", "i64", "fp32", "i1")] == list("ppilfb")
    with pytest.raises(ProgramRunError, match="Triton type 'fp16'"):
        _type_code("k", "fp16")
    ok, why = native.cuda_available()
    if ok:
        pytest.skip("a GPU machine: tests/gpu/test_gpu_program.py launches for real")
    assert why
    with pytest.raises(RuntimeError, match="cannot launch entry_x"):
        native.CudaKernel(b"not a cubin", "entry_x", 0, 4).launch((1, 1, 1), 0, "", [])
    from tests.unit.test_program import _compile

    _, _, prog = _compile("conv_block")
    key = next(k for k, s in ((s.op, s) for s in prog.steps) if s.kind == "launch")
    runner = _KernelRunner(key, prog)
    monkeypatch.setattr(shape_eval, "load_native", lambda: native)
    with pytest.raises(ProgramRunError, match=why[:20].replace("(", r"\(").replace(")", r"\)")):
        runner._cuda_kernel(0)
    assert program_executor.shape_eval is shape_eval


def test_input_dims_with_an_offset_bind_their_symbol(build):
    """torch.export (2.11) writes a dim that a guard made odd as ``2*s1 - 1``: the Program binds s1
    from it (both the native call planner and the Python path) and refuses an even size by name."""
    text = """builtin.module {
      blade.symbol {sym_name = "s0", lo = 1 : i64, origin = "x.size(0)"} : () -> ()
      blade.symbol {sym_name = "s1", lo = 1 : i64, origin = "x.size(1)"} : () -> ()
      func.func @forward(%0: !blade.tensor<[s0, 2*s1 - 1], f32>) -> !blade.tensor<[s0, 2*s1 - 1], f32> {
        %1 = blade.add %0, %0 : (!blade.tensor<[s0, 2*s1 - 1], f32>, !blade.tensor<[s0, 2*s1 - 1], f32>) -> !blade.tensor<[s0, 2*s1 - 1], f32>
        func.return %1 : !blade.tensor<[s0, 2*s1 - 1], f32>
      }
    }"""
    prog = lower_module(parse_module(text))
    assert {"symbol": 1, "input": 0, "dim": 1, "coeff": 2, "offset": -1} in prog.bindings
    for native in (False, build[1]):
        ex = ProgramExecutor(prog, {}, native=native)
        for n in (1, 7, 13):
            x = torch.randn(3, n)
            (out,) = ex.run([x])
            torch.testing.assert_close(out, x + x)
        assert (ex._planner is not None) == (native is not False)
        with pytest.raises(ProgramShapeError, match="dim 1 is 8; it must be 1 modulo 2"):
            ex.run([torch.randn(3, 8)])
