"""The C++ step loop of one call plan (issue 9, item 3): generated-kernel launches run by the
native runtime, Python only for the steps that need it.

``ProgramExecutor`` runs a call plan (the steps of one size signature, ``_CallPlan``) in Python
the first time; from the data of that run this module makes a ``NativeLoop``:

* every step that is one plain cubin launch (``KernelRunner``'s ``native_spec``) goes into a C++
  ``StepList`` (``runtime/cpp/step_list.h``) with its kernel, grid, scalars and, per pointer
  argument, a *base* and a byte offset: base 0 is the call's arena; the other bases are the roots
  the pointers lead to: an input, a weight, a constant, an output (their addresses are read at the
  start of each call), or a result a Python step makes (a library call's own allocation, a kept
  weight-only launch, a ``reshape`` that had to copy: read after that step);
* views cost nothing: a view's pointer is its root's plus the offset seen in the recorded run; a
  view that a Python step or the caller reads is made at the call's start by one ``as_strided`` of
  its arena (the call's arena or the GEMM results') when it is one, else by its view steps (in
  Python);
* the remaining steps (library calls through torch, fallbacks, GroupNorm's two-launch schedule,
  launches whose input must be copied to make its rows collapse) run as before, in order, between
  ranges of native steps on the same stream.

What the recorded run decided from strides and alignment (row addressing, the aligned variant)
holds for a later call only where the same strides and addresses modulo 16 come back: the inputs'
and weights' are compared at the start of a call (a mismatch runs that call in Python), a Python
step's results right after it (a mismatch finishes that call in Python: every view made, every
later step through its Python function). The weights' addresses are compared in groups (``accepts``): those the first entries read
before the first entry runs, the others just before the first entry that reads them, while the GPU
computes the entries before it (the ~700 weights of an SD 1.5 UNet cost ~230 us of host time
before a graphs-off call's first entry otherwise); a weight that moved stops the entries there and
the call runs in Python. So the loop is never the reason for a different answer:
it runs the same kernels with the same arguments as the Python loop (``tests/kernels/test_native_loop.py``
checks the relocated arguments on a CPU; ``tests/gpu/test_gpu_native_loop.py`` the outputs).

Library GEMMs and convolutions: where the provider computes ``linear`` / ``matmul`` with cuBLASLt
(``TorchProvider(gemm_library="cublaslt")``) or convolutions with cuDNN
(``TorchProvider(conv_library="cudnn")``), the list runs them too, as the same prepared plans,
writing into the loop's own arena for library results (one allocation per call; first fit over
each result's live steps); likewise attention computed with cuDNN's fused attention
(``TorchProvider(attention_library="cudnn")``). A ``concat`` whose inputs and result are rows in memory (the inputs'
dims outside the concatenated one of one pitch, the rest packed: a channels-last concatenation
over channels, any concatenation of packed tensors) is one device-to-device copy of rows per
input into its slice of the result (``cuMemcpy2DAsync``), in that arena too. The other library
ops stay Python steps through torch (each costs 15-50 us of host time there).
"""

from __future__ import annotations

from typing import Any

import torch

from blade.runtime import weight_checks
from blade.runtime.program import StepKind, ValueKind
from blade.runtime.weight_checks import Bases, check_groups, pick, with_deferred_checks

#: the largest pitch (bytes) of the driver's 2-D copies (CU_DEVICE_ATTRIBUTE_MAX_PITCH on current GPUs)
MAX_PITCH = 2**31 - 1
#: Program value kinds whose tensors exist before the first step (read at the start of a call)
_STATIC_KINDS = (ValueKind.INPUT.value, ValueKind.WEIGHT.value, ValueKind.CONSTANT.value, ValueKind.OUTPUT.value)


class NativeLoopError(RuntimeError):
    """A call plan cannot be run by the native loop (said once; the plan stays in Python)."""


class Shadow:
    """What making a ``NativeLoop`` reads of a tensor the recording run has let go: its sizes,
    strides, dtype, device, address and its storage's address (the memory itself is freed, so the
    recording run's peak is a normal run's). Two shadows' storage addresses are compared only for a
    view and its source, which were alive together (a view's source lives as long as the view)."""

    __slots__ = ("shape", "dtype", "device", "is_cuda", "_stride", "_ptr", "_storage", "_numel", "_size",
                 "_contiguous")

    def __init__(self, t, shape=None, stride=None):
        """The shadow of ``t`` (a tensor or a shadow); ``shape``/``stride``: of a view of it at the
        same address instead (a 1x1 convolution's weight read as a matrix)."""
        self.shape = torch.Size(t.shape if shape is None else shape)
        self._stride = tuple(t.stride() if stride is None else stride)
        self.dtype, self.device, self.is_cuda = t.dtype, t.device, t.is_cuda
        self._ptr, self._storage, self._size = t.data_ptr(), _storage_ptr(t), t.element_size()
        self._numel = self.shape.numel()
        self._contiguous = t.is_contiguous() if shape is None else _contiguous(self.shape, self._stride)

    def stride(self, dim: int | None = None):
        return self._stride if dim is None else self._stride[dim]

    def data_ptr(self) -> int:
        return self._ptr

    def numel(self) -> int:
        return self._numel

    def element_size(self) -> int:
        return self._size

    def dim(self) -> int:
        return len(self.shape)

    def is_contiguous(self) -> bool:
        return self._contiguous


