"""Regression tests for the Program executor's call plans and the torch provider (review of the
per-size call plans and of providers that return their own results): memory a result may share
with an argument, caches that must not outlive or mis-serve what they cache. Programs are built
by hand here so that each test holds exactly the steps that matter."""

import gc
import sys
import threading
import weakref

import pytest
import sympy
import torch

from blade.runtime.host_provider import TorchProvider, _same_kind
from blade.runtime.program import Buffer, Program, Step, Value
from blade.runtime.kernel_runner import KernelRunner
from blade.runtime import program_executor
from blade.runtime.program_executor import ProgramExecutor, ProgramRunError
from blade.shape_program import ShapeProgram

S0 = sympy.Symbol("s0", integer=True, positive=True)


def _program(values, buffers, steps, outputs) -> Program:
    """A Program over one float32 input of shape [s0]; slot 0 is s0, slot 1 its byte size."""
    sp = ShapeProgram([S0, 4 * S0], ["s0"])
    return Program(symbols=["s0"], bindings=[{"symbol": 0, "input": 0, "dim": 0, "coeff": 1}],
                   input_names=["x"], shape_code=sp.code, nslots=2, checks=[], values=values,
                   buffers=buffers, steps=steps, outputs=outputs)


def _v(kind, **kw) -> Value:
    return Value(kind, "float32", [0], **kw)


def test_same_dtype_cast_result_does_not_alias_a_reused_arena_buffer():
    """``cast`` to the dtype it already has returns its input: a provided result then shared the
    arena buffer of its argument, whose memory a later buffer reuses (the argument's life ends at
    the cast): ``b + c`` read ``c + c`` (10, not 6)."""
    p = _program(values=[_v("input", index=0), _v("arena", buffer=0), _v("arena", buffer=1),
                         _v("arena", buffer=2), _v("output")],
                 buffers=[Buffer(1, 1, 0, 1), Buffer(2, 1, 1, 3), Buffer(3, 1, 2, 3)],
                 steps=[Step("library_call", "full", [], [1], provider="torch", attrs={"value": 1.0}),
                        Step("library_call", "cast", [1], [2], provider="torch"),
                        Step("library_call", "full", [], [3], provider="torch", attrs={"value": 5.0}),
                        Step("library_call", "add", [2, 3], [4], provider="torch")],
                 outputs=[4])
    for native in (None, False):
        ex = ProgramExecutor(p, {}, native=native)
        assert 1 in ex._in_arena and 3 in ex._in_arena and 2 not in ex._in_arena
        (out,) = ex.run([torch.zeros(3)])
        torch.testing.assert_close(out, torch.full((3,), 6.0))


def test_channels_last_weight_copies_do_not_keep_dropped_weights_alive():
    """The process-wide ``torch_provider`` serves every loaded artifact: its channels-last copies
    must go with the weights they copy (they held the weight and the copy forever)."""
    provider = TorchProvider(convert_weights_in_place=False)  # the copy mode
    w = torch.nn.Parameter(torch.randn(4, 3, 3, 3))
    copy = provider._channels_last(w)
    assert copy.is_contiguous(memory_format=torch.channels_last) and len(provider._cl_weights) == 1
    assert provider._channels_last(w) is copy  # cached
    alive = weakref.ref(w)
    del w, copy
    gc.collect()
    assert alive() is None and len(provider._cl_weights) == 0


def test_channels_last_copy_follows_in_place_updates_and_not_across_devices():
    provider = TorchProvider(convert_weights_in_place=False)
    w = torch.nn.Conv2d(3, 4, 3).weight
    copy = provider._channels_last(w)
    with torch.no_grad():
        w.mul_(2)
    provider.refresh()  # in place, the same address (a CUDA graph replay reads it)
    assert provider._channels_last(w) is copy
    torch.testing.assert_close(copy, w.detach())
    # a weight whose data moved to another device (Module.to keeps the Parameter) gets a new copy
    # there; tests/gpu/test_gpu_provider.py moves one to the GPU
    assert not _same_kind(copy, torch.empty(w.shape, device="meta"))
    assert _same_kind(copy, w.detach())


