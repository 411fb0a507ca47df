"""The C++ step loop on a GPU (``runtime/native_loop.py``): a Program run with its launches from
the C++ step list gives the Python step loop's outputs, for every op_matrix model at odd shapes,
batch 1 and 3, and for the SD 1.5 UNet through ``Config(executor="program")``; a library result
with unexpected strides finishes the call in Python, still right."""

import pytest
import torch
import torch.utils._pytree as pytree

import blade
from blade import models
from blade.lower_program import lower_program
from blade.runtime.host_provider import TorchProvider, torch_provider
from blade.runtime.program_executor import ProgramExecutor, module_weights
from tests.unit.op_matrix import CASES

pytestmark = pytest.mark.gpu

SHAPES = [(2, 12), (1, 7), (3, 17), (1, 128)]


def _target():
    major, minor = torch.cuda.get_device_capability()
    return ("cuda", major * 10 + minor, 32)


def _program(name):
    factory, make = CASES[name]
    torch.manual_seed(0)
    model = factory().eval()
    opt = blade.optimize(model, make(2, 12), config=blade.Config(executor="reference"))
    return model.cuda(), make, lower_program(opt.variants[0].program, target=_target())


def _check(outs, refs, what):
    assert len(outs) == len(refs), what
    for o, r in zip(outs, refs):
        torch.testing.assert_close(o, r, rtol=1e-4, atol=1e-4, msg=lambda m: f"{what}: {m}")


@pytest.mark.parametrize("name", sorted(CASES))
def test_native_loop_gives_the_python_loops_outputs(name, monkeypatch):
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", False)
    model, make, prog = _program(name)
    py = ProgramExecutor(prog, module_weights(prog, model), native_loop=False)
    nat = ProgramExecutor(prog, module_weights(prog, model), native_loop=True)
    for b, n in SHAPES:
        for call in range(3):  # the loop is made after a size's second call and runs from its third
            xs = [x.cuda() for x in make(b, n)]
            _check(nat.run(xs), py.run(xs), f"{name} {b}x{n} call {call}")
    if any(s.kind == "launch" for s in prog.steps):  # each size's third call ran from the C++ list
        assert nat.native_stats["calls"] == len(SHAPES), nat.native_stats
        assert nat.native_stats["finished_in_python"] == 0 and nat.native_stats["declined"] == 0, nat.native_stats


@pytest.mark.parametrize("name", ["attention", "geglu", "matmuls", "conv_block"])
def test_native_cublaslt_gemms_give_the_python_loops_outputs(name):
    """fp16 models with ``gemm_library="cublaslt"``: the loop runs the GEMMs too (prepared plans,
    results in its own arena) and matches the Python loop's cuBLASLt GEMMs."""
    factory, make = CASES[name]
    torch.manual_seed(0)
    model = factory().eval().half().cuda()
    example = [x.cuda().half() if x.is_floating_point() else x.cuda() for x in make(2, 12)]
    opt = blade.optimize(model, example, config=blade.Config(executor="reference"))
    prog = lower_program(opt.variants[0].program, target=_target())
    py = ProgramExecutor(prog, module_weights(prog, model), native_loop=False,
                         providers={"torch": TorchProvider(gemm_library="cublaslt")})
    nat = ProgramExecutor(prog, module_weights(prog, model), native_loop=True,
                          providers={"torch": TorchProvider(gemm_library="cublaslt")})
    for b, n in SHAPES:
        for call in range(3):
            xs = [x.cuda().half() if x.is_floating_point() else x.cuda() for x in make(b, n)]
            outs, refs = nat.run(xs), py.run(xs)
            for o, r in zip(outs, refs):
                torch.testing.assert_close(o, r, rtol=1e-2, atol=1e-2, msg=lambda m: f"{name} {b}x{n} call {call}: {m}")
    loops = [plan.native for plan in nat._call_plans.values() if plan.native is not None]
    print(name, [loop.describe() for loop in loops])
    assert len(loops) == len(SHAPES) and nat.native_stats["finished_in_python"] == 0, nat.native_stats
    assert nat.native_stats["calls"] == len(SHAPES) and nat.native_stats["declined"] == 0, nat.native_stats
    if any(s.op in ("linear", "matmul") for s in prog.steps if s.kind == "library_call"):
        assert any(loop.native_gemms for loop in loops), [loop.describe() for loop in loops]


class _OtherStrides:
    """The torch provider, but from its ``after``-th call on a 2-d or larger ``linear`` result comes
    back with transposed strides (same values): a Python step's result the loop did not record
    (as torch's attention does when a shape's second call lets it pick cuDNN's)."""

    def __init__(self, after: int):
        self.calls, self.after = 0, after

    def allocates(self, op):
        return torch_provider.allocates(op)

    def __call__(self, op, attrs, inputs, outputs):
        results = torch_provider(op, attrs, inputs, outputs)
        if op == "linear":
            self.calls += 1
            if self.calls > self.after and results[0].dim() >= 2:
                r = results[0]
                results = [r.transpose(-1, -2).contiguous().transpose(-1, -2)] + list(results[1:])
        return results


