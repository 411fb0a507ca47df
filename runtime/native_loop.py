"""The C++ step loop of one call plan (issue 9, item 3): generated-kernel launches run by the
native runtime, Python only for the steps that need it.

``ProgramExecutor`` runs a call plan (the steps of one size signature, ``_CallPlan``) in Python
the first time; from the data of that run this module makes a ``NativeLoop``:

* every step that is one plain cubin launch (``_KernelRunner``'s ``native_spec``) goes into a C++
  ``StepList`` (``runtime/cpp/step_list.h``) with its kernel, grid, scalars and, per pointer
  argument, a *base* and a byte offset: base 0 is the call's arena; the other bases are the roots
  the pointers lead to: an input, a weight, a constant, an output (their addresses are read at the
  start of each call), or a result a Python step makes (a library call's own allocation, a kept
  weight-only launch, a ``reshape`` that had to copy: read after that step);
* views cost nothing: a view's pointer is its root's plus the offset seen in the recorded run, and
  a view step runs (in Python) only where a Python step or the caller reads its tensor;
* the remaining steps (library calls through torch, fallbacks, GroupNorm's two-launch schedule,
  launches whose input must be copied to make its rows collapse) run as before, in order, between
  ranges of native steps on the same stream.

What the recorded run decided from strides and alignment (row addressing, the aligned variant)
holds for a later call only where the same strides and 16-byte alignments come back: the inputs'
and weights' are compared at the start of a call (a mismatch runs that call in Python), a Python
step's results right after it (a mismatch finishes that call in Python: every view made, every
later step through its Python function). So the loop is never the reason for a different answer:
it runs the same kernels with the same arguments as the Python loop (``tests/unit/test_native_loop.py``
checks the relocated arguments on a CPU; ``tests/gpu/test_gpu_native_loop.py`` the outputs).

Not yet: the library calls themselves from C++ (``StepList.add_gemm`` takes prepared cuBLASLt
plans, but the executor's GEMMs still go through the torch provider, which allocates its results).
"""

from __future__ import annotations

from typing import Any

import torch

from blade.runtime.program import StepKind, ValueKind

#: Program value kinds whose tensors exist before the first step (read at the start of a call)
_STATIC_KINDS = (ValueKind.INPUT.value, ValueKind.WEIGHT.value, ValueKind.CONSTANT.value, ValueKind.OUTPUT.value)


class NativeLoopError(RuntimeError):
    """A call plan cannot be run by the native loop (said once; the plan stays in Python)."""


