"""The ATen-op mapping table: how each ATen overload becomes ``blade`` ops.

A handler receives the import context, the FX node and the node's raw arguments, and returns the
SSA value(s) of the node (or a dim expression for size arithmetic). Result types always come from
the node's FakeTensor metadata (``ctx.out_type()``). A handler raises ``NotLowered`` for a use it
does not cover (a transposed convolution, dropout in training mode...); the node then runs in
eager PyTorch and the import report says why.

Ops that only move metadata (``contiguous``, ``clone``, ``dropout`` in eval, ``detach``) map to
their input; views (``view``, ``unsqueeze``, ``flatten``...) all become ``blade.reshape``.
"""

from __future__ import annotations

import math
import operator

import sympy
import torch
import torch.fx

from blade.dialects import data_movement as dm
from blade.dialects import elementwise as ew
from blade.dialects import structured as st
from blade.dialects.types import (
    DimsAttr,
    StringAttr,
    float_attr,
    scalar_attr,
    int_attr,
    ints_attr,
    tensor_type,
)
from blade.frontend.eager_results import mentions_data_dependent, scalar_as_symbol
from blade.frontend.fx_importer import ImportCtx, NotLowered, handles
from blade.symbolic import ShapeError, as_expr, known_equal

# ---------------------------------------------------------------------------------------------
# size arithmetic and assertions: evaluated symbolically, never ops
# ---------------------------------------------------------------------------------------------

_SIZE_ARITHMETIC = (
    operator.add, operator.sub, operator.mul, operator.floordiv, operator.mod, operator.truediv,
    operator.neg, operator.pow, operator.eq, operator.ne, operator.lt, operator.le, operator.gt,
    operator.ge, torch.sym_max, torch.sym_min, torch.sym_float, torch.sym_int, math.ceil, math.floor,
    math.trunc, "sym_size.int", "sym_numel.default", "sym_stride.int", "sym_storage_offset.default",
)


# Python's logical operators on SymBools (``(s0 > 1) | (s1 == 3)``, ``torch.sym_not``): symbolic
# too; a use as data becomes an exact 0/1 ``blade.dim_value`` (``ImportCtx.value``).
_SYMBOLIC_LOGIC = (operator.or_, operator.and_, operator.xor, operator.not_, operator.invert,
                   operator.abs, operator.pos, operator.lshift, operator.rshift, torch.sym_not,
                   torch.sym_ite, torch.sym_sum)


@handles(*_SIZE_ARITHMETIC, *_SYMBOLIC_LOGIC)
def _size_arithmetic(ctx: ImportCtx, node, *args, **kwargs):
    val = node.meta.get("val")
    if isinstance(val, (bool, float)):  # decided while tracing: a Python constant
        return val
    if isinstance(val, (int, torch.SymInt, torch.SymFloat, torch.SymBool)):
        return ctx.mapping.convert(val)
    raise NotLowered(f"{node.target.__name__} on {_kinds(node)}: not size arithmetic")


def _kinds(node) -> str:
    vals = [a.meta.get("val") if isinstance(a, torch.fx.Node) else a for a in node.args]
    return ", ".join(type(v).__name__ for v in vals) or "no arguments"


@handles("_assert_scalar.default")
def _assert_scalar(ctx: ImportCtx, node, cond, msg=None):
    c = ctx.scalar(cond)
    if isinstance(c, (bool, int)):
        if not c:
            raise ShapeError(f"assertion always fails: {msg}")
        return None
    if mentions_data_dependent(ctx.mapping.table, c):
        return None  # checked by the eager op that produces the size (see eager_results.py)
    ctx.mapping.table.require(c, f"runtime assertion: {msg}")
    return None


@handles("_local_scalar_dense.default")
def _local_scalar_dense(ctx: ImportCtx, node, t):
    if t not in ctx.known_scalars and (sym := scalar_as_symbol(ctx, node)) is not None:
        return sym
    if t not in ctx.known_scalars:
        raise ShapeError("a size computed from tensor data (item()/int(tensor)) is data-dependent; "
                         "Blade compiles shape-static data flow only")
    expr = ctx.known_scalars[t]
    val = node.meta.get("val")
    if isinstance(val, torch.SymInt) and val.node.expr.is_Symbol:
        ctx.mapping.unbacked[val.node.expr] = expr
    return expr


@handles("_assert_tensor_metadata.default", "sym_constrain_range_for_size.default",
         "sym_constrain_range.default")
def _no_value(ctx, node, *args, **kwargs):
    return None


@handles(operator.getitem)
def _getitem(ctx: ImportCtx, node, seq, index):
    v = ctx.env[seq]
    if isinstance(v, (list, tuple)):
        return v[index]
    raise NotLowered("getitem on a non-sequence value")


# ---------------------------------------------------------------------------------------------
# identity-like
# ---------------------------------------------------------------------------------------------


def _same_or_cast(ctx: ImportCtx, x):
    v = ctx.value(x)
    out = ctx.out_type()
    if v.type == out:
        return v
    if v.type.shape == out.shape:
        return ctx.emit(ew.CastOp, [v], out)
    return ctx.emit(dm.ReshapeOp, [v], out) if v.type.element_type == out.element_type else \
        ctx.emit(ew.CastOp, [ctx.emit(dm.ReshapeOp, [v], out.with_element_type(v.type.element_type))], out)


