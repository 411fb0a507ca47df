"""``convert-fp16``: run a float32 program in float16 (``Config.enable_fp16``), the way eager
PyTorch runs the same model after ``model.half()`` with half inputs.

Rules, applied in program order:

1. float32 inputs and weights are cast to float16 where they enter (weights: right after their
   ``blade.weight``, so a runtime can prepare them once);
2. an op whose non-scalar float operands mix float16 and float32 gets its float32 operands cast to
   float16 (a float32 value meeting float16 weights is what ``x.to(weight.dtype)`` does in eager),
   except elementwise ops and ``concat``, which promote as eager does: their float16 operands are
   cast to float32. A float32 value here comes from a float32 island (rule 4), and eager keeps
   the island float32 until it meets a weight: SDXL's ``time_ids`` embedding computes
   ``time_ids[:, None].float() * freqs`` in float32 (an ``.float()`` that a float32 capture
   does not even record); in float16 the sines of products near 1000 lose every digit;
3. a float32 result becomes float16 when any non-scalar float operand is now float16;
4. explicit casts keep their target type, sources (``iota``, ``full``) and rank-0 constants stay
   float32 (so a model's own float32 islands, like the sinusoidal timestep embedding, stay float32
   exactly as in eager half precision);
5. eager-fallback ops (``blade.torch_op``) run with their original operand types;
6. outputs are cast back to the types the caller got from the original model.

    %w = blade.weight {name = "w"} : () -> !blade.tensor<[8, 4], f32>
    %y = blade.linear %x, %w : (!blade.tensor<[s0, 4], f32>, !blade.tensor<[8, 4], f32>) -> !blade.tensor<[s0, 8], f32>
    // after:
    %w16 = blade.cast %w : (!blade.tensor<[8, 4], f32>) -> !blade.tensor<[8, 4], f16>
    %y = blade.linear %x16, %w16 : (... f16 ...) -> !blade.tensor<[s0, 8], f16>
"""

from __future__ import annotations

from dataclasses import dataclass

from xdsl.dialects import func
from xdsl.dialects.builtin import Float16Type, Float32Type
from xdsl.ir import Block, Operation, SSAValue

from blade.dialects.data_movement import ConcatOp, ConstantOp, FullOp, IotaOp, WeightOp
from blade.dialects.elementwise import ELEMENTWISE_OPS, CastOp
from blade.dialects.program import ClusterOp, TorchOp, YieldOp
from blade.dialects.types import TensorType
from blade.ir import InsertPoint, ModuleOp, ModulePass, Rewriter, entry_function, set_value_type, sync_function_type

F32, F16 = Float32Type(), Float16Type()

#: ops that type-promote in eager PyTorch: float16 with float32 gives float32 (rule 2's exception)
PROMOTING = tuple(ELEMENTWISE_OPS) + (ConcatOp,)


def _elem(v: SSAValue):
    return v.type.element_type if isinstance(v.type, TensorType) else None


def _non_scalar(v: SSAValue) -> bool:
    return isinstance(v.type, TensorType) and v.type.rank > 0


def _cast_all_uses(v: SSAValue, to, where: InsertPoint) -> None:
    """Insert ``cast(v)`` at ``where`` and make every existing user of ``v`` read the cast."""
    users = {u.operation for u in v.uses}
    cast = CastOp.create(operands=[v], result_types=[v.type.with_element_type(to)])
    Rewriter.insert_op(cast, where)
    for user in users:
        user.operands = [cast.results[0] if o is v else o for o in user.operands]


def _cast_before(op: Operation, v: SSAValue, to) -> SSAValue:
    cast = CastOp.create(operands=[v], result_types=[v.type.with_element_type(to)])
    op.parent_block().insert_op_before(cast, op)
    return cast.results[0]


@dataclass(frozen=True)
class ConvertFp16(ModulePass):
    name = "convert-fp16"

    def apply(self, ctx, op: ModuleOp) -> None:
        fn = entry_function(op)
        block = fn.body.block
        orig_outputs = list(fn.function_type.outputs.data)
        for arg in block.args:
            if _elem(arg) == F32 and _non_scalar(arg):
                _cast_all_uses(arg, F16, InsertPoint.at_start(block))
        _convert_block(block)
        ret = block.last_op
        assert isinstance(ret, func.ReturnOp)
        outs = []
        for v, orig in zip(ret.operands, orig_outputs):
            if isinstance(orig, TensorType) and v.type != orig and _elem(v) == F16 and orig.element_type == F32:
                v = _cast_before(ret, v, F32)
            outs.append(v)
        ret.operands = outs
        sync_function_type(fn)


def _convert_block(block: Block) -> None:
    fallback_types = {op: [v.type for v in op.operands] for op in block.ops if isinstance(op, TorchOp)}
    for op in list(block.ops):
        if isinstance(op, (func.ReturnOp, YieldOp)):
            continue
        if isinstance(op, ClusterOp):
            raise ValueError("convert-fp16 runs before clustering")
        if isinstance(op, WeightOp):
            r = op.results[0]
            if _elem(r) == F32 and _non_scalar(r):
                _cast_all_uses(r, F16, InsertPoint.after(op))
            continue
        if isinstance(op, (ConstantOp, IotaOp, FullOp, CastOp)):
            continue
        if isinstance(op, TorchOp):
            continue  # handled below: operands restored to their original types
        floats = [v for v in op.operands if _elem(v) in (F16, F32) and _non_scalar(v)]
        if isinstance(op, PROMOTING) and any(_elem(v) == F16 for v in floats) and any(_elem(v) == F32 for v in floats):
            # eager's type promotion: float16 meeting a float32 island computes in float32
            op.operands = [(_cast_before(op, v, F32) if (_elem(v) == F16 and _non_scalar(v)) else v)
                           for v in op.operands]
            continue
        if any(_elem(v) == F16 for v in floats):
            op.operands = [(_cast_before(op, v, F16) if (_elem(v) == F32 and _non_scalar(v)) else v)
                           for v in op.operands]
            for r in op.results:
                if _elem(r) == F32:
                    set_value_type(r, r.type.with_element_type(F16))
    # fallback ops keep their original operand types
    for op, types in fallback_types.items():
        op.operands = [(_cast_before(op, v, t.element_type) if v.type != t else v)
                       for v, t in zip(op.operands, types)]
