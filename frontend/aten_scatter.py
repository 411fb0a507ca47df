"""ATen handlers for the functional forms of in-place writes into tensors a model made itself:
``h[:, 0] = 0.0`` (``select_scatter``), ``h[:, 2:8:2] = y`` (``slice_scatter``), ``h.fill_(v)``
(``fill``), ``h.copy_(y)`` (``copy``). Export records the writes in place; Blade's capture
functionalises the graph (``frontend/export.py``), which leaves these ops, and here each becomes a
select between the written values and the old ones (``where`` over an index range), so the writes
fuse into the kernels around them instead of running in eager PyTorch. Registered into
``aten_table``'s table (which imports this module)."""

from __future__ import annotations

import sympy
import torch

from blade.dialects import data_movement as dm
from blade.dialects import elementwise as ew
from blade.dialects.types import float_attr, ints_attr, scalar_attr, tensor_type
from blade.frontend.aten_table import _normalize_index, slice_start
from blade.frontend.fx_importer import ImportCtx, NotLowered, handles


def _as_type(ctx: ImportCtx, v, out):
    """``v`` broadcast (leading dims added, size-1 dims expanded) and cast to the type ``out``."""
    if v.type.rank < out.rank:
        v = ctx.emit(dm.ReshapeOp, [v], v.type.with_shape([sympy.Integer(1)] * (out.rank - v.type.rank)
                                                          + list(v.type.shape)))
    if v.type.dtype != out.dtype:
        v = ctx.emit(ew.CastOp, [v], v.type.with_element_type(out.element_type))
    if list(v.type.shape) != list(out.shape):
        v = ctx.emit(dm.ExpandOp, [v], out)
    return v


def _row_mask(ctx: ImportCtx, flags, rank: int, d: int):
    """A ``[n]`` boolean over dim ``d`` as ``[n, 1, ...]``, broadcasting over the dims after it."""
    n = flags.type.shape[0]
    return ctx.emit(dm.ReshapeOp, [flags], tensor_type([n] + [1] * (rank - 1 - d), torch.bool))


@handles("slice_scatter.default")
def _slice_scatter(ctx: ImportCtx, node, x, src, dim=0, start=None, end=None, step=1):
    """Rows ``start, start + step, ...`` of dim ``dim`` replaced by ``src``'s rows in order: row
    ``j`` reads ``src[(j - start) / step]`` where ``0 <= j - start < rows * step`` and ``step``
    divides ``j - start``, else ``x[j]``."""
    v, s = ctx.value(x), ctx.value(src)
    out = ctx.out_type()
    d = dim % v.type.rank
    n, rows = v.type.shape[d], s.type.shape[d]
    step = int(step)
    lo = sympy.Integer(0) if start is None else slice_start(ctx.sym(start), n)
    if rows.is_Integer and int(rows) == 0:
        return _as_type(ctx, v, out)
    i64 = torch.int64
    vec, flags = tensor_type([n], i64), tensor_type([n], torch.bool)
    j = ctx.emit(dm.IotaOp, [], vec, start=float_attr(0.0), step=float_attr(1.0))
    t = ctx.emit(ew.SubOp, [j, ctx.size_value(lo)], vec)
    inside = ctx.emit(ew.LogicalAndOp, [ctx.emit(ew.GeOp, [t, ctx.constant(0)], flags),
                                        ctx.emit(ew.LtOp, [t, ctx.size_value(rows * step)], flags)], flags)
    if step > 1:
        on_step = ctx.emit(ew.EqOp, [ctx.emit(ew.RemainderOp, [t, ctx.constant(step)], vec), ctx.constant(0)], flags)
        inside = ctx.emit(ew.LogicalAndOp, [inside, on_step], flags)
        t = ctx.emit(ew.FloorDivOp, [t, ctx.constant(step)], vec)
    last = rows - 1
    if not rows.is_Integer:
        # the slice may be empty at some size (x[:, 2:] of a dim of 2): a row of zeros after src's
        # rows gives the gather something to read there; the select never takes it
        pads = [0, 0] * (s.type.rank - 1 - d) + [0, 1]
        shape = list(s.type.shape)
        shape[d] = rows + 1
        s = ctx.emit(dm.PadOp, [s], s.type.with_shape(shape), pads=ints_attr(pads), value=float_attr(0.0))
        last = rows
    src_row = ctx.emit(ew.MinimumOp, [ctx.emit(ew.MaximumOp, [t, ctx.constant(0)], vec), ctx.size_value(last)], vec)
    shape = list(s.type.shape)
    shape[d] = n
    spread = ctx.emit(dm.IndexOp, [s, src_row], s.type.with_shape(shape), indexed=ints_attr([d]))
    return ctx.emit(ew.WhereOp, [_row_mask(ctx, inside, v.type.rank, d), _as_type(ctx, spread, out),
                                 _as_type(ctx, v, out)], out)


@handles("select_scatter.default")
def _select_scatter(ctx: ImportCtx, node, x, src, dim, index):
    """Row ``index`` of dim ``dim`` replaced by ``src`` (which lacks that dim)."""
    v, s = ctx.value(x), ctx.value(src)
    out = ctx.out_type()
    d = dim % v.type.rank
    n = v.type.shape[d]
    at = _normalize_index(ctx.sym(index), n)
    shape = list(s.type.shape)
    shape.insert(d, sympy.Integer(1))
    row = ctx.emit(dm.ReshapeOp, [s], s.type.with_shape(shape))
    vec, flags = tensor_type([n], torch.int64), tensor_type([n], torch.bool)
    j = ctx.emit(dm.IotaOp, [], vec, start=float_attr(0.0), step=float_attr(1.0))
    hit = ctx.emit(ew.EqOp, [j, ctx.size_value(at)], flags)
    return ctx.emit(ew.WhereOp, [_row_mask(ctx, hit, v.type.rank, d), _as_type(ctx, row, out),
                                 _as_type(ctx, v, out)], out)


@handles("fill.Tensor", "fill.Scalar")
def _fill(ctx: ImportCtx, node, x, value):
    """``x``'s shape and dtype, every element ``value`` (a 0-d tensor or a number)."""
    out = ctx.out_type()
    if isinstance(value, (int, float, bool)):
        return ctx.emit(dm.FullOp, [], out, value=scalar_attr(value, out.dtype))
    v = ctx.value(value)
    if v.type.rank != 0:
        raise NotLowered("fill with a value that is not a single element")
    return _as_type(ctx, v, out)


@handles("copy.default")
def _copy(ctx: ImportCtx, node, x, src, non_blocking=False):
    """``x``'s shape and dtype with ``src``'s values (broadcast, cast)."""
    return _as_type(ctx, ctx.value(src), ctx.out_type())
