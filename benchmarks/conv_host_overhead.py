"""Host time to *issue* one convolution, three ways, on the GPU (issue 9's graphs-off host bound):
torch's ``F.conv2d`` (channels-last, cuDNN), Blade's ``CudnnConvolution`` from Python (an
allocation and one native call) and the prepared cuDNN plan's ``run`` alone (what the C++ step
list pays per convolution). Each is timed as the wall time of N back-to-back calls on a problem so
small the GPU keeps up, so the time is the host's.

    python benchmarks/conv_host_overhead.py [--calls 2000] [--api legacy|graph]
"""

from __future__ import annotations

import argparse
import os
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(__file__))
from common import environment, host_us  # noqa: E402

from blade.runtime.cudnn_conv import WORKSPACE_LIMIT, CudnnConvolution  # noqa: E402




def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--calls", type=int, default=2000)
    ap.add_argument("--api", choices=["legacy", "graph"], default="legacy",
                    help="Blade's cuDNN calls: the legacy API or the graph API (execution plans)")
    args = ap.parse_args()
    print(environment())
    conv, why = CudnnConvolution.create(api=args.api)
    assert conv is not None, why
    torch.backends.cudnn.benchmark = True
    print(f"{'problem':<34} {'torch us':>9} {'blade py us':>12} {'native run us':>14} {'no bias':>8} {'torch no bias':>14}")
    for n, c, k, hw in [(1, 8, 8, 8), (2, 320, 320, 64), (1, 128, 128, 256)]:
        x = torch.randn(n, c, hw, hw, device="cuda", dtype=torch.float16).contiguous(memory_format=torch.channels_last)
        w = torch.randn(k, c, 3, 3, device="cuda", dtype=torch.float16).contiguous(memory_format=torch.channels_last)
        b = torch.randn(k, device="cuda", dtype=torch.float16)
        xs = x.permute(0, 2, 3, 1)  # Blade's [N, H, W, C] view of the same memory
        attrs = {"stride": [1, 1], "padding": [1, 1], "dilation": [1, 1], "groups": 1, "layout": "nhwc"}
        conv(attrs, [xs, w, b], search=True)
        problem, shape = conv.describe(attrs, [xs, w, b])
        plan = conv.plan(problem, True, 0)
        out = torch.empty(shape, device="cuda", dtype=torch.float16)
        ws = torch.empty(WORKSPACE_LIMIT, device="cuda", dtype=torch.uint8)  # room for either plan
        stream = torch.cuda.current_stream().cuda_stream
        native = conv.native
        p = (x.data_ptr(), w.data_ptr(), out.data_ptr(), b.data_ptr(), ws.data_ptr())
        t_torch = host_us(lambda: F.conv2d(x, w, b, 1, 1), args.calls)
        t_py = host_us(lambda: conv(attrs, [xs, w, b]), args.calls)
        t_run = host_us(lambda: native.run(plan, *p, stream, 0), args.calls)
        plain = conv.plan(problem, False, 0)  # the same convolution without cudnnAddTensor
        t_plain = host_us(lambda: native.run(plain, p[0], p[1], p[2], 0, p[4], stream, 0), args.calls)
        t_torch_plain = host_us(lambda: F.conv2d(x, w, None, 1, 1), args.calls)
        ref = F.conv2d(x, w, b, 1, 1).permute(0, 2, 3, 1)
        native.run(plan, *p, stream, 0)
        torch.testing.assert_close(out, ref, rtol=2e-2, atol=2e-2)
        print(f"{f'{n}x{c}x{hw}x{hw} -> {k}, 3x3':<34} {t_torch:>9.1f} {t_py:>12.1f} {t_run:>14.1f} {t_plain:>8.1f} {t_torch_plain:>14.1f}  "
              f"({native.api(plan)}, algorithm {native.algorithm(plan)})")


if __name__ == "__main__":
    main()