@handles("contiguous.default", "clone.default", "alias.default", "detach.default", "detach_.default",
         "lift_fresh_copy.default", "to.dtype", "to.dtype_layout", "to.device", "to.other",
         "_to_copy.default", "type_as.default", "_unsafe_view.default")
def _identity_or_cast(ctx: ImportCtx, node, x, *args, **kwargs):
    if node.target is torch.ops.aten._unsafe_view.default:
        return ctx.emit(dm.ReshapeOp, [ctx.value(x)], ctx.out_type())
    result = _same_or_cast(ctx, x)
    if x in ctx.known_scalars:
        ctx.known_scalars[node] = ctx.known_scalars[x]
    return result


@handles("dropout.default")
def _dropout(ctx: ImportCtx, node, x, p, train):
    if train and p > 0:
        raise NotLowered("dropout in training mode is random; call model.eval() before optimize")
    return ctx.value(x)


# ---------------------------------------------------------------------------------------------
# views and layout
# ---------------------------------------------------------------------------------------------


@handles("view.default", "reshape.default", "unsqueeze.default", "squeeze.dim", "squeeze.dims",
         "squeeze.default", "flatten.using_ints", "unflatten.int", "view.dtype")
def _reshape(ctx: ImportCtx, node, x, *args, **kwargs):
    if node.target is getattr(torch.ops.aten.view, "dtype", None):
        raise NotLowered("reinterpreting bits as another dtype is not supported")
    v = ctx.value(x)
    out = ctx.out_type()
    if node.target._overloadpacket is torch.ops.aten.squeeze:
        _guard_not_one(ctx, node, v)
    return v if v.type == out else ctx.emit(dm.ReshapeOp, [v], out)


def _guard_not_one(ctx: ImportCtx, node, v) -> None:
    """``squeeze`` keeps a symbolic dim only because export assumed it is not 1 (size-oblivious
    tracing records no guard for that); a call where it is 1 must take another variant."""
    from blade.frontend.export import squeezed_dims

    for d in squeezed_dims(node):
        dim = v.type.shape[d]
        if not dim.is_Integer:
            ctx.mapping.table.require(sympy.Ne(dim, 1), f"{node.target}: dim {d} of {v.type.shape} is kept "
                                      "only while it is not 1")


@handles("expand.default", "expand_as.default", "broadcast_to.default")
def _expand(ctx: ImportCtx, node, x, *args, **kwargs):
    v = ctx.value(x)
    out = ctx.out_type()
    return v if v.type == out else ctx.emit(dm.ExpandOp, [v], out)


@handles("repeat.default")
def _repeat(ctx: ImportCtx, node, x, repeats):
    """``x.repeat(r0, r1, ...)`` as a view ``[1, d0, 1, d1, ...]``, an ``expand`` to ``[r0, d0, r1,
    d1, ...]`` and a reshape to ``[r0*d0, r1*d1, ...]`` (torch's own decomposition asks whether
    the final reshape is a no-op, a guard that split batch 1 off)."""
    v = ctx.value(x)
    out = ctx.out_type()
    reps = [ctx.sym(r) for r in repeats]
    dims = [sympy.Integer(1)] * (len(reps) - v.type.rank) + list(v.type.shape)
    spread = [d for pair in zip([sympy.Integer(1)] * len(dims), dims) for d in pair]
    grown = [d for pair in zip(reps, dims) for d in pair]
    v = ctx.emit(dm.ReshapeOp, [v], tensor_type(spread, out.dtype))
    v = ctx.emit(dm.ExpandOp, [v], tensor_type(grown, out.dtype))
    return ctx.emit(dm.ReshapeOp, [v], out)


@handles("flip.default")
def _flip(ctx: ImportCtx, node, x, dims):
    """Each flipped dim is an index gather at ``n - 1 - i``."""
    v = ctx.value(x)
    rank = v.type.rank
    for d in sorted({d % max(rank, 1) for d in dims}):
        n = v.type.shape[d]
        iota = ctx.emit(dm.IotaOp, [], tensor_type([n], torch.int64), start=float_attr(0.0), step=float_attr(1.0))
        last = ctx.value(n - 1) if not isinstance(n - 1, (int, sympy.Integer)) else ctx.constant(int(n - 1))
        idx = ctx.emit(ew.SubOp, [last, iota], tensor_type([n], torch.int64))
        v = ctx.emit(dm.IndexOp, [v, idx], v.type, indexed=ints_attr([d]))
    return v


@handles("permute.default")
def _permute(ctx: ImportCtx, node, x, dims):
    v = ctx.value(x)
    rank = v.type.rank
    return ctx.emit(dm.PermuteOp, [v], ctx.out_type(), perm=ints_attr([d % rank for d in dims]))


