"""Triton expressions for the elementwise ops of a fusion group.

Values are computed in registers in a *compute type*: float32 for every float storage type,
int64/int32 for integers, int1 for booleans. Loads convert to it and stores convert back, so a
float16 program accumulates in float32 inside a kernel (never less precise than eager).
``blade.cast`` rounds through its target storage type, so a kernel reproduces the rounding the
program asks for.
"""

from __future__ import annotations

import math

from xdsl.ir import Operation

from blade.dialects import elementwise as ew
from blade.dialects.data_movement import ConstantOp
from blade.dialects.types import TensorType

# storage element type (as printed) -> (triton storage type, compute type)
STORAGE = {
    "f16": ("tl.float16", "tl.float32"), "bf16": ("tl.bfloat16", "tl.float32"),
    "f32": ("tl.float32", "tl.float32"), "i64": ("tl.int64", "tl.int64"),
    "i32": ("tl.int32", "tl.int32"), "i1": ("tl.int1", "tl.int1"),
}
POINTER = {"f16": "*fp16", "bf16": "*bf16", "f32": "*fp32", "i64": "*i64", "i32": "*i32", "i1": "*i1"}


class Unsupported(Exception):
    """An op (or one use of it) has no Triton expression; the planner keeps it out of kernels."""


def storage(t: TensorType) -> str:
    name = str(t.element_type)
    if name not in STORAGE:
        raise Unsupported(f"element type {name} in a kernel")
    return name


def compute_type(t: TensorType) -> str:
    return STORAGE[storage(t)][1]


def is_float(t: TensorType) -> bool:
    return compute_type(t) == "tl.float32"


def _pow(a: str, b: str) -> str:
    """``a ** b`` in float32 as ``torch.pow`` computes it: ``2 ** (b * log2 |a|)``, negative for a
    negative base and an odd integer exponent, NaN for a negative finite base and a fractional one;
    ``b == 0`` or ``a == 1`` give 1 (NaNs included) and ``(-1) ** +-inf`` gives 1, as C's pow. A
    RoPE frequency table (``10000 ** (arange / d)``) is one. Relative error about
    ``|b log2 a|`` float32 ulps."""
    r = f"tl.exp2(({b}) * tl.log2(tl.abs({a})))"
    whole = f"(tl.floor({b}) == ({b}))"
    odd = f"({whole} & (tl.abs(({b}) - 2.0 * tl.floor(({b}) * 0.5)) == 1.0))"
    fraction = f"tl.where(({a}) == float('-inf'), {r}, float('nan'))"  # (-inf) ** 0.5 is inf, not NaN
    signed = f"tl.where({a} < 0, tl.where({whole}, tl.where({odd}, -{r}, {r}), {fraction}), {r})"
    one = f"((({b}) == 0) | (({a}) == 1) | ((({a}) == -1) & (tl.abs({b}) == float('inf'))))"
    return f"tl.where({one}, 1.0, {signed})"


def _tanh(a: str) -> str:
    return f"(2.0 * tl.sigmoid(2.0 * {a}) - 1.0)"


UNARY = {
    ew.NegOp: lambda a: f"-{a}",
    ew.ExpOp: lambda a: f"tl.exp({a})",
    ew.LogOp: lambda a: f"tl.log({a})",
    ew.Log1pOp: lambda a: f"tl.log(1.0 + {a})",
    ew.Expm1Op: lambda a: f"(tl.exp({a}) - 1.0)",
    ew.SqrtOp: lambda a: f"tl.sqrt({a})",
    ew.RsqrtOp: lambda a: f"tl.rsqrt({a})",
    ew.SinOp: lambda a: f"tl.sin({a})",
    ew.CosOp: lambda a: f"tl.cos({a})",
    ew.TanhOp: _tanh,
    ew.SigmoidOp: lambda a: f"tl.sigmoid({a})",
    ew.SiluOp: lambda a: f"({a} * tl.sigmoid({a}))",
    ew.ReluOp: lambda a: f"tl.maximum({a}, 0.0)",
    ew.AbsOp: lambda a: f"tl.abs({a})",
    ew.ErfOp: lambda a: f"tl.erf({a})",
    ew.ReciprocalOp: lambda a: f"(1.0 / {a})",
    ew.LogicalNotOp: lambda a: f"({a} == 0)",
    ew.FloorOp: lambda a: f"tl.floor({a})",
    ew.CeilOp: lambda a: f"tl.ceil({a})",
    ew.TruncOp: lambda a: f"tl.where({a} < 0.0, tl.ceil({a}), tl.floor({a}))",
    ew.RoundOp: lambda a: _round_half_even(a),
    ew.Log2Op: lambda a: f"tl.log2({a})",
    ew.Exp2Op: lambda a: f"tl.exp2({a})",
}
#: ops that are the identity on integers (PyTorch returns the input's values)
INTEGER_IDENTITY = (ew.FloorOp, ew.CeilOp, ew.TruncOp, ew.RoundOp)


