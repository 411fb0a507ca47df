"""The Program boundary: op_matrix models compiled, lowered to a Program, saved, loaded in a fresh
process that imports no compiler module and run there (generated kernels on Triton's CPU
interpreter, library ops through the torch provider), matching the reference executor at several
shapes; plus the artifact checks, the arena planner and the import rule."""

import glob
import json
import os
import random
import subprocess
import sys
import textwrap

import pytest
import torch
import torch.utils._pytree as pytree

import blade
from blade.dialects.data_movement import WeightOp
from blade.ir import make_context, parse_module, walk_ops
from blade.lower_program import LoweringError, lower_module, lower_program
from blade.passes import get_pass
from blade.runtime.host_provider import ProviderError, torch_provider
from blade.runtime.program import Program, ProgramFormatError, environment
from blade.runtime.program_executor import (
    ProgramExecutor,
    ProgramRunError,
    ProgramShapeError,
    first_fit,
    module_weights,
)
from blade.executors.reference import ReferenceExecutor
from tests.unit.op_matrix import CASES, SIZES
from tests.unit.test_fallback import SpectralModel

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ALL_CASES = dict(CASES, spectral=(SpectralModel, lambda b, n: (torch.randn(b, 16),)))  # an eager fallback
#: modules a Program runtime must not import: the compiler, codegen, the dialects, xDSL (sympy is
#: allowed only because torch itself imports it lazily while running some ops)
FORBIDDEN = ("xdsl", "blade.dialects", "blade.codegen", "blade.frontend", "blade.passes",
             "blade.pipeline", "blade.ir", "blade.symbolic", "blade.lower_program", "blade.shape_program",
             "blade.module", "blade.executors", "blade.api")

_compiled: dict = {}


def _compile(name):
    """(model, optimized module, Program) of one case, compiled once per test session."""
    if name not in _compiled:
        factory, make = ALL_CASES[name]
        torch.manual_seed(0)
        model = factory().eval()
        opt = blade.optimize(model, make(*SIZES[0]), config=blade.Config(executor="reference"))
        _compiled[name] = (model, opt, lower_program(opt.variants[0].program))
    return _compiled[name]


LIT_BLOCK = os.path.join(ROOT, "tests", "lit", "Inputs", "transformer-block.mlir")
#: (batch, s1, s2, s3) of the lit transformer block (guards: s1*s2 != 1, s2 != 1)
LIT_SIZES = [(2, 4, 6, 5), (1, 3, 5, 7), (3, 8, 8, 2)]


def _lit_block():
    """The diffusers transformer block of the lit tests after layout and fusion, lowered, with
    random weights, and its reference executor."""
    if "lit" not in _compiled:
        with open(LIT_BLOCK) as f:
            module = parse_module(f.read(), LIT_BLOCK)
        ctx = make_context()
        for name in ("layout-nhwc", "canonicalize", "fuse-stitch"):
            get_pass(name)().apply(ctx, module)
        module.verify()
        torch.manual_seed(0)
        weights = {op.p("name"): torch.randn(tuple(int(d) for d in op.out_type.shape)) * 0.2
                   for op in walk_ops(module) if isinstance(op, WeightOp)}
        _compiled["lit"] = (lower_module(module), weights, ReferenceExecutor(module, weights.__getitem__))
    return _compiled["lit"]


def _leaves(x):
    return [t for t in pytree.tree_leaves(x) if isinstance(t, torch.Tensor)]