@handles("transpose.int", "swapaxes.default")
def _transpose(ctx: ImportCtx, node, x, d0, d1):
    v = ctx.value(x)
    rank = v.type.rank
    perm = list(range(rank))
    a, b = d0 % rank, d1 % rank
    perm[a], perm[b] = perm[b], perm[a]
    return ctx.emit(dm.PermuteOp, [v], ctx.out_type(), perm=ints_attr(perm))


@handles("t.default")
def _t(ctx: ImportCtx, node, x):
    v = ctx.value(x)
    if v.type.rank < 2:
        return v
    return ctx.emit(dm.PermuteOp, [v], ctx.out_type(), perm=ints_attr([1, 0]))


def _normalize_index(e: sympy.Expr, size: sympy.Expr) -> sympy.Expr:
    if e.is_Integer and int(e) < 0:
        return size + e
    return e


def slice_start(e: sympy.Expr, size: sympy.Expr) -> sympy.Expr:
    """Where a slice ``[e:]`` of a dim of ``size`` starts, as Python clamps it: a negative ``e``
    counts from the end but never before 0 (``x[:, -2:]`` of a dim of 1 starts at 0), and no start
    lies past the end. Exact for symbolic sizes (``max(0, s1 - 2)``)."""
    if e.is_Integer and int(e) < 0:
        e = sympy.Max(size + e, 0)
    return sympy.Min(e, size) if size is not None else e


def _slice(ctx: ImportCtx, v, dim: int, start: sympy.Expr, length_type, step: int = 1):
    return ctx.emit(dm.SliceOp, [v], length_type, dim=int_attr(dim), start=DimsAttr.from_dims([start]),
                    step=int_attr(step))


def _define_slice_symbols(ctx: ImportCtx, node, d: int, size, start: sympy.Expr, end, step: int) -> None:
    """Where export could not decide a slice's length or storage offset (``x[:, s:k]`` with ``s``
    and ``k`` int arguments taken as sizes: unbacked ``u0``, ``u1`` that its runtime asserts read),
    define them from the bounds as Python slices: length ``max(0, min(end, size) - start)`` over
    ``step`` for an end known to be >= 0, offset the input's plus ``start`` times its stride."""
    val, src = node.meta.get("val"), node.args[0].meta.get("val")
    if not isinstance(val, torch.Tensor) or not isinstance(src, torch.Tensor):
        return

    def undefined(x) -> sympy.Symbol | None:
        if not isinstance(x, torch.SymInt):
            return None
        expr = x.node.expr
        if ctx.mapping.shape_env is not None:
            expr = ctx.mapping.shape_env.replace(expr)
        if not expr.is_Symbol or expr in ctx.mapping.subs or expr in ctx.mapping.unbacked:
            return None
        return expr

    e = size if end is None else ctx.sym(end)
    if mentions_data_dependent(ctx.mapping.table, e) or mentions_data_dependent(ctx.mapping.table, start):
        return  # bounds known only when an eager op has run: export's own symbols say it
    length = undefined(val.shape[d])
    if length is not None and ctx.mapping.table.known_ge(e, 0):  # a negative end counts from the end
        n = sympy.Max(0, sympy.Min(e, size) - start)
        ctx.mapping.unbacked[length] = n if step == 1 else sympy.ceiling(n / step)
    offset = undefined(val.storage_offset())
    if offset is not None:
        try:
            base, stride = ctx.mapping.convert(src.storage_offset()), ctx.mapping.convert(src.stride()[d])
        except ShapeError:
            return
        ctx.mapping.unbacked[offset] = base + start * stride


@handles("slice.Tensor")
def _slice_tensor(ctx: ImportCtx, node, x, dim=0, start=None, end=None, step=1):
    v = ctx.value(x)
    d = dim % v.type.rank
    size = v.type.shape[d]
    s = sympy.Integer(0) if start is None else slice_start(ctx.sym(start), size)
    _define_slice_symbols(ctx, node, d, size, s, end, int(step))
    out = ctx.out_type()
    if v.type == out and s == 0 and step == 1:
        return v
    return _slice(ctx, v, d, s, out, int(step))


@handles("select.int")
def _select(ctx: ImportCtx, node, x, dim, index):
    v = ctx.value(x)
    d = dim % v.type.rank
    s = _normalize_index(ctx.sym(index), v.type.shape[d])
    shape = list(v.type.shape)
    shape[d] = sympy.Integer(1)
    sl = _slice(ctx, v, d, s, v.type.with_shape(shape))
    return ctx.emit(dm.ReshapeOp, [sl], ctx.out_type())


@handles("narrow.default")
def _narrow(ctx: ImportCtx, node, x, dim, start, length):
    v = ctx.value(x)
    d = dim % v.type.rank
    return _slice(ctx, v, d, _normalize_index(ctx.sym(start), v.type.shape[d]), ctx.out_type())