class NativeLoop:
    def __init__(self, ex, plan, env: list[Any], arena: torch.Tensor | None, native, with_kernels: bool = True):
        """``env``: every value of a finished Python run of ``plan`` (``arena``: its arena)."""
        p = ex.program
        self.program = p
        self.list = native.StepList()
        arena_values = {entry[0] for entry in plan.arena}
        view_source = {st.outputs[0]: st.inputs[0] for st in p.steps if st.kind == StepKind.VIEW.value}
        producer = {o: i for i, st in enumerate(p.steps) for o in st.outputs}

        # which steps the C++ list runs
        specs: dict[int, tuple] = {}
        for i, (fn, step) in enumerate(plan.steps):
            spec_of = getattr(fn, "native_spec", None)
            if step.kind == StepKind.LAUNCH.value and i not in ex._prepared_steps and spec_of is not None:
                spec = spec_of(env, with_kernels)
                if spec is not None:
                    specs[i] = spec

        # where each pointer leads: (base, byte offset)
        self._bases: dict[int, int] = {}             # root value -> base
        self.static: list[tuple[int, int]] = []      # (base, value) read at a call's start
        self._static_checks: list[tuple[int, tuple, bool]] = []  # (value, strides, 16-byte aligned)
        produced: dict[int, list[tuple[int, int, tuple, bool]]] = {}  # step -> [(value, base, strides, aligned)]
        forced_views: set[int] = set()               # view steps that copied: they run, in Python
        located: dict[int, tuple[int, int]] = {}

        def root_base(r: int) -> int:
            b = self._bases.get(r)
            if b is None:
                b = self._bases[r] = len(self._bases) + 1  # base 0 is the arena
                t = env[r]
                entry = (tuple(t.stride()), t.data_ptr() % 16 == 0)
                if p.values[r].kind in _STATIC_KINDS and r not in ex._provided:
                    self.static.append((b, r))
                    if p.values[r].kind != ValueKind.OUTPUT.value:  # outputs are fresh each call
                        self._static_checks.append((r, *entry))
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
            if not isinstance(t, torch.Tensor):
                raise NativeLoopError(f"value %{v} has no tensor in the recorded run")
            r = v
            while r in view_source:
                r = view_source[r]
            if r in arena_values and arena is not None and _same_storage(t, arena):
                where = (0, t.data_ptr() - arena.data_ptr())
            elif r != v and r not in arena_values and _same_storage(t, env[r]):
                where = (root_base(r), t.data_ptr() - env[r].data_ptr())
            else:  # a root, or a view that copied (reshape of a non-viewable tensor)
                where = (root_base(v), 0)
            located[v] = where
            return where

        # the C++ list and the order of the call's work
        self.ops: list[tuple] = []  # ("native", begin, end) | ("python", fn, step, index, produced)
        for i in sorted(specs):
            kernel, grid, codes, recipe = specs[i]
            bases, args = [], []
            for value, scalar in recipe:
                if value >= 0:
                    b, off = locate(value)
                    bases.append(b)
                    args.append(off)
                else:
                    bases.append(-1)
                    args.append(scalar)
            name = p.kernels[p.steps[i].op]["name"]
            self.list.add_launch(kernel, grid, codes, bases, args, f"step {i} (launch {name})")

        # the Python steps, the views they (or the caller) read, and the arena values they touch
        python = [i for i, st in enumerate(p.steps) if i not in specs and st.kind != StepKind.VIEW.value]
        needed = set(p.outputs)
        for i in python:
            st = p.steps[i]
            needed.update(st.inputs, st.outputs, st.attrs.get("scratch", []) if st.kind == StepKind.LAUNCH.value else [])
        run_views = set()
        for i in range(len(p.steps) - 1, -1, -1):
            st = p.steps[i]
            if st.kind == StepKind.VIEW.value and (st.outputs[0] in needed or i in forced_views):
                run_views.add(i)
                needed.add(st.inputs[0])
        self.arena_views = [entry for entry in plan.arena if entry[0] in needed]
        begin = 0
        for i, (fn, step) in enumerate(plan.steps):
            if i in specs:
                if self.ops and self.ops[-1][0] == "native":
                    self.ops[-1] = ("native", self.ops[-1][1], self.ops[-1][2] + 1)
                else:
                    self.ops.append(("native", begin, begin + 1))
                begin += 1
            elif step.kind != StepKind.VIEW.value or i in run_views:
                self.ops.append(("python", fn, step, i, produced.get(i, [])))
        bad = sorted(set(produced) & set(specs))
        if bad:  # a native launch making a root: its address would never be read (cannot happen today)
            raise NativeLoopError(f"step {bad[0]} is a native launch whose result is a base of later steps")
        self.num_bases = len(self._bases) + 1
        self.native_steps = len(specs)
        self.python_steps = len(self.ops) - sum(1 for op in self.ops if op[0] == "native")
        self.skipped_views = sum(1 for st in p.steps if st.kind == StepKind.VIEW.value) - len(run_views)
        #: produced bases by value, for ``bases_from``
        self._produced = [(v, b) for items in produced.values() for v, b, _, _ in items]

    # ------------------------------------------------------------------ per call
    def accepts(self, env: list[Any]) -> bool:
        """Whether the inputs, weights and constants of this call have the strides and alignments
        of the recorded run (else the call runs in Python)."""
        for v, strides, aligned in self._static_checks:
            t = env[v]
            if t.stride() != strides or (aligned and t.data_ptr() % 16):
                return False
        return True

    def run(self, env: list[Any], arena: torch.Tensor | None, stream: int, device: int, call_step, finish) -> None:
        """Run the call's steps. ``env`` holds the inputs, weights, constants, outputs and the
        arena views of ``self.arena_views``. ``call_step(fn, step, index, env)`` runs a Python
        step (naming it in an error). ``finish(index)``: where a Python step's result does not have
        the recorded strides or alignment, runs every step after ``index`` in Python (after making
        what the Python steps would have made before it)."""
        bases = [0] * self.num_bases
        if arena is not None:
            bases[0] = arena.data_ptr()
        for b, v in self.static:
            bases[b] = env[v].data_ptr()
        run = self.list.run
        for op in self.ops:
            if op[0] == "native":
                run(bases, stream, device, op[1], op[2])
                continue
            _, fn, step, index, produced = op
            call_step(fn, step, index, env)
            for v, b, strides, aligned in produced:
                t = env[v]
                if t.stride() != strides or (aligned and t.data_ptr() % 16):
                    finish(index)
                    return
                bases[b] = t.data_ptr()

    def bases_from(self, env: list[Any], arena: torch.Tensor | None) -> list[int]:
        """The bases of a call whose every value is in ``env`` (a Python run): for tests."""
        bases = [0] * self.num_bases
        if arena is not None:
            bases[0] = arena.data_ptr()
        for b, v in self.static:
            bases[b] = env[v].data_ptr()
        for v, b in self._produced:
            bases[b] = env[v].data_ptr()
        return bases

    def describe(self) -> str:
        return (f"{self.native_steps} launches in C++, {self.python_steps} Python steps, "
                f"{self.skipped_views} views resolved to offsets, {self.num_bases} bases")


def _same_storage(a: torch.Tensor, b: torch.Tensor) -> bool:
    return a.untyped_storage().data_ptr() == b.untyped_storage().data_ptr()
