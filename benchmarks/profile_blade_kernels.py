"""Where the GPU time of Blade's generated kernels goes in one SD 1.5 UNet step (fp16): time and
launch count per kernel, largest first.

    python benchmarks/profile_blade_kernels.py [BATCHxHEIGHTxWIDTH]
"""

from __future__ import annotations

import collections
import sys

import torch
from torch.profiler import ProfilerActivity, profile

import blade
from blade import models

PREFIXES = ("pointwise_", "row_norm_", "group_norm_")


def main() -> None:
    b, h, w = (int(v) for v in (sys.argv[1] if len(sys.argv) > 1 else "2x512x512").split("x"))
    model = models.unet(torch.float16, "cuda")
    inputs = models.unet_inputs(b, h, w, dtype=torch.float16, device="cuda")
    with torch.no_grad():
        opt = blade.optimize(model, inputs)
        for _ in range(3):
            opt(*inputs)
        torch.cuda.synchronize()
        with profile(activities=[ProfilerActivity.CUDA]) as prof:
            opt(*inputs)
            torch.cuda.synchronize()
    by_name, count = collections.Counter(), collections.Counter()
    other = 0.0
    for e in prof.events():
        if e.device_type != torch.autograd.DeviceType.CUDA:
            continue
        if e.name.startswith(PREFIXES):
            key = e.name.rsplit("_", 2)[0] + ("_stats" if e.name.endswith("_stats") else "_apply" if e.name.endswith("_apply") else "")
            by_name[key] += e.device_time
            count[key] += 1
        else:
            other += e.device_time
    total = sum(by_name.values())
    print(f"Blade kernels: {total / 1000:.3f} ms in {sum(count.values())} launches; other kernels {other / 1000:.3f} ms")
    for name, us in by_name.most_common(25):
        print(f"  {us / 1000:7.3f} ms  {count[name]:4d}x  {us / count[name]:6.1f} us each  {name}")


if __name__ == "__main__":
    main()
