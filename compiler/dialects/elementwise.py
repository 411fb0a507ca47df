"""Elementwise ops of the ``blade`` dialect: unary math, binary arithmetic with broadcasting,
comparisons, ``where`` and ``cast``.

Binary ops follow NumPy broadcasting; the result element type is stated by the result type
(the frontend takes it from PyTorch's type promotion), and the reference casts to it.

    %y = blade.silu %x : (!blade.tensor<[s0, 320], f16>) -> !blade.tensor<[s0, 320], f16>
    %z = blade.add %a, %b : (!blade.tensor<[s0, 320, s1], f32>, !blade.tensor<[320, 1], f32>) -> !blade.tensor<[s0, 320, s1], f32>
"""

from __future__ import annotations

from typing import Callable, ClassVar

from xdsl.dialects.builtin import StringAttr
from xdsl.irdl import irdl_op_definition, operand_def, opt_prop_def, result_def, traits_def
from xdsl.traits import Pure

from blade.dialects.base import ExecEnv, Shape, TensorOp, broadcast_shapes
from blade.dialects.types import TensorType
from blade.lazy import LazyModule

torch = LazyModule("torch")  # imported on first use (see blade.lazy)
F = LazyModule("torch.nn.functional")


class UnaryElementwiseOp(TensorOp):
    """``result[i] = fn(input[i])``; same shape, element type given by the result type."""

    CATEGORY: ClassVar[str] = "elementwise"
    FN: ClassVar[Callable[[torch.Tensor], torch.Tensor]]

    input = operand_def(TensorType)
    result = result_def(TensorType)
    traits = traits_def(Pure())

    def infer_shapes(self, shapes: list[Shape]) -> list[Shape]:
        return [shapes[0]]

    def reference(self, args: list[torch.Tensor], env: ExecEnv) -> torch.Tensor:
        return type(self).FN(args[0]).to(env.result_dtypes[0])


def _unary(op_name: str, fn: Callable, doc: str) -> type[UnaryElementwiseOp]:
    cls = type(op_name.split(".")[1].title().replace("_", "") + "Op", (UnaryElementwiseOp,),
               {"name": op_name, "FN": staticmethod(fn), "__doc__": doc})
    return irdl_op_definition(cls)