CHILD = textwrap.dedent("""
    import json, os, sys
    import torch
    from blade.runtime.program import Program
    from blade.runtime.program_executor import ProgramExecutor
    root = sys.argv[1]
    for name in sorted(os.listdir(root)):
        d = os.path.join(root, name)
        prog = Program.load(os.path.join(d, "program"))
        state = torch.load(os.path.join(d, "state.pt"), weights_only=True)
        ex = ProgramExecutor(prog, {n: state[r["target"]] for n, r in prog.weights.items()})
        kept = []  # results of earlier calls: a later call must not overwrite them
        for inputs, expected in torch.load(os.path.join(d, "calls.pt"), weights_only=True):
            with torch.no_grad():
                outs = ex.run(inputs)
            kept.append((outs, [o.clone() for o in outs]))
            assert len(outs) == len(expected), (name, len(outs), len(expected))
            for o, e in zip(outs, expected):
                assert o.shape == e.shape and o.dtype == e.dtype, (name, o.shape, e.shape, o.dtype, e.dtype)
                torch.testing.assert_close(o, e, rtol=1e-5, atol=1e-5, equal_nan=True, msg=lambda m: name + ": " + m)
        for outs, copies in kept:
            for o, c in zip(outs, copies):
                torch.testing.assert_close(o, c, equal_nan=True)
        print(name, "ok", flush=True)
    bad = sorted(m for m in sys.modules if any(m == f or m.startswith(f + ".") for f in json.loads(sys.argv[2])))
    assert not bad, "the Program runtime imported compiler modules: " + ", ".join(bad)
    print("ALL OK")
""")


def test_programs_run_in_a_fresh_process(tmp_path):
    """Every op_matrix model, an eager fallback and the lit transformer block: lower, save, load in a process with
    TRITON_INTERPRET=1 and no compiler import, run at three shapes, compare with the reference
    executor (BladeModule on CPU)."""
    for name in ALL_CASES:
        model, opt, prog = _compile(name)
        d = tmp_path / name
        prog.save(d / "program")
        torch.save(model.state_dict(), d / "state.pt")
        calls = []
        sizes = SIZES + [(1, 128)] if name == "conv_block" else SIZES  # (1, 128): two-launch GroupNorm
        for b, n in sizes:
            inputs = list(ALL_CASES[name][1](b, n))
            with torch.no_grad():
                calls.append((inputs, _leaves(opt(*inputs))))
        torch.save(calls, d / "calls.pt")
    prog, weights, ref = _lit_block()
    d = tmp_path / "lit_transformer_block"
    prog.save(d / "program")
    torch.save(weights, d / "state.pt")
    calls = []
    for b, s1, s2, s3 in LIT_SIZES:
        inputs = [torch.randn(b, 32, s1, s2), torch.randn(b, s3, 24)]
        calls.append((inputs, ref.run(inputs)))
    torch.save(calls, d / "calls.pt")
    env = dict(os.environ, TRITON_INTERPRET="1", PYTHONPATH=ROOT)
    proc = subprocess.run([sys.executable, "-c", CHILD, str(tmp_path), json.dumps(FORBIDDEN)],
                          capture_output=True, text=True, env=env, cwd=ROOT)
    assert proc.returncode == 0 and "ALL OK" in proc.stdout, proc.stdout[-4000:] + proc.stderr[-6000:]
    assert proc.stdout.count(" ok") == len(ALL_CASES) + 1


def test_program_steps_and_tables_are_data():
    _, _, prog = _compile("conv_block")
    kinds = [s.kind for s in prog.steps]
    assert {"launch", "library_call", "view"} <= set(kinds)
    (gn,) = [s for s in prog.steps if s.kind == "launch" and prog.kernels[s.op]["kind"] == "group_norm"]
    roles = {v["role"] for v in prog.kernels[gn.op]["variants"]}
    assert roles == {"gn_resident", "gn_stats", "gn_apply"}
    assert all(r["when"] is not None for r in gn.table[:-1]) and gn.table[-1]["schedule"] == "two_launch"
    # a 128x131 image's GroupNorm groups fit no register-resident tile: statistics + apply, with
    # their workspaces in the arena and the chunking from the device's multiprocessor count
    assert prog.device_symbols == ["sm_count"] and len(gn.attrs["scratch"]) == 2
    ex = ProgramExecutor(prog, module_weights(prog, _compile("conv_block")[0]))
    slots = ex.evaluate([torch.randn(1, 4, 128, 131)])
    assert not any(slots[r["when"]] for r in gn.table[:-1])
    assert all(any(b.value == v for b in prog.buffers) for v in gn.attrs["scratch"])
    assert slots[gn.table[-1]["stats"][0]["nchunks"]] > 1  # 16768 pixels per group: several chunks
    assert all(s.provider == "torch" for s in prog.steps if s.kind == "library_call")
    # the output (a permuted view of a kernel's result) is never placed in the arena
    out_root = prog.steps[-1].inputs[0]
    assert prog.values[out_root].kind == "output" and all(b.value != out_root for b in prog.buffers)
    json.dumps(prog.to_json())  # plain data throughout
    text = prog.describe()
    assert "= library_call torch.conv(%" in text and "launch group_norm_" in text
    assert "[s0, (s1 - 1) floordiv 2 + 1, (s2 - 1) floordiv 2 + 1, 8], float32, output>" in text


