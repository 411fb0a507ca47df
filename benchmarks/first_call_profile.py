"""Where a new input shape's first call goes (SD 1.5 UNet, fp16, GPU): compile at batch 2,
512x512 with ``Config.precompile_guard_classes``, wait for the background compiles, then time the
first call of several new shapes (in the compile's guard class and in precompiled ones), each
profiled with cProfile (top functions printed), once with cuDNN's algorithm search per new
convolution shape (``Config.conv_algorithm_search``) and once without.

    python benchmarks/first_call_profile.py [--precompile 3] [--top 18]
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import blade  # noqa: E402
from blade import models  # noqa: E402
from tests.gpu.test_unet_fuzz import unet_call_inputs  # noqa: E402


def first_calls(opt, shapes, top: int, label: str) -> list[float]:
    times = []
    for seed, (b, h, w) in enumerate(shapes):
        x, t, ctx = unet_call_inputs(b, h, w, 77, 768, "cuda", 100 + seed)
        torch.cuda.synchronize()
        prof = cProfile.Profile()
        t0 = time.perf_counter()
        prof.enable()
        with torch.no_grad():
            opt(x, t, ctx)
        torch.cuda.synchronize()
        prof.disable()
        times.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        with torch.no_grad():
            opt(x, t, ctx)
        torch.cuda.synchronize()
        second = time.perf_counter() - t0
        out = io.StringIO()
        pstats.Stats(prof, stream=out).sort_stats("tottime").print_stats(top)
        print(f"\n=== {label}: first call at batch {b}, latent {h}x{w}: {times[-1]:.2f} s "
              f"(second call {second * 1e3:.1f} ms); top functions by own time:")
        print("\n".join(out.getvalue().splitlines()[6:6 + top + 3]), flush=True)
    return times


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--precompile", type=int, default=3)
    ap.add_argument("--top", type=int, default=18)
    a = ap.parse_args()
    m16 = models.unet(torch.float16, "cuda")
    x0 = unet_call_inputs(2, 64, 64, 77, 768, "cuda", 0)
    summary = []
    for search in (True, False):
        t0 = time.perf_counter()
        opt = blade.optimize(m16, x0, config=blade.Config(enable_fp16=True, conv_algorithm_search=search,
                                                          precompile_guard_classes=a.precompile if search else 0))
        compiled = time.perf_counter() - t0
        opt.wait_precompiled()
        waited = time.perf_counter() - t0 - compiled
        with torch.no_grad():
            opt(*x0)
        shapes = [(3, 64, 64), (1, 72, 56), (3, 65, 89), (1, 64, 71)] if search else [(3, 64, 64), (1, 72, 56)]
        times = first_calls(opt, shapes, a.top, f"conv_algorithm_search={search}")
        summary.append((search, compiled, waited, list(zip(shapes, times)), len(opt.variants)))
        del opt
    for search, compiled, waited, times, n in summary:
        print(f"conv_algorithm_search={search}: compile {compiled:.1f} s, background {waited:.1f} s, {n} variants; "
              "first calls: " + ", ".join(f"{b}x{h}x{w} {s:.2f} s" for (b, h, w), s in times))


if __name__ == "__main__":
    main()