@handles("chunk.default", "split.Tensor", "split_with_sizes.default", "unbind.int")
def _split(ctx: ImportCtx, node, x, *args, **kwargs):
    v = ctx.value(x)
    outs = node.meta["val"]
    if node.target is torch.ops.aten.unbind.int:
        dim = (args[0] if args else kwargs.get("dim", 0)) % v.type.rank
    elif node.target is torch.ops.aten.chunk.default:
        dim = (args[1] if len(args) > 1 else kwargs.get("dim", 0)) % v.type.rank
    else:
        dim = (args[1] if len(args) > 1 else kwargs.get("dim", 0)) % v.type.rank
    results, start = [], sympy.Integer(0)
    for o in outs:
        t = ctx.type_of(o)
        if node.target is torch.ops.aten.unbind.int:
            shape = list(v.type.shape)
            shape[dim] = sympy.Integer(1)
            piece = _slice(ctx, v, dim, start, v.type.with_shape(shape))
            results.append(ctx.emit(dm.ReshapeOp, [piece], t))
            start = start + 1
        else:
            results.append(_slice(ctx, v, dim, start, t))
            start = start + t.shape[dim]
    return results


@handles("cat.default", "concat.default")
def _cat(ctx: ImportCtx, node, tensors, dim=0):
    # torch.cat skips 1-D empty tensors (transformers' caches start as torch.tensor([]))
    kept = [t for t in tensors if not (ctx.value(t).type.rank == 1 and ctx.value(t).type.shape[0] == 0)]
    vals = [ctx.value(t) for t in kept]
    if len(vals) == 1:
        return _same_or_cast(ctx, kept[0])
    return ctx.emit(dm.ConcatOp, vals, ctx.out_type(), dim=int_attr(dim % ctx.out_type().rank))


@handles("stack.default")
def _stack(ctx: ImportCtx, node, tensors, dim=0):
    out = ctx.out_type()
    d = dim % out.rank
    pieces = []
    for t in tensors:
        v = ctx.value(t)
        shape = list(v.type.shape)
        shape.insert(d, sympy.Integer(1))
        pieces.append(ctx.emit(dm.ReshapeOp, [v], v.type.with_shape(shape)))
    return ctx.emit(dm.ConcatOp, pieces, out, dim=int_attr(d))


@handles("upsample_nearest2d.vec", "upsample_nearest2d.default", "upsample_nearest1d.vec",
         "upsample_nearest3d.vec")
def _upsample_nearest(ctx: ImportCtx, node, x, output_size=None, *args, **kwargs):
    scales = [a for a in list(args) + list(kwargs.values()) if a is not None]
    flat = []
    for s in scales:
        flat.extend(s if isinstance(s, (list, tuple)) else [s])
    if output_size is None and any(float(s) != int(s) for s in flat):
        raise NotLowered(f"nearest upsampling by non-integer scale factors {flat}")
    return ctx.emit(dm.UpsampleOp, [ctx.value(x)], ctx.out_type(), mode=StringAttr("nearest"))


@handles("embedding.default")
def _embedding(ctx: ImportCtx, node, weight, indices, *args, **kwargs):
    return ctx.emit(dm.EmbeddingOp, [ctx.value(weight), ctx.value(indices)], ctx.out_type())


@handles("index.Tensor", "_unsafe_index.Tensor")
def _index(ctx: ImportCtx, node, x, indices):
    dims = [i for i, t in enumerate(indices) if t is not None]
    vals = [ctx.value(indices[i]) for i in dims]
    if any(v.type.element_type != tensor_type([], torch.int64).element_type for v in vals):
        raise NotLowered("boolean-mask indexing has a data-dependent result size")
    return ctx.emit(dm.IndexOp, [ctx.value(x), *vals], ctx.out_type(), indexed=ints_attr(dims))


@handles("index_select.default")
def _index_select(ctx: ImportCtx, node, x, dim, index):
    v = ctx.value(x)
    return ctx.emit(dm.IndexOp, [v, ctx.value(index)], ctx.out_type(), indexed=ints_attr([dim % v.type.rank]))


# ---------------------------------------------------------------------------------------------
# elementwise
# ---------------------------------------------------------------------------------------------

_UNARY = {
    "neg.default": ew.NegOp, "exp.default": ew.ExpOp, "log.default": ew.LogOp, "log1p.default": ew.Log1pOp, "expm1.default": ew.Expm1Op,
    "sqrt.default": ew.SqrtOp,
    "rsqrt.default": ew.RsqrtOp, "sin.default": ew.SinOp, "cos.default": ew.CosOp, "tanh.default": ew.TanhOp,
    "sigmoid.default": ew.SigmoidOp, "silu.default": ew.SiluOp, "relu.default": ew.ReluOp,
    "abs.default": ew.AbsOp, "erf.default": ew.ErfOp, "reciprocal.default": ew.ReciprocalOp,
    "logical_not.default": ew.LogicalNotOp, "floor.default": ew.FloorOp, "ceil.default": ew.CeilOp,
    "trunc.default": ew.TruncOp, "fix.default": ew.TruncOp, "round.default": ew.RoundOp, "sign.default": ew.SignOp,
    "log2.default": ew.Log2Op, "exp2.default": ew.Exp2Op, "isnan.default": ew.IsnanOp, "isinf.default": ew.IsinfOp,
}


def _make_unary(op_cls):
    def handler(ctx: ImportCtx, node, x):
        return ctx.emit(op_cls, [ctx.value(x)], ctx.out_type())

    return handler