def test_library_only_program_in_process_with_registry():
    """A Program without launches runs here; every library call goes through the registry."""
    model, opt, prog = _compile("shapes")
    calls = []

    def recording(op, attrs, inputs, outputs):
        calls.append(op)
        torch_provider(op, attrs, inputs, outputs)

    ex = ProgramExecutor(prog, module_weights(prog, model), providers={"torch": recording})
    for b, n in SIZES:
        x = torch.randn(b, 3, n)
        for o, r in zip(ex.run([x]), _leaves(opt(x))):
            torch.testing.assert_close(o, r)
    assert calls.count("concat") == 2 * len(SIZES) and "pad" in calls


def test_arena_reuse_does_not_corrupt_and_outputs_survive():
    model, opt, prog = _compile("reductions")
    assert len(prog.buffers) >= 3
    ex = ProgramExecutor(prog, module_weights(prog, model))
    if os.environ.get("TRITON_INTERPRET") != "1":
        with pytest.raises(ProgramRunError, match="TRITON_INTERPRET=1"):
            ex.run([torch.randn(2, 6, 12)])
        return
    x1, x2 = torch.randn(2, 6, 12), torch.randn(3, 6, 17)
    first = ex.run([x1])
    kept = [t.clone() for t in first]
    ex.run([x2])
    for a, b in zip(first, kept):
        torch.testing.assert_close(a, b)


def random_buffers(rng: random.Random, most: int = 12, steps: int = 20) -> list[tuple[int, int, int]]:
    """(nbytes, first step, last step) of a few buffers with random sizes and live ranges."""
    bufs = []
    for _ in range(rng.randint(0, most)):
        a = rng.randint(0, steps)
        bufs.append((rng.choice([0, 1, 8, 100, 256, 777, 1000, 4096]), a, a + rng.randint(0, 6)))
    return bufs


def test_first_fit_never_overlaps_live_buffers():
    rng = random.Random(0)
    for _ in range(200):
        bufs = random_buffers(rng)
        offsets, total = first_fit(bufs)
        for i, (si, fi, li) in enumerate(bufs):
            assert offsets[i] % 256 == 0 and offsets[i] + si <= total
            for j, (sj, fj, lj) in enumerate(bufs[:i]):
                live_together = not (li < fj or lj < fi)
                disjoint = offsets[i] + si <= offsets[j] or offsets[j] + sj <= offsets[i]
                assert not (live_together and si and sj) or disjoint, (bufs, offsets)
    # buffers that are never live together share memory
    assert first_fit([(1000, 0, 1), (1000, 2, 3)]) == ([0, 0], 1000)
    assert first_fit([(1000, 0, 2), (1000, 2, 3)]) == ([0, 1024], 2024)


def test_load_refuses_another_environment_and_corruption(tmp_path):
    _, _, prog = _compile("geglu")
    prog.save(tmp_path / "p")
    Program.load(tmp_path / "p")  # this environment: fine
    other = dict(environment(), torch="1.0.0", triton="0.0")
    with pytest.raises(ProgramFormatError, match=r"torch: artifact '.*', this process '1\.0\.0'.*triton"):
        Program.load(tmp_path / "p", expect=other)
    body = json.loads((tmp_path / "p" / "program.json").read_text())
    body["outputs"] = body["outputs"][::-1] + [0]
    (tmp_path / "p" / "program.json").write_text(json.dumps(body))
    with pytest.raises(ProgramFormatError, match="content hash"):
        Program.load(tmp_path / "p")
    prog.save(tmp_path / "q")
    blob = next((tmp_path / "q" / "blobs").iterdir())
    blob.write_bytes(blob.read_bytes() + b"x")
    with pytest.raises(ProgramFormatError, match="does not match its hash"):
        Program.load(tmp_path / "q")


