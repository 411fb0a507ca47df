"""Tuning sweep for the GroupNorm statistics launch: tile size x programs per SM, kernel time of
GroupNorm+SiLU (both launches) at the SD 1.5 shapes. Prints one row per configuration.

    python benchmarks/sweep_groupnorm.py
"""

from __future__ import annotations

import os
import sys

import torch

sys.path.insert(0, os.path.dirname(__file__))
from bench_groupnorm import SHAPES, GnSiluNhwc  # noqa: E402
from common import kernel_ms, print_table  # noqa: E402

import blade  # noqa: E402
from blade.codegen import emit  # noqa: E402
from blade.runtime.launch import KernelLauncher  # noqa: E402


def main() -> None:
    rows = []
    inputs = {}
    for label, n, c, h, w in SHAPES:
        inputs[label] = (GnSiluNhwc(c).cuda().half().eval(),
                         torch.randn(n, c, h, w, device="cuda", dtype=torch.float16)
                         .contiguous(memory_format=torch.channels_last).permute(0, 2, 3, 1))
    for tile in (2048, 4096, 8192):
        emit.GN_STATS_TILE = tile
        opts = {k: blade.optimize(m, (x,), config=blade.Config(cuda_graphs=False)) for k, (m, x) in inputs.items()}
        for pps in (1, 2, 4, 8):
            KernelLauncher.gn_programs_per_sm = pps
            row = [tile, pps]
            with torch.no_grad():
                for k, (m, x) in inputs.items():
                    row.append(kernel_ms(lambda: opts[k](x))[0])
            rows.append(row)
    print_table("GroupNorm+SiLU kernel ms by statistics tile and programs per SM",
                ["tile", "prog/SM"] + [s[0] for s in SHAPES], rows)


if __name__ == "__main__":
    main()
