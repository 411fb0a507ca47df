"""A ``BladeModule`` on Programs without CUDA graphs, looked into: per shape, the host time of
``opt(x)`` against its executor's own (``ProgramExecutor.run``), the C++ step loop's statistics,
the arena bytes of the call plan (the Program's arena, the loop's GEMM-result arena), the peak
memory of a call, and a cProfile of ``opt(x)`` (what the module adds around the executor).

    python benchmarks/program_module_probe.py [--config executor=program,gemm_library=cublaslt]
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import sys
import time

import torch
import torch.utils._pytree as pytree

sys.path.insert(0, os.path.dirname(__file__))
import bench_models  # noqa: E402

from blade import models  # noqa: E402

MIB = 2**20


def _host_ms(fn, n: int = 10) -> float:
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(n):
        fn()
    ms = (time.perf_counter() - t0) / n * 1e3
    torch.cuda.synchronize()
    return ms


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", default="executor=program,gemm_library=cublaslt")
    ap.add_argument("--shapes", default="2x512x512,1x512x512")
    args = ap.parse_args()
    import blade

    label, config = bench_models.parse_config(args.config)
    model = models.unet(torch.float16, "cuda")
    shapes = [tuple(int(v) for v in s.split("x")) for s in args.shapes.split(",")]
    inputs = [models.unet_inputs(*s, dtype=torch.float16, device="cuda") for s in shapes]
    with torch.no_grad():
        opt = blade.optimize(model, inputs[0], config=config)
        for shape, x in zip(shapes, inputs):
            for _ in range(3):
                opt(*x)
            opt.cuda_graphs = False
            flat = [t for t in pytree.tree_leaves(x) if isinstance(t, torch.Tensor)]
            runner = opt.variants[0].executor.runner
            module_ms = _host_ms(lambda: opt(*x))
            runner_ms = _host_ms(lambda: runner.run(flat))
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            base = torch.cuda.memory_allocated()
            opt(*x)
            torch.cuda.synchronize()
            peak = (torch.cuda.max_memory_allocated() - base) / MIB
            plans = [(p.total / MIB, p.native._gemm_arena.total / MIB if p.native is not None else 0.0)
                     for p in runner._call_plans.values()]
            print(f"[{label}] {shape}: host ms opt(x) {module_ms:.2f}, executor alone {runner_ms:.2f}; "
                  f"peak above resident {peak:.0f} MiB; call plans (arena MiB, GEMM arena MiB): "
                  f"{[(round(a), round(g)) for a, g in plans]}; stats {runner.native_stats}", flush=True)
            prof = cProfile.Profile()
            prof.enable()
            for _ in range(5):
                opt(*x)
            prof.disable()
            torch.cuda.synchronize()
            pstats.Stats(prof).sort_stats("tottime").print_stats(18)
            opt.cuda_graphs = True


if __name__ == "__main__":
    main()