for _name, _cls in _UNARY.items():
    handles(_name)(_make_unary(_cls))


@handles("bitwise_not.default")
def _bitwise_not(ctx: ImportCtx, node, x):
    v = ctx.value(x)
    if ctx.out_type().dtype != torch.bool:
        raise NotLowered("bitwise_not on integers is not supported (booleans only)")
    return ctx.emit(ew.LogicalNotOp, [v], ctx.out_type())


@handles("gelu.default")
def _gelu(ctx: ImportCtx, node, x, approximate="none"):
    return ctx.emit(ew.GeluOp, [ctx.value(x)], ctx.out_type(), approximate=StringAttr(approximate))


def _is_node(a) -> bool:
    return isinstance(a, torch.fx.Node)


def _known_scalar(ctx: ImportCtx, a):
    if _is_node(a):
        return ctx.known_scalars.get(a)
    return as_expr(a) if isinstance(a, int) and not isinstance(a, bool) else None


_BINARY = {
    "add": (ew.AddOp, operator.add), "sub": (ew.SubOp, operator.sub), "mul": (ew.MulOp, operator.mul),
    "div": (ew.DivOp, None), "maximum": (ew.MaximumOp, None), "minimum": (ew.MinimumOp, None),
    "eq": (ew.EqOp, None), "ne": (ew.NeOp, None), "lt": (ew.LtOp, None), "le": (ew.LeOp, None),
    "gt": (ew.GtOp, None), "ge": (ew.GeOp, None), "logical_and": (ew.LogicalAndOp, None),
    "logical_or": (ew.LogicalOrOp, None), "remainder": (ew.RemainderOp, None), "fmod": (ew.FmodOp, None),
    "floor_divide": (ew.FloorDivOp, lambda a, b: sympy.floor(a / b)), "pow": (ew.PowOp, None),
    "bitwise_and": (ew.LogicalAndOp, None), "bitwise_or": (ew.LogicalOrOp, None),
}


def _make_binary(op_cls, sym_fn, reverse=False):
    def handler(ctx: ImportCtx, node, a, b, *, alpha=1, rounding_mode=None):
        if reverse:
            a, b = b, a
        out = ctx.out_type()
        if op_cls in (ew.LogicalAndOp, ew.LogicalOrOp) and out.dtype != torch.bool:
            raise NotLowered("bitwise ops on integers are not supported (booleans only)")
        cls = op_cls
        if rounding_mode == "floor":
            cls = ew.FloorDivOp
        elif rounding_mode is not None:
            raise NotLowered(f"division with rounding_mode='{rounding_mode}'")
        lhs, rhs = ctx.value(a), ctx.value(b)
        if alpha != 1:
            rhs = ctx.emit(ew.MulOp, [rhs, ctx.constant(alpha)], rhs.type)
        ka, kb = _known_scalar(ctx, a), _known_scalar(ctx, b)
        if sym_fn is not None and alpha == 1 and ka is not None and kb is not None:
            ctx.known_scalars[node] = sym_fn(ka, kb)
        return ctx.emit(cls, [lhs, rhs], out)

    return handler


for _name, (_cls, _fn) in _BINARY.items():
    for _overload in ("Tensor", "Scalar", "default", "Tensor_Tensor", "Tensor_Scalar", "Scalar_Tensor",
                      "Tensor_mode", "Scalar_mode", "self"):
        handles(f"{_name}.{_overload}")(_make_binary(_cls, _fn))
handles("rsub.Scalar", "rsub.Tensor")(_make_binary(ew.SubOp, None, reverse=True))


@handles("where.self", "where.ScalarSelf", "where.ScalarOther", "where.Scalar")
def _where(ctx: ImportCtx, node, cond, a, b):
    out = ctx.out_type()
    av = ctx.value(a) if _is_node(a) else ctx.constant(a, out.dtype)
    bv = ctx.value(b) if _is_node(b) else ctx.constant(b, out.dtype)
    return ctx.emit(ew.WhereOp, [ctx.value(cond), av, bv], out)


@handles("masked_fill.Scalar", "masked_fill.Tensor")
def _masked_fill(ctx: ImportCtx, node, x, mask, value):
    out = ctx.out_type()
    fill = ctx.value(value) if _is_node(value) else ctx.constant(value, out.dtype)
    return ctx.emit(ew.WhereOp, [ctx.value(mask), fill, ctx.value(x)], out)


@handles("clamp.default", "clamp_min.default", "clamp_max.default")
def _clamp(ctx: ImportCtx, node, x, lo=None, hi=None):
    out = ctx.out_type()
    v = ctx.value(x)
    if node.target is torch.ops.aten.clamp_max.default:
        lo, hi = None, lo
    def bound(b):
        # a number, or a size the program computes (upsampling clamps its source coordinates to
        # the input size - 1): the shape program's exact integer
        if isinstance(b, (bool, int, float)):
            return ctx.constant(b, out.dtype)
        val = ctx.value(b)
        return val if val.type.dtype == out.dtype else ctx.emit(ew.CastOp, [val], tensor_type([], out.dtype))

    if lo is not None:
        v = ctx.emit(ew.MaximumOp, [v, bound(lo)], out)
    if hi is not None:
        v = ctx.emit(ew.MinimumOp, [v, bound(hi)], out)
    return v