NegOp = _unary("blade.neg", lambda x: torch.neg(x), "``-x``.\n\n    %y = blade.neg %x : (!blade.tensor<[s0], f32>) -> !blade.tensor<[s0], f32>")
ExpOp = _unary("blade.exp", lambda x: torch.exp(x), "``e**x``.\n\n    %y = blade.exp %x : (!blade.tensor<[s0], f32>) -> !blade.tensor<[s0], f32>")
Log1pOp = _unary("blade.log1p", lambda x: torch.log1p(x), "``log(1 + x)``.\n\n    %y = blade.log1p %x : (!blade.tensor<[s0], f32>) -> !blade.tensor<[s0], f32>")
Expm1Op = _unary("blade.expm1", lambda x: torch.expm1(x), "``exp(x) - 1``.\n\n    %y = blade.expm1 %x : (!blade.tensor<[s0], f32>) -> !blade.tensor<[s0], f32>")
LogOp = _unary("blade.log", lambda x: torch.log(x), "Natural log.\n\n    %y = blade.log %x : (!blade.tensor<[s0], f32>) -> !blade.tensor<[s0], f32>")
SqrtOp = _unary("blade.sqrt", lambda x: torch.sqrt(x), "Square root.\n\n    %y = blade.sqrt %x : (!blade.tensor<[s0], f32>) -> !blade.tensor<[s0], f32>")
RsqrtOp = _unary("blade.rsqrt", lambda x: torch.rsqrt(x), "``1/sqrt(x)``.\n\n    %y = blade.rsqrt %x : (!blade.tensor<[s0], f32>) -> !blade.tensor<[s0], f32>")
SinOp = _unary("blade.sin", lambda x: torch.sin(x), "Sine.\n\n    %y = blade.sin %x : (!blade.tensor<[s0], f32>) -> !blade.tensor<[s0], f32>")
CosOp = _unary("blade.cos", lambda x: torch.cos(x), "Cosine.\n\n    %y = blade.cos %x : (!blade.tensor<[s0], f32>) -> !blade.tensor<[s0], f32>")
TanhOp = _unary("blade.tanh", lambda x: torch.tanh(x), "Hyperbolic tangent.\n\n    %y = blade.tanh %x : (!blade.tensor<[s0], f32>) -> !blade.tensor<[s0], f32>")
SigmoidOp = _unary("blade.sigmoid", lambda x: torch.sigmoid(x), "Logistic sigmoid.\n\n    %y = blade.sigmoid %x : (!blade.tensor<[s0], f32>) -> !blade.tensor<[s0], f32>")
SiluOp = _unary("blade.silu", lambda x: F.silu(x), "``x * sigmoid(x)``.\n\n    %y = blade.silu %x : (!blade.tensor<[s0], f16>) -> !blade.tensor<[s0], f16>")
ReluOp = _unary("blade.relu", lambda x: torch.relu(x), "``max(x, 0)``.\n\n    %y = blade.relu %x : (!blade.tensor<[s0], f32>) -> !blade.tensor<[s0], f32>")
AbsOp = _unary("blade.abs", lambda x: torch.abs(x), "Absolute value.\n\n    %y = blade.abs %x : (!blade.tensor<[s0], f32>) -> !blade.tensor<[s0], f32>")
ErfOp = _unary("blade.erf", lambda x: torch.erf(x), "Error function.\n\n    %y = blade.erf %x : (!blade.tensor<[s0], f32>) -> !blade.tensor<[s0], f32>")
ReciprocalOp = _unary("blade.reciprocal", lambda x: torch.reciprocal(x), "``1/x``.\n\n    %y = blade.reciprocal %x : (!blade.tensor<[s0], f32>) -> !blade.tensor<[s0], f32>")
LogicalNotOp = _unary("blade.logical_not", lambda x: torch.logical_not(x), "Boolean not.\n\n    %y = blade.logical_not %x : (!blade.tensor<[s0], i1>) -> !blade.tensor<[s0], i1>")
FloorOp = _unary("blade.floor", lambda x: torch.floor(x), "Round toward -inf (integers unchanged).\n\n    %y = blade.floor %x : (!blade.tensor<[s0], f32>) -> !blade.tensor<[s0], f32>")
CeilOp = _unary("blade.ceil", lambda x: torch.ceil(x), "Round toward +inf (integers unchanged).\n\n    %y = blade.ceil %x : (!blade.tensor<[s0], f32>) -> !blade.tensor<[s0], f32>")
TruncOp = _unary("blade.trunc", lambda x: torch.trunc(x), "Round toward zero (integers unchanged).\n\n    %y = blade.trunc %x : (!blade.tensor<[s0], f32>) -> !blade.tensor<[s0], f32>")
RoundOp = _unary("blade.round", lambda x: torch.round(x), "Round to nearest, ties to even (integers unchanged).\n\n    %y = blade.round %x : (!blade.tensor<[s0], f32>) -> !blade.tensor<[s0], f32>")
SignOp = _unary("blade.sign", lambda x: torch.sign(x), "-1, 0 or 1 by the sign (0 for NaN).\n\n    %y = blade.sign %x : (!blade.tensor<[s0], f32>) -> !blade.tensor<[s0], f32>")
Log2Op = _unary("blade.log2", lambda x: torch.log2(x), "Base-2 log.\n\n    %y = blade.log2 %x : (!blade.tensor<[s0], f32>) -> !blade.tensor<[s0], f32>")
Exp2Op = _unary("blade.exp2", lambda x: torch.exp2(x), "``2**x``.\n\n    %y = blade.exp2 %x : (!blade.tensor<[s0], f32>) -> !blade.tensor<[s0], f32>")
IsnanOp = _unary("blade.isnan", lambda x: torch.isnan(x), "Whether an element is NaN.\n\n    %y = blade.isnan %x : (!blade.tensor<[s0], f32>) -> !blade.tensor<[s0], i1>")
IsinfOp = _unary("blade.isinf", lambda x: torch.isinf(x), "Whether an element is +inf or -inf.\n\n    %y = blade.isinf %x : (!blade.tensor<[s0], f32>) -> !blade.tensor<[s0], i1>")
CastOp = _unary("blade.cast", lambda x: x, "Convert to the result element type.\n\n    %y = blade.cast %x : (!blade.tensor<[s0], f32>) -> !blade.tensor<[s0], f16>")