def test_call_plans_evicted_by_several_threads(monkeypatch):
    """Threads calling one executor at more sizes than it keeps call plans for: two of them
    evicting the same oldest plan raised a KeyError (a stress test: the race needs a thread switch
    between choosing the plan and dropping it, made likely by a tiny switch interval)."""
    p = _program(values=[_v("input", index=0), _v("output")], buffers=[],
                 steps=[Step("library_call", "neg", [0], [1], provider="torch")], outputs=[1])
    monkeypatch.setattr(program_executor, "MAX_CALL_PLANS", 2)
    ex = ProgramExecutor(p, {})
    errors = []

    def work(seed):
        try:
            for i in range(1500):
                n = 1 + (i * 7 + seed) % 11
                (o,) = ex.run([torch.ones(n)])
                assert o.shape == (n,) and bool((o == -1).all())
        except Exception as e:  # noqa: BLE001 - reported by the assertion below
            errors.append(repr(e))

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        threads = [threading.Thread(target=work, args=(s,)) for s in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        sys.setswitchinterval(interval)
    assert not errors and len(ex._call_plans) <= 2


def test_one_lock_guards_the_process_wide_cudnn_benchmark_flag():
    """The kernel executor and the torch provider both set ``cudnn.benchmark`` around a
    convolution and restore it: under two locks, a module of each kind in two threads could
    restore each other's value and leave the user's setting changed."""
    from blade.executors import triton_executor
    from blade.runtime import host_provider

    assert triton_executor._CUDNN_FLAG_LOCK is host_provider._CUDNN_FLAG_LOCK


def test_program_executor_on_cpu_without_interpreter_is_refused_at_compile_time(monkeypatch, capsys):
    """``Config(executor="program")`` on a CPU without ``TRITON_INTERPRET=1``: the module runs
    eagerly with one message saying why, as with ``executor="kernels"`` (it compiled, then
    reported an INTERNAL ERROR on every call)."""
    import blade

    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    m = torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.GELU(), torch.nn.LayerNorm(8)).eval()
    opt = blade.optimize(m, (torch.randn(2, 8),), config=blade.Config(executor="program"))
    with torch.no_grad():
        for b in (2, 3):
            x = torch.randn(b, 8)
            torch.testing.assert_close(opt(x), m(x))
    err = capsys.readouterr().err
    assert "TRITON_INTERPRET=1" in err and "INTERNAL ERROR" not in err, err


def test_a_cuda_graph_warm_up_records_no_step_loop(monkeypatch):
    """A size's second call is, with CUDA graphs, the capture's warm-up: the module runs it under
    ``no_recording`` (``BladeModule._capture``), so it neither records the C++ step loop (which
    keeps every intermediate until the run's end: the old peak) nor counts towards it; outside it
    a second CUDA run records, and never one inside a capture."""
    import inspect

    from blade.module import BladeModule
    from blade.runtime.program_executor import _CallPlan, no_recording

    monkeypatch.setattr(torch.cuda, "is_current_stream_capturing", lambda: False)
    ex = ProgramExecutor(_program([_v("input"), _v("output")], [], [], [1]), {}, native=False,
                         native_loop=True)
    plan = _CallPlan.__new__(_CallPlan)
    plan.native_tried = False
    cuda = torch.device("cuda")
    assert ex._records(plan, cuda) and not ex._records(plan, torch.device("cpu"))
    with no_recording():
        assert not ex._records(plan, cuda)
        with no_recording():
            pass
        assert not ex._records(plan, cuda)  # nested: still inside
    assert ex._records(plan, cuda)
    monkeypatch.setattr(torch.cuda, "is_current_stream_capturing", lambda: True)
    assert not ex._records(plan, cuda)
    assert "with no_recording():" in inspect.getsource(BladeModule._capture)


