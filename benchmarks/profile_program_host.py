"""Where the Program executor's host time goes: the SD 1.5 UNet (fp16, batch 2, 512x512; until
session 11 this script ran 64x64 pixels) compiled
once, its first variant run as a Program (``bench_models.program_runner``), then ``cProfile`` over
a few calls with the GPU synchronised only at the end (the host issues ahead, as in serving).
Prints the functions by own time and the per-call step counts by kind.

    python benchmarks/profile_program_host.py [--model unet|vae|clip] [--size 512] [--calls 10] [--gemm-library cublaslt]
        [--conv-library cudnn] [--attention-library cudnn] [--native-loop]
"""

import argparse
import cProfile
import collections
import os
import pstats
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(__file__))
import bench_models  # noqa: E402

import blade  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="unet", choices=["unet", "vae", "clip"])
    ap.add_argument("--calls", type=int, default=10)
    ap.add_argument("--size", type=int, default=512, help="image pixels (the UNet at batch 2, the VAE at 1)")
    ap.add_argument("--gemm-library", default="torch", choices=["torch", "cublaslt"])
    ap.add_argument("--conv-library", default="torch", choices=["torch", "cudnn"])
    ap.add_argument("--attention-library", default="torch", choices=["torch", "cudnn"])
    ap.add_argument("--native-loop", action="store_true", help="the C++ step list (runtime/native_loop.py)")
    args = ap.parse_args()
    model, make = bench_models._build(args.model)
    x = make({"unet": (2, args.size, args.size), "vae": (1, args.size, args.size), "clip": (2, 77)}[args.model])
    opt = blade.optimize(model, x)  # as bench_models does (the model is already fp16)
    runner, why = bench_models.program_runner(opt, model, args.gemm_library, args.native_loop,
                                              conv_library=args.conv_library,
                                              attention_library=args.attention_library)
    if runner is None:
        raise SystemExit(f"no Program: {why}")
    steps = collections.Counter(s.kind if s.kind != "library_call" else f"library {s.op}" for s in runner.program.steps)
    print("steps per call:", dict(steps.most_common()))
    with torch.no_grad():
        for _ in range(3):
            runner.run(list(x))
        torch.cuda.synchronize()
        blocks = []
        for _ in range(3):  # three blocks: a transient (a first native call, a late tuning) shows
            t0 = time.perf_counter()
            for _ in range(args.calls):
                runner.run(list(x))
            blocks.append((time.perf_counter() - t0) / args.calls * 1e3)
            torch.cuda.synchronize()
        print(f"host ms per call (no profiler), 3 blocks of {args.calls}: {', '.join(f'{b:.2f}' for b in blocks)}; "
              f"C++ loop: {runner.native_stats}")
        prof = cProfile.Profile()
        prof.enable()
        for _ in range(args.calls):
            runner.run(list(x))
        prof.disable()
        torch.cuda.synchronize()
    pstats.Stats(prof).sort_stats("tottime").print_stats(30)


if __name__ == "__main__":
    main()
