"""The C++ step loop's relocation (``runtime/native_loop.py``, ``runtime/cpp/step_list.h``), on a
CPU: a call plan's step list is made from one Python run, then *resolved* (no CUDA) with the
addresses of another run of the same sizes, with new inputs, a new arena and new library results;
every launch must get exactly the arguments the Python loop computes for that run. Also: which
steps stay in Python, and that other input strides are declined (that call runs in Python)."""

import struct

import pytest
import torch

import blade
from blade.lower_program import lower_program
from blade.runtime.native_loop import NativeLoop
from blade.runtime.program_executor import ProgramExecutor, module_weights
from tests.native_build import build_native
from tests.unit.op_matrix import CASES, SIZES


@pytest.fixture(scope="module")
def native(tmp_path_factory):
    return build_native(tmp_path_factory)[1]


def _program(name, extra=None):
    factory, make = {**CASES, **(extra or {})}[name]
    torch.manual_seed(0)
    model = factory().eval()
    opt = blade.optimize(model, make(*SIZES[0]), config=blade.Config(executor="reference"))
    return model, make, lower_program(opt.variants[0].program)


def _expected(native, ex, plan, env):
    """Per plain launch, the parameter slots the Python loop's own launch passes in the run ``env``
    (its CUDA path: ``resolve``, then the variant's signature and recipe), not ``native_spec``'s."""
    out = []
    for fn, step in plan.steps:
        if step.kind != "launch" or not hasattr(fn, "resolve"):
            continue
        ins, outs = [env[v] for v in step.inputs], [env[v] for v in step.outputs]
        _, _, copies, tensors, named, rows = fn.resolve(ins, outs)
        if any(copies) or len(rows) != 1 or rows[0][2] != "one":
            continue  # GroupNorm's two launches run only on a GPU here (tests/gpu covers them)
        runner = ex._kernels[step.op]
        codes, names = runner._signature(rows[0][0])
        bufs = tensors + outs
        args = [bufs[i].data_ptr() if i >= 0 else v for i, v in runner._recipe(names, named, len(tensors))]
        packed = native.pack_params(codes, args)
        out.append(list(struct.unpack(f"<{len(packed) // 8}Q", packed))[:-2])
    return out


def _bases_ready_in_order(loop, bases):
    """Every C++ list entry resolves the same when the library results made by Python steps at or
    after its own step are not there yet: no entry reads a base before the step that sets it."""
    made_at = {b: op[3] for op in loop.ops if op[0] == "python" for _, b, _, _ in op[4]}
    for k, step in enumerate(loop._list_steps):
        early = list(bases)
        for b, at in made_at.items():
            if at >= step:
                early[b] = 0xDEAD0000
        assert loop.list.resolve(early, k, k + 1) == loop.list.resolve(bases, k, k + 1), (k, step)


@pytest.mark.parametrize("name", ["attention", "conv_block", "geglu", "shapes", "matmuls", "upsample", "reductions"])
def test_step_list_relocates_to_another_run(native, name):
    model, make, prog = _program(name)
    ex = ProgramExecutor(prog, module_weights(prog, model), native=native)
    for b, n in SIZES:
        x = make(b, n)
        plan, env, arena = ex.trace(x)
        loop = NativeLoop(ex, plan, env, arena, native, with_kernels=False)
        assert len(loop.list) >= loop.native_steps
        keep = [torch.empty(1 << 16) for _ in range(3)]  # the next run's tensors land elsewhere
        x2 = [t.clone().normal_() if t.is_floating_point() else t.clone() for t in make(b, n)]
        plan2, env2, arena2 = ex.trace(x2)
        assert plan2 is plan
        got = loop.list.resolve(loop.bases_from(env2, arena2), 0, len(loop.list))
        want = _expected(native, ex, plan, env2)
        assert got == want, f"{name} {b}x{n}: {loop.describe()}"
        _bases_ready_in_order(loop, loop.bases_from(env2, arena2))
        if arena is not None and arena2 is not None:
            assert arena.data_ptr() != arena2.data_ptr() or not loop.native_steps
        assert loop.accepts(env2) is not None
        del keep


