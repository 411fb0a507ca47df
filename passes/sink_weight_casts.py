"""``sink-weight-casts``: move work that reads only weights next to its first use.

``convert-fp16`` casts each float32 weight right after its ``blade.weight`` (so a runtime can keep
the casts, ``Config.prepare_weights``), and the importer puts weights where their module's first
op is; the casts then sit hundreds of ops before the op that reads them (a reduced SD 1.5 UNet:
334 ops on average). Every cast is a buffer: run in that order, all float16 copies of the weights
are live at once (about 1.7 GB for the SD 1.5 UNet), on top of the activations, and the arena plan
of a Program reserves them all. Moved to just before its first user in the same block, a cast's
buffer lives from there to its last use, and the peak holds the copies of one block's weights.

Moved: ``blade.cast`` of a ``blade.weight``, and ``blade.fused`` groups whose every input is a
``blade.weight`` (how ``fuse-stitch`` wraps such casts). Both are pure. The ``blade.weight`` ops stay
(they name a weight and hold no memory). An op used by several ops moves before the first of them
in the block (a use inside a nested region counts as a use by the op holding that region).

    %w = blade.weight {name = "a"} ...
    %w16 = blade.cast %w ...            // moved ...
    %y = blade.relu %x ...
    %z = blade.linear %y, %w16 ...      // ... to here
"""

from __future__ import annotations

from dataclasses import dataclass

from xdsl.ir import Block, Operation

from blade.dialects.data_movement import WeightOp
from blade.dialects.elementwise import CastOp
from blade.dialects.kernel import FusedOp
from blade.ir import ModuleOp, ModulePass


def _weight_only(op: Operation) -> bool:
    if isinstance(op, FusedOp):
        return bool(op.inputs) and all(isinstance(v.owner, WeightOp) for v in op.inputs)
    return isinstance(op, CastOp) and isinstance(op.operands[0].owner, WeightOp)


def _in_block(op: Operation, block: Block) -> Operation | None:
    """``op`` or the op holding it whose parent block is ``block`` (None if outside it)."""
    while op is not None and op.parent_block() is not block:
        op = op.parent_op()
    return op


def sink_block(block: Block) -> int:
    """Sink the weight-only ops of ``block``; returns how many moved."""
    ops = list(block.ops)
    index = {op: i for i, op in enumerate(ops)}
    moved = 0
    for op in ops:
        if not _weight_only(op):
            continue
        users = {_in_block(use.operation, block) for r in op.results for use in r.uses}
        users.discard(None)
        if not users:
            continue
        first = min(users, key=index.__getitem__)
        if index[first] <= index[op] + 1:
            continue
        op.detach()
        block.insert_op_before(op, first)
        moved += 1
    return moved


@dataclass(frozen=True)
class SinkWeightCasts(ModulePass):
    name = "sink-weight-casts"

    def apply(self, ctx, module: ModuleOp) -> None:
        blocks = [b for op in module.walk() for region in op.regions for b in region.blocks]
        for block in blocks:
            sink_block(block)