def record_step(ex, plan, specs: dict[int, Any], index: int, env: list[Any], with_kernels: bool = True) -> None:
    """During a recording run (``ProgramExecutor``), right after step ``index`` ran: what the C++
    list needs of it that only its tensors tell (a launch's ``native_spec``: row addressing and
    variants are decided from the actual strides and alignment), kept in ``specs`` while the
    tensors may then be let go. An error is kept too (raised when the loop is made: the call
    itself goes on)."""
    fn, step = plan.steps[index]
    spec_of = getattr(fn, "native_spec", None)
    if step.kind == StepKind.LAUNCH.value and index not in ex._prepared_steps and spec_of is not None:
        try:
            specs[index] = spec_of(env, with_kernels)
        except Exception as e:  # noqa: BLE001 - said when the loop is made, not by this call
            specs[index] = e


def let_go(env: list[Any], values: list[int]) -> None:
    """A recording run's drop: each tensor replaced by its ``Shadow`` (its memory freed)."""
    for v in values:
        t = env[v]
        env[v] = Shadow(t) if isinstance(t, torch.Tensor) else None


class NativeLoop:
    def __init__(self, ex, plan, env: list[Any], arena: torch.Tensor | None, native, with_kernels: bool = True,
                 specs: dict[int, Any] | None = None):
        """``env``: every value of a finished Python run of ``plan`` (``arena``: its arena), as
        tensors or, for those the run let go, their ``Shadow``; ``specs``: the launches'
        ``native_spec`` taken during that run (``record_step``), else computed here from ``env``
        (which then holds every tensor)."""
        p = ex.program
        self.list = native.StepList()
        arena_values = {entry[0] for entry in plan.arena}
        view_source = {st.outputs[0]: st.inputs[0] for st in p.steps if st.kind == StepKind.VIEW.value}
        producer = {o: i for i, st in enumerate(p.steps) for o in st.outputs}

        # which steps the C++ list runs
        recorded, specs = specs, {}
        for i, (fn, step) in enumerate(plan.steps):
            spec_of = getattr(fn, "native_spec", None)
            if step.kind == StepKind.LAUNCH.value and i not in ex._prepared_steps and spec_of is not None:
                spec = spec_of(env, with_kernels) if recorded is None else recorded.get(i)
                if isinstance(spec, Exception):
                    raise spec
                if spec is not None:
                    specs[i] = spec

        # which library GEMMs the C++ list runs (cuBLASLt, into the loop's own arena: ``_gemms``)
        gemms, self._gemm_arena = _gemms(ex, plan, env)
        gemm_base = 1 if gemms else None  # base 1: the GEMM results' arena; base 2: the workspace

        # where each pointer leads: (base, byte offset)
        self._bases: dict[Any, int] = {}             # root value (or a getter's key) -> base
        self.static: list[tuple[int, int]] = []      # (base, value) read at a call's start
        #: (base, value, strides, address mod 16) of the weights and constants, and of the inputs
        self._static_checks: list[tuple[int, int, tuple, int]] = []
        self._input_checks: list[tuple[int, int, tuple, int]] = []
        self._checks = None  # what ``accepts`` compares, made on its first call (_prepare_checks)
        first_entry: list[int] = []  # per static check: the first C++ list entry that reads it
        #: (addresses of the static values, their bases) in the last accepted call: one object, so
        #: a thread reads a pair another thread wrote together
        self._seen: tuple[list[int], list[int]] | None = None
        self._outputs: list[tuple[int, int]] = []    # (base, value) of the call's fresh outputs
        produced: dict[int, list[tuple[int, int, tuple, int]]] = {}  # step -> [(value, base, strides, modulo 16)]
        forced_views: set[int] = set()               # view steps that copied: they run, in Python
        located: dict[int, tuple[int, int]] = {}

        first_base = 3 if gemms else 1  # base 0 is the arena

        def root_base(r: int) -> int:
            b = self._bases.get(r)
            if b is None:
                b = self._bases[r] = len(self._bases) + first_base
                t = env[r]
                entry = (tuple(t.stride()), t.data_ptr() % 16)  # the address modulo 16 must come back
                if p.values[r].kind in _STATIC_KINDS and r not in ex._provided:
                    self.static.append((b, r))
                    if p.values[r].kind == ValueKind.INPUT.value:
                        self._input_checks.append((b, r, *entry))
                    elif p.values[r].kind != ValueKind.OUTPUT.value:
                        self._static_checks.append((b, r, *entry))
                        first_entry.append(len(self._list_steps))  # the entry being made reads it first
                    else:  # fresh each call: nothing to compare
                        self._outputs.append((b, r))
                elif r in producer:
                    produced.setdefault(producer[r], []).append((r, b, *entry))
                    if p.steps[producer[r]].kind == StepKind.VIEW.value:
                        forced_views.add(producer[r])
                else:
                    raise NativeLoopError(f"value %{r} ({p.values[r].kind}) has no step that makes it")
            return b

        def locate(v: int) -> tuple[int, int]:
            if v in located:
                return located[v]
            t = env[v]
            if not _is_tensor(t):
                raise NativeLoopError(f"value %{v} has no tensor in the recorded run")
            r = v
            while r in view_source:
                r = view_source[r]
            if r in arena_values and arena is not None and _same_storage(t, arena):
                where = (0, t.data_ptr() - arena.data_ptr())
            elif r in self._gemm_arena.offsets and _same_storage(t, env[r]):  # a GEMM's result, or a view of it
                where = (gemm_base, self._gemm_arena.offsets[r] + t.data_ptr() - env[r].data_ptr())
            elif r != v and r not in arena_values and _same_storage(t, env[r]):
                where = (root_base(r), t.data_ptr() - env[r].data_ptr())
            else:  # a root, or a view that copied (reshape of a non-viewable tensor)
                where = (root_base(v), 0)
            located[v] = where
            return where

        # the C++ list and the order of the call's work
        self.ops: list[tuple] = []  # ("native", begin, end) | ("python", fn, step, index, produced, let_go)
        self.getters: list[tuple[int, Any]] = []  # (base, tensor getter) read at a call's start
        getter_bases: dict[int, int] = {}           # id(getter) -> base
        self._list_steps: list[int] = []            # the step of each entry of the C++ list
        for i in sorted(set(specs) | set(gemms)):
            if i in gemms and gemms[i][0] == "copy":
                _, copies, o = gemms[i]
                dst_base, dst_off = locate(o)
                for v, offset, dst_pitch, src_pitch, width, rows in copies:
                    src_base, src_off = locate(v)
                    self.list.add_copy([dst_base, src_base], [dst_off + offset, src_off], dst_pitch, src_pitch, width,
                                       rows, f"step {i} (library_call {p.steps[i].provider}.concat)")
                    self._list_steps.append(i)
                continue
            if i in gemms:
                kind, lib, plan_id, operands = gemms[i]
                where = [locate(v) if v is not None else (-1, 0) for v in operands[:4]]
                label = f"step {i} (library_call {p.steps[i].provider}.{p.steps[i].op})"
                if kind == "gemm":
                    where.append((2, 0))
                    self.list.add_gemm(lib, plan_id, [b for b, _ in where], [off for _, off in where], label)
                else:  # a convolution or an attention: the shared workspace region, where one is needed
                    ws = self._gemm_arena.conv_workspace
                    where.append((gemm_base, ws) if ws is not None else (-1, 0))
                    add = self.list.add_conv if kind == "conv" else self.list.add_attention
                    add(lib, plan_id, [b for b, _ in where], [off for _, off in where], label)
                self._list_steps.append(i)
                continue
            name = p.kernels[p.steps[i].op]["name"]
            for kernel, grid, codes, recipe in specs[i]:
                bases, args = [], []
                for value, scalar in recipe:
                    if value >= 0:
                        b, off = locate(value)
                    elif value == -2:  # the executor's GroupNorm tickets (may be regrown: read per call)
                        b = getter_bases.get(id(scalar))
                        if b is None:
                            b = getter_bases[id(scalar)] = len(self._bases) + first_base
                            self._bases[("getter", id(scalar))] = b  # numbered with the roots
                            self.getters.append((b, scalar))
                        off = 0
                    else:
                        b, off = -1, scalar
                    bases.append(b)
                    args.append(off)
                self.list.add_launch(kernel, grid, codes, bases, args, f"step {i} (launch {name})")
                self._list_steps.append(i)

        # the Python steps, the views they (or the caller) read, and the arena values they touch
        native_steps = set(specs) | set(gemms)
        python = [i for i, st in enumerate(p.steps) if i not in native_steps and st.kind != StepKind.VIEW.value]
        needed = set(p.outputs)
        for i in python:
            st = p.steps[i]
            needed.update(st.inputs, st.outputs, st.attrs.get("scratch", []) if st.kind == StepKind.LAUNCH.value else [])
        run_views = set()
        direct_arena, direct_gemm = [], []  # needed views made at a call's start from their arena
        for i in range(len(p.steps) - 1, -1, -1):
            st = p.steps[i]
            if st.kind == StepKind.VIEW.value and (st.outputs[0] in needed or i in forced_views):
                v = st.outputs[0]
                r = v
                while r in view_source:
                    r = view_source[r]
                t = env[v]
                if i not in forced_views and _is_tensor(t):
                    # a view of an arena value or a GEMM result (no copy on the way): one
                    # as_strided of that arena per call instead of the chain of view steps
                    made = None  # (the list of its arena's views, byte offset in that arena)
                    if r in arena_values and arena is not None and _same_storage(t, arena):
                        made = direct_arena, t.data_ptr() - arena.data_ptr()
                    elif r in self._gemm_arena.offsets and _same_storage(t, env[r]):
                        made = direct_gemm, self._gemm_arena.offsets[r] + t.data_ptr() - env[r].data_ptr()
                    if made is not None and made[1] % t.element_size() == 0:
                        made[0].append((v, t.dtype, tuple(t.shape), tuple(t.stride()), made[1] // t.element_size()))
                        continue
                run_views.add(i)
                needed.add(st.inputs[0])
        self.arena_views = [entry for entry in plan.arena if entry[0] in needed] + direct_arena
        self.gemm_views = [entry for entry in self._gemm_arena.values if entry[0] in needed] + direct_gemm
        entries: dict[int, list[int]] = {}  # step -> its entries in the C++ list (GroupNorm: two)
        for k, i in enumerate(self._list_steps):
            entries.setdefault(i, []).append(k)
        for i, (fn, step) in enumerate(plan.steps):
            if i in native_steps:
                lo, hi = entries[i][0], entries[i][-1] + 1
                if self.ops and self.ops[-1][0] == "native" and self.ops[-1][2] == lo:
                    self.ops[-1] = ("native", self.ops[-1][1], hi)
                else:
                    self.ops.append(("native", lo, hi))
            elif step.kind != StepKind.VIEW.value or i in run_views:
                self.ops.append(("python", fn, step, i, produced.get(i, [])))
        # what each Python op lets go afterwards: the values last read by a step since the one before
        drops = ex._drops
        python_ops = [k for k, op in enumerate(self.ops) if op[0] == "python"]
        previous = -1
        for k in python_ops:
            index = self.ops[k][3]
            let_go = [v for j in range(previous + 1, index + 1) for v in drops[j]]
            self.ops[k] = self.ops[k] + (let_go,)
            previous = index
        bad = sorted(set(produced) & native_steps)
        if bad:  # a native launch making a root: its address would never be read (cannot happen today)
            raise NativeLoopError(f"step {bad[0]} is a native launch whose result is a base of later steps")
        self._first_entry = first_entry
        self.lazy_ops = with_deferred_checks(self.ops, len(self._list_steps))
        self.num_bases = len(self._bases) + first_base
        self.native_steps = len(native_steps)
        self.native_gemms = sum(1 for g in gemms.values() if g[0] == "gemm")
        self.native_convs = sum(1 for g in gemms.values() if g[0] == "conv")
        self.native_concats = sum(1 for g in gemms.values() if g[0] == "copy")
        self.native_attentions = sum(1 for g in gemms.values() if g[0] == "attention")
        self.python_steps = sum(1 for op in self.ops if op[0] == "python")
        self.skipped_views = sum(1 for st in p.steps if st.kind == StepKind.VIEW.value) - len(run_views)
        #: produced bases by value, for ``bases_from``
        self._produced = [(v, b) for items in produced.values() for v, b, _, _ in items]

    # ------------------------------------------------------------------ per call
    def accepts(self, env: list[Any]) -> list[int] | None:
        """The call's bases so far (inputs, weights, constants), or None where one of them has not
        the strides or the address modulo 16 of the recorded run (the call then runs in Python).

        Several hundred weights are read per call (an SD 1.5 UNet: ~700; ~230 us of host time on
        an H100 host), so their common case is made of whole-list operations and most of it is
        *deferred*: where the last accepted call's addresses are known, only the weights the first
        entries of the C++ list read (check group 0) are compared here, the others are taken from
        that call and compared group by group in ``run``, each group just before the first entry
        that reads it, while the GPU already computes the entries before it
        (``BLADE_DEFERRED_WEIGHT_CHECKS=0``: all here). A group that differs stops the call's entries before any of
        them reads that group's addresses; the call then runs in Python and the next call checks
        every weight. Where an address moved (a weight replaced through ``.data =``), every
        weight is checked one by one, as on the first call. The call's inputs (new tensors each
        call) are checked one by one every call. The bases returned carry which recorded
        addresses they took (``weight_checks.Bases.deferred``), for ``run``."""
        checks = self._checks
        if checks is None:
            checks = self._checks = self._prepare_checks(env)
        seen = self._seen
        if seen is not None and weight_checks.DEFERRED_WEIGHT_CHECKS and self._check_group(0, env, seen):
            bases = Bases(seen[1])
            bases.deferred = seen
        else:
            bases = self._check_all(env, seen)
            if bases is None:
                return None
        for b, v, strides, mod16 in checks[3]:
            t = env[v]
            ptr = t.data_ptr()
            if ptr % 16 != mod16 or t.stride() != strides:
                return None
            bases[b] = ptr
        return bases

    def _check_all(self, env: list[Any], seen) -> list[int] | None:
        """Every weight and constant now: as whole lists where no address moved since ``seen``,
        else one by one (then ``_seen`` becomes this call's)."""
        get, contiguous, strided, _inputs = self._checks
        tensors = get(env)
        ptrs = list(map(_DATA_PTR, tensors))
        if seen is not None and ptrs == seen[0]:
            if list(map(_IS_CONTIGUOUS, tensors)) != contiguous:
                return None
            for k, strides in strided:
                if tensors[k].stride() != strides:
                    return None
            return Bases(seen[1])
        bases = [0] * self.num_bases
        for (b, _v, strides, mod16), t, ptr in zip(self._static_checks, tensors, ptrs):
            if ptr % 16 != mod16 or t.stride() != strides:
                return None
            bases[b] = ptr
        self._seen = (ptrs, bases.copy())
        return Bases(bases)

    def _check_group(self, g: int, env: list[Any], seen) -> bool:
        """Whether the weights of deferred check group ``g`` have the addresses of ``seen`` (the
        accepted call the bases came from) and the recorded strides."""
        get, want, contiguous, strided = self._groups[g]
        if get is None:
            return True
        tensors = get(env)
        if list(map(_DATA_PTR, tensors)) != want(seen[0]):
            return False
        if list(map(_IS_CONTIGUOUS, tensors)) != contiguous:
            return False
        for k, strides in strided:
            if tensors[k].stride() != strides:
                return False
        return True

    def _prepare_checks(self, env: list[Any]) -> tuple:
        """What ``accepts`` compares: a getter of the weights and constants, which of them were
        contiguous when recorded (their recorded strides against their sizes, which the call plan
        fixes), the others' strides, and the inputs' checks; and the same per deferred check group
        (``self._groups``: a getter, a picker of their recorded addresses, their contiguity,
        their other strides). Made once, kept as one object."""
        weights, inputs = self._static_checks, self._input_checks
        values = [v for _b, v, _s, _m in weights]
        contiguous, strided = [], []
        for k, (_b, v, strides, _m) in enumerate(weights):
            flag = strides == contiguous_strides(tuple(env[v].shape))
            contiguous.append(flag)
            if not flag:
                strided.append((k, strides))
        groups = []
        for members in check_groups(self._first_entry, len(self._list_steps)):
            if not members:
                groups.append((None, None, None, None))
                continue
            flags = [contiguous[k] for k in members]
            others = [(j, weights[k][2]) for j, k in enumerate(members) if not contiguous[k]]
            groups.append((pick([values[k] for k in members]), pick(members, as_list=True), flags, others))
        self._groups = groups
        return pick(values), contiguous, strided, inputs

    def run(self, bases: list[int], env: list[Any], arena: torch.Tensor | None, stream: int, device: int, call_step,
            finish) -> None:
        """Run the call's steps. ``bases``: from ``accepts``; ``env`` holds the inputs, weights,
        constants, outputs and the arena views of ``self.arena_views``. ``call_step(fn, step,
        index, env)`` runs a Python step (naming it in an error). ``finish(index)``: where a Python
        step's result does not have the recorded strides or alignment, runs every step after
        ``index`` in Python (after making what the Python steps would have made before it);
        ``finish(None)``: where a deferred weight check fails, runs every step in Python."""
        if arena is not None:
            bases[0] = arena.data_ptr()
        garena = None
        if self._gemm_arena.total:
            garena = self._gemm_arena.allocate(env, self.gemm_views)
            bases[1] = garena.data_ptr()
            if self._gemm_arena.workspace is not None:
                bases[2] = self._gemm_arena.workspace(device, stream).data_ptr()
        for b, v in self._outputs:
            bases[b] = env[v].data_ptr()
        for b, getter in self.getters:
            bases[b] = getter().data_ptr()
        seen = getattr(bases, "deferred", None)
        call = self.list.call(bases)  # the bases live in C++ for the call: one conversion
        run, set_base = call.run, call.set
        for op in self.ops if seen is None else self.lazy_ops:
            kind = op[0]
            if kind == "native":
                run(stream, device, op[1], op[2])
                continue
            if kind == "check":
                if not self._check_group(op[1], env, seen):
                    if self._seen is seen:
                        self._seen = None  # the next call checks every weight
                    finish(None)
                    return
                continue
            _, fn, step, index, produced, let_go = op
            call_step(fn, step, index, env)
            for v, b, strides, mod16 in produced:
                t = env[v]
                ptr = t.data_ptr()
                if ptr % 16 != mod16 or t.stride() != strides:
                    if garena is not None:  # the Python steps read the GEMMs' results from env
                        self._gemm_arena.views(env, garena, self._gemm_arena.values)
                    finish(index)
                    return
                set_base(b, ptr)
            for v in let_go:  # a library result nothing later reads goes back to torch's allocator
                env[v] = None

    def bases_from(self, env: list[Any], arena: torch.Tensor | None) -> list[int]:
        """The bases of a call whose every value is in ``env`` (a Python run): for tests."""
        bases = [0] * self.num_bases
        if arena is not None:
            bases[0] = arena.data_ptr()
        for b, v in self.static:
            bases[b] = env[v].data_ptr()
        for v, b in self._produced:
            bases[b] = env[v].data_ptr()
        for b, getter in self.getters:
            bases[b] = getter().data_ptr()
        if self._gemm_arena.total:
            raise NativeLoopError("bases_from: the library results' arena exists only in a native call")
        return bases

    def describe(self) -> str:
        launches = (self.native_steps - self.native_gemms - self.native_convs - self.native_concats
                    - self.native_attentions)
        return (f"{launches} launches, {self.native_gemms} cuBLASLt GEMMs, {self.native_convs} cuDNN "
                f"convolutions, {self.native_attentions} cuDNN attentions and {self.native_concats} "
                f"concatenations in C++, "
                f"{self.python_steps} Python steps, {self.skipped_views} views resolved to offsets, "
                f"{self.num_bases} bases")


_DATA_PTR = torch.Tensor.data_ptr
_IS_CONTIGUOUS = torch.Tensor.is_contiguous
def contiguous_strides(shape: tuple[int, ...]) -> tuple[int, ...]:
    """The strides of a packed tensor of ``shape`` (size-0 dims count as 1, as torch's do)."""
    strides, acc = [], 1
    for n in reversed(shape):
        strides.append(acc)
        acc *= max(n, 1)
    return tuple(reversed(strides))


class _GemmArena:
    """Where the C++ list's GEMMs put their results: one allocation per call, each result at an
    offset chosen by first fit over its live steps (its last reader, through views and through any
    Python step whose result might alias it); ``values``: (value, dtype, shape, strides, element
    offset) of each result, for the ones a Python step reads."""

    def __init__(self, offsets: dict[int, int], total: int, values: list[tuple], workspace=None, device=None,
                 conv_workspace: int | None = None):
        self.offsets, self.total, self.values = offsets, total, values
        self.workspace = workspace  # (device index, stream) -> the cuBLASLt workspace tensor (None: no GEMMs)
        self.device = device
        self.conv_workspace = conv_workspace  # byte offset of the convolutions' and attentions' workspace (None: none)

    def allocate(self, env: list[Any], views: list[tuple]) -> torch.Tensor:
        garena = torch.empty(self.total, dtype=torch.uint8, device=self.device)
        self.views(env, garena, views)
        return garena

    @staticmethod
    def views(env: list[Any], garena: torch.Tensor, views: list[tuple]) -> None:
        for v, dtype, shape, strides, offset in views:
            env[v] = torch.as_strided(garena.view(dtype), shape, strides, offset)


_NO_GEMMS = _GemmArena({}, 0, [])


def _gemms(ex, plan, env: list[Any]) -> tuple[dict[int, tuple], _GemmArena]:
    """The library calls the C++ list can run: ``linear`` / ``matmul`` (and 1x1 channels-last
    convolutions, which the provider computes as GEMMs) as prepared cuBLASLt plans, other
    convolutions as prepared cuDNN plans: step -> ("gemm" | "conv", library, plan id, operand
    values: [a, b, d, bias] | [x, w, y, bias]) and their results' arena (with one workspace region
    for the convolutions after the results). Only where the step's provider computes them so
    (``TorchProvider(gemm_library="cublaslt")``, ``TorchProvider(conv_library="cudnn")``), the
    recorded operands are 16-byte aligned and described by ``runtime/cublaslt_gemm.py`` /
    ``runtime/cudnn_conv.py``, and the result is an intermediate (not a Program output, nor
    aliased by one). A ``concat`` whose tensors are rows in memory (``concat_rows``) is step ->
    ("copy", [(input value, byte offset in the result, result pitch, input pitch, width, rows)],
    result value), where its provider allows (``native_concat``)."""
    from blade.runtime.cublaslt_gemm import WORKSPACE_BYTES, linear_problem, matmul_problem
    from blade.runtime.host_provider import _pointwise_nhwc
    from blade.runtime.program_executor import first_fit

    p = ex.program
    found: dict[int, tuple] = {}
    for i, (fn, step) in enumerate(plan.steps):
        if step.kind != StepKind.LIBRARY_CALL.value or step.op not in ("linear", "matmul", "conv", "concat", "attention") \
                or len(step.outputs) != 1:
            continue
        provider = ex.providers.get(step.provider)
        gemm = getattr(provider, "native_gemm", lambda: None)()
        o = step.outputs[0]
        if o not in ex._provided or p.values[o].kind != ValueKind.ARENA.value:
            continue
        ins = [env[v] for v in step.inputs]
        out = env[o]
        if not all(_is_tensor(t) and t.is_cuda for t in ins + [out]) or out.numel() == 0:
            continue
        if step.op == "attention":
            # cuDNN's fused attention (TorchProvider(attention_library="cudnn")), where the recorded
            # run made its plan and the result has the layout the plan writes
            attn = getattr(provider, "native_attention", lambda: None)()
            hit = attn.describe(step.attrs, ins) if attn is not None else False
            if hit is False or tuple(out.shape) != tuple(hit[1]) or tuple(out.stride()) != tuple(hit[2]) \
                    or out.dtype != ex._dtypes[o] or any(t.data_ptr() % 16 for t in ins):
                continue
            plan_id = attn.plan(hit[0], hit[3], out.device.index if out.device.index is not None else 0, make=False)
            if plan_id is not None:
                found[i] = ("attention", attn, plan_id, o, list(step.inputs))
            continue
        if step.op == "concat":
            copies = concat_rows(ins, out, step.attrs["dim"]) \
                if getattr(provider, "native_concat", lambda: False)() and out.dtype == ex._dtypes[o] else None
            if copies is not None:
                found[i] = ("copy", None, None, o, [(v, *c) for v, c in zip(step.inputs, copies) if c[3] and c[4]])
            continue
        if step.op == "conv" and len(ins) in (2, 3) and not (gemm is not None and _pointwise_nhwc(step.attrs, ins[1])):
            # a convolution through cuDNN (TorchProvider(conv_library="cudnn")), as the provider called it
            conv = getattr(provider, "native_conv", lambda: None)()
            hit = conv.describe(step.attrs, ins) if conv is not None else False
            if (hit is False or tuple(out.shape) != tuple(hit[1]) or not out.is_contiguous()
                    or out.dtype != ex._dtypes[o] or any(t.data_ptr() % 16 for t in ins)):
                continue
            found[i] = ("conv", conv, hit[0], o, list(step.inputs) + [None] * (3 - len(step.inputs)))
            continue
        elif gemm is None:
            continue
        elif step.op == "linear" and len(ins) in (2, 3):
            problem = linear_problem(ins[0], ins[1], ins[2] if len(ins) == 3 else None)
            shape = (*ins[0].shape[:-1], ins[1].shape[0])
        elif step.op == "conv" and len(ins) in (2, 3) and _pointwise_nhwc(step.attrs, ins[1]):
            # a 1x1 convolution over channels-last data: the provider's GEMM over the pixels (its
            # weight read as the matrix [K, C]: the trailing size-1 dims dropped, a view)
            w = Shadow(ins[1], ins[1].shape[:2], ins[1].stride()[:2])
            problem = linear_problem(ins[0], w, ins[2] if len(ins) == 3 else None)
            shape = (*ins[0].shape[:-1], w.shape[0])
        elif step.op == "matmul" and len(ins) == 2:
            problem = matmul_problem(ins[0], ins[1])
            shape = (*ins[0].shape[:-1], ins[1].shape[-1])
        else:
            continue
        if (problem is None or tuple(out.shape) != tuple(shape) or not out.is_contiguous() or out.dtype != ins[0].dtype
                or out.dtype != ex._dtypes[o] or any(t.data_ptr() % 16 for t in ins)):
            continue
        found[i] = ("gemm", gemm, problem, o, list(step.inputs) + [None] * (3 - len(step.inputs)))
    if not found:
        return {}, _NO_GEMMS
    # live ranges; a Python library call's results may alias its inputs: they keep them alive
    results = {found[i][3]: i for i in found}
    owners: dict[int, set[int]] = {o: {o} for o in results}
    last = dict(results)
    for i, st in enumerate(p.steps):
        reads = [v for v in list(st.inputs) + list(st.attrs.get("scratch", [])) if isinstance(v, int)]
        held = set().union(*(owners.get(v, set()) for v in reads)) if reads else set()
        for o in held:
            last[o] = max(last[o], i)
        if held and (st.kind == StepKind.VIEW.value or (st.kind == StepKind.LIBRARY_CALL.value and i not in found
                                                         and st.outputs and st.outputs[0] in ex._provided)):
            for out in st.outputs:
                owners[out] = owners.get(out, set()) | held
    escaping = set().union(*(owners.get(v, set()) for v in p.outputs)) if p.outputs else set()
    for i in [i for i in found if found[i][3] in escaping]:
        del results[found[i][3]]
        del found[i]
    if not found:
        return {}, _NO_GEMMS
    order = sorted(results)
    sizes = [(env[o].numel() * env[o].element_size(), results[o], last[o]) for o in order]
    offsets, total = first_fit(sizes)
    place = dict(zip(order, offsets))
    values = [(o, env[o].dtype, tuple(env[o].shape), tuple(env[o].stride()), place[o] // env[o].element_size())
              for o in order]
    out: dict[int, tuple] = {}
    device = env[-1][1]
    gemm_workspace = None
    conv_workspace = 0  # bytes the convolutions and attentions need (one region, after the results)
    for i, (kind, lib, problem, o, operands) in found.items():
        if kind == "copy":
            out[i] = ("copy", operands, o)
            continue
        if kind == "attention":
            conv_workspace = max(conv_workspace, lib.workspace_size(problem))
            out[i] = ("attention", lib.native, problem, operands + [o])
            continue
        x, w, bias = operands
        if kind == "conv":
            plan_id = lib.plan(problem, bias is not None, device)
            conv_workspace = max(conv_workspace, lib.workspace_size(plan_id))
            out[i] = ("conv", lib.native, plan_id, [x, w, o, bias])
            continue
        q = problem
        plan_id = lib._lt.prepare(q.dtype, q.transa, q.transb, q.m, q.n, q.k, q.lda, q.stride_a, q.ldb, q.stride_b,
                                  q.ldd, q.stride_d, q.batch, bias is not None, WORKSPACE_BYTES, 16, 16, 16, device)
        out[i] = ("gemm", lib._lt, plan_id, [w, x, o, bias])  # cuBLAS's A is the second operand, its B the first
        gemm_workspace = lib._workspace
    total = -(-total // 256) * 256  # the arena is viewed as every result's dtype: whole 256-byte blocks
    return out, _GemmArena(place, total + -(-conv_workspace // 256) * 256, values, gemm_workspace, env[order[0]].device,
                           total if conv_workspace else None)


def concat_rows(ins: list[Any], out: Any, dim: int) -> list[tuple[int, int, int, int, int]] | None:
    """``torch.cat(ins, dim)`` into ``out`` as copies of rows: per input (byte offset of its slice
    in a row of ``out``, ``out``'s row pitch, the input's row pitch, row width (bytes), rows), or
    None where the memory is not rows. Read in ``out``'s memory order (its dims by stride, size-1
    dims left out): the dims outside ``dim`` collapse into rows of one pitch, ``dim`` and the dims
    inside it are packed, in every tensor (a channels-last concatenation over channels: rows are
    pixels; a concatenation of packed tensors over dim 0: one row). A pitch (or a single row's width)
    above ``MAX_PITCH`` bytes is not served."""
    nd = len(out.shape)
    dim = dim % nd if nd else 0
    if nd == 0 or out.shape[dim] < 1 or any(t.dtype != out.dtype or len(t.shape) != nd for t in ins):
        return None
    order = sorted((k for k in range(nd) if out.shape[k] != 1 or k == dim), key=lambda k: -out.stride(k))
    if len({out.stride(k) for k in order}) != len(order):
        return None
    at = order.index(dim)
    outer, inner = order[:at], order[at + 1:]

    def rows_of(t) -> tuple[int, int, int] | None:  # (rows, row elements, pitch elements)
        if any(t.shape[k] != out.shape[k] for k in range(nd) if k != dim):
            return None
        packed = 1
        for k in reversed(inner):
            if t.shape[k] != 1 and t.stride(k) != packed:
                return None
            packed *= t.shape[k]
        if t.shape[dim] > 1 and t.stride(dim) != packed:
            return None
        width = packed * t.shape[dim]
        rows, pitch, expect = 1, None, None
        for k in reversed(outer):
            n = t.shape[k]
            if n == 1:
                continue
            if pitch is None:
                pitch = expect = t.stride(k)
            elif t.stride(k) != expect:
                return None
            expect = t.stride(k) * n
            rows *= n
        return rows, width, (pitch if pitch is not None else width)

    whole = rows_of(out)
    if whole is None or whole[2] != whole[1]:  # the result packed: its rows cover its memory
        return None
    if whole[1] * out.element_size() > MAX_PITCH:  # the driver's 2-D copies take pitches up to 2^31 - 1
        return None
    size = out.element_size()
    copies, offset = [], 0
    for t in ins:
        got = rows_of(t)
        if got is None or (got[0] > 1 and got[2] < got[1]) or got[0] != whole[0] and t.numel():
            return None
        rows, width, pitch = got
        if pitch * out.element_size() > MAX_PITCH:
            return None
        copies.append((offset * size, whole[1] * size, pitch * size, width * size, rows if t.numel() else 0))
        offset += width
    return copies if offset == whole[1] else None


def _same_storage(a, b) -> bool:
    return _storage_ptr(a) == _storage_ptr(b)


def _storage_ptr(t) -> int:
    return t._storage if isinstance(t, Shadow) else t.untyped_storage().data_ptr()


def _is_tensor(t) -> bool:
    return isinstance(t, (torch.Tensor, Shadow))


def _contiguous(shape: torch.Size, stride: tuple[int, ...]) -> bool:
    expect = 1
    for n, st in zip(reversed(shape), reversed(stride)):
        if n != 1 and st != expect:
            return False
        expect *= n
    return True