# ---------------------------------------------------------------------------------------------
# reductions, norms, contractions
# ---------------------------------------------------------------------------------------------


def _reduction(op_cls):
    def handler(ctx: ImportCtx, node, x, dim=None, keepdim=False, *, dtype=None):
        v = ctx.value(x)
        dims = list(range(v.type.rank)) if dim is None or dim == [] else (
            [dim] if isinstance(dim, int) else list(dim))
        return ctx.emit(op_cls, [v], ctx.out_type(), dims=ints_attr(dims), keepdim=int_attr(keepdim))

    return handler


handles("sum.dim_IntList", "sum.default")(_reduction(st.ReduceSumOp))
handles("mean.dim", "mean.default")(_reduction(st.ReduceMeanOp))
handles("amax.default")(_reduction(st.ReduceMaxOp))
handles("amin.default")(_reduction(st.ReduceMinOp))


@handles("var.correction", "var.dim", "var.default", "var_mean.correction", "std.correction", "std.dim",
         "std.default")
def _var(ctx: ImportCtx, node, x, dim=None, unbiased=None, keepdim=False, *, correction=None):
    """Variance as two passes of compiled ops, ``sum((x - mean)**2) / max(N - correction, 0)``,
    in float32 for half-precision inputs (eager accumulates wider too); ``var_mean`` also returns
    the mean, ``std`` is its square root. ``N`` is the product of the reduced (symbolic) sizes."""
    if isinstance(dim, bool):  # var.default / std.default(x, unbiased)
        dim, unbiased = None, dim
    if isinstance(unbiased, bool):  # var.dim(x, dim, unbiased, keepdim)
        correction = 1 if unbiased else 0
    elif node.target in (torch.ops.aten.var.default, torch.ops.aten.std.default):  # unbiased by default
        correction = 1 if unbiased is None or unbiased else 0
    correction = 1 if correction is None else correction
    if float(correction) != int(correction):
        raise NotLowered(f"variance with a fractional correction ({correction})")
    v = ctx.value(x)
    rank = v.type.rank
    dims = list(range(rank)) if dim is None or dim == [] else ([dim] if isinstance(dim, int) else list(dim))
    dims = sorted({d % max(rank, 1) for d in dims})
    val = node.meta["val"]
    var_t = ctx.type_of(val[0] if isinstance(val, (tuple, list)) else val)
    if not var_t.dtype.is_floating_point:
        raise NotLowered("variance of an integer tensor")
    wide = torch.float32 if var_t.dtype in (torch.float16, torch.bfloat16) else var_t.dtype
    if v.type.dtype != wide:
        v = ctx.emit(ew.CastOp, [v], tensor_type(v.type.shape, wide))
    full = v.type
    kept = tensor_type([1 if i in dims else d for i, d in enumerate(full.shape)], wide)
    mean = ctx.emit(st.ReduceMeanOp, [v], kept, dims=ints_attr(dims), keepdim=int_attr(True))
    dev = ctx.emit(ew.SubOp, [v, mean], full)
    sq = ctx.emit(ew.MulOp, [dev, dev], full)
    out_wide = tensor_type(var_t.shape, wide)
    ss = ctx.emit(st.ReduceSumOp, [sq], out_wide, dims=ints_attr(dims), keepdim=int_attr(keepdim))
    n = sympy.Integer(1)
    for d in dims:
        n = n * full.shape[d]
    denom = sympy.Max(n - int(correction), 0) if correction else n
    if isinstance(denom, sympy.Integer) or denom.is_number:
        count = ctx.constant(float(denom), wide)
    else:
        count = ctx.emit(dm.DimValueOp, [], tensor_type([], torch.int64), value=DimsAttr.from_dims([denom]))
    var = ctx.emit(ew.DivOp, [ss, count], out_wide)
    if node.target._overloadpacket is torch.ops.aten.std:
        var = ctx.emit(ew.SqrtOp, [var], out_wide)
    if wide != var_t.dtype:
        var = ctx.emit(ew.CastOp, [var], var_t)
    if node.target is not torch.ops.aten.var_mean.correction:
        return var
    mean_t = ctx.type_of(val[1])
    m = mean if keepdim else ctx.emit(st.ReduceMeanOp, [v], tensor_type(mean_t.shape, wide), dims=ints_attr(dims),
                                      keepdim=int_attr(False))
    if wide != mean_t.dtype:
        m = ctx.emit(ew.CastOp, [m], mean_t)
    return [var, m]


