"""SD 1.5 components, fp16, side by side in one process on one GPU: eager PyTorch, torch.compile
(reduce-overhead: CUDA graphs, static shapes, recompiles per shape) and Blade (one compile for every
shape), Blade with CUDA graphs on (a graph per repeated shape) and off.

Per workload: ms per call (CUDA events around each call alone, median; "back to back": calls
issued without waiting, the GPU synchronised at the end, the larger of host and GPU time), Blade's host time per call (the time ``opt(x)``
takes to return, without waiting for the GPU: what a launch-bound caller pays), compile time and
the first call at a new shape, peak memory, Blade's generated-kernel GPU time, and the largest
difference from eager's output. Rows are printed and saved as they are measured, so a run cut
short by a time limit still leaves its numbers; ``--time-budget`` stops starting new models when
the budget is near.

    python benchmarks/bench_models.py --models vae,unet,clip [--no-compile] [--quick] [--out DIR]
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(__file__))
from common import back_to_back_ms, bar_plot, environment, kernel_ms, print_table, save_json, wall_ms  # noqa: E402

import blade  # noqa: E402
from blade import models  # noqa: E402

SHAPES = {
    "vae": [(1, 512, 512), (1, 768, 768)],
    "unet": [(2, 512, 512), (2, 768, 768), (1, 512, 512)],
    "clip": [(2, 77), (1, 77)],
}
BLADE_KERNEL_PREFIXES = ("pointwise_", "row_norm_", "group_norm_")


def _build(name: str):
    if name == "vae":
        return models.vae_decoder(torch.float16, "cuda"), lambda s: models.vae_inputs(*s, dtype=torch.float16, device="cuda")
    if name == "unet":
        return models.unet(torch.float16, "cuda"), lambda s: models.unet_inputs(*s, dtype=torch.float16, device="cuda")
    return models.clip_text_encoder(torch.float16, "cuda"), lambda s: models.clip_inputs(*s, device="cuda")


def _out(x):
    for attr in ("sample", "last_hidden_state"):
        if hasattr(x, attr):
            return getattr(x, attr)
    return x


def _peak(fn) -> tuple[float, float]:
    """(seconds of the call, peak GiB allocated during it)."""
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    fn()
    torch.cuda.synchronize()
    return time.perf_counter() - t0, torch.cuda.max_memory_allocated() / 2**30


HEADER = ["workload", "eager", "compile", "blade", "blade no graphs", "back to back", "no graphs back to back",
          "host ms", "host ms no graphs",
          "program", "program host ms", "C++ loop", "its host ms", "C++ loop+cuBLASLt", "its host ms", "blade kernels ms", "kernels", "blade compile s", "compile s", "peak GiB",
          "max diff"]


def program_runner(opt, model, gemm_library: str = "torch", native_loop: bool = False, **libraries):
    """The first variant lowered to a Program with this GPU's cubins, run by the Program executor
    (generated kernels through the C++ driver launcher, no graphs; GEMMs through torch or, with
    ``gemm_library="cublaslt"``, cuBLASLt from the C++ runtime; ``libraries``: more
    ``TorchProvider`` settings, ``conv_library`` / ``attention_library``; ``native_loop``: the
    launches from the C++ step list, ``runtime/native_loop.py``); None (and why) if it cannot."""
    try:
        from blade.lower_program import lower_program
        from blade.runtime.host_provider import TorchProvider
        from blade.runtime.program_executor import ProgramExecutor, module_weights

        major, minor = torch.cuda.get_device_capability()
        prog = lower_program(opt.variants[0].program, target=("cuda", major * 10 + minor, 32))
        return ProgramExecutor(prog, module_weights(prog, model),
                               providers={"torch": TorchProvider(gemm_library=gemm_library, **libraries)},
                               native_loop=native_loop), ""
    except Exception as e:  # noqa: BLE001 - a benchmark column, reported, not fatal
        return None, f"{type(e).__name__}: {str(e)[:300]}"


def time_program(runner, x, reference) -> tuple[float, float, str]:
    nan = float("nan")
    if runner is None:
        return nan, nan, ""
    try:
        out = runner.run(list(x))[0].float()
        diff = (out - reference).abs().max().item()
        return wall_ms(lambda: runner.run(list(x))), host_ms(lambda: runner.run(list(x))), f"{diff:.2e}"
    except Exception as e:  # noqa: BLE001
        return nan, nan, f"{type(e).__name__}: {str(e)[:300]}"


def host_ms(fn, iters: int = 20) -> float:
    """Median host milliseconds until ``fn()`` returns (the GPU may still be working)."""
    fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(iters):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
        torch.cuda.synchronize()
    times.sort()
    return times[len(times) // 2]


def bench_model(name: str, with_compile: bool, quick: bool, program: bool, rows: list, records: list, save,
                configs=(("", None),)) -> None:
    """Eager for every shape, then torch.compile for every shape (its graphs freed afterwards), then
    Blade: each system's peak memory holds only its own buffers, and Blade (which re-lays-out the
    convolution weights in place, ``Config.convert_weights_in_place``) runs last."""
    model, make = _build(name)
    shapes = SHAPES[name][:1] if quick else SHAPES[name]
    torch.backends.cuda.matmul.allow_tf32 = True
    inputs = [make(s) for s in shapes]
    nan = float("nan")
    eager, comp = {}, {}
    with torch.no_grad():
        for i, x in enumerate(inputs):
            _, mem = _peak(lambda: model(*x))
            eager[i] = (wall_ms(lambda: model(*x)), mem, _out(model(*x)).float())
        if with_compile:
            torch._dynamo.reset()
            import torch._inductor.config as ic

            ic.conv_1x1_as_mm = True
            compiled = torch.compile(model, mode="reduce-overhead", fullgraph=True)
            for i, x in enumerate(inputs):
                first, mem = _peak(lambda: _out(compiled(*x)).clone())
                comp[i] = (wall_ms(lambda: _out(compiled(*x))), first, mem)
            del compiled
            torch._dynamo.reset()
            gc.collect()
            torch.cuda.empty_cache()
        for cfg_label, cfg in configs:
            t0 = time.perf_counter()
            opt = blade.optimize(model, inputs[0], config=cfg)
            blade_compile = time.perf_counter() - t0
            runner, why = program_runner(opt, model) if program else (None, "")
            runner_nl, why_nl = program_runner(opt, model, native_loop=True) if program else (None, "")
            runner_lt, why_lt = program_runner(opt, model, "cublaslt", native_loop=True) if program else (None, "")
            for w in (why, why_nl, why_lt):
                if w:
                    print(f"[bench] {name}: no Program run ({w})", flush=True)
            for i, (shape, x) in enumerate(zip(shapes, inputs)):
                first_blade, mem_blade = _peak(lambda: _out(opt(*x)))  # a new shape's first call
                diff = (_out(opt(*x)).float() - eager[i][2]).abs().max().item()
                opt.cuda_graphs = False
                t_nograph = wall_ms(lambda: opt(*x))
                h_nograph = host_ms(lambda: opt(*x))
                b_nograph = back_to_back_ms(lambda: opt(*x))
                opt.cuda_graphs = True
                t_blade = wall_ms(lambda: opt(*x))
                h_blade = host_ms(lambda: opt(*x))
                b_blade = back_to_back_ms(lambda: opt(*x))
                _, mem_blade2 = _peak(lambda: opt(*x))
                mem_blade = max(mem_blade, mem_blade2)
                t_kern, n_kern = kernel_ms(lambda: opt(*x), name_filter=lambda n: n.startswith(BLADE_KERNEL_PREFIXES))
                t_prog, h_prog, prog_note = time_program(runner, x, eager[i][2])
                t_nl, h_nl, nl_note = time_program(runner_nl, x, eager[i][2])
                t_lt, h_lt, lt_note = time_program(runner_lt, x, eager[i][2])
                if runner_nl is not None:
                    print(f"[bench] {name} {shape}: C++ loop: {runner_nl.native_stats}", flush=True)
                for note in (prog_note, nl_note, lt_note):
                    if note and not note[0].isdigit():
                        print(f"[bench] {name} {shape}: Program run failed ({note})", flush=True)
                t_eager, mem_eager, _ = eager[i]
                t_comp, first_comp, mem_comp = comp.get(i, (nan, nan, nan))
                label = f"{name} " + "x".join(str(v) for v in shape) + (f" [{cfg_label}]" if cfg_label else "")
                rows.append([label, t_eager, t_comp, t_blade, t_nograph, b_blade, b_nograph, h_blade, h_nograph, t_prog, h_prog, t_nl, h_nl, t_lt, h_lt, t_kern, int(n_kern),
                             f"{blade_compile:.1f}" if i == 0 else f"+{first_blade:.2f}", f"{first_comp:.1f}",
                             f"{mem_eager:.2f}/{mem_comp:.2f}/{mem_blade:.2f}", f"{diff:.2e}"])
                records.append(dict(workload=label, eager_ms=t_eager, compile_ms=t_comp, blade_ms=t_blade,
                                    blade_nograph_ms=t_nograph, blade_back_to_back_ms=b_blade,
                                    blade_nograph_back_to_back_ms=b_nograph, blade_host_ms=h_blade, blade_nograph_host_ms=h_nograph,
                                    program_ms=t_prog, program_host_ms=h_prog, program_note=prog_note,
                                    program_native_loop_ms=t_nl, program_native_loop_host_ms=h_nl,
                                    program_native_loop_note=nl_note, program_cublaslt_ms=t_lt, program_cublaslt_host_ms=h_lt, program_cublaslt_note=lt_note,
                                    blade_kernel_ms=t_kern, blade_kernels=n_kern, blade_compile_s=blade_compile,
                                    blade_first_call_s=first_blade, compile_first_call_s=first_comp,
                                    peak_gib_eager=mem_eager, peak_gib_compile=mem_comp, peak_gib_blade=mem_blade,
                                    max_diff_vs_eager=diff, variants=len(opt.variants)))
                print("  ".join(str(v) for v in rows[-1]), flush=True)
                save()
            opt = runner = runner_nl = runner_lt = None  # the next configuration starts from eager's memory
            gc.collect()
            torch.cuda.empty_cache()
    del model
    gc.collect()
    torch.cuda.empty_cache()


def parse_config(text: str) -> tuple[str, "blade.Config | None"]:
    """('label', Config) of 'default' or 'field=value,...' (values: true/false, ints, strings)."""
    text = text.strip()
    if text in ("", "default"):
        return "default", None
    fields = {}
    for item in text.split(","):
        key, _, value = item.partition("=")
        low = value.strip().lower()
        fields[key.strip()] = True if low == "true" else False if low == "false" else \
            int(low) if low.lstrip("-").isdigit() else value.strip()
    label = "+".join(k if v is True else f"{k.removesuffix('_library')}={v}" for k, v in fields.items())
    return label, blade.Config(**fields)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default="vae,clip,unet")
    ap.add_argument("--no-compile", action="store_true", help="skip torch.compile")
    ap.add_argument("--compile-models", default=None,
                    help="run torch.compile only for these models (its UNet compile takes minutes per shape)")
    ap.add_argument("--quick", action="store_true", help="the first shape of each model only")
    ap.add_argument("--program", action="store_true",
                    help="also run the first variant as a Program (C++ cubin launcher, Python step loop, no graphs); "
                         "run it in its own invocation once tests/gpu/test_gpu_program.py passes: a mislaunch "
                         "ends the process's CUDA context and every measurement after it")
    ap.add_argument("--time-budget", type=float, default=None,
                    help="seconds: start no new model after 60%% of it (a UNet with torch.compile takes minutes)")
    ap.add_argument("--out", default=".")
    ap.add_argument("--cudnn-benchmark", action="store_true",
                    help="set torch.backends.cudnn.benchmark for eager and torch.compile too (Blade times its "
                         "convolution algorithms either way: Config.conv_algorithm_search)")
    ap.add_argument("--blade-configs", default="",
                    help="Blade compiled once per configuration, side by side: ';'-separated, each 'default' or "
                         "comma-separated Config fields, e.g. 'default;executor=program,gemm_library=cublaslt'. "
                         "Each configuration runs in its own process (a Blade module made later in a process "
                         "replays its CUDA graphs ~0.2 ms slower: benchmarks/graph_replay_probe.py); torch.compile "
                         "only in the first")
    ap.add_argument("--one-process", action="store_true",
                    help="all --blade-configs in this process, one after another (the order then biases them)")
    args = ap.parse_args()
    specs = args.blade_configs.split(";") if args.blade_configs else []
    if len(specs) > 1 and not args.one_process:
        return _configs_in_processes(args, specs)
    configs = [parse_config(s) for s in specs] if specs else [("", None)]
    start = time.perf_counter()
    torch.backends.cudnn.benchmark = args.cudnn_benchmark
    env = environment()
    rows, records = [], []
    compile_for = set(args.compile_models.split(",")) if args.compile_models else set(args.models.split(","))
    os.makedirs(args.out, exist_ok=True)
    stem = "models_cudnn_benchmark" if args.cudnn_benchmark else "models"
    title = (f"SD 1.5 fp16 ms per call ({env['device']}, torch {env['torch']}, triton {env['triton']}, {env['date']}"
             f"{', cudnn.benchmark on for all' if args.cudnn_benchmark else ''}); host ms: Blade's time to return "
             "(graphs on / off); program: the variant run as a Program (no graphs; +cuBLASLt: its GEMMs through cuBLASLt from the C++ runtime); compile s: Blade once (+first call of a new shape, s), torch.compile per shape; "
             "peak GiB eager/compile/blade; max diff: Blade vs eager fp16 output")

    def save():
        save_json(os.path.join(args.out, f"{stem}.json"),
                  {"env": env, "cudnn_benchmark": args.cudnn_benchmark, "rows": records, "table": rows})

    print("  ".join(HEADER), flush=True)
    for name in args.models.split(","):
        if args.time_budget is not None and time.perf_counter() - start > 0.6 * args.time_budget:
            print(f"[bench] time budget: {name} not run", flush=True)
            continue
        bench_model(name, not args.no_compile and name in compile_for, args.quick, args.program, rows, records, save,
                    configs)
    _write(args.out, stem, title, rows, records)


def _write(out: str, stem: str, title: str, rows: list, records: list) -> None:
    text = print_table(title, HEADER, rows)
    with open(os.path.join(out, f"{stem}.txt"), "w") as f:
        f.write(text + "\n")
    bar_plot(os.path.join(out, f"{stem}.png"), "SD 1.5 fp16 ms per call (lower is better)",
             [r["workload"] for r in records],
             {k: [r[f"{k}_ms"] for r in records] for k in ("eager", "compile", "blade", "blade_nograph")}, "ms")


def _configs_in_processes(args, specs: list[str]) -> None:
    """Each Blade configuration in a process of its own (this script again, ``--one-process``,
    one configuration, its results under ``out/config<i>``), torch.compile in the first only;
    the tables merged into one, written as a single run writes it."""
    import json
    import subprocess

    argv = _without_option(_without_option(sys.argv[1:], "--blade-configs"), "--out")
    stem = "models_cudnn_benchmark" if args.cudnn_benchmark else "models"
    rows, records, title = [], [], ""
    for i, spec in enumerate(specs):
        out = os.path.join(args.out, f"config{i}")
        child = argv + ["--blade-configs", spec, "--out", out, "--one-process"] + (["--no-compile"] if i else [])
        print(f"[bench] configuration {spec!r} in its own process", flush=True)
        subprocess.run([sys.executable, os.path.abspath(__file__), *child], check=True)
        with open(os.path.join(out, f"{stem}.json")) as f:
            result = json.load(f)
        rows += result["table"]
        records += result["rows"]
        with open(os.path.join(out, f"{stem}.txt")) as f:
            title = f.readline().rstrip("\n") + " (each configuration in its own process)"
    save_json(os.path.join(args.out, f"{stem}.json"), {"rows": records, "table": rows, "configs": specs})
    _write(args.out, stem, title, rows, records)


def _without_option(argv: list[str], name: str) -> list[str]:
    """``argv`` without ``name VALUE`` / ``name=VALUE``."""
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
        elif a == name:
            skip = True
        elif not a.startswith(name + "="):
            out.append(a)
    return out


if __name__ == "__main__":
    main()
