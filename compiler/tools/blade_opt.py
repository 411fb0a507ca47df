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

from blade.ir import make_context, parse_module, parse_pass_pipeline, print_module


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
        from blade.passes import get_all_passes

        for name, load in sorted(get_all_passes().items()):
            doc = (load().__module__ and sys.modules[load().__module__].__doc__ or "").strip().split("\n")[0]
            print(f"{name:24s} {doc}")
        return 0

    text = sys.stdin.read() if args.input == "-" else open(args.input).read()
    try:
        module = parse_module(text, args.input)
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
