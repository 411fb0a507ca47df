"""The ``blade`` command (also ``python -m blade``).

    blade demo                  optimize the built-in SD 1.5 UNet, run two shapes, check vs eager
    blade demo --model vae      ... the VAE decoder; --model clip: the CLIP text encoder
    blade inspect FILE.mlir     symbols, guards and op counts of an IR file
"""

from __future__ import annotations

import argparse
import os
import sys
import time

DEMO_SHAPES = {
    # model: (cpu shapes, gpu shapes); unet/vae: (batch, height px, width px), clip: (batch, tokens)
    "unet": ([(2, 128, 128), (1, 192, 320)], [(2, 512, 512), (1, 768, 512)]),
    "vae": ([(1, 128, 128), (2, 96, 200)], [(1, 512, 512), (1, 768, 768)]),
    "clip": ([(2, 77), (1, 19)], [(2, 77), (3, 40)]),
}


def _build(model: str, dtype, device):
    from blade import models

    if model == "unet":
        return models.unet(dtype, device), lambda s, seed: models.unet_inputs(*s, dtype=dtype, device=device, seed=seed)
    if model == "vae":
        return models.vae_decoder(dtype, device), lambda s, seed: models.vae_inputs(*s, dtype=dtype, device=device, seed=seed)
    if model == "clip":
        return models.clip_text_encoder(dtype, device), lambda s, seed: models.clip_inputs(*s, device=device, seed=seed)
    raise ValueError(f"unknown model {model!r}")


def _label(model: str, shape: tuple) -> str:
    """A demo shape in words: ``batch 2, 512x512 px`` (height x width) or ``batch 2, 77 tokens``."""
    if model == "clip":
        return f"batch {shape[0]}, {shape[1]} tokens"
    return f"batch {shape[0]}, {shape[1]}x{shape[2]} px (height x width)"


def _first_tensor(out):
    import torch

    if isinstance(out, torch.Tensor):
        return out
    if hasattr(out, "sample"):
        return out.sample
    if hasattr(out, "last_hidden_state"):
        return out.last_hidden_state
    return out[0]


def demo(args) -> int:
    import torch

    import blade

    device = args.device if args.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    fp16 = device == "cuda" and not args.fp32
    dtype = torch.float16 if fp16 else torch.float32
    shapes = DEMO_SHAPES[args.model][1 if device == "cuda" else 0]
    print(f"Blade demo: SD 1.5 {args.model} (public config, random weights) on {device}, "
          f"{'fp16' if fp16 else 'fp32'}; torch {torch.__version__}")
    t0 = time.perf_counter()
    model, make_inputs = _build(args.model, dtype, device)
    print(f"built the model in {time.perf_counter() - t0:.1f} s")
    # verbose: every compile stage prints as it starts and ends (export alone takes 10-60 s), and
    # the compile report follows
    cfg = blade.Config(verbose=not args.quiet, dump_dir=args.dump_dir)
    print(f"optimizing for {_label(args.model, shapes[0])} ...", flush=True)
    with cfg, torch.no_grad():
        t0 = time.perf_counter()
        opt = blade.optimize(model, make_inputs(shapes[0], 0))
        compile_s = time.perf_counter() - t0
    if args.quiet:
        print(opt.report.format())
    print(f"optimize took {compile_s:.1f} s (one compile for every shape below)")
    if args.dump_dir:
        dumps = sorted(os.listdir(args.dump_dir))
        print(f"IR after import and after every pass: {os.path.abspath(args.dump_dir)}/ "
              f"({dumps[0]} ... {dumps[-1]}, {len(dumps)} files)")
    ok = True
    ref_model = None
    for i, shape in enumerate(shapes):
        inputs = make_inputs(shape, 100 + i)
        with torch.no_grad():
            t0 = time.perf_counter()
            out = _first_tensor(opt(*inputs))
            t_blade = time.perf_counter() - t0
            t0 = time.perf_counter()
            ref = _first_tensor(model(*inputs))
            t_eager = time.perf_counter() - t0
            if fp16:  # the bar: error vs an fp32 reference at most 2x eager fp16's error
                if ref_model is None:
                    ref_model, _ = _build(args.model, torch.float32, device)
                ref32 = _first_tensor(ref_model(*[x.float() if x.is_floating_point() else x for x in inputs]))
                err_blade = (out.float() - ref32).abs().max().item()
                err_eager = (ref.float() - ref32).abs().max().item()
                passed = err_blade <= 2 * err_eager + 1e-6
                detail = f"max err vs fp32: blade {err_blade:.3e}, eager fp16 {err_eager:.3e}"
            else:
                err = (out - ref).abs().max().item() / max(ref.abs().max().item(), 1e-12)
                passed = err < 1e-4
                detail = f"max abs err / output scale {err:.2e}"
        ok &= passed
        print(f"  {_label(args.model, shape)}: output {tuple(out.shape)}, {detail} -> {'OK' if passed else 'MISMATCH'}; "
              f"blade {t_blade * 1e3:.0f} ms, eager {t_eager * 1e3:.0f} ms (reference executor, not tuned)")
    print(f"variants compiled: {len(opt.variants)}")
    print("result:", "all shapes match eager" if ok else "MISMATCH")
    return 0 if ok else 1


def inspect(args) -> int:
    import collections

    from blade.ir import IRFileError, entry_function, load_ir_file, read_symbol_table, walk_ops
    from blade.shape_syntax import format_condition, format_shape

    try:
        module = load_ir_file(args.file)
    except IRFileError as e:
        print(f"blade inspect: error: {e}", file=sys.stderr)
        return 1
    table = read_symbol_table(module)
    print(f"{args.file}:")
    print(f"symbols ({len(table.symbols)}):")
    for info in table.symbols.values():
        hi = "inf" if info.hi is None else info.hi
        print(f"  {info.name:6s} in [{info.lo}, {hi}]  {info.origin}")
    print(f"guards ({len(table.guards)}):")
    for g in table.guards:
        print(f"  {format_condition(g.cond)}    ({g.reason})" if g.reason else f"  {format_condition(g.cond)}")
    fn = entry_function(module)
    print("inputs:  " + ", ".join(format_shape(a.type.shape) for a in fn.body.block.args))
    print("outputs: " + ", ".join(format_shape(t.shape) for t in fn.function_type.outputs.data))
    counts = collections.Counter(op.name for op in walk_ops(fn))
    print(f"ops ({sum(counts.values())}):")
    for name, n in counts.most_common():
        print(f"  {n:6d}  {name}")
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="blade", description="Blade: dynamic-shape inference compiler")
    sub = ap.add_subparsers(dest="cmd", required=True)
    d = sub.add_parser("demo", help="optimize a built-in SD 1.5 model and check it against eager")
    d.add_argument("--model", choices=sorted(DEMO_SHAPES), default="unet")
    d.add_argument("--device", default="auto", help="cpu, cuda or auto")
    d.add_argument("--fp32", action="store_true", help="on CUDA, run in fp32 instead of fp16")
    d.add_argument("--dump-dir", default=None, help="write the IR after every pass here")
    d.add_argument("-q", "--quiet", action="store_true", help="no progress output while compiling")
    i = sub.add_parser("inspect", help="print symbols, guards and op counts of an IR file")
    i.add_argument("file")
    args = ap.parse_args(argv)
    return {"demo": demo, "inspect": inspect}[args.cmd](args)


if __name__ == "__main__":
    sys.exit(main())
