"""Tuning sweeps for the two GroupNorm schedules, kernel time of GroupNorm+SiLU at the SD 1.5
shapes (one row per configuration, ``-`` where a schedule does not apply):

* one launch (``*_res``): the (tile elements, warps) of the register-resident variants;
* two launches (``*_stats`` + ``*_apply``, forced at every shape): statistics programs per SM,
  statistics tiles per loop step x programs per SM, each launch timed on its own.

    python benchmarks/sweep_groupnorm.py [--resident] [--out DIR]
"""

from __future__ import annotations

import argparse
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(__file__))
from bench_groupnorm import SHAPES, GnSiluNhwc  # noqa: E402
from common import kernel_ms, print_table  # noqa: E402

import blade  # noqa: E402
from blade.codegen import emit  # noqa: E402
from blade.executors.launch import KernelLauncher  # noqa: E402

RESIDENT = {
    "4/8/16 warps": ((4096, 4), (16384, 8), (32768, 16)),
    "8/16/32 warps": ((4096, 8), (16384, 16), (32768, 32)),
    "2/4/8 warps": ((4096, 2), (16384, 4), (32768, 8)),
    "4/8 warps, 8192 tile": ((4096, 4), (8192, 8), (16384, 8)),
}


def _inputs():
    out = {}
    for label, n, c, h, w in SHAPES:
        out[label] = (GnSiluNhwc(c).cuda().half().eval(),
                      torch.randn(n, c, h, w, device="cuda", dtype=torch.float16)
                      .contiguous(memory_format=torch.channels_last).permute(0, 2, 3, 1))
    return out


def _time(opts, inputs, schedule):
    row = []
    KernelLauncher.gn_schedule = schedule
    with torch.no_grad():
        for k, (m, x) in inputs.items():
            opts[k](x)
            ran = opts[k].variants[0].program.launch_stats.by_kernel
            ok = any(n.endswith("_res") for n in ran) == (schedule == "one")
            row.append(kernel_ms(lambda: opts[k](x))[0] if ok else "-")
            ran.clear()
    KernelLauncher.gn_schedule = "auto"
    return row


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=None)
    ap.add_argument("--unroll", default="1,4,8", help="statistics tiles per loop step to try (a compile each)")
    ap.add_argument("--resident", action="store_true", help="also sweep the one-launch tiles (a compile each)")
    args = ap.parse_args()
    inputs = _inputs()
    cfg = blade.Config(cuda_graphs=False)
    texts = []
    if args.resident:
        rows = []
        default = emit.GN_RESIDENT_TILES
        for name, tiles in RESIDENT.items():
            emit.GN_RESIDENT_TILES = tiles
            opts = {k: blade.optimize(m, (x,), config=cfg) for k, (m, x) in inputs.items()}
            rows.append([name] + _time(opts, inputs, "one"))
        emit.GN_RESIDENT_TILES = default
        texts.append(print_table("GroupNorm+SiLU kernel ms, one launch, by resident tiles (elements, warps)",
                                 ["resident tiles"] + [s[0] for s in SHAPES], rows))
    rows = []
    default = emit.GN_STATS_UNROLL
    for unroll in (int(u) for u in args.unroll.split(",")):
        emit.GN_STATS_UNROLL = unroll
        opts = {k: blade.optimize(m, (x,), config=cfg) for k, (m, x) in inputs.items()}
        KernelLauncher.gn_schedule = "two"
        for pps in (1, 2, 4):
            KernelLauncher.gn_programs_per_sm = pps
            row = [unroll, pps]
            with torch.no_grad():
                for k, (m, x) in inputs.items():
                    stats = kernel_ms(lambda: opts[k](x), name_filter=lambda n: n.endswith("_stats"))[0]
                    apply = kernel_ms(lambda: opts[k](x), name_filter=lambda n: n.endswith("_apply"))[0]
                    row.append(f"{stats:.3f}+{apply:.3f}")
            rows.append(row)
    emit.GN_STATS_UNROLL = default
    KernelLauncher.gn_programs_per_sm = 2
    KernelLauncher.gn_schedule = "auto"
    texts.append(print_table(f"GroupNorm+SiLU kernel ms, two launches (statistics + apply), statistics tile "
                             f"{emit.GN_STATS_TILE}, by tiles per loop step and statistics programs per SM",
                             ["unroll", "prog/SM"] + [s[0] for s in SHAPES], rows))
    if args.out:
        with open(os.path.join(args.out, "sweep_groupnorm.txt"), "w") as f:
            f.write("\n\n".join(texts) + "\n")


if __name__ == "__main__":
    main()
