"""Is a CUDA-graph replay's time a property of the configuration, of the order modules were made
in one process, or of having run the profiler? Times Blade's graphs-on UNet calls (back to back)
for each configuration before any profiler has run, then profiles each one's replay timeline
(``profile_blade_kernels.timeline``: idle gaps, overlapping starts), then times them all again.

    python benchmarks/graph_replay_probe.py [BATCHxHEIGHTxWIDTH] [--configs "default;conv_library=cudnn;default"]

A configuration may be listed twice (the same Config compiled again later in the process), which
separates "this configuration is slower" from "a module made later is slower".

``--bisect``: which step of making a second module slows the first one's replay (session 15:
5.77 -> 5.98 ms back to back; the first module's graph is not re-captured). Times module 0 after
each step of module 1's life: compiled, its first call (new shape: heuristic plans), second call
(cuDNN's algorithm search, cuDNN attention plans), third (CUDA-graph capture), replays; then after an
eager call of the model, and after module 1 is dropped and ``torch.cuda.empty_cache()``. The second
row (module 0 again, nothing in between) is the noise to compare the steps with.
"""

from __future__ import annotations

import argparse
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(__file__))
import blade  # noqa: E402
from blade import models  # noqa: E402
from bench_models import parse_config  # noqa: E402
from common import back_to_back_ms, environment, print_table, wall_ms  # noqa: E402
from profile_blade_kernels import _profile, timeline  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("shape", nargs="?", default="2x512x512")
    ap.add_argument("--configs", default="default;conv_library=cudnn;default")
    ap.add_argument("--iters", type=int, default=50)
    ap.add_argument("--bisect", action="store_true", help="time module 0 after each step of making module 1")
    args = ap.parse_args()
    print(environment())
    b, h, w = (int(v) for v in args.shape.split("x"))
    model = models.unet(torch.float16, "cuda")
    inputs = models.unet_inputs(b, h, w, dtype=torch.float16, device="cuda")
    if args.bisect:
        bisect(model, inputs, args.iters)
        return
    runs = []
    with torch.no_grad():
        for i, text in enumerate(args.configs.split(";")):
            label, config = parse_config(text)
            opt = blade.optimize(model, inputs, config=config)
            call = (lambda m: lambda: m(*inputs))(opt)
            runs.append([f"{i}: {label}", call, back_to_back_ms(call, args.iters, warmup=5), wall_ms(call, args.iters)])
            print(f"{runs[-1][0]}: back to back {runs[-1][2]:.3f} ms, per call {runs[-1][3]:.3f} ms (no profiler yet)")
        for run in runs:
            run.append(timeline(f"{run[0]} replay", _profile(run[1]))["span_ms"])
        for run in runs:
            run += [back_to_back_ms(run[1], args.iters, warmup=5), wall_ms(run[1], args.iters)]
    print_table(f"SD 1.5 UNet {args.shape} fp16, CUDA graphs on, ms",
                ["module", "b2b before profiling", "per call before", "replay span (profiled)",
                 "b2b after profiling", "per call after"],
                [[r[0], r[2], r[3], r[4], r[5], r[6]] for r in runs])


def bisect(model, inputs, iters: int) -> None:
    with torch.no_grad():
        first = blade.optimize(model, inputs)
        call0 = lambda: first(*inputs)  # noqa: E731
        rows = [["module 0 alone", back_to_back_ms(call0, iters, warmup=5)],
                ["module 0 again, nothing in between", back_to_back_ms(call0, iters)]]
        second = blade.optimize(model, inputs)
        call1 = (lambda m: lambda: m(*inputs))(second)
        rows.append(["module 1 compiled", back_to_back_ms(call0, iters)])
        for step in ("first call", "second call", "third call (capture)", "replays"):
            for _ in range(1 if step != "replays" else 20):
                call1()
            torch.cuda.synchronize()
            rows.append([f"module 1 {step}", back_to_back_ms(call0, iters)])
        rows.append(["module 1 replays, back to back", back_to_back_ms(call1, iters)])
        model(*inputs)
        torch.cuda.synchronize()
        rows.append(["after an eager call", back_to_back_ms(call0, iters)])
        del second, call1
        torch.cuda.empty_cache()
        rows.append(["module 1 dropped, cache emptied", back_to_back_ms(call0, iters)])
        rows.append(["module 0 replay span (profiled)", timeline("module 0 replay", _profile(call0))["span_ms"]])
    print_table("SD 1.5 UNet fp16, module 0's graphs-on calls back to back (ms) after each step", ["after", "ms"], rows)


if __name__ == "__main__":
    main()