def test_ops_declared_fresh_never_return_an_argument_s_memory():
    """The executor skips its aliasing check for ops the provider declares fresh
    (``TorchProvider.fresh_results``): each of them, called as the Program calls it (with one
    input where it takes a list, where ``cat`` is tempted to return it), returns new memory."""
    from blade.runtime.host_provider import _FRESH_RESULTS, torch_provider

    x4, x3 = torch.randn(2, 5, 6, 4), torch.randn(2, 7, 8)
    calls = {
        "conv": ({"layout": "nhwc", "stride": [1, 1], "padding": [1, 1], "dilation": [1, 1], "groups": 1},
                 [x4, torch.randn(3, 4, 3, 3), torch.randn(3)]),
        "conv_transpose": ({"stride": [2, 2], "padding": [1, 1], "output_padding": [0, 0], "dilation": [1, 1],
                            "groups": 1}, [x4.permute(0, 3, 1, 2), torch.randn(4, 3, 4, 4), torch.randn(3)]),
        "linear": ({}, [x3, torch.randn(8, 8)]),
        "matmul": ({}, [x3, torch.randn(8, 8)]),
        "attention": ({"is_causal": 0}, [x4, x4, x4]),
        "concat": ({"dim": 0}, [x3]),
        "group_norm": ({"num_groups": 2, "eps": 1e-5, "layout": "nhwc"}, [x4]),
        "layer_norm": ({"normalized_ndim": 1, "eps": 1e-5}, [x3]),
        "softmax": ({"dim": -1}, [x3]),
        "log_softmax": ({"dim": -1}, [x3]),
        "embedding": ({}, [torch.randn(10, 4), torch.tensor([[1, 2, 3]])]),
    }
    assert set(calls) == _FRESH_RESULTS
    for op, (attrs, ins) in calls.items():
        assert torch_provider.fresh_results(op)
        (r,) = torch_provider(op, attrs, ins, [None])
        ptrs = {t.untyped_storage().data_ptr() for t in ins}
        assert r.untyped_storage().data_ptr() not in ptrs, op
    assert not torch_provider.fresh_results("cast")


class _MaskedSelect(torch.nn.Module):
    def forward(self, x):
        return torch.masked_select(x, x > 0) * 2


def test_auto_executor_on_cuda_is_the_program_executor_but_for_value_dependent_sizes():
    """``Config(executor="auto")`` on CUDA: the Program executor, except with ``bounds_check``
    (only the IR executor's kernels carry the assertions) or when a size depends on tensor values
    (a Program computes every size before a call: ``masked_select`` reported "CallPlanner: symbol 2
    has no binding" on every call when the Program executor was first made the default)."""
    import blade
    from blade.pipeline import compile_program, executor_kind

    cuda, cpu = torch.device("cuda"), torch.device("cpu")
    linear = compile_program(torch.nn.Linear(8, 8).eval(), (torch.randn(2, 8),), {}, blade.Config(), None, "l")
    select = compile_program(_MaskedSelect(), (torch.randn(3, 5),), {}, blade.Config(), None, "s")
    assert executor_kind(blade.Config(), cuda, linear.module) == "program"
    assert executor_kind(blade.Config(bounds_check=True), cuda, linear.module) == "kernels"
    assert executor_kind(blade.Config(), cuda, select.module) == "kernels"
    assert executor_kind(blade.Config(), cpu, linear.module) == "reference"
    assert executor_kind(blade.Config(executor="program"), cuda, select.module) == "program"


def test_program_executor_refuses_value_dependent_sizes_at_compile_time(capsys):
    """``Config(executor="program")`` asked for explicitly on a program whose sizes depend on tensor
    values: refused when compiled, with one message naming why and what to use; the module answers
    eagerly (no INTERNAL ERROR per call)."""
    import blade

    m = _MaskedSelect()
    opt = blade.optimize(m, (torch.randn(3, 5),), config=blade.Config(executor="program"))
    for n in (5, 7):
        x = torch.randn(3, n)
        torch.testing.assert_close(opt(x), m(x))
    err = capsys.readouterr().err
    assert "depend on tensor values" in err and "executor='auto'" in err and "INTERNAL ERROR" not in err, err


