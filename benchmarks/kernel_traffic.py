"""The DRAM-traffic floor of Blade's generated kernels in one SD 1.5 call (runs on a CPU).

For every fused group (one generated kernel) it adds the bytes of the tensors the kernel must read
and write (each input once, each output once, at fp16) at the given shape, and divides by a
bandwidth: no memory-bound kernel can beat that time, so it says how far tuning alone can go and
what only removing traffic (fusing into GEMM/conv epilogues) can buy. GroupNorm's two-launch
schedule reads its input twice; the floor counts it once (the one-launch ideal).

    python benchmarks/kernel_traffic.py [--model unet|vae|clip] [--bandwidth 3.35] [SHAPE]

SHAPE is BATCHxHEIGHTxWIDTH (unet, vae) or BATCHxSEQ (clip); bandwidth in TB/s (H100 SXM HBM3:
3.35 peak; about 3.0 is what a streaming kernel reaches).
"""

from __future__ import annotations

import argparse
import collections
import math

import torch

import blade
from blade import models
from blade.codegen.emit import iteration_space
from blade.dialects.kernel import FusedOp
from blade.executors.reference import ReferenceExecutor
from blade.symbolic import evaluate

_FLOAT_BYTES = 2  # the GPU runs in fp16


def _bytes(t, symbols) -> int:
    size = 1 if str(t.element_type) == "i1" else (_FLOAT_BYTES if str(t.element_type).startswith(("f", "bf")) else 8)
    return size * math.prod(evaluate(d, symbols) for d in t.shape)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="unet", choices=["unet", "vae", "clip"])
    ap.add_argument("--bandwidth", type=float, default=3.35, help="TB/s")
    ap.add_argument("shape", nargs="?", default=None)
    args = ap.parse_args()
    dims = tuple(int(v) for v in args.shape.split("x")) if args.shape else None
    if args.model == "unet":
        model, inputs = models.unet(), models.unet_inputs(*(dims or (2, 512, 512)))
    elif args.model == "vae":
        model, inputs = models.vae_decoder(), models.vae_inputs(*(dims or (1, 512, 512)))
    else:
        model, inputs = models.clip_text_encoder(), models.clip_inputs(*(dims or (2, 77)))
    opt = blade.optimize(model, inputs, config=blade.Config(executor="reference"))
    module = opt.report.module
    symbols = ReferenceExecutor(module, weights=None).bind(list(inputs))
    by_kind, count = collections.Counter(), collections.Counter()
    for op in module.walk():
        if not isinstance(op, FusedOp):
            continue
        moved = sum(_bytes(v.type, symbols) for v in op.inputs) + sum(_bytes(v.type, symbols) for v in op.outputs)
        key = f"{op.p('kind')}: {op.p('ops')}"
        by_kind[key] += moved
        count[key] += 1
    bw = args.bandwidth * 1e12
    total = sum(by_kind.values())
    label = args.shape or "default shape"
    print(f"{args.model} {label}: generated kernels move {total / 1e6:.0f} MB per call -> floor "
          f"{total / bw * 1e3:.3f} ms at {args.bandwidth} TB/s ({sum(count.values())} kernels)")
    for key, b in by_kind.most_common():
        print(f"  {b / bw * 1e3:7.3f} ms  {count[key]:3d}x  {b / 1e6:8.1f} MB  {key}")


if __name__ == "__main__":
    main()
