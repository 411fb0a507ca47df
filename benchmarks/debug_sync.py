"""Debugging aid: run a model through the kernel executor with a device synchronisation after every
op and every kernel launch, so the first failing op or kernel is named (CUDA errors are otherwise
reported asynchronously, at some later call).

    CUDA_LAUNCH_BLOCKING=1 python benchmarks/debug_sync.py unet 1x256x256
"""

from __future__ import annotations

import sys

import torch

import blade
from blade import models
from blade.executors import launch, triton_executor


def main() -> None:
    name = sys.argv[1] if len(sys.argv) > 1 else "unet"
    shape = tuple(int(v) for v in (sys.argv[2] if len(sys.argv) > 2 else "1x256x256").split("x"))
    build = {"unet": (models.unet, models.unet_inputs), "vae": (models.vae_decoder, models.vae_inputs),
             "clip": (models.clip_text_encoder, None)}[name]
    model = build[0](torch.float16, "cuda")
    inputs = build[1](*shape, dtype=torch.float16, device="cuda") if build[1] else models.clip_inputs(*shape, device="cuda")
    opt = blade.optimize(model, inputs, config=blade.Config(cuda_graphs=False, check_shapes=True))

    real_launch = launch.KernelLauncher._launch

    def checked_launch(self, index, grid, named):
        try:
            real_launch(self, index, grid, named)
            torch.cuda.synchronize()
        except Exception:
            v = self.plan.variants[index]
            shapes = {k: (tuple(t.shape), tuple(t.stride())) for k, t in named.items() if isinstance(t, torch.Tensor)}
            print(f"FAILED kernel {v.kernel} {v.constexprs} aligned={v.aligned} grid={grid}\n  tensors {shapes}\n"
                  f"  scalars { {k: t for k, t in named.items() if not isinstance(t, torch.Tensor)} }", flush=True)
            raise

    launch.KernelLauncher._launch = checked_launch
    real_op = triton_executor.KernelExecutor._run_op

    def checked_op(self, op, args, symbols, device):
        out = real_op(self, op, args, symbols, device)
        try:
            torch.cuda.synchronize()
        except Exception:
            print(f"FAILED op {op.name} with inputs {[tuple(a.shape) for a in args]}", flush=True)
            raise
        return out

    triton_executor.KernelExecutor._run_op = checked_op
    with torch.no_grad():
        out = opt(*inputs)
        torch.cuda.synchronize()
    print("ok", type(out).__name__)


if __name__ == "__main__":
    main()
