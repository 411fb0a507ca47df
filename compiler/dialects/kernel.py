"""Kernel-level structure of the ``blade`` dialect: a fusion group that becomes one generated
kernel (``blade.fused``).

The body holds the tensor-level ops of the group, so the reference executor can still run it and
tests can compare a generated kernel against the ops it replaces. ``kind`` selects the kernel
template (``pointwise``, ``row_norm``, ``group_norm``); ``ops`` names the fused ops for people
(it also goes into the generated source as a comment).

    %y = blade.fused %x, %g, %b ({
    ^bb0(%a : !blade.tensor<[s0, 4*s1, 4*s2, 320], f16>, %w : ..., %c : ...):
      %n = blade.group_norm %a, %w, %c {num_groups = 32 : i64, eps = 1.0e-05 : f64, layout = "nhwc"} : ...
      %s = blade.silu %n : ...
      blade.yield %s : ...
    }) {kind = "group_norm", id = 3 : i64, ops = "group_norm+silu"} : (...) -> !blade.tensor<[s0, 4*s1, 4*s2, 320], f16>
"""

from __future__ import annotations

from typing import ClassVar

from xdsl.dialects.builtin import IntegerAttr, StringAttr
from xdsl.irdl import irdl_op_definition, prop_def, region_def, var_operand_def, var_result_def
from xdsl.utils.exceptions import VerifyException

from blade.dialects.base import TensorOp
from blade.dialects.program import YieldOp
from blade.dialects.types import TensorType

FUSION_KINDS = ("pointwise", "row_norm", "group_norm")


@irdl_op_definition
class FusedOp(TensorOp):
    """One fusion group: becomes one generated kernel (see the module docstring)."""

    name = "blade.fused"
    CATEGORY: ClassVar[str] = "fused"
    inputs = var_operand_def(TensorType)
    outputs = var_result_def(TensorType)
    body = region_def("single_block")
    kind = prop_def(StringAttr)
    fused_id = prop_def(IntegerAttr, prop_name="id")
    label = prop_def(StringAttr, prop_name="ops")

    def verify_(self):
        if self.p("kind") not in FUSION_KINDS:
            raise VerifyException(f"blade.fused: kind must be one of {FUSION_KINDS}, got {self.p('kind')!r}")
        block = self.body.block
        if len(block.args) != len(self.inputs):
            raise VerifyException("blade.fused: one block argument per input")
        term = block.last_op
        if not isinstance(term, YieldOp) or len(term.values) != len(self.outputs):
            raise VerifyException("blade.fused: body must end in blade.yield of every output")

    def body_ops(self):
        return [op for op in self.body.block.ops if not isinstance(op, YieldOp)]
