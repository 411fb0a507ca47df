"""``shape-propagation``: give every value's dims as expressions of the input symbols.

Walks the program in order. For each op with a shape rule (``infer_shapes``), unknown result
dims (``?``) are filled in and known ones are checked; a mismatch is an error naming the op.
Ops whose result shape is not a function of their operands (``reshape``, ``expand``, ``iota``...)
must already state it. Cluster bodies receive their operands' types.

    %1 = blade.exp %0 : (!blade.tensor<[s0, 4], f32>) -> !blade.tensor<[?, ?], f32>
    // after: -> !blade.tensor<[s0, 4], f32>

Only statically known facts are used (``known_equal`` on canonical expressions, or equality for
every size in the module's symbol ranges); a dim pair that is not provably equal where an op
needs it to be is an error, not a guess.
"""

from __future__ import annotations

from dataclasses import dataclass

from xdsl.ir import Block

from blade.dialects.base import TensorOp, dims_equal
from blade.dialects.program import ClusterOp
from blade.dialects.types import TensorType
from blade.ir import ModuleOp, ModulePass, entry_function, set_value_type, sync_function_type
from blade.shape_syntax import format_shape
from blade.symbolic import ShapeError


@dataclass(frozen=True)
class ShapePropagation(ModulePass):
    name = "shape-propagation"

    def apply(self, ctx, op: ModuleOp) -> None:
        fn = entry_function(op)
        _propagate_block(fn.body.block)
        sync_function_type(fn)


def _propagate_block(block: Block) -> None:
    for op in block.ops:
        if isinstance(op, ClusterOp):
            for arg, v in zip(op.body.block.args, op.inputs):
                set_value_type(arg, v.type)
            _propagate_block(op.body.block)
            for r, v in zip(op.results, op.body.block.last_op.operands):
                set_value_type(r, v.type)
            continue
        if not isinstance(op, TensorOp) or not op.results:
            continue
        in_types = [v.type for v in op.operands]
        if not all(isinstance(t, TensorType) and t.is_fully_known() for t in in_types):
            raise ShapeError(f"{op.name}: operand shapes are unknown; propagate shapes from the inputs first")
        try:
            inferred = op.infer_shapes([t.shape for t in in_types])
        except ValueError as e:
            raise ShapeError(f"{op.name}: {e}") from e
        if inferred is None:
            for r in op.results:
                if not r.type.is_fully_known():
                    raise ShapeError(f"{op.name}: its result type must state every dim "
                                     f"(got {format_shape(r.type.shape)})")
            continue
        for r, shape in zip(op.results, inferred):
            old = r.type.shape
            if len(old) != len(shape):
                raise ShapeError(f"{op.name}: result rank {len(old)} but operands imply {format_shape(shape)}")
            merged = []
            for o, s in zip(old, shape):
                if o is not None and s is not None and not dims_equal(op, o, s):
                    raise ShapeError(f"{op.name}: result type {format_shape(old)} contradicts the shape "
                                     f"{format_shape(shape)} implied by operands "
                                     f"{', '.join(format_shape(t.shape) for t in in_types)}")
                merged.append(s if s is not None else o)
            if any(o is None for o in old):
                set_value_type(r, r.type.with_shape(merged))