def test_outgrown_groupnorm_counter_outlives_the_graphs_that_captured_it():
    """GroupNorm's ticket counter grows with the batch; a CUDA graph captured at a smaller batch
    (``Config(executor="program")`` captures graphs around the Program executor) replays with
    the old counter's address, so the old buffer must stay allocated (it was freed, and the
    replay's tickets landed in whatever reused that memory). The kernel executor's launcher keeps
    them the same way (``compiler/executors/launch.py``)."""
    p = _program(values=[], buffers=[], steps=[], outputs=[])
    p.kernels, p.blobs = {"k": {"source": "src"}}, {"src": b""}
    runner = KernelRunner("k", p)
    small = runner._counter(torch.device("cpu"), 10)
    assert runner._counter(torch.device("cpu"), 60) is small  # fits: the same buffer
    alive = weakref.ref(small)
    del small
    grown = runner._counter(torch.device("cpu"), 100)
    gc.collect()
    assert grown.numel() >= 100 and alive() is not None


def test_allocating_provider_returning_too_few_results_is_named():
    """A provider that says it allocates an op's results but returns fewer of them left values
    unset, and a later step failed on ``None`` far from the cause."""
    class Forgetful:
        def allocates(self, op):
            return True

        def __call__(self, op, attrs, inputs, outputs):
            return []

    p = _program(values=[_v("input", index=0), _v("arena", buffer=0), _v("output")],
                 buffers=[Buffer(1, 1, 0, 1)],
                 steps=[Step("library_call", "neg", [0], [1], provider="mine"),
                        Step("library_call", "neg", [1], [2], provider="torch")],
                 outputs=[2])
    ex = ProgramExecutor(p, {}, providers={"mine": Forgetful(), "torch": TorchProvider()})
    with pytest.raises(ProgramRunError, match=r"step 0 .*'mine' neg allocates its results but returned 0"):
        ex.run([torch.zeros(3)])


def test_refresh_while_another_thread_adds_weights():
    """``refresh`` runs before every CUDA graph replay while other threads' calls may add weights:
    iterating the weak dictionary is not atomic ("dictionary changed size during iteration"; a
    stress test, made likely by a tiny switch interval)."""
    provider = TorchProvider(convert_weights_in_place=False)
    weights = [torch.nn.Parameter(torch.randn(2, 2, 1, 2)) for _ in range(2000)]
    for w in weights[:200]:
        provider._channels_last(w)
    errors, stop = [], threading.Event()

    def refresher():
        try:
            while not stop.is_set():
                provider.refresh()
        except Exception as e:  # noqa: BLE001 - reported by the assertion below
            errors.append(repr(e))

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        t = threading.Thread(target=refresher)
        t.start()
        try:
            for w in weights[200:]:
                provider._channels_last(w)
        finally:
            stop.set()
            t.join()
    finally:
        sys.setswitchinterval(interval)
    assert not errors and len(provider._cl_weights) == len(weights)


def test_default_provider_makes_parameters_channels_last_in_place():
    """The default (``Config.convert_weights_in_place``): no copy, so an update written through
    ``.data`` in place (PEFT's LoRA merge), which changes neither version nor storage, is read."""
    provider = TorchProvider()
    w = torch.nn.Conv2d(3, 4, 3).weight
    values = w.detach().clone()
    assert provider._channels_last(w) is w and w.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(w.detach(), values)
    w.data += 1.0
    assert provider._channels_last(w) is w and len(provider._cl_weights) == 0


def test_conv_algorithm_search_waits_for_a_shape_to_repeat():
    """cuDNN's algorithm search runs at a convolution shape's second call, never its first (a new
    input shape's first call stays a plain run); off means never."""
    from blade.runtime.host_provider import ConvSearch

    x, w = torch.randn(2, 4, 9, 7), torch.randn(8, 4, 3, 3)
    search = ConvSearch(True)
    assert [search.benchmark(x, w, (1, 1)) for _ in range(3)] == [False, True, True]
    assert not search.benchmark(torch.randn(3, 4, 9, 7), w, (1, 1))  # a new batch size
    assert not search.benchmark(x, w, (2, 1))  # another stride
    assert not search.benchmark(x.contiguous(memory_format=torch.channels_last), w, (1, 1))
    off = ConvSearch(False)
    assert not any(off.benchmark(x, w, (1, 1)) for _ in range(3))