def test_guards_are_checked_from_the_shape_program():
    prog, weights, _ = _lit_block()
    assert any("guard" in c["message"] for c in prog.checks)
    ex = ProgramExecutor(prog, weights)
    with pytest.raises(ProgramShapeError, match=r"violate: guard .*s2 != 1"):
        ex.run([torch.randn(2, 32, 4, 1), torch.randn(2, 5, 24)])
    with pytest.raises(ProgramShapeError, match=r"input 'encoder_hidden_states' has shape \(3, 5, 24\)"):
        ex.run([torch.randn(2, 32, 4, 4), torch.randn(3, 5, 24)])


def test_shape_errors_name_the_input():
    model, _, prog = _compile("conv_block")
    ex = ProgramExecutor(prog, module_weights(prog, model))
    with pytest.raises(ProgramShapeError, match=r"input 'x' has shape \(2, 3, 9, 9\)"):
        ex.run([torch.randn(2, 3, 9, 9)])
    with pytest.raises(ProgramShapeError, match="expected 1 inputs"):
        ex.run([])


def test_unimplemented_paths_raise_clearly():
    with pytest.raises(ProviderError, match="does not implement 'fft'"):
        torch_provider("fft", {}, [torch.zeros(2)], [torch.zeros(2)])


def test_torch_provider_implements_every_op_the_lowering_makes_a_library_call():
    """The lowering turns every tensor op of the dialect that is not a view, a weight, a fused group
    or a fallback into a ``library_call`` of the torch provider: an op added to the dialect without
    a provider entry would compile and then fail on its first Program call."""
    from blade.dialects.blade import ALL_OPS
    from blade.dialects.base import TensorOp
    from blade.dialects.data_movement import WeightOp
    from blade.dialects.kernel import FusedOp
    from blade.lower_program import VIEW_OPS
    from blade.runtime import host_provider as hp

    structural = {WeightOp, FusedOp} | {c for c in ALL_OPS if c.name in (
        "blade.symbol", "blade.guard", "blade.yield", "blade.cluster", "blade.torch_op")}
    implemented = set(hp._UNARY) | set(hp._BINARY) | set(hp._OPS)
    missing = sorted(c.name for c in ALL_OPS if issubclass(c, TensorOp) and c not in VIEW_OPS
                     and c not in structural and c.name.removeprefix("blade.") not in implemented)
    assert not missing, f"ops without a torch-provider implementation: {missing}"


