"""ATen handlers for integer arithmetic that decompositions produce: ``fmod`` of integers (the
index wrap of ``torch.roll``'s decomposition, C's truncating remainder) from Python's flooring
``remainder``. Float ``fmod`` stays in eager PyTorch (computed from a flooring remainder it would
round differently). Registered into ``aten_table``'s table (which imports this module)."""

from __future__ import annotations

import torch

from blade.dialects import elementwise as ew
from blade.dialects.types import tensor_type
from blade.frontend.fx_importer import ImportCtx, NotLowered, handles


@handles("fmod.Scalar", "fmod.Tensor")
def _fmod(ctx: ImportCtx, node, a, b):
    """``r = remainder(a, b)`` (the sign of ``b``), then ``r - b`` where ``r != 0`` and ``a`` and
    ``b`` have opposite signs: the sign of ``a``, as C's ``%``."""
    out = ctx.out_type()
    if out.dtype.is_floating_point:
        raise NotLowered("fmod of floating-point values")
    x, y = ctx.value(a), ctx.value(b)

    def flags(t):
        return tensor_type(list(t.shape), torch.bool)

    r = ctx.emit(ew.RemainderOp, [x, y], out)
    zero = ctx.constant(0)
    nonzero = ctx.emit(ew.NeOp, [r, zero], flags(out))
    opposite = ctx.emit(ew.NeOp, [ctx.emit(ew.LtOp, [x, zero], flags(x.type)),
                                  ctx.emit(ew.LtOp, [y, zero], flags(y.type))], flags(out))
    fix = ctx.emit(ew.LogicalAndOp, [nonzero, opposite], flags(out))
    return ctx.emit(ew.WhereOp, [fix, ctx.emit(ew.SubOp, [r, y], out), r], out)
