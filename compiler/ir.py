"""The one place Blade touches xDSL's module-level APIs: context, parse, print, build, walk.

Passes and importers call these helpers instead of xDSL directly, so an xDSL upgrade (the
version is pinned in ``pyproject.toml``) touches this file and the dialect definitions only.
"""

from __future__ import annotations

import io
import sys
from collections.abc import Iterator, Sequence

import sympy
from xdsl.context import Context
from xdsl.dialects import builtin, func
from xdsl.dialects.builtin import ArrayAttr, IntegerAttr, ModuleOp, StringAttr, i64
from xdsl.ir import Attribute, Block, Operation, Region, SSAValue
from xdsl.parser import Parser
from xdsl.printer import Printer
from xdsl.rewriter import InsertPoint, Rewriter
from xdsl.utils.exceptions import ParseError, VerifyException

from blade.dialects import BLADE
from blade.dialects.program import GuardOp, SymbolOp
from blade.dialects.types import TensorType
from blade.shape_syntax import format_condition, parse_condition_text
from blade.symbolic import Guard, SymbolInfo, SymbolTable

__all__ = [
    "Block", "InsertPoint", "ModuleOp", "Operation", "Region", "Rewriter", "SSAValue", "func",
    "make_context", "parse_module", "read_ir_file", "load_ir_file", "IRFileError", "print_module", "entry_function", "read_symbol_table",
    "write_symbol_table", "walk_ops", "new_module", "replace_all_uses", "erase_op",
]


def make_context() -> Context:
    ctx = Context(allow_unregistered=False)
    ctx.load_dialect(builtin.Builtin)
    ctx.load_dialect(func.Func)
    ctx.load_dialect(BLADE)
    return ctx


class IRFileError(ValueError):
    """An IR file that cannot be read, parsed or verified; the message is one line
    (``file:line:col: what is wrong``), for command-line tools to print without a traceback."""


def read_ir_file(path: str) -> str:
    """The text of an IR file (``-`` is stdin), or ``IRFileError`` saying why it cannot be read."""
    if path == "-":
        return sys.stdin.read()
    try:
        with open(path) as f:
            return f.read()
    except (OSError, UnicodeDecodeError) as e:
        raise IRFileError(f"cannot read {path}: {getattr(e, 'strerror', None) or e}") from e


def parse_module(text: str, name: str = "<input>") -> ModuleOp:
    """Parse and verify a module (raises xDSL's ``ParseError`` / ``VerifyException``)."""
    module = Parser(make_context(), text, name).parse_module()
    module.verify()
    return module


def load_ir_file(path: str) -> ModuleOp:
    """Read, parse and verify an IR file (``-``: stdin) for a command-line tool; every failure is
    an ``IRFileError`` with a one-line message."""
    text = read_ir_file(path)
    try:
        return parse_module(text, path)
    except ParseError as e:
        file, line, col = e.span.get_location()
        raise IRFileError(f"{file}:{line}:{col}: {e.msg}") from e
    except VerifyException as e:
        raise IRFileError(f"{path}: invalid IR: {str(e).strip().splitlines()[0]}") from e


def print_module(module: Operation, generic: bool = False) -> str:
    out = io.StringIO()
    Printer(stream=out, print_generic_format=generic).print_op(module)
    out.write("\n")
    return out.getvalue()


def code_key(module: ModuleOp) -> str:
    """The module's text without what only decides which inputs it accepts: its guards and its
    symbols' ranges. Two programs with one code key compute the same thing the same way (the same
    ops, fused groups, kernels and input bindings); each pipeline run proved its program correct
    for its own guard class, so either's compiled code serves both classes."""
    parts = []
    for op in module.ops:
        if isinstance(op, GuardOp):
            continue
        if isinstance(op, SymbolOp):
            parts.append(f"symbol {op.p('sym_name')} = {op.p('origin', '')}\n")
            continue
        parts.append(print_module(op))
    return "".join(parts)


def new_module(ops: Sequence[Operation] = ()) -> ModuleOp:
    return ModuleOp(list(ops))


def entry_function(module: ModuleOp) -> func.FuncOp:
    funcs = [op for op in module.ops if isinstance(op, func.FuncOp)]
    if len(funcs) != 1:
        raise ValueError(f"a Blade module holds exactly one func.func, found {len(funcs)}")
    return funcs[0]


def walk_ops(root: Operation) -> Iterator[Operation]:
    """Every op nested under ``root`` in program order (``root`` excluded)."""
    for region in root.regions:
        for block in region.blocks:
            for op in block.ops:
                yield op
                yield from walk_ops(op)


def replace_all_uses(old: SSAValue, new: SSAValue) -> None:
    old.replace_all_uses_with(new)


def erase_op(op: Operation) -> None:
    op.detach()
    op.erase()


# --------------------------------------------------------------------------------------------
# the symbol table lives in the module as blade.symbol / blade.guard ops
# --------------------------------------------------------------------------------------------