def _loop_summary(loop, bases):
    return (loop.describe(), [op[:1] + op[3:4] for op in loop.ops], loop.list.resolve(bases, 0, len(loop.list)),
            loop.static, loop._static_checks, [(v, b) for v, b in loop._produced], loop.arena_views, loop.gemm_views)


@pytest.mark.parametrize("name", ["attention", "conv_block", "geglu", "shapes", "matmuls", "upsample", "reductions"])
def test_loop_made_from_shadows_is_the_loop_made_from_tensors(native, name, monkeypatch):
    """The recording run lets go of each value as a normal run does, keeping its ``Shadow`` and
    each launch's spec taken as it ran (so its peak is a normal run's): the loop made from that is
    the one made from every tensor kept, entry for entry. Through the executor's own recording
    path (``_records`` forced on, launch specs without cubins, as CPU has none)."""
    import blade.runtime.native_loop as native_loop
    import blade.runtime.program_executor as program_executor

    model, make, prog = _program(name)
    ex = ProgramExecutor(prog, module_weights(prog, model), native=native)
    monkeypatch.setattr(ex, "_records", lambda plan, device: not plan.native_tried)
    monkeypatch.setattr(program_executor, "record_step",
                        lambda *a: native_loop.record_step(*a, with_kernels=False))
    shadows = []
    real_let_go = native_loop.let_go

    def counting_let_go(env, values):
        real_let_go(env, values)
        shadows.extend(v for v in values if isinstance(env[v], native_loop.Shadow))

    monkeypatch.setattr(program_executor, "let_go", counting_let_go)
    b, n = SIZES[0]
    x = make(b, n)
    ex.run(x)
    ex.run(x)  # the second run of this size records the loop
    (plan,) = ex._call_plans.values()
    assert plan.native is not None, ex.native_stats
    recorded = plan.native
    assert shadows or not any(ex._drops), "the recording run let its intermediates go"
    trace_plan, env, arena = ex.trace(x)
    assert trace_plan is plan
    full = NativeLoop(ex, plan, env, arena, native, with_kernels=False)
    bases = full.bases_from(env, arena)
    assert _loop_summary(recorded, bases) == _loop_summary(full, bases), name


def test_shadow_reads_like_its_tensor():
    t = torch.empty(4, 6, 5)[:, 1:, :].permute(0, 2, 1)
    s = native_loop_shadow(t)
    assert (s.shape, s.stride(), s.stride(-1), s.dtype, s.data_ptr(), s.numel(), s.dim(), s.is_contiguous()) == \
        (t.shape, t.stride(), t.stride(-1), t.dtype, t.data_ptr(), t.numel(), t.dim(), t.is_contiguous())
    w = torch.empty(8, 3, 1, 1).contiguous(memory_format=torch.channels_last)
    m = native_loop_shadow(w, w.shape[:2], w.stride()[:2])  # a 1x1 convolution's weight as a matrix
    r = w.reshape(8, 3)
    assert (m.shape, m.stride(), m.data_ptr(), m.is_contiguous()) == (r.shape, r.stride(), r.data_ptr(),
                                                                      r.is_contiguous())


def native_loop_shadow(*args):
    from blade.runtime.native_loop import Shadow

    return Shadow(*args)


def test_views_cost_nothing_and_libraries_stay_python(native):
    """The attention block: its permutes and reshapes feed generated kernels and library calls;
    the views only kernels read are offsets, the library calls (matmul, softmax's neighbours in
    torch) are Python steps."""
    model, make, prog = _program("attention")
    ex = ProgramExecutor(prog, module_weights(prog, model), native=native)
    plan, env, arena = ex.trace(make(2, 12))
    loop = NativeLoop(ex, plan, env, arena, native, with_kernels=False)
    kinds = [st.kind for st in prog.steps]
    assert loop.native_steps == sum(1 for fn, st in plan.steps if st.kind == "launch"
                                    and getattr(fn, "native_spec", None) and fn.native_spec(env, False))
    assert loop.python_steps >= kinds.count("library_call")
    python_views = sum(1 for op in loop.ops if op[0] == "python" and op[2].kind == "view")
    assert python_views + loop.skipped_views == kinds.count("view")
    # the arena views made per call are only those a Python step (or the caller) reads
    assert len(loop.arena_views) <= len(plan.arena)