@pytest.mark.parametrize("name", ["geglu", "attention"])
def test_unexpected_library_strides_finish_the_call_in_python(name, monkeypatch):
    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", False)
    model, make, prog = _program(name)
    assert any(s.op == "linear" for s in prog.steps if s.kind == "library_call")
    py = ProgramExecutor(prog, module_weights(prog, model), native_loop=False)
    linears = sum(1 for s in prog.steps if s.kind == "library_call" and s.op == "linear")
    odd = _OtherStrides(after=2 * linears)  # the first two calls (recorded) see torch's strides
    nat = ProgramExecutor(prog, module_weights(prog, model), providers={"torch": odd}, native_loop=True)
    xs = [x.cuda() for x in make(3, 17)]
    for call in range(6):
        _check(nat.run(xs), py.run(xs), f"{name} call {call}")
    # call 2 finishes in Python; call 3 records the loop again with the new strides; 4 and 5 run it
    assert nat.native_stats["calls"] == 3 and nat.native_stats["finished_in_python"] == 1, nat.native_stats
    assert nat.native_stats["recorded_again"] == 1, nat.native_stats


@pytest.mark.parametrize("gemm_library,conv_library", [("torch", "torch"), ("cublaslt", "torch"),
                                                        ("cublaslt", "cudnn")])
def test_unet_program_with_the_native_loop(gemm_library, conv_library):
    """SD 1.5 UNet (fp16, public config, random weights) through ``Config(executor="program")``
    without CUDA graphs: at two shapes, the third call (C++ step loop; with cuBLASLt its GEMMs
    too, with cuDNN its convolutions) gives what the same module gives with the loop switched off
    (every step from Python); its concatenations from C++ too, as copies of rows."""
    model = models.unet(torch.float16, "cuda")
    x0 = models.unet_inputs(2, 256, 256, dtype=torch.float16, device="cuda")
    opt = blade.optimize(model, x0, config=blade.Config(executor="program", cuda_graphs=False,
                                                        gemm_library=gemm_library, conv_library=conv_library))
    outs = {}
    with torch.no_grad():
        for shape in [(2, 256, 256), (1, 320, 192)]:
            x = models.unet_inputs(*shape, dtype=torch.float16, device="cuda", seed=shape[1])
            for _ in range(3):
                out = pytree.tree_leaves(opt(*x))[0].clone()
            outs[shape] = (x, out)
        runners = [v.executor.runner for v in opt.variants]
        stats = [r.native_stats for r in runners]
        loops = [plan.native for r in runners for plan in r._call_plans.values() if plan.native is not None]
        print(f"UNet ({gemm_library}, {conv_library}): {stats} {[loop.describe() for loop in loops]}")
        if gemm_library == "cublaslt":
            assert any(loop.native_gemms for loop in loops), stats
        # the skip connections' concatenations (channels-last over channels) as copies of rows
        assert loops and all(loop.native_concats >= 10 for loop in loops), [loop.describe() for loop in loops]
        if conv_library == "cudnn":  # every 3x3 convolution of the UNet from the C++ list
            assert loops and all(loop.native_convs >= 20 for loop in loops), [loop.describe() for loop in loops]
        assert sum(s["calls"] for s in stats) >= 2 and not any(s["finished_in_python"] for s in stats), stats
        for r in runners:
            r.native_loop = False
            for plan in r._call_plans.values():
                plan.native = None
        calls = sum(s["calls"] for s in stats)
        for shape, (x, out) in outs.items():
            ref = pytree.tree_leaves(opt(*x))[0]
            torch.testing.assert_close(out, ref, rtol=1e-2, atol=1e-2)
        assert sum(r.native_stats["calls"] for r in runners) == calls  # the references ran in Python


@pytest.mark.parametrize("name", ["attention", "conv_block", "geglu"])
def test_native_loop_under_cuda_graphs(name, monkeypatch):
    """``Config(executor="program")`` with CUDA graphs: a loop recorded without graphs is what a
    later capture holds; a size met first with graphs on records none (its second call is the
    capture's warm-up: ``no_recording``, no recording run's peak); every call matches the same
    module without the loop."""
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", False)
    factory, make = CASES[name]
    torch.manual_seed(0)
    model = factory().eval().cuda()
    example = [x.cuda() for x in make(2, 12)]
    on = blade.optimize(model, example, config=blade.Config(executor="program"))
    off = blade.optimize(model, example, config=blade.Config(executor="program", native_step_loop=False))

    def calls():
        return sum(v.executor.runner.native_stats["calls"] for v in on.variants)

    def run(sizes, label):
        for b, n in sizes:
            for call in range(4):
                xs = [x.cuda() for x in make(b, n)]
                got = [t.clone() for t in pytree.tree_leaves(on(*xs))]
                _check(got, pytree.tree_leaves(off(*xs)), f"{name} {b}x{n} call {call} ({label})")

    on.cuda_graphs = False
    run([(2, 12), (3, 17)], "graphs off")
    assert calls() >= 2  # each size: recorded at its second call, run by the loop after
    before = calls()
    on.cuda_graphs = True
    run([(2, 12), (3, 17), (2, 12)], "graphs on")
    assert any(v.graphs for v in on.variants) and calls() > before  # the warm-ups and captures ran the loop
    before = calls()
    run([(1, 5)], "graphs on, a new size")
    assert calls() == before  # its warm-up recorded nothing; its capture ran the Python loop