@irdl_op_definition
class GeluOp(UnaryElementwiseOp):
    """GELU, exact (``erf``) or ``tanh``-approximated.

    %y = blade.gelu %x {approximate = "tanh"} : (!blade.tensor<[s0, 3072], f32>) -> !blade.tensor<[s0, 3072], f32>
    """

    name = "blade.gelu"
    approximate = opt_prop_def(StringAttr)

    def reference(self, args, env):
        return F.gelu(args[0], approximate=self.p("approximate", "none")).to(env.result_dtypes[0])


class BinaryElementwiseOp(TensorOp):
    """``result = fn(lhs, rhs)`` with NumPy broadcasting."""

    CATEGORY: ClassVar[str] = "elementwise"
    FN: ClassVar[Callable[[torch.Tensor, torch.Tensor], torch.Tensor]]

    lhs = operand_def(TensorType)
    rhs = operand_def(TensorType)
    result = result_def(TensorType)
    traits = traits_def(Pure())

    def infer_shapes(self, shapes: list[Shape]) -> list[Shape]:
        return [broadcast_shapes(self.name, shapes, self)]

    def reference(self, args: list[torch.Tensor], env: ExecEnv) -> torch.Tensor:
        return type(self).FN(args[0], args[1]).to(env.result_dtypes[0])


def _binary(op_name: str, fn: Callable, doc: str) -> type[BinaryElementwiseOp]:
    cls = type(op_name.split(".")[1].title().replace("_", "") + "Op", (BinaryElementwiseOp,),
               {"name": op_name, "FN": staticmethod(fn), "__doc__": doc})
    return irdl_op_definition(cls)


_EX = "(!blade.tensor<[s0, 4], f32>, !blade.tensor<[4], f32>) -> !blade.tensor<[s0, 4], f32>"
_EXB = "(!blade.tensor<[s0, 4], f32>, !blade.tensor<[], f32>) -> !blade.tensor<[s0, 4], i1>"
AddOp = _binary("blade.add", lambda a, b: torch.add(a, b), f"Sum.\n\n    %z = blade.add %x, %y : {_EX}")
SubOp = _binary("blade.sub", lambda a, b: torch.sub(a, b), f"Difference.\n\n    %z = blade.sub %x, %y : {_EX}")
MulOp = _binary("blade.mul", lambda a, b: torch.mul(a, b), f"Product.\n\n    %z = blade.mul %x, %y : {_EX}")
DivOp = _binary("blade.div", lambda a, b: torch.div(a, b), f"True division.\n\n    %z = blade.div %x, %y : {_EX}")
FloorDivOp = _binary("blade.floor_div", lambda a, b: torch.div(a, b, rounding_mode="floor"),
                     f"Division rounded toward -inf.\n\n    %z = blade.floor_div %x, %y : {_EX}")
RemainderOp = _binary("blade.remainder", lambda a, b: torch.remainder(a, b), f"Python-style modulo.\n\n    %z = blade.remainder %x, %y : {_EX}")
FmodOp = _binary("blade.fmod", lambda a, b: torch.fmod(a, b),
                 f"C-style remainder (``torch.fmod``: the sign of ``lhs``).\n\n    %z = blade.fmod %x, %y : {_EX}")
