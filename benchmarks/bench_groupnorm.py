"""GroupNorm+SiLU at the SD 1.5 UNet and VAE shapes: eager (NCHW and channels-last),
torch.compile and Blade's fused NHWC kernel, GPU kernel time per call (fp16). Blade's column is the
schedule it picks at launch; the one-launch (where a group fits one program) and two-launch
schedules are also timed forced.

    python benchmarks/bench_groupnorm.py [--out DIR]
"""

from __future__ import annotations

import argparse
import os
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(__file__))
from common import bar_plot, environment, kernel_ms, print_table, save_json  # noqa: E402

import blade  # noqa: E402
from blade.executors.launch import KernelLauncher  # noqa: E402

SHAPES = [  # (label, N, C, H, W)
    ("unet 64x64x320", 2, 320, 64, 64), ("unet 32x32x640", 2, 640, 32, 32),
    ("unet 16x16x1280", 2, 1280, 16, 16), ("unet 8x8x1280", 2, 1280, 8, 8),
    ("vae 64x64x512", 1, 512, 64, 64), ("vae 128x128x512", 1, 512, 128, 128),
    ("vae 256x256x256", 1, 256, 256, 256), ("vae 512x512x128", 1, 128, 512, 512),
]


class GnSiluNhwc(torch.nn.Module):
    """GroupNorm(32)+SiLU on an NHWC tensor, written the way a model sees it (NCHW view)."""

    def __init__(self, c):
        super().__init__()
        self.norm = torch.nn.GroupNorm(32, c)

    def forward(self, x_nhwc):
        return F.silu(self.norm(x_nhwc.permute(0, 3, 1, 2))).permute(0, 2, 3, 1)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=".")
    args = ap.parse_args()
    env = environment()
    rows, data = [], {"env": env, "rows": []}
    torch.manual_seed(0)
    for label, n, c, h, w in SHAPES:
        m = GnSiluNhwc(c).cuda().half().eval()
        with torch.no_grad():
            m.norm.weight.uniform_(0.5, 1.5)
            m.norm.bias.uniform_(-0.5, 0.5)
        x_nchw = torch.randn(n, c, h, w, device="cuda", dtype=torch.float16)
        x_cl = x_nchw.contiguous(memory_format=torch.channels_last)
        x_nhwc = x_cl.permute(0, 2, 3, 1)  # contiguous NHWC storage
        eager = lambda: F.silu(m.norm(x_nchw))  # noqa: E731
        eager_cl = lambda: F.silu(m.norm(x_cl))  # noqa: E731
        torch._dynamo.reset()
        compiled = torch.compile(lambda x: F.silu(m.norm(x)), dynamic=False)
        comp = lambda: compiled(x_cl)  # noqa: E731
        opt = blade.optimize(m, (x_nhwc,), config=blade.Config(cuda_graphs=False))
        bl = lambda: opt(x_nhwc)  # noqa: E731
        with torch.no_grad():
            ref = eager_cl().permute(0, 2, 3, 1).float()
            err = (bl().float() - ref).abs().max().item()
            t_e, k_e = kernel_ms(eager)
            t_cl, k_cl = kernel_ms(eager_cl)
            t_c, k_c = kernel_ms(comp)
            t_b, k_b = kernel_ms(bl)  # the schedule Blade picks (auto)
            forced = {}
            ran = opt.variants[0].program.launch_stats.by_kernel
            for schedule in ("one", "two"):
                KernelLauncher.gn_schedule = schedule
                ran.clear()
                err = max(err, (bl().float() - ref).abs().max().item())
                fits = schedule == "two" or any(k.endswith("_res") for k in ran)
                forced[schedule] = kernel_ms(bl)[0] if fits else float("nan")  # one launch: small groups only
            KernelLauncher.gn_schedule = "auto"
        gb = 2 * x_nchw.numel() * 2 / 1e9  # bytes of one read + one write, fp16, in GB
        rows.append([label, t_e, t_cl, t_c, t_b, forced["one"], forced["two"], f"{t_e / t_b:.2f}x", f"{t_c / t_b:.2f}x", f"{gb / (t_b / 1e3):.0f}",
                     f"{k_e:.0f}/{k_c:.0f}/{k_b:.0f}", f"{err:.1e}"])
        data["rows"].append(dict(shape=label, eager_ms=t_e, eager_cl_ms=t_cl, compile_ms=t_c, blade_ms=t_b,
                                 blade_one_launch_ms=forced["one"], blade_two_launch_ms=forced["two"], max_err=err))
    text = print_table(f"GroupNorm+SiLU fp16, GPU kernel ms per call ({env['device']}, torch {env['torch']}, "
                       f"triton {env['triton']}, {env['date']})",
                       ["shape", "eager", "eager CL", "compile", "blade", "blade 1-launch", "blade 2-launch", "vs eager", "vs compile",
                        "blade GB/s (1R+1W)", "kernels e/c/b", "max err"], rows)
    os.makedirs(args.out, exist_ok=True)
    save_json(os.path.join(args.out, "groupnorm.json"), data)
    with open(os.path.join(args.out, "groupnorm.txt"), "w") as f:
        f.write(text + "\n")
    bar_plot(os.path.join(args.out, "groupnorm.png"), "GroupNorm+SiLU fp16 kernel time (lower is better)",
             [r["shape"] for r in data["rows"]],
             {k: [r[f"{k}_ms"] for r in data["rows"]] for k in ("eager", "eager_cl", "compile", "blade")}, "ms")


if __name__ == "__main__":
    main()
