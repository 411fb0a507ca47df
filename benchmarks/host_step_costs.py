"""Where a graphs-off call's host time goes, step kind by step kind (issue 9: host issue time at
most 2 ms per UNet call). Each model (fp16, CUDA) is optimized with Blade's defaults, called with
CUDA graphs off until its C++ step list exists, then timed three ways:

- the whole call (``opt(*x)`` until it returns, the GPU synchronised between calls), median;
- inside it, ``NativeLoop.run`` (the per-call work before the steps: bases, the library arena);
- each entry of the C++ step list run alone (``StepCall.run`` over one entry), summed by kind
  (launch, cuBLASLt GEMM, cuDNN convolution, attention, concatenation copy), and each Python step
  by its kind and op; the cost of one empty ``run`` (pybind11 and the timer) is measured and taken
  off every entry.

What is left of the whole call is the Python around the loop (argument checks, the shape program,
the call-plan lookup, the arena and output allocations). It is split into phases by timestamps
taken in wrappers (``_Phases``): before the executor, the shape program, the weight checks, the
allocations, the loop's own preamble before its first entry, the steps, and after them. Everything
before the first entry is time the GPU waits at the start of a graphs-off call.

The largest difference of the last graphs-off call from eager's output is printed too (the
steps timed one by one must still compute the model). cuDNN calls keep their variant pack and
stream between calls (runtime/cpp/cudnn_graph.h); ``BLADE_CUDNN_KEEP_CALLS=0`` in the environment
builds both on every call: run with and without it to see what that saves.

    python benchmarks/host_step_costs.py [--models unet,clip,vae] [--calls 20] [--out DIR]
"""

from __future__ import annotations

import argparse
import collections
import cProfile
import io
import os
import pstats
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(__file__))
import bench_models  # noqa: E402

import blade  # noqa: E402
import blade.runtime.program_executor as pe  # noqa: E402

SHAPES = {"unet": (2, 512, 512), "vae": (1, 512, 512), "clip": (2, 77)}


class _TimedCall:
    """A ``StepCall`` whose ``run`` goes one entry at a time, adding each entry's time to ``spent``."""

    def __init__(self, call, spent: collections.Counter, overhead_ns: list[float]):
        self.call, self.spent, self.overhead_ns = call, spent, overhead_ns

    def run(self, stream, device, lo, hi):
        run, clock = self.call.run, time.perf_counter_ns
        for k in range(lo, hi):
            t0 = clock()
            run(stream, device, k, k + 1)
            self.spent[k] += clock() - t0
        t0 = clock()
        run(stream, device, hi, hi)  # the empty run: what pybind11 and the clock cost
        self.overhead_ns.append(clock() - t0)

    def set(self, base, value):
        self.call.set(base, value)


class _TimedList:
    def __init__(self, steps, spent, overhead_ns):
        self.steps, self.spent, self.overhead_ns = steps, spent, overhead_ns

    def call(self, bases):
        return _TimedCall(self.steps.call(bases), self.spent, self.overhead_ns)


class _Phases:
    """Timestamps of one call's phases, taken by wrapping the module's ``forward``, the executor's
    ``run`` and ``prepare``, the loop's ``accepts`` and ``run``, and the C++ list's ``call`` (the
    moment just before the first entry runs). Installed on instances only; ``restore`` undoes it."""

    NAMES = ("call -> forward", "forward -> executor", "shape program (prepare)", "prepare -> weight checks",
             "weight checks (accepts)", "accepts -> loop.run (arena, outputs)", "loop preamble -> first entry",
             "steps", "loop.run -> executor returns", "executor -> forward returns", "forward -> call returns")

    def __init__(self, opt, runner, loop):
        self.t: dict[str, int] = {}
        self.rows: list[list[int]] = []
        clock = time.perf_counter_ns
        self.saved = [(opt, "forward", "fwd"), (runner, "run", "exe"), (runner, "prepare", "prep"),
                      (loop, "accepts", "acc"), (loop, "run", "loop")]
        self.originals = [(obj, attr, getattr(obj, attr)) for obj, attr, _ in self.saved]
        self.loop, self.list = loop, loop.list

        def wrap(key, fn):
            def timed(*a, **k):
                self.t[key + "<"] = clock()
                try:
                    return fn(*a, **k)
                finally:
                    self.t[key + ">"] = clock()
            return timed

        for (obj, attr, key), (_, _, fn) in zip(self.saved, self.originals):
            setattr(obj, attr, wrap(key, fn))
        phases = self

        class _List:
            def call(self, bases):
                c = phases.list.call(bases)
                phases.t["first<"] = clock()
                return c

        loop.list = _List()

    def restore(self) -> None:
        for obj, attr, _ in self.saved:
            obj.__dict__.pop(attr, None)
        self.loop.list = self.list

    def call(self, fn) -> None:
        self.t.clear()
        torch.cuda.synchronize()
        t0 = time.perf_counter_ns()
        fn()
        t1 = time.perf_counter_ns()
        t = self.t
        seq = [t0, t["fwd<"], t["exe<"], t["prep>"], t["acc<"], t["acc>"], t["loop<"], t["first<"], t["loop>"],
               t["exe>"], t["fwd>"], t1]
        self.rows.append([b - a for a, b in zip(seq, seq[1:])])

    def lines(self) -> list[str]:
        out = [f"{'phase of a graphs-off call':40s} {'us (median)':>12s}"]
        for k, name in enumerate(self.NAMES):
            out.append(f"{name:40s} {statistics.median(r[k] for r in self.rows) / 1e3:12.1f}")
        before = statistics.median(sum(r[:7]) for r in self.rows) / 1e3
        out.append(f"{'before the first entry (GPU idle)':40s} {before:12.1f}")
        return out


