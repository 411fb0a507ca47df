"""A concatenation two ways, on the GPU: ``torch.cat`` and the C++ step list's copies of rows
(``runtime/native_loop.concat_rows`` + ``StepList.add_copy``: one ``cuMemcpy2DAsync`` per input).
Per problem (the SD 1.5 UNet's channels-last skip connections at batch 2, 512x512, and a packed
one): GPU microseconds per concatenation (CUDA events over N back-to-back calls) and host
microseconds to issue one (wall time of N calls on a small problem is the host's).

    python benchmarks/concat_copy.py [--calls 500]
"""

from __future__ import annotations

import argparse
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(__file__))
from common import environment, host_us  # noqa: E402

from blade.runtime.native_loop import concat_rows  # noqa: E402
from blade.runtime.shape_eval import load_native  # noqa: E402


def _gpu_us(fn, calls: int) -> float:
    for _ in range(20):
        fn()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(calls):
        fn()
    end.record()
    torch.cuda.synchronize()
    return start.elapsed_time(end) / calls * 1e3


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--calls", type=int, default=500)
    args = ap.parse_args()
    print(environment())
    native = load_native()
    stream = torch.cuda.current_stream().cuda_stream
    cl = torch.channels_last
    problems = [  # (name, inputs, dim)
        ("2x(1280+1280)x8x8 NHWC", [(2, 1280, 8, 8), (2, 1280, 8, 8)], 1),
        ("2x(1280+640)x32x32 NHWC", [(2, 1280, 32, 32), (2, 640, 32, 32)], 1),
        ("2x(640+320)x64x64 NHWC", [(2, 640, 64, 64), (2, 320, 64, 64)], 1),
        ("2x(320+320)x64x64 NHWC", [(2, 320, 64, 64), (2, 320, 64, 64)], 1),
        ("packed 2x(77+77)x768 dim 1", [(2, 77, 768), (2, 77, 768)], -2),
    ]
    print(f"{'problem':<30} {'torch.cat GPU us':>17} {'copies GPU us':>14} {'torch.cat host us':>18} {'copies host us':>15}")
    for name, shapes, dim in problems:
        ins = [torch.randn(s, device="cuda", dtype=torch.float16) for s in shapes]
        if len(shapes[0]) == 4:
            ins = [t.contiguous(memory_format=cl) for t in ins]
        out = torch.cat(ins, dim)
        copies = concat_rows(ins, out, dim)
        assert copies is not None, name
        steps = native.StepList()
        for k, (offset, dst_pitch, src_pitch, width, rows) in enumerate(copies):
            steps.add_copy([0, k + 1], [offset, 0], dst_pitch, src_pitch, width, rows, f"{name} input {k}")
        got = torch.empty_like(out)
        call = steps.call([got.data_ptr()] + [t.data_ptr() for t in ins])
        n = len(steps)
        call.run(stream, 0, 0, n)
        torch.cuda.synchronize()
        assert torch.equal(got, out), name
        t_cat = _gpu_us(lambda: torch.cat(ins, dim, out=got), args.calls)
        t_copy = _gpu_us(lambda: call.run(stream, 0, 0, n), args.calls)
        h_cat = host_us(lambda: torch.cat(ins, dim, out=got), args.calls)
        h_copy = host_us(lambda: call.run(stream, 0, 0, n), args.calls)
        print(f"{name:<30} {t_cat:>17.1f} {t_copy:>14.1f} {h_cat:>18.1f} {h_copy:>15.1f}")


if __name__ == "__main__":
    main()
