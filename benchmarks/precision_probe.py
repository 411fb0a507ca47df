"""Where does Blade's float16 error come from? A debugging aid for a model that misses the fp16
bar (tests/gpu/test_zoo.py): Blade's error against the float32 model is compared with eager
float16's, then split by cause.

    python benchmarks/precision_probe.py sdxl_unet 3x96x136x19 [--reduced]

Prints, on the same inputs (errors are max |x - fp32 eager| over the first output tensor):
  eager fp16                        the bar's reference (the bar is twice this)
  blade, generated kernels          what users get
  blade, reference semantics        the same compiled program with every fused group run op by op
                                    in PyTorch (float16 tensors): the program's own precision,
                                    independent of the generated kernels
and the fused groups whose kernel output differs most from their op-by-op float16 result on
the same inputs, in units of float16 resolution (2**-10 of the output's largest magnitude): a
kernel far above a few units computes something less precisely than its ops do.
"""

from __future__ import annotations

import argparse
import copy

import torch
import torch.utils._pytree as pytree

import blade
from blade import models
from blade.executors.reference import ReferenceExecutor
from blade.executors.triton_executor import KernelExecutor


def _first(out) -> torch.Tensor:
    return next(x for x in pytree.tree_leaves(out) if isinstance(x, torch.Tensor))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("model", choices=sorted(models.ZOO))
    ap.add_argument("shape", help="the zoo's input shape, e.g. 3x96x136x19 for a UNet")
    ap.add_argument("--reduced", action="store_true")
    ap.add_argument("--top", type=int, default=15)
    ap.add_argument("--device", default="cuda", help="cpu needs TRITON_INTERPRET=1 (slow: reduced models only)")
    a = ap.parse_args()
    zoo = models.ZOO[a.model]
    shape = tuple(int(v) for v in a.shape.split("x"))
    m32 = zoo.build(dtype=torch.float32, device=a.device, reduced=a.reduced)
    m16 = copy.deepcopy(m32).half()
    ex_args, ex_kwargs = zoo.inputs(zoo.reduced_example if a.reduced else zoo.example, reduced=a.reduced, device=a.device)
    opt = blade.optimize(m32, ex_args, model_kwargs=ex_kwargs, config=blade.Config(enable_fp16=True, cuda_graphs=False, executor="kernels"))
    args, kwargs = zoo.inputs(shape, reduced=a.reduced, device=a.device, seed=20)
    half = pytree.tree_map(lambda t: t.half() if isinstance(t, torch.Tensor) and t.is_floating_point()
                           and t.dim() > 0 else t, (args, kwargs))
    with torch.no_grad():
        ref32 = _first(m32(*args, **kwargs)).float()
        err = lambda out: (_first(out).float() - ref32).abs().max().item()  # noqa: E731
        print(f"{a.model} at {shape}: |fp32 output| max {ref32.abs().max().item():.3e}")
        print(f"  eager fp16                    {err(m16(*half[0], **half[1])):.3e}")
        print(f"  blade, generated kernels      {err(opt(*args, **kwargs)):.3e}")
        kernel_run_fused = KernelExecutor.run_fused
        KernelExecutor.run_fused = ReferenceExecutor.run_fused
        try:
            print(f"  blade, reference semantics    {err(opt(*args, **kwargs)):.3e}")
        finally:
            KernelExecutor.run_fused = kernel_run_fused
        rows = []

        def compare(self, op, fused_args, symbols, device):
            outs = kernel_run_fused(self, op, fused_args, symbols, device)
            launcher = self.launchers.get(op.p("id"))
            if launcher is None:
                return outs
            refs = ReferenceExecutor.run_fused(self, op, fused_args, symbols, device)
            for o, r in zip(outs, refs):
                if o.is_floating_point() and o.numel():
                    scale = r.float().abs().max().item() * 2.0 ** -10 or 1.0
                    units = (o.float() - r.float()).abs().max().item() / scale
                    members = [m.name.removeprefix("blade.") for m in op.body.block.ops][:8]
                    rows.append((units, launcher.plan.name, tuple(o.shape), str(o.dtype).removeprefix("torch."),
                                 " ".join(members)))
            return outs

        KernelExecutor.run_fused = compare
        try:
            opt(*args, **kwargs)
        finally:
            KernelExecutor.run_fused = kernel_run_fused
    rows.sort(key=lambda r: -r[0])
    print(f"\n{len(rows)} fused-group outputs; the {a.top} furthest from their op-by-op float16 result "
          "(units of 2**-10 x max|ref|):")
    for units, name, shp, dt, members in rows[:a.top]:
        print(f"  {units:8.2f}  {name:40s} {str(shp):24s} {dt:8s} {members}")


if __name__ == "__main__":
    main()