@handles("_cdist_forward.default")
def _cdist(ctx: ImportCtx, node, x1, x2, p, compute_mode=None):
    """``cdist`` by its definition (the path torch takes for small point sets): the differences of
    every pair ``[..., P, 1, M] - [..., 1, R, M]`` reduced over ``M``: ``sqrt(sum(d*d))`` for
    ``p = 2``, ``sum(|d|)`` for 1, ``max(|d|)`` for inf."""
    a, b = ctx.value(x1), ctx.value(x2)
    out = ctx.out_type()
    if float(p) not in (1.0, 2.0, float("inf")) or a.type.rank != b.type.rank:
        raise NotLowered(f"cdist with p={p}")
    *batch, pp, m = a.type.shape
    rr = b.type.shape[-2]
    t = out.dtype
    a4 = ctx.emit(dm.ReshapeOp, [a], tensor_type([*batch, pp, 1, m], t))
    b4 = ctx.emit(dm.ReshapeOp, [b], tensor_type([*b.type.shape[:-2], 1, rr, m], t))
    full = tensor_type([*out.shape, m], t)
    d = ctx.emit(ew.SubOp, [a4, b4], full)
    last = [len(out.shape)]
    if float(p) == 2.0:
        sq = ctx.emit(ew.MulOp, [d, d], full)
        ss = ctx.emit(st.ReduceSumOp, [sq], out, dims=ints_attr(last), keepdim=int_attr(False))
        return ctx.emit(ew.SqrtOp, [ss], out)
    ad = ctx.emit(ew.AbsOp, [d], full)
    cls = st.ReduceSumOp if float(p) == 1.0 else st.ReduceMaxOp
    return ctx.emit(cls, [ad], out, dims=ints_attr(last), keepdim=int_attr(False))


@handles("argmax.default", "argmin.default")
def _argmax(ctx: ImportCtx, node, x, dim=None, keepdim=False):
    name = node.target._opname
    if dim is None:
        raise NotLowered(f"{name} over the flattened tensor")
    cls = st.ArgMaxOp if name == "argmax" else st.ArgMinOp
    return ctx.emit(cls, [ctx.value(x)], ctx.out_type(), dims=ints_attr([dim]), keepdim=int_attr(keepdim))


@handles("cumsum.default")
def _cumsum(ctx: ImportCtx, node, x, dim, *, dtype=None):
    v = ctx.value(x)
    return ctx.emit(st.CumsumOp, [v], ctx.out_type(), dim=int_attr(dim % max(v.type.rank, 1)))


@handles("gather.default")
def _gather(ctx: ImportCtx, node, x, dim, index, *, sparse_grad=False):
    v = ctx.value(x)
    return ctx.emit(dm.GatherOp, [v, ctx.value(index)], ctx.out_type(), dim=int_attr(dim % max(v.type.rank, 1)))


@handles("softmax.int", "_softmax.default", "log_softmax.int", "_log_softmax.default")
def _softmax(ctx: ImportCtx, node, x, dim, *args, **kwargs):
    cls = st.LogSoftmaxOp if "log" in node.target._opname else st.SoftmaxOp
    out, v = ctx.out_type(), ctx.value(x)
    if v.type.element_type != out.element_type:  # softmax(x, dtype=...), half_to_float: eager casts
        v = ctx.emit(ew.CastOp, [v], v.type.with_element_type(out.element_type))  # first, then computes
    return ctx.emit(cls, [v], out, dim=int_attr(dim))


def _affine(ctx: ImportCtx, weight, bias, channels_type):
    if weight is None and bias is None:
        return []
    w = ctx.value(weight) if weight is not None else ctx.emit(dm.FullOp, [], channels_type, value=float_attr(1.0))
    b = ctx.value(bias) if bias is not None else ctx.emit(dm.FullOp, [], channels_type, value=float_attr(0.0))
    return [w, b]


@handles("group_norm.default")
def _group_norm(ctx: ImportCtx, node, x, num_groups, weight=None, bias=None, eps=1e-5, cudnn_enabled=True):
    v = ctx.value(x)
    affine = _affine(ctx, weight, bias, v.type.with_shape([v.type.shape[1]]))
    return ctx.emit(st.GroupNormOp, [v, *affine], ctx.out_type(), num_groups=int_attr(num_groups),
                    eps=float_attr(eps))


@handles("layer_norm.default")
def _layer_norm(ctx: ImportCtx, node, x, normalized_shape, weight=None, bias=None, eps=1e-5, cudnn_enable=True):
    v = ctx.value(x)
    n = len(normalized_shape)
    affine = _affine(ctx, weight, bias, v.type.with_shape(list(v.type.shape[-n:])))
    return ctx.emit(st.LayerNormOp, [v, *affine], ctx.out_type(), normalized_ndim=int_attr(n),
                    eps=float_attr(eps))


@handles("linear.default")
def _linear(ctx: ImportCtx, node, x, weight, bias=None):
    ops = [ctx.value(x), ctx.value(weight)] + ([ctx.value(bias)] if bias is not None else [])
    return ctx.emit(st.LinearOp, ops, ctx.out_type())


@handles("mm.default", "bmm.default", "matmul.default")
def _matmul(ctx: ImportCtx, node, a, b):
    av, bv = ctx.value(a), ctx.value(b)
    if av.type.rank < 2 or bv.type.rank < 2:
        raise NotLowered("matmul with a 1-D operand")
    return ctx.emit(st.MatmulOp, [av, bv], ctx.out_type())