def test_runtime_imports_no_compiler_module():
    """Every module under runtime/ (the Program runtime), and loading an artifact, import nothing
    of the compiler: the IR executors and BladeModule live in compiler/ (blade.executors,
    blade.module)."""
    names = sorted(os.path.splitext(f)[0] for f in os.listdir(os.path.join(ROOT, "runtime"))
                   if f.endswith(".py") and f != "__init__.py")
    assert {"program_executor", "host_provider", "program_module", "shape_eval"} <= set(names)
    code = ("import sys, json; " + "; ".join(f"import blade.runtime.{n}" for n in names)
            + "; import blade.artifact; print(json.dumps(sorted(sys.modules)))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                          env=dict(os.environ, PYTHONPATH=ROOT))
    assert proc.returncode == 0, proc.stderr
    loaded = json.loads(proc.stdout)
    bad = [m for m in loaded if any(m == f or m.startswith(f + ".") for f in FORBIDDEN)]
    assert not bad, f"the Program runtime imports compiler modules: {bad}"


def test_arena_plan_reuses_memory_of_dead_buffers():
    model, _, prog = _compile("attention")
    # a provider that writes the planned outputs (the torch provider allocates its own results,
    # which are then left out of the arena): every buffer is placed
    ex = ProgramExecutor(prog, module_weights(prog, model), providers={"torch": lambda *a: torch_provider(*a)})
    assert ex._placed == list(range(len(prog.buffers)))
    slots = ex.evaluate([torch.randn(2, 12, 16)])
    sizes = [slots[b.nbytes] for b in prog.buffers]
    offsets, total = ex.arena_plan(slots)
    assert 2 * 12 * 48 * 4 in sizes  # the QKV projection's output
    assert total < sum(sizes) and len(set(offsets)) < len(offsets)


@pytest.mark.parametrize("path", sorted(p for p in glob.glob(os.path.join(ROOT, "tests", "lit", "*.mlir"))))
def test_lit_inputs_lower_and_round_trip(path, tmp_path):
    """Every lit test's input, through the pass pipeline, lowers to a Program that survives
    save/load unchanged."""
    with open(path) as f:
        module = parse_module(f.read(), path)
    ctx = make_context()
    for name in ("canonicalize", "shape-propagation", "cluster-supported", "layout-nhwc", "canonicalize",
                 "fuse-stitch"):
        get_pass(name)().apply(ctx, module)
    prog = lower_module(module)
    assert prog.steps
    digest = prog.save(tmp_path)
    assert Program.load(tmp_path).content_hash() == digest


def test_lowering_names_what_it_cannot_lower():
    text = """builtin.module {
      blade.symbol {sym_name = "s0", lo = 1 : i64, origin = "x.size(0)"} : () -> ()
      func.func @forward(%0: !blade.tensor<[s0, 4], f32>) -> !blade.tensor<[?, 4], f32> {
        %1 = blade.reshape %0 : (!blade.tensor<[s0, 4], f32>) -> !blade.tensor<[?, 4], f32>
        func.return %1 : !blade.tensor<[?, 4], f32>
      }
    }"""
    with pytest.raises(LoweringError, match=r"result of blade.reshape: type .*\[\?, 4\].* unknown dims"):
        lower_module(parse_module(text))


ARTIFACT_CHILD = textwrap.dedent("""
    import json, sys
    import torch
    import torch.utils._pytree as pytree
    from blade.artifact import load
    from tests.unit.op_matrix import CASES
    root, forbidden = sys.argv[1], json.loads(sys.argv[2])
    for name in ("reductions", "attention"):
        model = CASES[name][0]().eval()
        model.load_state_dict(torch.load(f"{root}/{name}.pt", weights_only=True))
        loaded = load(f"{root}/{name}", model)
        for inputs, expected in torch.load(f"{root}/{name}.calls.pt", weights_only=True):
            with torch.no_grad():
                out = loaded(*inputs)
            assert type(out) is type(expected), (name, type(out), type(expected))
            for o, e in zip(pytree.tree_leaves(out), pytree.tree_leaves(expected)):
                torch.testing.assert_close(o, e, rtol=1e-5, atol=1e-5)
        print(name, "ok", flush=True)
    bad = sorted(m for m in sys.modules if any(m == f or m.startswith(f + ".") for f in forbidden))
    assert not bad, "loading an artifact imported compiler modules: " + ", ".join(bad)
    print("ALL OK")
""")


def test_saved_module_loads_in_a_fresh_process(tmp_path):
    """blade.artifact.save of a BladeModule, blade.artifact.load in two processes at once without
    the compiler: same outputs, same output structure, weights read from the user's module."""
    from blade.artifact import save

    for name in ("reductions", "attention"):
        model, opt, _ = _compile(name)
        assert len(save(opt, tmp_path / name)) == len(opt.variants)
        torch.save(model.state_dict(), tmp_path / f"{name}.pt")
        calls = []
        for b, n in SIZES:
            inputs = list(ALL_CASES[name][1](b, n))
            with torch.no_grad():
                calls.append((inputs, opt(*inputs)))
        torch.save(calls, tmp_path / f"{name}.calls.pt")
    env = dict(os.environ, TRITON_INTERPRET="1", PYTHONPATH=ROOT)
    # two processes serve the same artifact at once
    procs = [subprocess.Popen([sys.executable, "-c", ARTIFACT_CHILD, str(tmp_path), json.dumps(FORBIDDEN)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)
             for _ in range(2)]
    for proc in procs:
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0 and "ALL OK" in out, out[-4000:] + err[-6000:]


def test_loaded_module_refuses_calls_no_variant_accepts(tmp_path):
    from blade.artifact import load, save

    model, opt, _ = _compile("shapes")
    save(opt, tmp_path / "m")
    loaded = load(tmp_path / "m", model)
    x = torch.randn(2, 3, 9)
    torch.testing.assert_close(loaded(x), opt(x))  # a library-only Program runs without the interpreter
    with pytest.raises(ProgramShapeError, match=r"variant 0: call signature .*float64"):
        loaded(x.double())
    with pytest.raises(ProgramShapeError, match=r"variant 0: input 'x' has shape \(2, 9\); .* rank 3"):
        loaded(torch.randn(2, 9))
    with pytest.raises(ProgramFormatError, match="saved from a Shapes, not a Geglu"):
        load(tmp_path / "m", CASES["geglu"][0]())


def test_loaded_module_computes_library_calls_as_the_saved_config_chose(tmp_path):
    """The manifest keeps the saved module's library choices; the loaded module's torch provider is
    made with them (one for all its variants); an artifact without them gets the process-wide
    default provider; a setting this runtime does not know is refused naming it."""
    import json

    from blade.artifact import load, save
    from blade.runtime.program_executor import PROVIDERS
    from blade.runtime.program_module import MANIFEST

    factory, make = ALL_CASES["shapes"]
    torch.manual_seed(0)
    model = factory().eval()
    config = blade.Config(executor="reference", gemm_library="torch", conv_library="cudnn",
                          attention_library="cudnn", conv_algorithm_search=False)
    opt = blade.optimize(model, make(*SIZES[0]), config=config)
    save(opt, tmp_path / "m")
    with open(tmp_path / "m" / MANIFEST) as f:
        manifest = json.load(f)
    assert manifest["libraries"] == {"gemm_library": "torch", "conv_library": "cudnn", "attention_library": "cudnn",
                                     "conv_algorithm_search": False}
    loaded = load(tmp_path / "m", model)
    providers = {id(v.executor.providers["torch"]) for v in loaded.variants}
    provider = loaded.variants[0].executor.providers["torch"]
    assert len(providers) == 1 and provider is not PROVIDERS["torch"]
    assert (provider.gemm_library, provider.conv_library, provider.attention_library,
            provider.conv_algorithm_search) == ("torch", "cudnn", "cudnn", False)
    x = make(*SIZES[1])
    torch.testing.assert_close(loaded(*x), opt(*x))  # on the CPU the libraries are torch's either way

    del manifest["libraries"]  # written before the settings were saved
    with open(tmp_path / "m" / MANIFEST, "w") as f:
        json.dump(manifest, f)
    assert load(tmp_path / "m", model).variants[0].executor.providers["torch"] is PROVIDERS["torch"]
    manifest["libraries"] = {"gemm_library": "torch", "matmul_precision": "tf32"}
    with open(tmp_path / "m" / MANIFEST, "w") as f:
        json.dump(manifest, f)
    with pytest.raises(ProgramFormatError, match=r"\['matmul_precision'\] are not known"):
        load(tmp_path / "m", model)
    manifest["libraries"] = {"gemm_library": "mkl"}
    with open(tmp_path / "m" / MANIFEST, "w") as f:
        json.dump(manifest, f)
    with pytest.raises(ProgramFormatError, match="gemm_library must be"):
        load(tmp_path / "m", model)


def test_artifact_with_cubins_is_for_one_gpu_arch(tmp_path, monkeypatch):
    """save(..., target=sm_90) stores every kernel variant's cubin (compiled on this CPU machine);
    load refuses the artifact for another GPU arch, naming it."""
    from blade.artifact import load, save

    model, opt, _ = _compile("geglu")
    monkeypatch.setattr(opt._config, "kernel_cache_dir", str(tmp_path / "cache"))
    save(opt, tmp_path / "m", target=("cuda", 90, 32))
    prog = Program.load(tmp_path / "m" / "variant-0")
    assert prog.meta["gpu_arch"] == "sm_90"
    ((key, kernel),) = prog.kernels.items()
    assert sorted(kernel["cubins"]) == [str(i) for i in range(len(kernel["variants"]))]
    for c in kernel["cubins"].values():
        assert prog.blobs[c["blob"]][:4] == b"\x7fELF" and c["entry"] == kernel["name"]
    with pytest.raises(ProgramFormatError, match=r"gpu_arch: artifact 'sm_90', this process 'sm_80'"):
        load(tmp_path / "m", model, expect=dict(environment(), gpu_arch="sm_80"))


def test_a_size_zero_dim_is_outside_a_symbol_of_range_one_and_up():
    """``s >= 1`` folds to True for sympy's positive symbols; the Program checks it as an integer
    comparison, so a size-0 input is refused, not run through size algebra that assumed 1 or more."""
    model, _, prog = _compile("conv_block")
    assert any(">= 1" in c["message"] for c in prog.checks), [c["message"] for c in prog.checks]
    ex = ProgramExecutor(prog, module_weights(prog, model))
    inputs = list(ALL_CASES["conv_block"][1](*SIZES[0]))
    ex.evaluate(inputs)  # the checks pass at the compile size
    inputs[0] = inputs[0][:0]
    with pytest.raises(ProgramShapeError, match=r">= 1"):
        ex.evaluate(inputs)


def test_blade_module_sends_a_size_zero_call_to_its_own_variant():
    """var() of an empty tensor is NaN in eager; the variant compiled at size 3 computed it with
    max(N - 1, 0) simplified for N >= 1 (-0.0) before its range check saw the 0."""

    class Var(torch.nn.Module):
        def forward(self, x):
            return torch.var(x), x.sum(0) * 2

    model = Var()
    opt = blade.optimize(model, (torch.randn(3, 5),))
    empty = torch.randn(0, 5)
    got, want = opt(empty), model(empty)
    assert torch.isnan(got[0]) and torch.isnan(want[0])
    torch.testing.assert_close(got[1], want[1])
    assert len(opt.variants) == 2


@pytest.mark.parametrize("name", sorted(ALL_CASES))
def test_values_are_let_go_after_their_last_reader(name):
    """A call drops its reference to an intermediate right after the last step that reads it or a
    view of it (so torch's allocator reuses a library result's memory within the call), and never
    drops inputs, weights, constants, outputs or the Program's results."""
    from blade.runtime.program import StepKind, ValueKind
    from blade.runtime.program_executor import _last_uses

    _, _, prog = _compile(name)
    last, drops = _last_uses(prog)
    dropped = {v: i for i, vs in enumerate(drops) for v in vs}
    sources = {st.outputs[0]: st.inputs[0] for st in prog.steps if st.kind == StepKind.VIEW.value}
    kept = {ValueKind.INPUT.value, ValueKind.WEIGHT.value, ValueKind.CONSTANT.value, ValueKind.OUTPUT.value}
    for v, i in dropped.items():
        assert prog.values[v].kind not in kept and v not in prog.outputs, (name, v)
    for j, st in enumerate(prog.steps):
        scratch = st.attrs.get("scratch", []) if st.kind == StepKind.LAUNCH.value else []
        for v in [*st.inputs, *scratch]:
            while True:  # the value and every source it is a view of must still be held at step j
                assert dropped.get(v, len(prog.steps)) >= j, (name, v, j)
                if v not in sources:
                    break
                v = sources[v]
    intermediates = {v for st in prog.steps for v in st.outputs if prog.values[v].kind not in kept
                     and v not in prog.outputs}
    assert intermediates <= set(dropped), (name, intermediates - set(dropped))
