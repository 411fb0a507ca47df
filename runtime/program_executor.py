"""Runs a ``Program`` (``runtime/program.py``) in Python: the reference for the C++ executor.

It imports nothing from the compiler, codegen, the dialects or xDSL: only torch, the Program
format, the shape-program evaluator (``runtime/shape_eval.py``, native when built) and the
providers. ``tests/unit/test_program.py`` checks that rule.

Per call:

1. bind the size symbols from the inputs' dims (``Program.bindings``), evaluate the shape program
   once: every dim, buffer size, grid, launch scalar and variant predicate;
2. check the checks (ranges, guards, int32 row limits) and that every input dim equals its slot;
3. place the arena buffers by first fit over their live ranges (computed at compile time; the
   sizes of this call decide the offsets, cached per distinct size vector) in one allocation;
   program outputs get their own allocations, so a later call never overwrites a result;
   (1-3 are one native call, ``CallPlanner.prepare``, when the C++ core is built)
4. take the *call plan* of these sizes (made on the first call of a size signature, then cached):
   each arena value's place and strides, the outputs' shapes, and every step bound to its sizes
   (view shapes, library attributes, launch scalars, grids and variant rows), so the per-call
   work is one pass over prepared step functions;
5. run the steps: views, ``library_call`` through the provider registry (one calling convention:
   ``provider(op, attrs, inputs, outputs)``; a provider that allocates its own results, like the
   torch provider, gets ``None`` outputs and its values are not placed in the arena),
   ``fallback_call`` into ``torch.ops``, and ``launch`` of generated kernels, the variant picked
   from the step's table.

Generated kernels run on CUDA tensors as cubins through the C++ runtime's driver launcher
(``runtime/cpp/cuda_driver.h``: the Program must hold cubins for the GPU, see
``blade.artifact.save(..., target=...)``), and on CPU tensors under Triton's interpreter
(``TRITON_INTERPRET=1`` set before triton is imported). On CUDA, with ``native_loop``, a call plan
met a second time is recorded into a C++ step list (``runtime/native_loop.py``): from then on its
launches (and, with the cuBLASLt GEMM provider, its GEMMs) run from C++ and only torch's library
calls and fallbacks remain Python steps. A call lets go of each intermediate after its last reader
(``_last_uses``), so torch-allocated library results are freed within the call; the recording run
does too, keeping of each only what making the loop reads (``native_loop.Shadow``: sizes, strides,
addresses; each launch's spec taken as it runs), and a CUDA graph's warm-up never records
(``no_recording``). What remains of issue 9's host bound: convolutions and attention through torch
(~38 us of host time each on an H200 host), the Python around them, and a library GEMM's own
microseconds inside cuBLASLt: the bound needs them called from the C++ list.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch

from blade.runtime import shape_eval
from blade.runtime.call_args import decode_args
from blade.runtime.cuda_stream import launch_stream
from blade.runtime.host_provider import Provider, ProviderError, module_call, torch_provider
from blade.runtime.kernel_runner import KernelRunner
from blade.runtime.native_loop import NativeLoop, contiguous_strides, let_go, record_step
from blade.runtime.program import Program, Step, StepKind, ValueKind
from blade.runtime.program_errors import ProgramRunError, ProgramShapeError

#: provider name -> implementation; providers share ``Provider``'s calling convention
PROVIDERS: dict[str, Provider] = {"torch": torch_provider}
ARENA_ALIGN = 256
__all__ = ["ARENA_ALIGN", "PROVIDERS", "ProgramExecutor", "ProgramRunError", "ProgramShapeError", "first_fit",
           "module_weights", "register_provider"]


def register_provider(name: str, provider: Provider) -> None:
    PROVIDERS[name] = provider


def first_fit(buffers: Sequence[tuple[int, int, int]], align: int = ARENA_ALIGN) -> tuple[list[int], int]:
    """Offsets for ``(nbytes, first, last)`` buffers: each at the lowest aligned offset that
    overlaps no buffer live at the same time (closed step ranges). Returns (offsets, arena size)."""
    order = sorted(range(len(buffers)), key=lambda i: (buffers[i][1], -buffers[i][0], i))
    offsets = [0] * len(buffers)
    placed: list[int] = []
    total = 0
    for i in order:
        size, first, last = buffers[i]
        if size == 0:
            continue
        busy = sorted((offsets[j], offsets[j] + buffers[j][0]) for j in placed
                      if not (buffers[j][2] < first or last < buffers[j][1]))
        off = 0
        for lo, hi in busy:
            if off + size <= lo:
                break
            off = max(off, -(-hi // align) * align)
        offsets[i] = off
        placed.append(i)
        total = max(total, off + size)
    return offsets, total


def module_weights(program: Program, module: torch.nn.Module) -> Callable[[str], torch.Tensor]:
    """Resolve a Program's weights on the user's module by their export target (never copied)."""
    params = dict(module.named_parameters(remove_duplicate=False))
    buffers = dict(module.named_buffers(remove_duplicate=False))
    table = {}
    for name, ref in program.weights.items():
        src = params if ref["kind"] == "param" else buffers
        if ref["target"] not in src:
            raise KeyError(f"weight '{name}' ({ref['kind']} {ref['target']}) is not in {type(module).__name__}")
        table[name] = src[ref["target"]]
    return table.__getitem__


class ProgramExecutor:
    def __init__(self, program: Program, weights: Callable[[str], torch.Tensor] | Mapping[str, torch.Tensor],
                 providers: Mapping[str, Provider] | None = None, native=None, prepare_weights: bool = False,
                 native_loop: bool = False):
        """``prepare_weights``: keep the results of launches that read only weights across calls
        (``Config.prepare_weights``: an update written through ``param.data`` in place is not seen).
        ``native_loop``: on CUDA, a size signature met a second time gets a C++ step loop
        (``runtime/native_loop.py``; ``native_stats`` counts its calls and says what it holds)."""
        self.program = program
        self.weights = weights.__getitem__ if isinstance(weights, Mapping) else weights
        self.providers = dict(PROVIDERS if providers is None else providers)
        self.native = shape_eval.load_native() if native is None else native  # False: Python only
        self.native_loop = native_loop
        self.native_stats: dict[str, Any] = {"calls": 0, "declined": 0, "finished_in_python": 0, "note": ""}
        self._plans: dict[tuple[int, ...], tuple[list[int], int]] = {}
        self._constants: dict[tuple[int, torch.device], torch.Tensor] = {}
        self._kernels: dict[str, KernelRunner] = {}
        self._sms: dict[torch.device, int] = {}
        self._planner = None  # the native CallPlanner, made on first use when the core is built
        p = program
        self._dtypes = [getattr(torch, v.dtype) for v in p.values]
        #: values a provider allocates itself (``allocates``: library results used as computed, see
        #: ``runtime/host_provider.py``); their buffers are left out of the arena
        self._provided = {o for st in p.steps if st.kind == StepKind.LIBRARY_CALL.value
                          and _provider_says(self.providers.get(st.provider), "allocates", st.op) for o in st.outputs}
        #: launches that read only weights (the casts of a float32 model compiled in float16):
        #: run once into tensors kept across calls (``_prepared_launch``), not on every call
        self._prepared_steps = {i for i, st in enumerate(p.steps) if prepare_weights
                                and st.kind == StepKind.LAUNCH.value and st.inputs and not st.attrs.get("scratch")
                                and all(p.values[v].kind == ValueKind.WEIGHT.value for v in st.inputs)
                                and all(p.values[o].kind == ValueKind.ARENA.value for o in st.outputs)}
        self._provided |= {o for i in self._prepared_steps for o in p.steps[i].outputs}
        #: (step, device) -> [weights, versions, data_ptrs, kept outputs, relaunch]
        self._prepared_outs: dict[tuple[int, torch.device], list] = {}
        #: indices of the buffers placed in the arena (the others' values are provided or kept)
        self._placed = [i for i, b in enumerate(p.buffers) if b.value not in self._provided]
        #: values whose memory is the call's arena (placed values and views of them): a provided
        #: result aliasing one (a same-dtype cast returns its input) would outlive its buffer
        base: dict[int, int] = {}
        for st in p.steps:
            if st.kind == StepKind.VIEW.value:
                base[st.outputs[0]] = base.get(st.inputs[0], st.inputs[0])
        in_arena = {p.buffers[i].value for i in self._placed}
        self._in_arena = {v for v in range(len(p.values)) if base.get(v, v) in in_arena}
        self._call_plans: dict[tuple, _CallPlan] = {}
        self._call_plans_lock = threading.Lock()
        self._input_values = [i for i, v in enumerate(p.values) if v.kind == ValueKind.INPUT.value]
        #: the last step that reads each value, a view's source living as long as its views; the
        #: values a call lets go after each step (a library result torch allocated is freed as soon
        #: as nothing later reads it: a call's peak is then the live results', not all of them)
        self._last_use, self._drops = _last_uses(p)
        self._weights_env: list[tuple[int, torch.Tensor]] | None = None

    # ------------------------------------------------------------------ sizes
    def evaluate(self, inputs: Sequence[torch.Tensor]) -> list[int]:
        """Every slot's value for these inputs, after checking them."""
        p = self.program
        if len(inputs) != len(p.input_names):
            raise ProgramShapeError(f"expected {len(p.input_names)} inputs ({', '.join(p.input_names)}), "
                                    f"got {len(inputs)}")
        for i, t in enumerate(inputs):
            rank = len(p.values[i].dims)
            if t.dim() != rank:
                raise ProgramShapeError(f"input '{p.input_names[i]}' has shape {tuple(t.shape)}; the Program "
                                        f"expects rank {rank}")
        symbols: list[int | None] = [None] * len(p.symbols)
        for b in p.bindings:
            t = inputs[b["input"]]
            n, k, c = t.shape[b["dim"]], b["coeff"], b.get("offset", 0)
            if (n - c) % k:
                what = f"a multiple of {k}" if c == 0 else f"{c % k} modulo {k}"
                raise ProgramShapeError(f"input '{p.input_names[b['input']]}' dim {b['dim']} is {n}; it must be {what}")
            if symbols[b["symbol"]] is None:
                symbols[b["symbol"]] = (n - c) // k
        if any(s is None for s in symbols):
            missing = [p.symbols[i] for i, s in enumerate(symbols) if s is None]
            raise ProgramShapeError(f"symbols {missing} are not determined by any input dim")
        small = [f"{p.symbols[i]} = {v}" for i, v in enumerate(symbols) if v < 1]
        if small:  # every symbol is a size of 1 or more (the shape program divides by some)
            sizes = ", ".join(f"{n}={tuple(t.shape)}" for n, t in zip(p.input_names, inputs))
            raise ProgramShapeError(f"inputs {sizes} violate: {', '.join(small)}, each must be >= 1 (a size-0 "
                                    "dim needs a program compiled for it)")
        device = next((t.device for t in inputs), torch.device("cpu"))
        slots = shape_eval.run(p.shape_code, symbols + [self._device_symbol(n, device) for n in p.device_symbols],
                               self.native or False)
        failed = [c["message"] for c in p.checks if not slots[c["slot"]]]
        if failed:
            sizes = ", ".join(f"{n}={tuple(t.shape)}" for n, t in zip(p.input_names, inputs))
            raise ProgramShapeError(f"inputs {sizes} violate: " + "; ".join(failed))
        for i, t in enumerate(inputs):
            v = p.values[i]
            want = tuple(slots[d] for d in v.dims)
            if tuple(t.shape) != want:
                raise ProgramShapeError(f"input '{p.input_names[i]}' has shape {tuple(t.shape)}; with "
                                        f"{dict(zip(p.symbols, symbols))} the Program expects {want}")
        return slots

    def _device_symbol(self, name: str, device: torch.device) -> int:
        if name == "sm_count":  # the CPU interpreter stands in for a small GPU (as launch.py does)
            if device.type != "cuda":
                return 4
            if device not in self._sms:
                self._sms[device] = torch.cuda.get_device_properties(device).multi_processor_count
            return self._sms[device]
        raise ProgramRunError(f"unknown device symbol {name!r} (this executor knows sm_count)")

    def arena_plan(self, slots: list[int]) -> tuple[list[int], int]:
        """First-fit offsets of the placed buffers (``self._placed`` order) and the arena's size."""
        placed = [self.program.buffers[i] for i in self._placed]
        sizes = tuple(slots[b.nbytes] for b in placed)
        plan = self._plans.get(sizes)
        if plan is None:
            bufs = [(n, b.first, b.last) for n, b in zip(sizes, placed)]
            if self.native and hasattr(self.native, "first_fit"):  # the C++ core, same plan
                offsets, total = self.native.first_fit(bufs, ARENA_ALIGN)
                plan = (list(offsets), total)
            else:
                plan = first_fit(bufs)
            with self._call_plans_lock:  # bounded as the call plans are (a run over ever new sizes)
                while len(self._plans) >= 4 * MAX_CALL_PLANS:
                    self._plans.pop(next(iter(self._plans)))
                self._plans[sizes] = plan
        return plan

    def prepare(self, inputs: Sequence[torch.Tensor], device: torch.device) -> tuple[list[int], list[int], int]:
        """(slots, arena offsets, arena bytes) of a call: in one native call when the C++ core is
        built (``CallPlanner``), else in Python. The native path reports only where a call fails;
        the Python checks then say why."""
        p = self.program
        if self._planner is None and self.native and hasattr(self.native, "CallPlanner"):
            inputs_dims = [v.dims for v in sorted((v for v in p.values if v.kind == ValueKind.INPUT.value),
                                                  key=lambda v: v.index)]
            self._planner = self.native.CallPlanner(
                len(p.symbols), [(b["symbol"], b["input"], b["dim"], b["coeff"], b.get("offset", 0))
                                 for b in p.bindings],
                p.shape_code, [c["slot"] for c in p.checks], inputs_dims,
                [p.buffers[i].nbytes for i in self._placed],
                [(p.buffers[i].first, p.buffers[i].last) for i in self._placed], ARENA_ALIGN)
        if self._planner is not None:
            r = self._planner.prepare([list(t.shape) for t in inputs],
                                      [self._device_symbol(n, device) for n in p.device_symbols])
            if r.ok:
                return list(r.slots), list(r.offsets), r.total
            self.evaluate(inputs)  # raises naming the input, dim or check
            raise ProgramRunError(f"the native call planner refused inputs {[tuple(t.shape) for t in inputs]} that "
                                  "the Python checks accept (a bug: please report it)")
        slots = self.evaluate(inputs)
        return (slots, *self.arena_plan(slots))

    # ------------------------------------------------------------------ call
    def run(self, inputs: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """One call: sizes and checks (``prepare``), then the call plan of these sizes (made on the
        first call of a size signature and cached: every view shape, library attribute, arena
        placement and launch choice resolved), then the steps."""
        # an inference program: no autograd graph, in grad mode too (the torch provider writes
        # into planned arena views: recording those copies would fail on views of one arena)
        with module_call(), torch.no_grad():  # module_call: the library ops' first-call tuning counts module calls
            return self._run(inputs)

    def trace(self, inputs: Sequence[torch.Tensor]) -> tuple[_CallPlan, list[Any], torch.Tensor | None]:
        """One call in the Python step loop, for inspection: (its call plan, every value of the
        call by Program value index, the arena). Tests relocate a C++ step list with it."""
        with module_call(), torch.no_grad():
            return self._run(inputs, trace=True)

    def _run(self, inputs: Sequence[torch.Tensor], trace: bool = False):
        p = self.program
        device = next((t.device for t in inputs), torch.device("cpu"))
        slots, offsets, total = self.prepare(inputs, device)
        key = (device, tuple(slots))
        plan = self._call_plans.get(key)
        if plan is None:
            plan = _CallPlan(self, slots, offsets, total, device)
            with self._call_plans_lock:  # two threads evicting the same oldest plan: a KeyError
                while len(self._call_plans) >= MAX_CALL_PLANS:
                    self._call_plans.pop(next(iter(self._call_plans)))
                self._call_plans[key] = plan
        env: list[Any] = list(plan.env)
        if device.type == "cuda":  # where the launches go (read once per call, not per launch)
            env[-1] = launch_stream(device)
        for index in self._input_values:
            t = inputs[p.values[index].index]
            dtype = self._dtypes[index]
            env[index] = t if t.dtype == dtype else t.to(dtype)
        loop = None if trace else plan.native
        bases = loop.accepts(env) if loop is not None else None
        if loop is not None and bases is None:
            loop = None
            self.native_stats["declined"] += 1
            self._record_again(plan)
        arena = None
        if plan.arena:
            arena = torch.empty(plan.total, dtype=torch.uint8, device=device)
            typed = {dt: arena.view(dt) for dt in plan.arena_dtypes}
            as_strided = torch.as_strided
            for index, dt, shape, stride, offset in plan.arena if loop is None else loop.arena_views:
                env[index] = as_strided(typed[dt], shape, stride, offset)
        for index, shape, dt in plan.outputs:
            env[index] = torch.empty(shape, dtype=dt, device=device)
        if loop is not None:
            self.native_stats["calls"] += 1
            try:
                loop.run(bases, env, arena, env[-1][0], env[-1][1], _call_step,
                         lambda index: self._finish_in_python(plan, env, arena, loop, index))
            except (ProgramRunError, ProgramShapeError):
                raise
            except Exception as e:  # noqa: BLE001 - a native step's error names its step
                raise ProgramRunError(f"{type(e).__name__}: {e}") from e
            return [env[o] for o in p.outputs]
        record = self._records(plan, device)
        if record:
            plan.python_runs += 1
        # a size signature met again is worth its C++ step list: this run records it, each step's
        # launch spec taken as it runs and each value let go as usual, its Shadow kept instead
        # (so the recording run's peak is a normal run's)
        specs = {} if record and plan.python_runs >= 2 and not trace else None
        drops = self._drops
        for index, (fn, step) in enumerate(plan.steps):
            _call_step(fn, step, index, env)
            if specs is not None:
                record_step(self, plan, specs, index, env)
                let_go(env, drops[index])
            elif not trace:
                for v in drops[index]:
                    env[v] = None
        if trace:
            return plan, env, arena
        if specs is not None:
            self._make_native_loop(plan, env, arena, specs)
        return [env[o] for o in p.outputs]

    def _records(self, plan: _CallPlan, device: torch.device) -> bool:
        """Whether this Python run of ``plan`` counts towards its C++ step loop (the second such
        run records it): on CUDA, once, never inside a CUDA-graph capture nor its warm-up
        (``no_recording``)."""
        return (self.native_loop and device.type == "cuda" and not plan.native_tried
                and not getattr(_NO_RECORDING, "on", False) and not torch.cuda.is_current_stream_capturing())

    def _make_native_loop(self, plan: _CallPlan, env: list[Any], arena: torch.Tensor | None,
                          specs: dict[int, Any] | None = None) -> None:
        plan.native_tried = True
        plan.recordings += 1
        native = self.native or None
        if native is None or not hasattr(native, "StepList"):
            self.native_stats["note"] = "the C++ runtime (runtime/_native*.so) with StepList is not built"
            return
        try:
            plan.native = NativeLoop(self, plan, env, arena, native, specs=specs)
            self.native_stats["note"] = plan.native.describe()
        except Exception as e:  # noqa: BLE001 - the call itself succeeded: the plan stays in Python
            # (NativeLoopError, or what the C++ list or cuBLASLt's planning refuse: said in the note)
            self.native_stats["note"] = f"a call plan stays in Python: {type(e).__name__}: {e}"

    def _record_again(self, plan: _CallPlan) -> None:
        """The recorded run's strides did not come back (a library that picks another layout once
        tuned, weights re-laid-out in place): the plan's next Python run (for a declined call, this
        call's own) records the loop again, up to ``MAX_NATIVE_RECORDINGS`` times; after that, calls
        that do not match the last recording run in Python."""
        if plan.native is not None and plan.recordings < MAX_NATIVE_RECORDINGS:
            plan.native, plan.native_tried, plan.python_runs = None, False, 1
            self.native_stats["recorded_again"] = self.native_stats.get("recorded_again", 0) + 1

    def _finish_in_python(self, plan: _CallPlan, env: list[Any], arena: torch.Tensor | None, loop,
                          index: int | None) -> None:
        """The rest of a native call in Python, after step ``index`` (``NativeLoop.run``): every
        arena value and view before it made, then every later step's Python function. ``index``
        None: a weight moved since the call whose addresses the loop's deferred checks assumed
        (``NativeLoop.accepts``): the whole call runs in Python (what the C++ list ran of it is
        computed again; the list stays: the next call takes the new addresses)."""
        if index is None:
            self.native_stats["weights_moved"] = self.native_stats.get("weights_moved", 0) + 1
            self._run_all_in_python(plan, env, arena)
            return
        self.native_stats["finished_in_python"] += 1
        self._record_again(plan)
        if arena is not None:
            typed = {dt: arena.view(dt) for dt in plan.arena_dtypes}
            for i, dt, shape, stride, offset in plan.arena:
                if env[i] is None:
                    env[i] = torch.as_strided(typed[dt], shape, stride, offset)
        ran = {op[3] for op in loop.ops if op[0] == "python"}
        for i, (fn, step) in enumerate(plan.steps[:index]):  # the views a later step reads
            if step.kind == StepKind.VIEW.value and i not in ran and self._last_use.get(step.outputs[0], -1) > index:
                _call_step(fn, step, i, env)
        for i in range(index + 1, len(plan.steps)):
            fn, step = plan.steps[i]
            _call_step(fn, step, i, env)
            for v in self._drops[i]:
                env[v] = None

    def _run_all_in_python(self, plan: _CallPlan, env: list[Any], arena: torch.Tensor | None) -> None:
        """Every step of the call in Python, into the call's arena and outputs (``env`` holds its
        inputs, weights, constants and outputs; anything else in it is made again)."""
        if arena is not None:
            typed = {dt: arena.view(dt) for dt in plan.arena_dtypes}
            for i, dt, shape, stride, offset in plan.arena:
                env[i] = torch.as_strided(typed[dt], shape, stride, offset)
        for i, (fn, step) in enumerate(plan.steps):
            _call_step(fn, step, i, env)
            for v in self._drops[i]:
                env[v] = None

    def _weights_and_constants(self, device: torch.device, slots: list[int]) -> list[tuple[int, torch.Tensor]]:
        """(value, tensor) of the weights (the user's objects, resolved once: their contents are
        read at each call, so in-place updates are seen) and the constants on ``device``."""
        if self._weights_env is None:
            self._weights_env = [(i, self.weights(v.name)) for i, v in enumerate(self.program.values)
                                 if v.kind == ValueKind.WEIGHT.value]
        constants = [(i, self._constant(i, tuple(slots[d] for d in v.dims), self._dtypes[i], device))
                     for i, v in enumerate(self.program.values) if v.kind == ValueKind.CONSTANT.value]
        return self._weights_env + constants

    def _constant(self, i: int, shape, dtype, device) -> torch.Tensor:
        key = (i, device)
        if key not in self._constants:
            raw = bytearray(self.program.blobs[self.program.values[i].blob])
            t = torch.frombuffer(raw, dtype=torch.uint8) if raw else torch.empty(0, dtype=torch.uint8)
            self._constants[key] = t.view(dtype).reshape(shape).to(device)
        return self._constants[key]

    def _bind(self, step: Step, slots: list[int], index: int = -1) -> Callable[[list], None]:
        """The step as a function of the call's values, with everything the sizes decide resolved."""
        ins, outs = step.inputs, step.outputs
        if index in self._prepared_steps:
            return self._prepared_launch(index, step, slots)
        if step.kind == StepKind.VIEW.value:
            return self._bind_view(step, slots)
        if step.kind == StepKind.LIBRARY_CALL.value:
            provider = self.providers.get(step.provider)
            if provider is None:
                raise ProgramRunError(f"no provider '{step.provider}' registered for {step.op} "
                                      f"(registered: {sorted(self.providers)})")
            op, attrs = step.op, _resolve(step.attrs, slots)
            if outs and outs[0] in self._provided:
                # a result that may alias one of the arguments must not when the caller keeps it
                # (an output) or when that argument's arena buffer dies here and is reused later
                reads_arena = any(i in self._in_arena for i in ins)
                fresh = _provider_says(provider, "fresh_results", op)  # never an argument's memory: nothing to check
                checks = [(o, tuple(slots[d] for d in self.program.values[o].dims), self._dtypes[o],
                           not fresh and (reads_arena or self.program.values[o].kind == ValueKind.OUTPUT.value))
                          for o in outs]

                def library_allocating(env):
                    args = [env[i] for i in ins]
                    results = provider(op, attrs, args, [None] * len(checks))
                    if results is None or len(results) != len(checks):
                        raise ProviderError(f"provider '{step.provider}' {op} allocates its results but returned "
                                            f"{'none' if results is None else len(results)}; the Program "
                                            f"expects {len(checks)}")
                    for (o, shape, dtype, unaliased), r in zip(checks, results):
                        if r.shape != shape:
                            raise ProviderError(f"provider '{step.provider}' {op}: computed shape {tuple(r.shape)}, "
                                                f"the Program planned {shape}")
                        if r.dtype != dtype:
                            r = r.to(dtype)
                        elif unaliased and _aliases_any(r, args):
                            r = r.clone()  # never an input's memory kept past the input's life
                        env[o] = r
                return library_allocating
            return lambda env: provider(op, attrs, [env[i] for i in ins], [env[o] for o in outs])
        if step.kind == StepKind.FALLBACK_CALL.value:
            return lambda env: _fallback(step, [env[i] for i in ins], [env[o] for o in outs], slots)
        if step.kind == StepKind.LAUNCH.value:
            runner = self._kernels.get(step.op)
            if runner is None:
                runner = self._kernels[step.op] = KernelRunner(step.op, self.program)
            return runner.bind(step, slots)
        raise ProgramRunError(f"unknown step kind {step.kind!r}")

    def _prepared_launch(self, index: int, step: Step, slots: list[int]) -> Callable[[list], None]:
        """A launch that reads only weights, run once per device into tensors kept across calls
        and again, in place, when a weight changes (its version or storage): ``refresh`` does the
        same before a CUDA graph replay, which runs no Python. For an SD 1.5 UNet compiled in
        float16 from float32 weights that is 686 cast launches (5 GB of memory traffic) per call
        saved. The kept tensors are offered to the providers as stable (``mark_stable``), so the
        torch provider keeps one channels-last copy of a cast convolution weight."""
        runner = self._kernels.get(step.op)
        if runner is None:
            runner = self._kernels[step.op] = KernelRunner(step.op, self.program)
        launch = runner.bind(step, slots)
        shapes = [(o, tuple(slots[d] for d in self.program.values[o].dims), self._dtypes[o]) for o in step.outputs]
        size = len(self.program.values) + 1

        def relaunch(weights, kept):
            env = [None] * size
            for i, w in zip(step.inputs, weights):
                env[i] = w
            for (o, _, _), t in zip(shapes, kept):
                env[o] = t
            device = kept[0].device if kept else torch.device("cpu")
            if device.type == "cuda":
                env[-1] = launch_stream(device)
            launch(env)

        def prepared(env):
            weights = [env[i] for i in step.inputs]
            device = weights[0].device
            entry = self._prepared_outs.get((index, device))
            if entry is None or any(a is not b for a, b in zip(entry[0], weights)):
                kept = [torch.empty(shape, dtype=dtype, device=device) for _, shape, dtype in shapes]
                relaunch(weights, kept)
                entry = self._prepared_outs[(index, device)] = [
                    weights, [w._version for w in weights], [w.data_ptr() for w in weights], kept, relaunch]
                for provider in self.providers.values():
                    mark = getattr(provider, "mark_stable", None)
                    if mark is not None:
                        for t in kept:
                            mark(t)
            elif entry[1] != [w._version for w in weights] or entry[2] != [w.data_ptr() for w in weights]:
                _refresh_prepared(entry)
            for (o, _, _), t in zip(shapes, entry[3]):
                env[o] = t
        return prepared

    def refresh(self) -> None:
        """Relaunch, in place, the kept weight-only launches whose weights changed (before a CUDA
        graph replay)."""
        for entry in list(self._prepared_outs.values()):
            if entry[1] != [w._version for w in entry[0]] or entry[2] != [w.data_ptr() for w in entry[0]]:
                _refresh_prepared(entry)

    def _bind_view(self, step: Step, slots: list[int]) -> Callable[[list], None]:
        a, src, dst = step.attrs, step.inputs[0], step.outputs[0]
        shape = tuple(slots[d] for d in self.program.values[dst].dims)
        if step.op == "permute":
            perm = tuple(a["perm"])

            def view(env):
                env[dst] = env[src].permute(perm)
        elif step.op == "reshape":
            def view(env):  # may copy a non-viewable input (the C++ executor will need a step)
                env[dst] = env[src].reshape(shape)
        elif step.op == "expand":
            def view(env):
                env[dst] = env[src].expand(shape)
        elif step.op == "slice":
            d = a["dim"] % len(shape)
            start, st, n = slots[a["start"][0]["slot"]], a["step"], shape[d]
            stop = start + (n - 1) * st + 1 if n else start
            slice_op = torch.ops.aten.slice.Tensor

            def view(env):
                env[dst] = slice_op(env[src], d, start, stop, st)
        else:
            raise ProgramRunError(f"unknown view {step.op!r}")
        return view


#: set while a CUDA graph's warm-up run calls the executor (``no_recording``)
_NO_RECORDING = threading.local()


@contextlib.contextmanager
def no_recording():
    """Calls made inside neither record a C++ step loop nor count towards one: a CUDA graph's
    warm-up run (the size's second call, captured right after and replayed from then on, so a loop
    recorded there would rarely run, while a recording run keeps every intermediate until its end:
    1 GiB above the call's own peak for the SD 1.5 UNet at 2x512). The graph then holds the Python
    loop's launches, the same kernels with the same arguments."""
    saved = getattr(_NO_RECORDING, "on", False)
    _NO_RECORDING.on = True
    try:
        yield
    finally:
        _NO_RECORDING.on = saved


#: call plans kept per executor (one per distinct size signature, oldest dropped first)
MAX_CALL_PLANS = 64
#: times a call plan's C++ step list is recorded (again after strides changed; then Python)
MAX_NATIVE_RECORDINGS = 3


class _CallPlan:
    """What a call of one size signature needs, resolved once: the arena's size and the place,
    shape and strides of each arena value, the output allocations, the weights and constants, and
    each step bound to its sizes (``ProgramExecutor._bind``)."""

    def __init__(self, ex: ProgramExecutor, slots: list[int], offsets: list[int], total: int,
                 device: torch.device):
        p = ex.program
        self.total = -(-total // ARENA_ALIGN) * ARENA_ALIGN  # every dtype view of the arena fits
        offset_of = {p.buffers[b].value: off for b, off in zip(ex._placed, offsets)}
        self.env: list[Any] = [None] * (len(p.values) + 1)  # + the call's (stream, device index)
        for index, t in ex._weights_and_constants(device, slots):
            self.env[index] = t
        self.arena: list[tuple[int, torch.dtype, tuple, tuple, int]] = []
        self.outputs: list[tuple[int, tuple, torch.dtype]] = []
        for i, v in enumerate(p.values):
            shape = tuple(slots[d] for d in v.dims)
            if i in ex._provided:
                continue
            if v.kind == ValueKind.ARENA.value:
                dtype = ex._dtypes[i]
                item = torch.empty((), dtype=dtype).element_size()
                self.arena.append((i, dtype, shape, contiguous_strides(shape), offset_of[i] // item))
            elif v.kind == ValueKind.OUTPUT.value:
                self.outputs.append((i, shape, ex._dtypes[i]))
        self.arena_dtypes = sorted({dt for _, dt, _, _, _ in self.arena}, key=str)
        self.steps = [(ex._bind(step, slots, index), step) for index, step in enumerate(p.steps)]
        self.native = None          # the C++ step loop of this plan (``runtime/native_loop.py``)
        self.native_tried = False
        self.python_runs = 0
        self.recordings = 0


def _last_uses(p: Program) -> tuple[dict[int, int], list[list[int]]]:
    """(value -> the last step that reads or writes it, per step the values to let go after it).
    A view's source lives as long as the view (read backwards, chains of views too); inputs,
    weights, constants, outputs and the Program's results are never let go."""
    last: dict[int, int] = {}
    for i, st in enumerate(p.steps):
        scratch = st.attrs.get("scratch", []) if st.kind == StepKind.LAUNCH.value else []
        for v in [*st.inputs, *st.outputs, *scratch]:
            last[v] = i
    for st in reversed(p.steps):
        if st.kind == StepKind.VIEW.value:
            src, out = st.inputs[0], st.outputs[0]
            last[src] = max(last.get(src, -1), last.get(out, -1))
    kept = {i for i, v in enumerate(p.values) if v.kind in (ValueKind.INPUT.value, ValueKind.WEIGHT.value,
                                                            ValueKind.CONSTANT.value, ValueKind.OUTPUT.value)}
    kept |= set(p.outputs)
    drops: list[list[int]] = [[] for _ in p.steps]
    for v, i in last.items():
        if v not in kept:
            drops[i].append(v)
    return last, drops


def _call_step(fn, step: Step, index: int, env: list[Any]) -> None:
    """Run one step's function, naming the step and its input shapes in an error."""
    try:
        fn(env)
    except (ProgramRunError, ProgramShapeError):
        raise
    except Exception as e:  # noqa: BLE001 - re-raised naming the step and its shapes
        shapes = [tuple(env[v].shape) if isinstance(env[v], torch.Tensor) else None for v in step.inputs]
        raise ProgramRunError(f"step {index} ({step.kind} {step.op}) failed on inputs {shapes}: "
                              f"{type(e).__name__}: {e}") from e


def _refresh_prepared(entry: list) -> None:
    weights, _, _, kept, relaunch = entry
    relaunch(weights, kept)  # writes the kept tensors in place (a graph reads their addresses)
    for t in kept:  # the launch wrote through pointers, unseen by torch: copies made of them
        torch.autograd.graph.increment_version(t)  # (channels-last) see the change by the version
    entry[1], entry[2] = [w._version for w in weights], [w.data_ptr() for w in weights]


def _provider_says(provider, question: str, op: str) -> bool:
    """A provider's optional answer about ``op`` (``allocates``, ``fresh_results``); False if it
    has no such method."""
    fn = getattr(provider, question, None)
    return bool(fn(op)) if callable(fn) else False


def _aliases_any(r: torch.Tensor, tensors: list[torch.Tensor]) -> bool:
    ptr = r.untyped_storage().data_ptr()
    return any(isinstance(x, torch.Tensor) and x.untyped_storage().data_ptr() == ptr for x in tensors)


def _resolve(a: Any, slots: list[int]) -> Any:
    if isinstance(a, list):
        return [_resolve(x, slots) for x in a]
    if isinstance(a, dict):
        if set(a) == {"slot"}:
            return slots[a["slot"]]
        return {k: _resolve(v, slots) for k, v in a.items()}
    return a


def _fallback(step, ins, outs, slots) -> None:
    device = outs[0].device if outs else torch.device("cpu")
    leaves = {"t": lambda i: ins[i], "slot": lambda i: slots[i], "device": lambda _: device}
    fn: Any = torch.ops
    for part in step.op.split("."):
        fn = getattr(fn, part)
    args, kwargs = decode_args(step.attrs["call"], leaves)
    result = fn(*args, **kwargs)
    results = list(result) if isinstance(result, (list, tuple)) else [result]
    for o, r in zip(outs, results):
        o.copy_(r)
