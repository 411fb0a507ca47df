"""Where a new input shape's first call goes (SD 1.5 UNet, fp16, GPU): compile at batch 2,
512x512, warm up there, time the steady state (CUDA graphs on), then the first call of new shapes,
each profiled with cProfile (top functions printed). Three settings in one run: torch's default
attention backends, flash/memory-efficient attention only (cuDNN's attention builds a plan per
new shape), and that without cuDNN's convolution algorithm search.

    python benchmarks/first_call_profile.py [--precompile N] [--top 8] [--default-only]
"""

from __future__ import annotations

import argparse
import contextlib
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


def steady_ms(opt, x, iters: int = 30) -> float:
    """Median wall ms per call at one shape, CUDA graphs on (after its capture)."""
    with torch.no_grad():
        for _ in range(3):
            opt(*x)
        torch.cuda.synchronize()
        times = []
        for _ in range(iters):
            t0 = time.perf_counter()
            opt(*x)
            torch.cuda.synchronize()
            times.append((time.perf_counter() - t0) * 1e3)
    return sorted(times)[len(times) // 2]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--precompile", type=int, default=0)
    ap.add_argument("--top", type=int, default=8)
    ap.add_argument("--default-only", action="store_true",
                    help="only Blade's defaults (its own first-call attention choice), at shapes of the compile's "
                         "guard class")
    a = ap.parse_args()
    from torch.nn.attention import SDPBackend, sdpa_kernel

    m16 = models.unet(torch.float16, "cuda")
    x0 = unet_call_inputs(2, 64, 64, 77, 768, "cuda", 0)
    # each setting gets shapes no earlier setting ran (cuDNN keeps per-shape plans in the process)
    settings = [("default SDPA backends", None, [(3, 64, 64), (1, 72, 56), (3, 65, 89)]),
                ("flash/efficient SDPA only", [SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION],
                 [(3, 56, 64), (1, 80, 48), (3, 67, 83)]),
                ("no conv algorithm search, flash/efficient", [SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION],
                 [(3, 48, 72), (1, 88, 40), (3, 61, 77)])]
    if a.default_only:
        settings = [("Blade's defaults", None, [(3, 64, 64), (1, 72, 56), (2, 56, 80), (3, 80, 48)])]
    summary = []
    for label, backends, shapes in settings:
        search = not label.startswith("no conv")
        t0 = time.perf_counter()
        opt = blade.optimize(m16, x0, config=blade.Config(enable_fp16=True, conv_algorithm_search=search,
                                                          precompile_guard_classes=a.precompile))
        compiled = time.perf_counter() - t0
        opt.wait_precompiled()
        ctx = sdpa_kernel(backends) if backends else contextlib.nullcontext()
        with ctx:
            with torch.no_grad():
                opt(*x0)
            steady = steady_ms(opt, x0)
            times = first_calls(opt, shapes, a.top, label)
        summary.append((label, compiled, steady, list(zip(shapes, times))))
        del opt
    for label, compiled, steady, times in summary:
        print(f"{label}: compile {compiled:.1f} s; 2x512 graphs on {steady:.2f} ms; first calls: "
              + ", ".join(f"{b}x{h}x{w} {s:.2f} s" for (b, h, w), s in times))


if __name__ == "__main__":
    main()