def _loops(opt):
    """(executor, call plan, NativeLoop) of every variant's call plan that has one."""
    found = []
    for v in opt.variants:
        runner = getattr(v.executor, "runner", None)
        for plan in getattr(runner, "_call_plans", {}).values():
            if plan.native is not None:
                found.append((runner, plan, plan.native))
    return found


def _median_ms(fn, calls: int) -> float:
    times = []
    for _ in range(calls):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    torch.cuda.synchronize()
    return statistics.median(times)


def profile(name: str, calls: int) -> list[str]:
    model, make = bench_models._build(name)
    x = make(SHAPES[name])
    opt = blade.optimize(model, x)
    opt.cuda_graphs = False
    lines = [f"## {name} {'x'.join(map(str, SHAPES[name]))}"]
    with torch.no_grad():
        for _ in range(4):
            opt(*x)
        torch.cuda.synchronize()
        loops = _loops(opt)
        if not loops:
            return lines + ["no C++ step list was made (see the executor's native_stats)"]
        runner, plan, loop = loops[0]
        lines.append(f"C++ loop: {loop.describe()}; stats {runner.native_stats}; "
                     f"BLADE_CUDNN_KEEP_CALLS={os.environ.get('BLADE_CUDNN_KEEP_CALLS', '')!r}")
        total = _median_ms(lambda: opt(*x), calls)

        # NativeLoop.run as a whole
        real_run = loop.run
        loop_ns = []

        def timed_run(*a, **k):
            t0 = time.perf_counter_ns()
            real_run(*a, **k)
            loop_ns.append(time.perf_counter_ns() - t0)

        loop.run = timed_run
        _median_ms(lambda: opt(*x), calls)
        loop_ms = statistics.median(loop_ns) / 1e6

        # phase by phase (timestamps in wrappers)
        phases = _Phases(opt, runner, loop)
        try:
            for _ in range(calls):
                phases.call(lambda: opt(*x))
        finally:
            phases.restore()
        torch.cuda.synchronize()

        # entry by entry, and the Python steps
        spent: collections.Counter = collections.Counter()
        overhead_ns: list[float] = []
        python_ns: collections.Counter = collections.Counter()
        python_n: collections.Counter = collections.Counter()
        real_list, real_step = loop.list, pe._call_step

        def timed_step(fn, step, index, env):
            t0 = time.perf_counter_ns()
            real_step(fn, step, index, env)
            key = f"{step.kind} {step.op}" if step.kind != "launch" else "launch (Python)"
            python_ns[key] += time.perf_counter_ns() - t0
            python_n[key] += 1

        loop.list = _TimedList(real_list, spent, overhead_ns)
        pe._call_step = timed_step
        try:
            _median_ms(lambda: opt(*x), calls)
        finally:
            loop.list, pe._call_step, loop.run = real_list, real_step, real_run
        over = statistics.median(overhead_ns)
        p = runner.program
        by_kind_ns: collections.Counter = collections.Counter()
        by_kind_n: collections.Counter = collections.Counter()
        for k, ns in spent.items():
            st = p.steps[loop._list_steps[k]]
            kind = "launch" if st.kind == "launch" else f"{st.provider}.{st.op}"
            by_kind_ns[kind] += ns / calls - over
            by_kind_n[kind] += 1
        lines.append(f"whole call {total:.3f} ms; NativeLoop.run {loop_ms:.3f} ms; around it "
                     f"{total - loop_ms:.3f} ms; one empty StepCall.run {over / 1e3:.2f} us (taken off each entry)")
        lines.append(f"{'entry kind':28s} {'count':>6s} {'ms per call':>12s} {'us each':>8s}")
        for kind, ns in sorted(by_kind_ns.items(), key=lambda kv: -kv[1]):
            lines.append(f"{kind:28s} {by_kind_n[kind]:6d} {ns / 1e6:12.3f} {ns / 1e3 / by_kind_n[kind]:8.2f}")
        for key, ns in sorted(python_ns.items(), key=lambda kv: -kv[1]):
            n = python_n[key] // calls
            lines.append(f"{'Python ' + key:28s} {n:6d} {ns / calls / 1e6:12.3f} {ns / calls / 1e3 / max(n, 1):8.2f}")
        native_ms = sum(by_kind_ns.values()) / 1e6
        py_ms = sum(python_ns.values()) / calls / 1e6
        lines.append(f"entries {native_ms:.3f} ms + Python steps {py_ms:.3f} ms; the rest of NativeLoop.run "
                     f"{loop_ms - native_ms - py_ms:.3f} ms (bases, arena, the loop's own Python)")
        lines += phases.lines()
        got, want = bench_models._out(opt(*x)).float(), bench_models._out(model(*x)).float()
        lines.append(f"max difference from eager after the timed calls: {(got - want).abs().max().item():.2e}")
        prof = cProfile.Profile()
        prof.enable()
        for _ in range(calls):
            opt(*x)
        prof.disable()
        torch.cuda.synchronize()
        text = io.StringIO()
        pstats.Stats(prof, stream=text).sort_stats("tottime").print_stats(25)
        lines.append(text.getvalue())
    opt = model = None  # noqa: F841 - the next model starts from free memory
    torch.cuda.empty_cache()
    return lines


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default="unet,clip,vae")
    ap.add_argument("--calls", type=int, default=20)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    lines = [f"{torch.cuda.get_device_name()}, torch {torch.__version__}"]
    for name in args.models.split(","):
        lines += profile(name, args.calls)
        print("\n".join(lines[-60:]), flush=True)
    if args.out:
        with open(os.path.join(args.out, "host_step_costs.txt"), "w") as f:
            f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
