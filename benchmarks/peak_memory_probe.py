"""Where Blade's peak memory at a small shape comes from (issue 9: peak memory at most eager's at
every shape; session 9 measured the SD 1.5 UNet at batch 1, 512x512: Blade 1.75 GiB, eager 1.72).

Per setting, in one process: the peak allocated during eager's call; Blade without graphs: its
first call, its second (which records the C++ step loop) and the loop's calls; Blade with graphs:
its first call (no graph), its second call (warm-up + capture) and replays; and what stays
allocated after each. A separate measurement tells how much a CUDA-graph capture of one ``F.linear`` on the
capture stream leaves allocated (the suspected cause: torch gives every stream its own cuBLAS
workspace, 32 MiB on Hopper, and the capture stream is a new stream).

    python benchmarks/peak_memory_probe.py [--batch 1] [--size 512] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(__file__))
from common import environment  # noqa: E402

import blade  # noqa: E402
from blade import models  # noqa: E402

MIB = 2**20


def _peak(fn) -> tuple[float, float]:
    """(peak MiB allocated during fn, MiB allocated after it)."""
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    fn()
    torch.cuda.synchronize()
    return torch.cuda.max_memory_allocated() / MIB, torch.cuda.memory_allocated() / MIB


def capture_leftover() -> float:
    """MiB that capturing one fp16 ``F.linear`` in a CUDA graph (on torch's capture stream) leaves
    allocated besides the graph's own output, the graph kept alive."""
    x = torch.randn(64, 320, device="cuda", dtype=torch.float16)
    w = torch.randn(320, 320, device="cuda", dtype=torch.float16)
    F.linear(x, w)  # the default stream's workspace exists before the measurement
    torch.cuda.synchronize()
    before = torch.cuda.memory_allocated()
    g = torch.cuda.CUDAGraph()
    s = torch.cuda.Stream()
    with torch.cuda.stream(s):
        F.linear(x, w)  # warm-up on the side stream, as a capture does
    torch.cuda.current_stream().wait_stream(s)
    with torch.cuda.graph(g):
        y = F.linear(x, w)
    torch.cuda.synchronize()
    left = (torch.cuda.memory_allocated() - before - y.numel() * y.element_size()) / MIB
    del g, y
    return left


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    env = environment()
    print(env, flush=True)
    result = {"env": env}
    model = models.unet(torch.float16, "cuda")
    x = models.unet_inputs(args.batch, args.size, args.size, dtype=torch.float16, device="cuda")
    rows = []
    with torch.no_grad():
        model(*x)
        base = torch.cuda.memory_allocated() / MIB
        peak, _ = _peak(lambda: model(*x))
        rows.append(("eager", peak, base))
        # graphs off first: the default's capture leaves torch's cuBLAS workspace of the capture
        # stream allocated for the rest of the process. Without graphs a size's second call records
        # the C++ step loop (session 13: letting intermediates go as it runs) and later calls run it.
        settings = (("blade, graphs off", blade.Config(cuda_graphs=False),
                     ("first call", "second call (records the C++ loop)", "third call (C++ loop)", "C++ loop")),
                    ("blade", blade.Config(), ("first call", "second call (capture)", "replay", "replay")))
        for label, config, calls in settings:
            opt = blade.optimize(model, x, config=config)
            for what in calls:
                peak, after = _peak(lambda: opt(*x))
                rows.append((f"{label}: {what}", peak, after))
            opt = None  # its graphs and arena go before the next setting
            torch.cuda.empty_cache()
    # last: a capture on torch's capture stream leaves that stream's cuBLAS workspace behind (the
    # measurement above must not start with it allocated)
    result["capture_leftover_mib"] = capture_leftover()
    print(f"capture of one F.linear (after the rows below) leaves {result['capture_leftover_mib']:.1f} MiB allocated")
    print(f"SD 1.5 UNet fp16, batch {args.batch}, {args.size}x{args.size}; weights + eager's warm state "
          f"{base:.1f} MiB allocated")
    print(f"{'call':56s} {'peak MiB':>10s} {'allocated after':>16s}")
    for label, peak, after in rows:
        print(f"{label:56s} {peak:10.1f} {after:16.1f}")
    result["rows"] = rows
    if args.out:
        os.makedirs(args.out, exist_ok=True)
        with open(os.path.join(args.out, "peak_memory_probe.json"), "w") as f:
            json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