PowOp = _binary("blade.pow", lambda a, b: torch.pow(a, b), f"``lhs ** rhs``.\n\n    %z = blade.pow %x, %y : {_EX}")
MaximumOp = _binary("blade.maximum", lambda a, b: torch.maximum(a, b), f"Elementwise max.\n\n    %z = blade.maximum %x, %y : {_EX}")
MinimumOp = _binary("blade.minimum", lambda a, b: torch.minimum(a, b), f"Elementwise min.\n\n    %z = blade.minimum %x, %y : {_EX}")
EqOp = _binary("blade.eq", lambda a, b: torch.eq(a, b), f"``lhs == rhs``.\n\n    %z = blade.eq %x, %y : {_EXB}")
NeOp = _binary("blade.ne", lambda a, b: torch.ne(a, b), f"``lhs != rhs``.\n\n    %z = blade.ne %x, %y : {_EXB}")
LtOp = _binary("blade.lt", lambda a, b: torch.lt(a, b), f"``lhs < rhs``.\n\n    %z = blade.lt %x, %y : {_EXB}")
LeOp = _binary("blade.le", lambda a, b: torch.le(a, b), f"``lhs <= rhs``.\n\n    %z = blade.le %x, %y : {_EXB}")
GtOp = _binary("blade.gt", lambda a, b: torch.gt(a, b), f"``lhs > rhs``.\n\n    %z = blade.gt %x, %y : {_EXB}")
GeOp = _binary("blade.ge", lambda a, b: torch.ge(a, b), f"``lhs >= rhs``.\n\n    %z = blade.ge %x, %y : {_EXB}")
LogicalAndOp = _binary("blade.logical_and", lambda a, b: torch.logical_and(a, b), f"Boolean and.\n\n    %z = blade.logical_and %x, %y : {_EXB}")
LogicalOrOp = _binary("blade.logical_or", lambda a, b: torch.logical_or(a, b), f"Boolean or.\n\n    %z = blade.logical_or %x, %y : {_EXB}")


@irdl_op_definition
class WhereOp(TensorOp):
    """``cond ? a : b`` with broadcasting over all three operands.

    %z = blade.where %c, %a, %b : (!blade.tensor<[s0, 1], i1>, !blade.tensor<[s0, 4], f32>, !blade.tensor<[], f32>) -> !blade.tensor<[s0, 4], f32>
    """

    name = "blade.where"
    CATEGORY: ClassVar[str] = "elementwise"
    cond = operand_def(TensorType)
    lhs = operand_def(TensorType)
    rhs = operand_def(TensorType)
    result = result_def(TensorType)
    traits = traits_def(Pure())

    def infer_shapes(self, shapes):
        return [broadcast_shapes(self.name, shapes, self)]

    def reference(self, args, env):
        return torch.where(args[0], args[1], args[2]).to(env.result_dtypes[0])


UNARY_OPS = [NegOp, ExpOp, LogOp, Log1pOp, Expm1Op, SqrtOp, RsqrtOp, SinOp, CosOp, TanhOp, SigmoidOp, SiluOp, ReluOp,
             AbsOp, ErfOp, ReciprocalOp, LogicalNotOp, CastOp, GeluOp, FloorOp, CeilOp, TruncOp, RoundOp, SignOp,
             Log2Op, Exp2Op, IsnanOp, IsinfOp]
BINARY_OPS = [AddOp, SubOp, MulOp, DivOp, FloorDivOp, RemainderOp, FmodOp, PowOp, MaximumOp, MinimumOp,
              EqOp, NeOp, LtOp, LeOp, GtOp, GeOp, LogicalAndOp, LogicalOrOp]
ELEMENTWISE_OPS = UNARY_OPS + BINARY_OPS + [WhereOp]