def _round_half_even(a: str) -> str:
    """torch.round: to nearest, ties to even. ``floor(a + 0.5)`` is wrong twice over (ties go up,
    and ``0.49999997 + 0.5`` rounds to 1.0 in float32); ``a - floor(a)`` is exact, so the tie test
    is too. Values past 2**23 are integers already (fraction 0)."""
    r = f"tl.floor({a})"
    d = f"({a} - {r})"
    odd = f"(({r} - 2.0 * tl.floor({r} * 0.5)) == 1.0)"
    return f"tl.where(({d} > 0.5) | (({d} == 0.5) & {odd}), {r} + 1.0, {r})"

BINARY = {
    ew.AddOp: "({a} + {b})", ew.SubOp: "({a} - {b})", ew.MulOp: "({a} * {b})", ew.DivOp: "({a} / {b})",
    ew.MaximumOp: "tl.maximum({a}, {b})", ew.MinimumOp: "tl.minimum({a}, {b})",
    ew.EqOp: "({a} == {b})", ew.NeOp: "({a} != {b})", ew.LtOp: "({a} < {b})", ew.LeOp: "({a} <= {b})",
    ew.GtOp: "({a} > {b})", ew.GeOp: "({a} >= {b})", ew.LogicalAndOp: "({a} & {b})",
    ew.LogicalOrOp: "({a} | {b})",
}
COMPARISONS = (ew.EqOp, ew.NeOp, ew.LtOp, ew.LeOp, ew.GtOp, ew.GeOp)


def constant_literal(op: ConstantOp) -> str:
    v = op.p("value")
    ct = compute_type(op.out_type)
    if ct == "tl.int1":
        return "True" if v else "False"
    if ct in ("tl.int64", "tl.int32"):
        return str(int(v))
    return float_literal(float(v))


def float_literal(v: float) -> str:
    """A float as Triton source: ``repr`` for finite values, ``float('inf')`` / ``float('-inf')``
    / ``float('nan')`` otherwise (``inf`` and ``nan`` are no names in a kernel)."""
    return repr(v) if math.isfinite(v) else f"float('{v}')"


