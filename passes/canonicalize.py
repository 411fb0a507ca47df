"""``canonicalize``: remove ops that do nothing and merge chains of views; delete dead ops.

    %1 = blade.reshape %0 : (!blade.tensor<[s0, 4], f32>) -> !blade.tensor<[s0, 4], f32>   // gone
    %2 = blade.reshape (blade.reshape %0) ...             ->  one blade.reshape of %0
    %3 = blade.permute (blade.permute %0 {perm=p}) {q}     ->  blade.permute %0 {perm = p∘q}
    %4 = blade.div %x, (blade.constant 1.0)                ->  %x
    %5 = blade.attention %q, %k, %v, (key pos <= query pos)  ->  blade.attention %q, %k, %v {is_causal = 1}

Identical pure ops are merged (common-subexpression elimination). Importers emit ops one ATen node at a time; this pass is what makes their output tidy, and every
other pass may rely on it having run.
"""

from __future__ import annotations

from dataclasses import dataclass

from blade.dialects.data_movement import ConstantOp, ExpandOp, IotaOp, PermuteOp, ReshapeOp, SliceOp
from blade.dialects.elementwise import AddOp, BinaryElementwiseOp, CastOp, DivOp, GeOp, LeOp, MulOp
from blade.dialects.structured import AttentionOp
from blade.dialects.types import int_attr, ints_attr
from blade.symbolic import known_equal
from xdsl.dialects.builtin import IntegerType
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


class CausalMaskIsCausal(RewritePattern):
    """``attention(q, k, v, mask)`` whose mask is "key index <= query index", built from two
    iotas over the query's and the key's positions, is ``attention(q, k, v, is_causal=1)``.

        %i = blade.iota {start = 0, step = 1} : () -> [s1]                 (maybe + a constant)
        %row = blade.reshape %i : [1, 1, s1, 1]      %col = blade.reshape %i : [1, 1, 1, s1]
        %m = blade.le %col, %row : [1, 1, s1, s1] (i1)    (or blade.ge %row, %col)
        %e = blade.expand %m : [s0, 1, s1, s1]                              (optional)
        %o = blade.attention %q, %k, %v, %e {is_causal = 0}   ->   blade.attention %q, %k, %v {is_causal = 1}

    transformers builds its causal masks this way and passes them as a boolean ``attn_mask``
    when traced (CLIP's text encoder: 12 of them). torch's ``is_causal`` keeps key ``j`` for query
    ``i`` where ``j <= i`` (top-left), the same set. Without the mask tensor an attention can take
    a causal kernel (flash attention; cuDNN's from the C++ step list) instead of a masked one.
    Only this exact shape is rewritten: the iotas must count the query's and the key's positions
    from the same start with the same positive step (so ``j <= i`` is the comparison of
    positions), and no other term may enter the mask (a padding mask combined with it, an offset
    for cached keys: left as they are)."""

    @op_type_rewrite_pattern
    def match_and_rewrite(self, op: AttentionOp, rewriter: PatternRewriter) -> None:
        if len(op.mask) != 1 or op.p("is_causal") or not _is_causal_mask(op):
            return
        props = {"is_causal": int_attr(1)}
        if op.scale is not None:
            props["scale"] = op.scale
        rewriter.replace(op, AttentionOp.create(operands=[op.query, op.key, op.value],
                                                result_types=[op.result.type], properties=props))


def _is_causal_mask(op: AttentionOp) -> bool:
    mask = op.mask[0]
    q_len, k_len = op.query.type.shape[-2], op.key.type.shape[-2]
    m = mask.owner
    if isinstance(m, ExpandOp):  # broadcast over batch / heads only: its last two dims are [L, S]
        m = m.input.owner
    if not isinstance(m, (LeOp, GeOp)) or _int_width(m.result.type) != 1:
        return False
    col, row = (m.lhs, m.rhs) if isinstance(m, LeOp) else (m.rhs, m.lhs)
    shape = m.result.type.shape
    if len(shape) < 2 or not (known_equal(shape[-2], q_len) and known_equal(shape[-1], k_len)):
        return False
    rows, cols = _positions(row, -2, q_len), _positions(col, -1, k_len)
    return rows is not None and rows == cols and rows[1] > 0


def _positions(value, dim: int, length) -> tuple[float, float] | None:
    """(start, step) when ``value`` is an integer iota of ``length`` (times and plus scalar
    constants, in any order) reshaped to size 1 in every dim but ``dim``, all in integers; else
    None."""
    r = value.owner
    shape = value.type.shape
    if _int_width(value.type) < 32:  # 32- or 64-bit integer positions: no rounding or wrapping
        return None
    if not isinstance(r, ReshapeOp) or not known_equal(shape[dim], length) or \
            any(not known_equal(d, 1) for i, d in enumerate(shape) if i != len(shape) + dim):
        return None
    scale, offset = 1.0, 0.0  # value = scale * src + offset, src walked down to the iota
    src = r.input
    while isinstance(src.owner, (AddOp, MulOp)):
        op = src.owner
        c = next((x.owner for x in (op.lhs, op.rhs) if isinstance(x.owner, ConstantOp)), None)
        if c is None:
            return None
        other = op.rhs if c is op.lhs.owner else op.lhs
        if other.type.shape != op.result.type.shape:
            return None
        if isinstance(op, AddOp):
            offset += scale * c.p("value")
        else:
            scale *= c.p("value")
        src = other
    iota = src.owner
    if not isinstance(iota, IotaOp) or _int_width(iota.result.type) < 32 or \
            not known_equal(iota.result.type.shape[0], length):
        return None
    return scale * iota.p("start") + offset, scale * iota.p("step")


def _int_width(t) -> int:
    """The bit width of an integer tensor type's elements (1: bool); 0 for anything else (floats)."""
    e = getattr(t, "element_type", None)
    return e.width.data if isinstance(e, IntegerType) else 0


@dataclass(frozen=True)
class Canonicalize(ModulePass):
    name = "canonicalize"

    def apply(self, ctx, op: ModuleOp) -> None:
        eliminate_common_subexpressions(op)
        apply_patterns(op, [RemoveNoOpReshape(), RemoveNoOpExpand(), RemoveNoOpCast(), RemoveNoOpSlice(),
                            RemoveMulDivByOne(), PermuteOfUnitDimsIsReshape(), MergeReshapes(), MergePermutes(),
                            CausalMaskIsCausal()])
