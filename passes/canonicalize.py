"""``canonicalize``: remove ops that do nothing and merge chains of views; delete dead ops.

    %1 = blade.reshape %0 : (!blade.tensor<[s0, 4], f32>) -> !blade.tensor<[s0, 4], f32>   // gone
    %2 = blade.reshape (blade.reshape %0) ...             ->  one blade.reshape of %0
    %3 = blade.permute (blade.permute %0 {perm=p}) {q}     ->  blade.permute %0 {perm = p∘q}
    %4 = blade.div %x, (blade.constant 1.0)                ->  %x

Identical pure ops are merged (common-subexpression elimination). Importers emit ops one ATen node at a time; this pass is what makes their output tidy, and every
other pass may rely on it having run.
"""

from __future__ import annotations

from dataclasses import dataclass

from blade.dialects.data_movement import ConstantOp, ExpandOp, PermuteOp, ReshapeOp, SliceOp
from blade.dialects.elementwise import BinaryElementwiseOp, CastOp, DivOp, MulOp
from blade.dialects.types import ints_attr
from xdsl.ir import Operation
from xdsl.traits import Pure

from blade.ir import (ModuleOp, ModulePass, PatternRewriter, RewritePattern, apply_patterns, forward_op,
                      op_type_rewrite_pattern, walk_ops)


class RemoveNoOpReshape(RewritePattern):
    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: ReshapeOp, rewriter: PatternRewriter) -> None:
        if op.input.type == op.result.type:
            forward_op(rewriter, op, op.input)


class RemoveNoOpExpand(RewritePattern):
    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: ExpandOp, rewriter: PatternRewriter) -> None:
        if op.input.type == op.result.type:
            forward_op(rewriter, op, op.input)


class RemoveNoOpCast(RewritePattern):
    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: CastOp, rewriter: PatternRewriter) -> None:
        if op.input.type == op.result.type:
            forward_op(rewriter, op, op.input)


class RemoveNoOpSlice(RewritePattern):
    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: SliceOp, rewriter: PatternRewriter) -> None:
        if op.input.type == op.result.type and op.p("start")[0] == 0 and op.p("step") == 1:
            forward_op(rewriter, op, op.input)


class RemoveMulDivByOne(RewritePattern):
    """``x * 1`` and ``x / 1`` (diffusers' ``output_scale_factor = 1.0``) are ``x``."""

    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: BinaryElementwiseOp, rewriter: PatternRewriter) -> None:
        if not isinstance(op, (MulOp, DivOp)) or op.lhs.type != op.result.type:
            return
        c = op.rhs.owner
        if isinstance(c, ConstantOp) and c.p("value") == 1.0:
            forward_op(rewriter, op, op.lhs)


class PermuteOfUnitDimsIsReshape(RewritePattern):
    """A permute that only moves size-1 dims keeps the element order: it is a reshape."""

    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: PermuteOp, rewriter: PatternRewriter) -> None:
        shape = op.input.type.shape
        moved = [i for i in op.p("perm") if shape[i] != 1]
        if moved == sorted(moved):
            rewriter.replace(op, ReshapeOp.create(operands=[op.input], result_types=[op.result.type]))


class MergeReshapes(RewritePattern):
    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: ReshapeOp, rewriter: PatternRewriter) -> None:
        src = op.input.owner
        if isinstance(src, ReshapeOp):
            rewriter.replace(op, ReshapeOp.create(operands=[src.input], result_types=[op.result.type]))


class MergePermutes(RewritePattern):
    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: PermuteOp, rewriter: PatternRewriter) -> None:
        perm = op.p("perm")
        if list(perm) == list(range(len(perm))):
            forward_op(rewriter, op, op.input)
            return
        src = op.input.owner
        if isinstance(src, PermuteOp):
            inner = src.p("perm")
            rewriter.replace(op, PermuteOp.create(operands=[src.input], result_types=[op.result.type],
                                                  properties={"perm": ints_attr([inner[i] for i in perm])}))


def eliminate_common_subexpressions(module: ModuleOp) -> None:
    """Pure ops with the same name, operands, properties and result types compute the same value
    (diffusers applies ``silu(temb)`` once per ResNet block: 23 identical kernels)."""
    for region_op in [module, *walk_ops(module)]:
        for region in region_op.regions:
            for block in region.blocks:
                seen: dict[tuple, Operation] = {}
                for op in list(block.ops):
                    if not op.has_trait(Pure) or op.regions or not op.results:
                        continue
                    key = (op.name, tuple(op.operands), tuple(sorted((k, str(v)) for k, v in op.properties.items())),
                           tuple(r.type for r in op.results))
                    prev = seen.get(key)
                    if prev is None:
                        seen[key] = op
                        continue
                    for old, new in zip(op.results, prev.results):
                        old.replace_all_uses_with(new)
                    op.detach()
                    op.erase()


@dataclass(frozen=True)
class Canonicalize(ModulePass):
    name = "canonicalize"

    def apply(self, ctx, op: ModuleOp) -> None:
        eliminate_common_subexpressions(op)
        apply_patterns(op, [RemoveNoOpReshape(), RemoveNoOpExpand(), RemoveNoOpCast(), RemoveNoOpSlice(),
                            RemoveMulDivByOne(), PermuteOfUnitDimsIsReshape(), MergeReshapes(), MergePermutes()])