def expression(op: Operation, args: list[str], arg_types: list[TensorType], constants: dict) -> str:
    """The Triton expression of ``op`` given its operands' expressions (in compute types).

    ``constants`` maps operand index -> Python literal value for operands that are constants.
    """
    out_t = op.results[0].type
    out_c = compute_type(out_t)
    if isinstance(op, ew.CastOp):
        st = STORAGE[storage(out_t)][0]
        return f"{args[0]}.to({st}).to({out_c})"
    if isinstance(op, ew.GeluOp):
        a = args[0]
        if op.p("approximate", "none") == "tanh":
            inner = _tanh(f"0.7978845608028654 * ({a} + 0.044715 * {a} * {a} * {a})")
            return f"(0.5 * {a} * (1.0 + {inner}))"
        return f"(0.5 * {a} * (1.0 + tl.erf({a} * 0.7071067811865476)))"
    if isinstance(op, ew.SignOp):
        # (a > 0) - (a < 0): 0 for 0 and NaN, as PyTorch
        a = args[0]
        return f"(({a} > 0).to({out_c}) - ({a} < 0).to({out_c}))"
    if isinstance(op, (ew.IsnanOp, ew.IsinfOp)):
        a = args[0]
        if not is_float(arg_types[0]):
            return f"({a} != {a})"  # integers are never NaN or infinite
        return f"({a} != {a})" if isinstance(op, ew.IsnanOp) else f"(tl.abs({a}) == float('inf'))"
    if isinstance(op, INTEGER_IDENTITY) and not is_float(arg_types[0]):
        return _as(args[0], arg_types[0], out_c)
    if type(op) in UNARY:
        a = _as(args[0], arg_types[0], out_c)
        return UNARY[type(op)](a)
    if isinstance(op, ew.WhereOp):
        return f"tl.where({args[0]}, {_as(args[1], arg_types[1], out_c)}, {_as(args[2], arg_types[2], out_c)})"
    if isinstance(op, ew.PowOp):
        e = constants.get(1)
        base = _as(args[0], arg_types[0], out_c)
        table = {2.0: f"({base} * {base})", 3.0: f"({base} * {base} * {base})", 0.5: f"tl.sqrt({base})",
                 -0.5: f"tl.rsqrt({base})", 1.0: base, -1.0: f"(1.0 / {base})"}
        if e is not None and float(e) in table:
            return table[float(e)]
        if out_c != "tl.float32":
            raise Unsupported("integer pow with a non-constant or unusual exponent")
        return _pow(base, _as(args[1], arg_types[1], out_c))
    if isinstance(op, ew.FmodOp):
        # Triton's % is C's on integers and LLVM's frem (fmod) on floats: torch.fmod exactly
        return f"({_as(args[0], arg_types[0], out_c)} % {_as(args[1], arg_types[1], out_c)})"
    if isinstance(op, (ew.FloorDivOp, ew.RemainderOp)) and out_c in ("tl.int32", "tl.int64"):
        # Triton's integer // and % truncate toward zero (C); PyTorch's floor_divide and
        # remainder round toward minus infinity (Python): correct where the signs differ
        a, b = _as(args[0], arg_types[0], out_c), _as(args[1], arg_types[1], out_c)
        r = f"({a} % {b})"
        fix = f"(({r} != 0) & (({r} < 0) != ({b} < 0)))"
        if isinstance(op, ew.FloorDivOp):
            return f"tl.where({fix}, {a} // {b} - 1, {a} // {b})"
        return f"tl.where({fix}, {r} + {b}, {r})"
    if isinstance(op, (ew.FloorDivOp, ew.RemainderOp)):
        if out_c != "tl.float32":
            raise Unsupported("integer floor division / remainder in a kernel")
        a, b = _as(args[0], arg_types[0], out_c), _as(args[1], arg_types[1], out_c)
        q = f"tl.floor({a} / {b})"
        return q if isinstance(op, ew.FloorDivOp) else f"({a} - {b} * {q})"
    if type(op) in BINARY:
        if isinstance(op, COMPARISONS):
            common = "tl.float32" if any(is_float(t) for t in arg_types) else compute_type(arg_types[0])
            a, b = _as(args[0], arg_types[0], common), _as(args[1], arg_types[1], common)
        else:
            a, b = _as(args[0], arg_types[0], out_c), _as(args[1], arg_types[1], out_c)
        return BINARY[type(op)].format(a=a, b=b)
    raise Unsupported(f"{op.name} has no Triton expression")


def _as(expr: str, t: TensorType, target: str) -> str:
    if compute_type(t) == target:
        return expr
    literal = _literal(expr)
    if literal is not None:  # a constant operand: convert the Python literal itself
        if target != "tl.float32" and expr.lstrip("-").isdigit():
            return expr  # an integer literal as written (a double would round one past 2**53)
        return float_literal(float(literal)) if target == "tl.float32" else str(int(literal))
    return f"{expr}.to({target})"


def _literal(expr: str) -> float | None:
    if expr in ("True", "False"):
        return float(expr == "True")
    if expr.startswith("float('") and expr.endswith("')"):  # float_literal's non-finite form
        expr = expr[7:-2]
    try:
        return float(expr)
    except ValueError:
        return None


def supported(op: Operation) -> bool:
    """Whether ``op`` can be emitted (checked by the fusion planner before grouping)."""
    try:
        types = [v.type for v in op.operands]
        for t in (*types, op.results[0].type):
            storage(t)
        constants = {i: v.owner.p("value") for i, v in enumerate(op.operands) if isinstance(v.owner, ConstantOp)}
        expression(op, ["a", "b", "c"][: len(types)], types, constants)
        return True
    except Unsupported:
        return False