@handles("addmm.default", "baddbmm.default")
def _addmm(ctx: ImportCtx, node, bias, a, b, *, beta=1, alpha=1):
    out = ctx.out_type()
    prod = ctx.emit(st.MatmulOp, [ctx.value(a), ctx.value(b)], out)
    if alpha != 1:
        prod = ctx.emit(ew.MulOp, [prod, ctx.constant(alpha)], out)
    if beta == 0:
        return prod
    bv = ctx.value(bias)
    if beta != 1:
        bv = ctx.emit(ew.MulOp, [bv, ctx.constant(beta)], bv.type)
    return ctx.emit(ew.AddOp, [prod, bv], out)


def _per_dim(v, n):
    return list(v) * n if len(v) == 1 else list(v)


@handles("scaled_dot_product_attention.default")
def _sdpa(ctx: ImportCtx, node, q, k, v, attn_mask=None, dropout_p=0.0, is_causal=False, *, scale=None,
          enable_gqa=False):
    if dropout_p:
        raise NotLowered("attention dropout is random; call model.eval() before optimize")
    if enable_gqa:
        raise NotLowered("grouped-query attention (enable_gqa=True)")
    ops = [ctx.value(q), ctx.value(k), ctx.value(v)] + ([ctx.value(attn_mask)] if attn_mask is not None else [])
    out = ctx.out_type()
    head_v = ops[2].type.shape[-1]
    if known_equal(out.shape[-1], head_v):
        return ctx.emit(st.AttentionOp, ops, out, is_causal=int_attr(bool(is_causal)),
                        scale=None if scale is None else float_attr(scale))
    # torch records the output's last dim as the query's (its CPU kernel's shape rule) without a
    # guard; it is the value's. With q and v of independent sizes (separate inputs) the two
    # are made one by a guard, and the attention result is renamed to torch's type.
    ctx.mapping.table.require(sympy.Eq(out.shape[-1], head_v), "scaled_dot_product_attention: the query's "
                              "and the value's head dims are taken to be equal, as torch's shape rule does")
    att = ctx.emit(st.AttentionOp, ops, out.with_shape(list(out.shape[:-1]) + [head_v]),
                   is_causal=int_attr(bool(is_causal)), scale=None if scale is None else float_attr(scale))
    return ctx.emit(dm.ReshapeOp, [att], out)


# ---------------------------------------------------------------------------------------------
# tensor sources
# ---------------------------------------------------------------------------------------------


@handles("arange.default", "arange.start", "arange.start_step")
def _arange(ctx: ImportCtx, node, *args, **kwargs):
    nums = [ctx.scalar(a) for a in args]
    if node.target is torch.ops.aten.arange.default:
        start, step = 0, 1
    else:
        start, step = nums[0], (nums[2] if len(nums) > 2 else kwargs.get("step", 1))
    if not isinstance(start, (int, float)) or not isinstance(step, (int, float)):
        raise NotLowered("arange with a symbolic start or step")
    return ctx.emit(dm.IotaOp, [], ctx.out_type(), start=float_attr(start), step=float_attr(step))


@handles("full.default", "full_like.default", "new_full.default")
def _full(ctx: ImportCtx, node, *args, **kwargs):
    value = ctx.scalar(args[1])
    if not isinstance(value, (int, float, bool)):
        raise NotLowered("full with a symbolic fill value")
    out = ctx.out_type()
    return ctx.emit(dm.FullOp, [], out, value=scalar_attr(value, out.dtype))


@handles("zeros.default", "zeros_like.default", "new_zeros.default", "empty.memory_format",
         "empty_like.default", "new_empty.default")
def _zeros(ctx: ImportCtx, node, *args, **kwargs):
    return ctx.emit(dm.FullOp, [], ctx.out_type(), value=float_attr(0.0))


@handles("ones.default", "ones_like.default", "new_ones.default")
def _ones(ctx: ImportCtx, node, *args, **kwargs):
    return ctx.emit(dm.FullOp, [], ctx.out_type(), value=float_attr(1.0))


@handles("scalar_tensor.default")
def _scalar_tensor(ctx: ImportCtx, node, s, **kwargs):
    val = ctx.scalar(s)
    out = ctx.out_type()
    if isinstance(val, sympy.Expr) and not val.is_Number:
        ctx.known_scalars[node] = val
        v = ctx.emit(dm.DimValueOp, [], tensor_type([], torch.int64), value=DimsAttr.from_dims([val]))
        return v if out.dtype == torch.int64 else ctx.emit(ew.CastOp, [v], out)
    if isinstance(val, (int, sympy.Integer)):
        ctx.known_scalars[node] = as_expr(int(val))
    return ctx.constant(float(val), out.dtype)


# batch norm, pooling and padding live in aten_windows.py, registered into the same table here
from blade.frontend import aten_windows  # noqa: E402,F401 - registers its handlers
# the functional forms of in-place writes (slice/select scatters, fill, copy) live in aten_scatter.py
from blade.frontend import aten_scatter  # noqa: E402,F401 - registers its handlers
# convolutions and transposed convolutions live in aten_conv.py
from blade.frontend import aten_conv  # noqa: E402,F401 - registers its handlers
