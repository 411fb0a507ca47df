"""``blade-opt``: run Blade passes on an IR file, like ``mlir-opt``.

    blade-opt model.mlir -p canonicalize,shape-propagation
    blade-opt model.mlir -p cluster-supported --print-ir-after-all --generic
    blade-opt --list-passes

Reads ``-`` as stdin. The result is verified and printed to stdout (``-o`` for a file); with
``--print-ir-after-all`` each pass's output also goes to stderr under a
``// -----// IR Dump After <pass> //----- //`` banner, as in MLIR.
"""

from __future__ import annotations

import argparse
import sys



def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="blade-opt", description=__doc__.split("\n\n")[0])
    ap.add_argument("input", nargs="?", default="-", help="IR file (default: stdin)")
    ap.add_argument("-p", "--passes", default="", help="comma-separated pass pipeline")
    ap.add_argument("-o", "--output", default="-", help="output file (default: stdout)")
    ap.add_argument("--print-ir-after-all", action="store_true", help="print the IR after every pass to stderr")
    ap.add_argument("--generic", action="store_true", help="print the generic (MLIR-compatible) form")
    ap.add_argument("--list-passes", action="store_true", help="list the registered passes and exit")
    args = ap.parse_args(argv)

    if args.list_passes:
        from blade.passes import get_all_passes, pass_summary

        for name in sorted(get_all_passes()):
            print(f"{name:20s} {pass_summary(name)}")
        return 0

    # imported here: --list-passes and --help need none of the IR (the dialects import torch)
    from blade.ir import IRFileError, load_ir_file, make_context, parse_pass_pipeline, print_module

    try:
        module = load_ir_file(args.input)
    except IRFileError as e:
        sys.stderr.write(f"blade-opt: error: {e}\n")
        return 1
    try:
        ctx = make_context()
        for p in parse_pass_pipeline(args.passes) if args.passes else []:
            p.apply(ctx, module)
            module.verify()
            if args.print_ir_after_all:
                sys.stderr.write(f"// -----// IR Dump After {p.name} //----- //\n")
                sys.stderr.write(print_module(module, generic=args.generic))
    except Exception as e:  # noqa: BLE001 - a command-line tool reports and exits non-zero
        sys.stderr.write(f"blade-opt: error: {type(e).__name__}: {e}\n")
        return 1
    out = print_module(module, generic=args.generic)
    if args.output == "-":
        sys.stdout.write(out)
    else:
        with open(args.output, "w") as f:
            f.write(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
