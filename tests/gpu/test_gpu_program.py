"""The Program executor on a GPU: library calls through the torch provider on CUDA tensors, the
device symbol (multiprocessor count) read from the GPU, generated kernels launched from their cubins
through the C++ runtime's driver launcher (no Triton at run time), and a saved artifact served by
fresh processes on the GPU."""

import json
import os
import subprocess
import sys

import pytest
import torch
import torch.utils._pytree as pytree

import blade
from blade.lower_program import lower_program
from blade.runtime.program_executor import ProgramExecutor, module_weights
from tests.unit.op_matrix import CASES

pytestmark = pytest.mark.gpu


def _program(name):
    factory, make = CASES[name]
    model = factory().eval()
    opt = blade.optimize(model, make(2, 12), config=blade.Config(executor="reference"))
    return model, make, lower_program(opt.variants[0].program)


def test_library_only_program_runs_on_cuda():
    model, make, prog = _program("shapes")
    assert all(s.kind != "launch" for s in prog.steps)
    ex = ProgramExecutor(prog, module_weights(prog, model))
    for b, n in [(2, 12), (1, 7), (3, 17)]:
        (x,) = make(b, n)
        x = x.cuda()
        outs = ex.run([x])
        assert all(o.is_cuda for o in outs)
        for o, r in zip(outs, model(x)):
            torch.testing.assert_close(o, r)


def _target():
    major, minor = torch.cuda.get_device_capability()
    return ("cuda", major * 10 + minor, 32)


def _flat(x):
    return [t for t in pytree.tree_leaves(x) if isinstance(t, torch.Tensor)]


@pytest.mark.parametrize("name", ["conv_block", "attention", "geglu", "reductions", "elementwise", "upsample"])
def test_generated_kernels_launch_from_a_program_on_cuda(name, monkeypatch):
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)  # the model and the Program may pick
    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", False)  # different conv algorithms
    factory, make = CASES[name]
    model = factory().eval()
    opt = blade.optimize(model, make(2, 12), config=blade.Config(executor="reference"))
    prog = lower_program(opt.variants[0].program, target=_target())
    assert any(s.kind == "launch" for s in prog.steps)
    model = model.cuda()
    ex = ProgramExecutor(prog, module_weights(prog, model))
    assert ex._device_symbol("sm_count", torch.device("cuda", 0)) == torch.cuda.get_device_properties(0).multi_processor_count
    for b, n in [(2, 12), (1, 7), (3, 17), (1, 128)]:  # 128: GroupNorm's two-launch schedule (eps, counter)
        xs = [x.cuda() for x in make(b, n)]
        outs = ex.run(xs)
        with torch.no_grad():
            refs = _flat(model(*xs))
        assert len(outs) == len(refs)
        for o, r in zip(outs, refs):
            torch.testing.assert_close(o, r, rtol=1e-3, atol=1e-3)
    kernels = [k for r in ex._kernels.values() for k, _, _ in r._cuda.values()]
    assert kernels and all(type(k).__name__ == "CudaKernel" for k in kernels)  # the C++ launcher ran them


CHILD = r"""
import json, sys
import torch
from blade.artifact import load
from tests.unit.op_matrix import CASES
root, forbidden = sys.argv[1], json.loads(sys.argv[2])
torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False  # compared with CPU results
for name in ("conv_block", "attention"):
    model = CASES[name][0]().eval()
    model.load_state_dict(torch.load(f"{root}/{name}.pt", weights_only=True))
    loaded = load(f"{root}/{name}", model.cuda())
    for inputs, expected in torch.load(f"{root}/{name}.calls.pt", weights_only=True):
        with torch.no_grad():
            out = loaded(*[x.cuda() for x in inputs])
        torch.testing.assert_close(out, expected.cuda(), rtol=1e-3, atol=1e-3)
bad = sorted(m for m in sys.modules if any(m == f or m.startswith(f + ".") for f in forbidden))
assert not bad, "serving an artifact imported: " + ", ".join(bad)
print("ALL OK")
"""


def test_saved_artifact_serves_the_gpu_from_fresh_processes(tmp_path):
    """blade.save with this GPU's cubins, blade.load in two fresh processes at once: the generated
    kernels launch from their cubins, with no Triton, xDSL or compiler module imported."""
    from blade.artifact import save
    from tests.unit.test_program import FORBIDDEN

    for name in ("conv_block", "attention"):
        factory, make = CASES[name]
        model = factory().eval()
        opt = blade.optimize(model, make(2, 12), config=blade.Config(executor="reference"))
        save(opt, tmp_path / name, target=_target())
        torch.save(model.state_dict(), tmp_path / f"{name}.pt")
        calls = []
        for b, n in [(2, 12), (1, 7), (3, 17)]:
            inputs = list(make(b, n))
            with torch.no_grad():
                calls.append((inputs, model(*inputs)))
        torch.save(calls, tmp_path / f"{name}.calls.pt")
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([root, os.environ.get("PYTHONPATH", "")]))
    forbidden = list(FORBIDDEN) + ["triton"]
    procs = [subprocess.Popen([sys.executable, "-c", CHILD, str(tmp_path), json.dumps(forbidden)], cwd=root, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    for proc in procs:
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0 and "ALL OK" in out, out[-3000:] + err[-5000:]


@pytest.mark.parametrize("name", ["sd15_unet", "vae_decoder", "clip"])
def test_blade_module_on_programs_meets_the_fp16_bar(name):
    """``Config(executor="program")`` on full public configs, fp16 from the fp32 model: three shapes
    (batch 1 and an odd size among them), a repeated shape (its second call captures a CUDA graph
    around the Program, the third replays it), then an in-place weight update seen by the replay
    (the torch provider's channels-last copies are refreshed) and by a call without graphs."""
    import copy

    from blade import models
    from blade.executors.program_backed import ProgramBackedExecutor
    from tests.gpu.test_gpu_kernels import _bar

    zoo = models.ZOO[name]
    m32 = zoo.build(dtype=torch.float32, device="cuda", reduced=False)
    args, kwargs = zoo.inputs(zoo.example, device="cuda")
    opt = blade.optimize(m32, args, model_kwargs=kwargs, config=blade.Config(enable_fp16=True, executor="program"))
    assert isinstance(opt.variants[0].executor, ProgramBackedExecutor)

    def check(shape, seed):
        m16 = copy.deepcopy(m32).half()
        a, kw = zoo.inputs(shape, device="cuda", seed=seed)
        half = pytree.tree_map(lambda t: t.half() if isinstance(t, torch.Tensor) and t.is_floating_point()
                               and t.dim() > 0 else t, (a, kw))
        with torch.no_grad():
            out, ref32, ref16 = opt(*a, **kw), m32(*a, **kw), m16(*half[0], **half[1])
        for o, r16, r32 in zip(_flat(out), _flat(ref16), _flat(ref32)):
            assert o.shape == r32.shape and torch.isfinite(o).all()
            _bar(o.half() if o.dtype == torch.float32 else o, r16, r32.float())

    for i, shape in enumerate(zoo.shapes + [zoo.shapes[0]] * 2):
        check(shape, 20 + i)
    assert opt.variants[0].graphs, "the repeated shape was not captured"
    weight = next(p for n, p in m32.named_parameters() if p.dim() >= 2)
    with torch.no_grad():
        weight.mul_(0.5)
    check(zoo.shapes[0], 40)  # replayed graph
    opt.cuda_graphs = False
    check(zoo.shapes[1], 41)
    assert opt.eager_calls == 0
    assert len({id(v.executor.code) for v in opt.variants}) == 1
