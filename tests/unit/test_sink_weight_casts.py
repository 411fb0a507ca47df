"""``sink-weight-casts`` on a float32 model compiled with ``enable_fp16``: every weight's cast ends
up right before its first user, results are unchanged, and the Program's arena (what a call holds
at its peak) shrinks, because the float16 copies are no longer all live at once."""

import torch

import blade
from blade import models, pipeline
from blade.dialects.kernel import FusedOp
from blade.lower_program import lower_program
from blade.passes.sink_weight_casts import _in_block, _weight_only
from blade.runtime.program_executor import ProgramExecutor, module_weights


def _compile(sink: bool, monkeypatch):
    if not sink:
        names = pipeline.pass_names
        monkeypatch.setattr(pipeline, "pass_names", lambda c: [n for n in names(c) if n != "sink-weight-casts"])
    torch.manual_seed(0)
    zoo = models.ZOO["sd15_unet"]
    m = zoo.build(dtype=torch.float32, device="cpu", reduced=True)
    args, kwargs = zoo.inputs(zoo.reduced_example, reduced=True)
    opt = blade.optimize(m, args, model_kwargs=kwargs, config=blade.Config(enable_fp16=True))
    monkeypatch.undo()
    return m, args, kwargs, opt


def _arena_bytes(m, opt, args) -> int:
    prog = lower_program(opt.variants[0].program)
    ex = ProgramExecutor(prog, module_weights(prog, m), providers={"torch": lambda *a: None})  # places all
    slots = ex.evaluate([a for a in args if isinstance(a, torch.Tensor)])
    return ex.arena_plan(slots)[1]


def test_casts_sit_before_their_first_use_and_the_arena_shrinks(monkeypatch):
    m, args, kwargs, opt = _compile(True, monkeypatch)
    module = opt.variants[0].program.module
    moved = 0
    for op in module.walk():
        if not _weight_only(op):
            continue
        block, ops = op.parent_block(), list(op.parent_block().ops)
        users = [_in_block(u.operation, block) for r in op.results for u in r.uses]
        first = min(ops.index(u) for u in users)
        between = ops[ops.index(op) + 1:first]
        assert all(_weight_only(o) for o in between), f"{op.name} is {len(between)} ops before its first use"
        moved += isinstance(op, FusedOp)
    assert moved > 50
    with torch.no_grad():
        torch.testing.assert_close(opt(*args, **kwargs).sample, m(*args, **kwargs).sample, rtol=2e-2, atol=2e-2)
    m0, args0, _, opt0 = _compile(False, monkeypatch)
    assert _arena_bytes(m, opt, args) < 0.8 * _arena_bytes(m0, opt0, args0)