def read_symbol_table(module: ModuleOp) -> SymbolTable:
    table = SymbolTable()
    for op in module.ops:
        if isinstance(op, SymbolOp):
            table.add(SymbolInfo(op.p("sym_name"), op.p("lo"), op.p("hi"), op.p("origin", "")))
        elif isinstance(op, GuardOp):
            table.guards.append(Guard(parse_condition_text(op.p("cond")), op.p("reason", "")))
    return table


def write_symbol_table(module: ModuleOp, table: SymbolTable) -> None:
    """Replace the module's symbol/guard ops with ``table`` (placed before the function)."""
    for op in list(module.ops):
        if isinstance(op, (SymbolOp, GuardOp)):
            erase_op(op)
    ops: list[Operation] = []
    for info in table.symbols.values():
        props: dict[str, Attribute] = {"sym_name": StringAttr(info.name), "lo": IntegerAttr(info.lo, i64)}
        if info.hi is not None:
            props["hi"] = IntegerAttr(info.hi, i64)
        if info.origin:
            props["origin"] = StringAttr(info.origin)
        ops.append(SymbolOp.create(properties=props))
    for g in table.guards:
        props = {"cond": StringAttr(format_condition(g.cond))}
        if g.reason:
            props["reason"] = StringAttr(g.reason)
        ops.append(GuardOp.create(properties=props))
    block = module.body.block
    if block.first_op is None:
        block.add_ops(ops)
    else:
        block.insert_ops_before(ops, block.first_op)


def input_names(fn: func.FuncOp) -> list[str]:
    attr = fn.attributes.get("blade.input_names")
    if isinstance(attr, ArrayAttr):
        return [a.data for a in attr.data]  # type: ignore[union-attr]
    return [f"arg{i}" for i in range(len(fn.args))]


def set_input_names(fn: func.FuncOp, names: Sequence[str]) -> None:
    fn.attributes["blade.input_names"] = ArrayAttr([StringAttr(n) for n in names])


def tensor_types(values: Sequence[SSAValue]) -> list[TensorType]:
    out = []
    for v in values:
        if not isinstance(v.type, TensorType):
            raise TypeError(f"expected a !blade.tensor value, got {v.type}")
        out.append(v.type)
    return out


def symbols_in(types: Sequence[TensorType]) -> set[sympy.Symbol]:
    out: set[sympy.Symbol] = set()
    for t in types:
        for d in t.shape:
            if d is not None:
                out |= d.free_symbols
    return out


# --------------------------------------------------------------------------------------------
# rewriting (xDSL's pattern rewriter, re-exported so passes import it from here)
# --------------------------------------------------------------------------------------------

from xdsl.passes import ModulePass  # noqa: E402
from xdsl.pattern_rewriter import (  # noqa: E402
    GreedyRewritePatternApplier,
    PatternRewriter,
    PatternRewriteWalker,
    RewritePattern,
    op_type_rewrite_pattern,
)
from xdsl.transforms.dead_code_elimination import region_dce  # noqa: E402

__all__ += ["ModulePass", "PatternRewriter", "RewritePattern", "op_type_rewrite_pattern",
            "apply_patterns", "forward_op", "remove_dead_code"]


def apply_patterns(module: ModuleOp, patterns: Sequence[RewritePattern]) -> None:
    """Apply ``patterns`` greedily until nothing changes, removing dead ops between walks."""
    PatternRewriteWalker(GreedyRewritePatternApplier(list(patterns)), post_walk_func=region_dce).rewrite_module(module)


def forward_op(rewriter: PatternRewriter, op: Operation, value: SSAValue) -> None:
    """Replace every use of ``op``'s single result with ``value`` and erase ``op``."""
    rewriter.replace(op, [], [value])


def remove_dead_code(module: ModuleOp) -> None:
    for op in module.ops:
        for region in op.regions:
            region_dce(region)


def set_value_type(value: SSAValue, new_type: Attribute) -> None:
    """Retype an SSA value in place (shape propagation fills in dims this way)."""
    value._type = new_type  # noqa: SLF001 - xDSL has no public setter; kept to this one place


def sync_function_type(fn: func.FuncOp) -> None:
    """Make ``fn``'s signature match its block arguments and its return's operand types."""
    from xdsl.dialects.builtin import FunctionType

    ret = fn.body.block.last_op
    outs = [v.type for v in ret.operands] if ret is not None else []
    fn.properties["function_type"] = FunctionType.from_lists([a.type for a in fn.body.block.args], outs)


def parse_pass_pipeline(text: str) -> list[ModulePass]:
    """``"canonicalize,cluster-supported"`` (with ``name{opt=value}`` options) -> pass objects."""
    from xdsl.utils.arg_spec import parse_pipeline

    from blade.passes import get_pass

    return [get_pass(spec.name).from_spec(spec) for spec in parse_pipeline(text)]