class _HeadsOfANorm(torch.nn.Module):
    """A generated kernel's result (LayerNorm, in the arena) read by a library call (torch's
    matmul) through a reshape and a permute: the views an attention's q/k take."""

    def __init__(self, d=16):
        super().__init__()
        self.norm = torch.nn.LayerNorm(d)

    def forward(self, x):
        b, n, d = x.shape
        h = self.norm(x).reshape(b, n, 2, d // 2).permute(0, 2, 1, 3)
        return h @ h.transpose(-1, -2)


_VIEW_CASES = {"heads_of_a_norm": (_HeadsOfANorm, lambda b, n: (torch.randn(b, n, 16),))}


@pytest.mark.parametrize("name", ["heads_of_a_norm", "attention", "geglu", "matmuls"])
def test_views_made_from_the_arena_are_the_python_run_s_views(native, name):
    """A view a Python step reads, of an arena value, is made at a call's start by one
    ``as_strided`` of the arena (``NativeLoop.arena_views``) instead of its chain of view steps:
    in another run of the same sizes each such view must be exactly where and what the Python
    loop's views are (shape, strides, dtype, address), and its view steps must not also run."""
    model, make, prog = _program(name, _VIEW_CASES)
    ex = ProgramExecutor(prog, module_weights(prog, model), native=native)
    b, n = SIZES[-1]
    plan, env, arena = ex.trace(make(b, n))
    loop = NativeLoop(ex, plan, env, arena, native, with_kernels=False)
    keep = [torch.empty(1 << 16) for _ in range(3)]  # the next run's tensors land elsewhere
    x2 = [t.clone().normal_() if t.is_floating_point() else t.clone() for t in make(b, n)]
    plan2, env2, arena2 = ex.trace(x2)
    assert plan2 is plan
    values = {entry[0] for entry in plan.arena}
    direct = [entry for entry in loop.arena_views if entry[0] not in values]
    for v, dt, shape, stride, offset in loop.arena_views:
        t = env2[v]
        assert (t.dtype, tuple(t.shape), tuple(t.stride())) == (dt, shape, stride), v
        assert t.data_ptr() == arena2.data_ptr() + offset * t.element_size(), v
    run = {op[2].outputs[0] for op in loop.ops if op[0] == "python" and op[2].kind == "view"}
    assert not run & {v for v, *_ in direct}
    if name == "heads_of_a_norm":
        assert len(direct) >= 2, loop.describe()  # h and its transpose, each one as_strided
    del keep


def test_other_input_strides_are_declined(native):
    model, make, prog = _program("attention")
    ex = ProgramExecutor(prog, module_weights(prog, model), native=native)
    (x,) = make(2, 12)
    plan, env, arena = ex.trace([x])
    loop = NativeLoop(ex, plan, env, arena, native, with_kernels=False)
    odd = x.transpose(1, 2).contiguous().transpose(1, 2)  # same shape and values, other strides
    _, env2, _ = ex.trace([odd])
    assert loop.accepts(env2) is None
    _, env3, _ = ex.trace([x.clone()])
    assert loop.accepts(env3) is not None


class _FakeCall:
    def __init__(self, ran):
        self.ran = ran

    def run(self, stream, device, lo, hi):
        self.ran.append((lo, hi))

    def set(self, base, value):
        pass


class _FakeList:
    """Stands in for the C++ list in ``NativeLoop.run`` on a CPU: records the entry ranges run."""

    def __init__(self):
        self.ran = []

    def call(self, bases):
        return _FakeCall(self.ran)


def _readers(loop, b):
    """The entries of the C++ list whose arguments change with base ``b``."""
    bases = [0x10000 * (k + 1) for k in range(loop.num_bases)]
    moved = list(bases)
    moved[b] += 0x100
    return [k for k in range(len(loop.list))
            if loop.list.resolve(bases, k, k + 1) != loop.list.resolve(moved, k, k + 1)]


class _ScaledLinears(torch.nn.Module):
    """Two linears (Python steps on a CPU), each followed by softmaxes of scaled and shifted rows
    (one kernel each, in a row) with a scale and a shift of their own: native ranges of several
    entries whose weights are first read one entry after another."""

    def __init__(self):
        super().__init__()
        self.lins = torch.nn.ModuleList(torch.nn.Linear(16, 16) for _ in range(2))
        self.scales = torch.nn.ParameterList(torch.nn.Parameter(torch.randn(16)) for _ in range(12))
        self.shifts = torch.nn.ParameterList(torch.nn.Parameter(torch.randn(16)) for _ in range(12))

    def forward(self, x):
        for i, lin in enumerate(self.lins):
            x = lin(x)
            for k in range(6 * i, 6 * i + 6):
                x = torch.softmax(x * self.scales[k] + self.shifts[k], dim=-1)
        return x


_DEFERRED = {"scaled_linears": (_ScaledLinears, lambda b, n: (torch.randn(b, n, 16),))}


@pytest.mark.parametrize("name", ["scaled_linears"])
def test_deferred_weight_checks_come_before_their_readers(native, name, monkeypatch):
    """``NativeLoop.accepts`` compares the weights the first entries read; the others are
    compared in ``run``, group by group (``CHECK_GROUP_ENTRIES``, made small here so every case has
    several groups): no entry runs before the weights it reads were compared, every entry runs
    once, and a weight that moved since the last accepted call stops the entries before its first
    reader and runs the call in Python (``finish(None)``); the next call checks every weight."""
    import blade.runtime.weight_checks as weight_checks

    monkeypatch.setattr(weight_checks, "CHECK_GROUP_ENTRIES", (1, 2, 3, 6, 10))
    model, make, prog = _program(name, _DEFERRED)
    ex = ProgramExecutor(prog, module_weights(prog, model), native=native)
    b, n = SIZES[-1]
    plan, env, arena = ex.trace(make(b, n))
    loop = NativeLoop(ex, plan, env, arena, native, with_kernels=False)
    entries = len(loop.list)
    groups = weight_checks.check_groups(loop._first_entry, entries)
    assert entries >= 3 and sum(1 for g in groups if g) >= 2, (loop.describe(), groups)
    # no entry before a group's check reads one of its weights
    bounds = [0] + [x for x in weight_checks.CHECK_GROUP_ENTRIES if x < entries]
    for g, members in enumerate(groups):
        for k in members:
            base = loop._static_checks[k][0]
            assert all(e >= bounds[g] for e in _readers(loop, base)), (g, k, _readers(loop, base))
    checks_at, position = {}, 0
    for op in loop.lazy_ops:
        if op[0] == "check":
            checks_at[op[1]] = position
        elif op[0] == "native":
            assert all(checks_at.get(g, -1) >= 0 for g in range(1, len(bounds)) if bounds[g] < op[2]), (op, checks_at)
            position = op[2]

    _, env2, arena2 = ex.trace([t.clone() for t in make(b, n)])
    fake = _FakeList()
    loop.list = fake
    finished = []
    first = loop.accepts(env2)
    assert first is not None and first.deferred is None  # the first call checks every weight
    bases = loop.accepts(env2)
    assert bases is not None and bases.deferred is not None
    no_step = lambda fn, step, index, env: None  # noqa: E731 - the values of the traced run stay in env
    loop.run(bases, list(env2), arena2, 0, 0, no_step, finished.append)
    assert not finished
    assert sorted(fake.ran) == fake.ran and [x for lo, hi in fake.ran for x in range(lo, hi)] == list(range(entries))

    # a weight of a later group moves (``.data =`` with a copy): its readers do not run
    g = max(g for g, members in enumerate(groups) if members)
    k = groups[g][0]
    v = loop._static_checks[k][1]
    env3 = list(env2)
    env3[v] = env2[v].clone()
    fake.ran.clear()
    bases = loop.accepts(env3)
    assert bases is not None and bases.deferred is not None
    loop.run(bases, list(env3), arena2, 0, 0, no_step, finished.append)
    assert finished == [None] and loop._seen is None
    assert all(hi <= bounds[g] for _, hi in fake.ran), (fake.ran, bounds[g])
    again = loop.accepts(env3)  # every weight compared; the new address taken
    assert again is not None and again.deferred is None
    assert again[loop._static_checks[k][0]] == env3[v].data_ptr()