def test_attention_first_call_of_a_shape_is_told_apart():
    """A shape's first attention call (flash/efficient on CUDA) is told from later ones (torch's
    own backend choice), per shapes, dtype and mask; the values are attention's either way."""
    from blade.runtime.host_provider import _FirstCallAttention, attention

    pick = _FirstCallAttention()
    q, k, v = torch.randn(2, 3, 5, 8), torch.randn(2, 3, 7, 8), torch.randn(2, 3, 7, 4)
    assert not pick.tuned(q, k, v, None) and pick.tuned(q, k, v, None)
    assert not pick.tuned(q, k, v, torch.ones(5, 7, dtype=torch.bool))  # with a mask: another call
    assert not pick.tuned(q.half(), k.half(), v.half(), None)
    torch.testing.assert_close(attention(q, k, v, None, False, None),
                               torch.nn.functional.scaled_dot_product_attention(q, k, v))


def test_nothing_is_tuned_inside_a_capture_that_was_not_tuned_before():
    """Inside a CUDA-graph capture a key counts as tuned only when a call outside the capture ran
    tuned (``cuda_graph_after=1``: warm-up untuned, capture untuned too; with 2: the warm-up is the
    second call and tunes, the capture replays it)."""
    from blade.runtime.host_provider import _SecondCall

    calls = _SecondCall()
    assert not calls.tuned("a", capturing=False) and not calls.tuned("a", capturing=True)
    assert calls.tuned("a", capturing=False) and calls.tuned("a", capturing=True)
    assert not calls.tuned("b", capturing=True) and not calls.tuned("b", capturing=False)


def test_a_key_met_again_within_one_module_call_is_still_untuned():
    """A UNet meets each attention shape several times per call: all of them belong to the shape's
    first call (``module_call``), so none builds cuDNN's per-shape plan then; the next module call
    tunes, and nested module calls count once."""
    from blade.runtime.host_provider import _SecondCall, module_call

    calls = _SecondCall()
    with module_call():
        assert not calls.tuned("q", capturing=False)
        with module_call():  # an executor's run inside BladeModule.forward: the same call
            assert not calls.tuned("q", capturing=False)
        assert not calls.tuned("q", capturing=False)
        assert not calls.tuned("q", capturing=True)
    with module_call():
        assert calls.tuned("q", capturing=False) and calls.tuned("q", capturing=False)
        assert calls.tuned("q", capturing=True)
        assert not calls.tuned("k", capturing=False)
    assert calls.tuned("k", capturing=False)  # outside module calls every op call counts


def test_arena_plans_are_bounded(monkeypatch):
    """A run over ever new sizes keeps a bounded number of arena plans (as of call plans), and a
    size met again after its plan was dropped is planned again, correctly."""
    class IntoArena:  # writes into the arena buffer it is given (so the buffer is placed)
        def __call__(self, op, attrs, inputs, outputs):
            torch.neg(inputs[0], out=outputs[0])
            return outputs

    monkeypatch.setattr(program_executor, "MAX_CALL_PLANS", 2)
    p = _program(values=[_v("input", index=0), _v("arena", buffer=0), _v("output")],
                 buffers=[Buffer(1, 1, 0, 1)],
                 steps=[Step("library_call", "neg", [0], [1], provider="mine"),
                        Step("library_call", "neg", [1], [2], provider="torch")],
                 outputs=[2])
    ex = ProgramExecutor(p, {}, providers={"mine": IntoArena(), "torch": TorchProvider()})
    assert ex._placed
    for n in list(range(1, 40)) + [1, 2]:
        (o,) = ex.run([torch.arange(float(n))])
        assert torch.equal(o, torch.arange(float(n)))
        assert len(ex._plans) <= 8 and len(ex._call_plans) <= 2
