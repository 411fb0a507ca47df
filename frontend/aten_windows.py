"""ATen handlers for padding, pooling and normalisation outside the structured norm ops: constant
padding and the index-gather padding modes (``reflect``, ``replicate``, ``circular``), batch norm
in eval mode, RMS norm (``_fused_rms_norm``), max/average/adaptive pooling. Split out of ``aten_table.py`` (which imports this module, so both
register into one table)."""

from __future__ import annotations

import sympy
import torch

from blade.dialects import data_movement as dm
from blade.dialects import elementwise as ew
from blade.dialects import structured as st
from blade.dialects.types import float_attr, int_attr, ints_attr, tensor_type
from blade.frontend.aten_table import _per_dim, _slice
from blade.frontend.fx_importer import ImportCtx, NotLowered, handles


@handles("constant_pad_nd.default")
def _constant_pad(ctx: ImportCtx, node, x, pad, value=0):
    return _emit_pad(ctx, x, pad, value)


@handles("pad.default")
def _pad(ctx: ImportCtx, node, x, pad, mode="constant", value=None):
    if mode == "constant":
        return _emit_pad(ctx, x, pad, value or 0.0)
    if mode not in ("reflect", "replicate", "circular"):
        raise NotLowered(f"padding mode '{mode}' is not supported")
    return _index_pad(ctx, ctx.value(x), list(pad), mode)


def _emit_pad(ctx: ImportCtx, x, pad, value):
    pads = ctx.syms(pad)
    if not all(p.is_Integer for p in pads):  # amounts computed from sizes (Swin's windows)
        return _symbolic_constant_pad(ctx, ctx.value(x), pads, float(ctx.scalar(value)))
    if any(p < 0 for p in pads):
        raise NotLowered("negative padding (cropping) is not supported")
    return ctx.emit(dm.PadOp, [ctx.value(x)], ctx.out_type(), pads=ints_attr([int(p) for p in pads]),
                    value=float_attr(float(ctx.scalar(value))))


def _symbolic_constant_pad(ctx: ImportCtx, v, pads: list, value: float):
    """Constant padding by amounts computed from the input sizes (``(7 - w % 7) % 7``: Swin pads to
    whole windows), which ``blade.pad`` cannot hold: per padded dim an index gather and a select.
    Output position ``j`` reads ``x[clamp(j - left, 0, n - 1)]`` where ``0 <= j - left < n``, else
    ``value``. Each amount must be at least 0 (a guard: eager crops for a negative one)."""
    i64 = torch.int64
    rank = v.type.rank
    for k in range(len(pads) // 2):
        left, right = pads[2 * k], pads[2 * k + 1]
        if left == 0 and right == 0:
            continue
        for amount in (left, right):
            if not amount.is_Integer:
                ctx.mapping.table.require(sympy.Ge(amount, 0), "constant padding computed from sizes is not negative")
            elif amount < 0:
                raise NotLowered("negative padding (cropping) is not supported")
        d = rank - 1 - k
        n = v.type.shape[d]
        out_n = n + left + right
        vec = tensor_type([out_n], i64)

        j = ctx.emit(dm.IotaOp, [], vec, start=float_attr(0.0), step=float_attr(1.0))
        t = ctx.emit(ew.SubOp, [j, ctx.size_value(left)], vec)
        src = ctx.emit(ew.MinimumOp, [ctx.emit(ew.MaximumOp, [t, ctx.constant(0)], vec), ctx.size_value(n - 1)], vec)
        flags = tensor_type([out_n], torch.bool)
        inside = ctx.emit(ew.LogicalAndOp, [ctx.emit(ew.GeOp, [t, ctx.constant(0)], flags),
                                            ctx.emit(ew.LtOp, [t, ctx.size_value(n)], flags)], flags)
        shape = list(v.type.shape)
        shape[d] = out_n
        gathered = ctx.emit(dm.IndexOp, [v, src], v.type.with_shape(shape), indexed=ints_attr([d]))
        mask = ctx.emit(dm.ReshapeOp, [inside], tensor_type([out_n] + [1] * (rank - 1 - d), torch.bool))
        fill = ctx.constant(value) if v.type.dtype.is_floating_point else ctx.constant(int(value))
        v = ctx.emit(ew.WhereOp, [mask, gathered, fill], gathered.type)
    return v


def _index_pad(ctx: ImportCtx, v, pad: list, mode: str):
    """``reflect``/``replicate``/``circular`` padding as an index gather per padded dim: output
    position ``j`` (``t = j - left``) reads ``n-1 - |n-1 - |t||`` (reflect), ``clamp(t, 0, n-1)``
    (replicate) or ``t mod n`` (circular) of a dim of size ``n``. Reflection needs each pad below
    ``n`` (eager refuses otherwise): a guard, so such a call gets eager's error."""
    if any(int(p) < 0 for p in pad):
        raise NotLowered("negative padding (cropping) is not supported")
    i64 = torch.int64
    rank = v.type.rank
    for k in range(len(pad) // 2):
        left, right = int(pad[2 * k]), int(pad[2 * k + 1])
        if left == 0 and right == 0:
            continue
        d = rank - 1 - k
        n = v.type.shape[d]
        if mode == "reflect":
            ctx.mapping.table.require(sympy.Lt(max(left, right), n), "reflection padding is smaller than the dim")
        elif mode == "circular":
            ctx.mapping.table.require(sympy.Le(max(left, right), n), "circular padding is at most the dim")
        out_n = n + left + right
        vec = tensor_type([out_n], i64)
        j = ctx.emit(dm.IotaOp, [], vec, start=float_attr(float(-left)), step=float_attr(1.0))  # t = j - left

        last = ctx.size_value(n - 1)
        if mode == "reflect":
            a = ctx.emit(ew.AbsOp, [j], vec)
            b = ctx.emit(ew.AbsOp, [ctx.emit(ew.SubOp, [last, a], vec)], vec)
            src = ctx.emit(ew.SubOp, [last, b], vec)
        elif mode == "replicate":
            src = ctx.emit(ew.MinimumOp, [ctx.emit(ew.MaximumOp, [j, ctx.constant(0)], vec), last], vec)
        else:
            src = ctx.emit(ew.RemainderOp, [j, ctx.size_value(n)], vec)
        shape = list(v.type.shape)
        shape[d] = out_n
        v = ctx.emit(dm.IndexOp, [v, src], v.type.with_shape(shape), indexed=ints_attr([d]))
    return v


@handles("reflection_pad1d.default", "reflection_pad2d.default", "reflection_pad3d.default",
         "replication_pad1d.default", "replication_pad2d.default", "replication_pad3d.default")
def _named_pad(ctx: ImportCtx, node, x, padding):
    mode = "reflect" if "reflection" in node.target._opname else "replicate"
    return _index_pad(ctx, ctx.value(x), list(padding), mode)


# ---------------------------------------------------------------------------------------------
# batch norm in eval mode: an affine map per channel, emitted as elementwise ops
# ---------------------------------------------------------------------------------------------


def _batch_norm_eval(ctx: ImportCtx, x, weight, bias, mean, var, eps):
    """``(x - mean) * rsqrt(var + eps) * weight + bias`` with the [C] vectors viewed as
    [C, 1, ...] so they broadcast against [N, C, ...]."""
    v = ctx.value(x)
    out = ctx.type_of(ctx.node.meta["val"][0] if isinstance(ctx.node.meta["val"], (tuple, list))
                      else ctx.node.meta["val"])
    if v.type.rank < 2 or mean is None or var is None:
        raise NotLowered("batch norm without running statistics or on a 1-D input")
    stat_dtype = ctx.type_of(var.meta["val"]).dtype

    def per_channel(t):
        tv = ctx.value(t)
        shape = [tv.type.shape[0]] + [sympy.Integer(1)] * (v.type.rank - 2)
        return ctx.emit(dm.ReshapeOp, [tv], tv.type.with_shape(shape))

    # y = x * scale + shift: the per-channel scale and shift depend on weights only, so the
    # activation sees one multiply-add (two roundings in fp16, like a fused eager batch norm)
    c_type = tensor_type([v.type.shape[1]] + [sympy.Integer(1)] * (v.type.rank - 2), stat_dtype)
    scale = ctx.emit(ew.RsqrtOp, [ctx.emit(ew.AddOp, [per_channel(var), ctx.constant(float(eps))], c_type)], c_type)
    if weight is not None:
        scale = ctx.emit(ew.MulOp, [scale, per_channel(weight)], c_type)
    shift = ctx.emit(ew.NegOp, [ctx.emit(ew.MulOp, [per_channel(mean), scale], c_type)], c_type)
    if bias is not None:
        shift = ctx.emit(ew.AddOp, [shift, per_channel(bias)], c_type)
    return ctx.emit(ew.AddOp, [ctx.emit(ew.MulOp, [v, scale], out), shift], out)


@handles("_native_batch_norm_legit_no_training.default")
def _native_batch_norm_no_training(ctx: ImportCtx, node, x, weight, bias, mean, var, momentum, eps):
    # (output, saved mean, saved invstd): the saved statistics are empty in eval mode
    return [_batch_norm_eval(ctx, x, weight, bias, mean, var, eps), None, None]


@handles("batch_norm.default")
def _batch_norm(ctx: ImportCtx, node, x, weight, bias, mean, var, training, momentum, eps, cudnn_enabled=True):
    if training:
        raise NotLowered("batch norm in training mode uses batch statistics; call model.eval() before optimize")
    return _batch_norm_eval(ctx, x, weight, bias, mean, var, eps)


@handles("_fused_rms_norm.default")
def _fused_rms_norm(ctx: ImportCtx, node, x, normalized_shape, weight=None, eps=None):
    """RMS norm (``nn.RMSNorm``; CUDA's ``rms_norm`` calls this op where the CPU's computes inline,
    and torch 2.11 has no decomposition of it): ``x * rsqrt(mean(x*x) + eps) * weight`` over the
    trailing ``normalized_shape`` dims, in float32 for half inputs; also the reciprocal RMS, as
    the op returns. ``eps=None``: the compute dtype's machine epsilon, as torch uses."""
    v = ctx.value(x)
    out_t, rstd_t = (ctx.type_of(t) for t in node.meta["val"])
    wide = rstd_t.dtype
    if v.type.dtype != wide:
        v = ctx.emit(ew.CastOp, [v], tensor_type(v.type.shape, wide))
    full = v.type
    dims = list(range(full.rank - len(normalized_shape), full.rank))
    sq = ctx.emit(ew.MulOp, [v, v], full)
    ms = ctx.emit(st.ReduceMeanOp, [sq], rstd_t, dims=ints_attr(dims), keepdim=int_attr(True))
    eps = torch.finfo(wide).eps if eps is None else float(eps)
    rstd = ctx.emit(ew.RsqrtOp, [ctx.emit(ew.AddOp, [ms, ctx.constant(eps, wide)], rstd_t)], rstd_t)
    y = ctx.emit(ew.MulOp, [v, rstd], full)
    if weight is not None:
        y = ctx.emit(ew.MulOp, [y, ctx.value(weight)], full)
    if out_t.dtype != wide:
        y = ctx.emit(ew.CastOp, [y], out_t)
    return [y, rstd]


@handles("max_pool2d.default")
def _max_pool2d(ctx: ImportCtx, node, x, kernel_size, stride=(), padding=(0,), dilation=(1,), ceil_mode=False):
    """Max pooling as the maximum of ``kh * kw`` strided slices of the input padded with the
    dtype's lowest value (ResNet's 3x3/2 stem pool: 9 slices, fused into one kernel)."""
    v = ctx.value(x)
    if v.type.rank != 4:
        return ctx.fallback(node, "max pooling of an unbatched input")
    k = _per_dim(kernel_size, 2)
    st_ = _per_dim(stride or kernel_size, 2)
    pad = _per_dim(padding, 2)
    dil = _per_dim(dilation, 2)
    out = ctx.out_type()
    if all(d == 1 for d in dil) and k[0] * k[1] > 16 and _whole_window(ctx, node, v, k, pad, out) is not None:
        one = out.with_shape(list(out.shape[:2]) + [1, 1])
        pooled = ctx.emit(st.ReduceMaxOp, [v], one, dims=ints_attr([2, 3]), keepdim=int_attr(True))
        return pooled if one == out else ctx.emit(dm.ReshapeOp, [pooled], out)
    if any(d != 1 for d in dil) or k[0] * k[1] > 16:
        return ctx.fallback(node, "max pooling with dilation or a window over 16 elements is not compiled")
    lowest = float("-inf") if out.dtype.is_floating_point else float(torch.iinfo(out.dtype).min)
    if any(pad):
        shape = list(v.type.shape)
        shape[2], shape[3] = shape[2] + 2 * pad[0], shape[3] + 2 * pad[1]
        v = ctx.emit(dm.PadOp, [v], v.type.with_shape(shape), pads=ints_attr([pad[1], pad[1], pad[0], pad[0]]),
                     value=float_attr(lowest))
    if ceil_mode:
        v = _ceil_mode_tail(ctx, v, k, st_, out, lowest)
    return _window_reduce(ctx, v, k, st_, out, ew.MaximumOp)


def _ceil_mode_tail(ctx: ImportCtx, v, k, st_, out_t, value: float):
    """With ``ceil_mode`` the last window of a dim may run past the (padded) input: pad the end of
    both spatial dims of ``v`` (already padded) with ``value`` by what those windows need,
    ``max((out - 1) * stride + kernel - padded size, 0)`` (symbolic; the output sizes are the
    graph's)."""
    h, w = v.type.shape[2], v.type.shape[3]
    # at most 0 where the last window ends inside (PyTorch drops a last window that would start
    # past the input): then nothing is padded
    extra_h = sympy.Max(sympy.expand((out_t.shape[2] - 1) * st_[0] + k[0] - h), 0)
    extra_w = sympy.Max(sympy.expand((out_t.shape[3] - 1) * st_[1] + k[1] - w), 0)
    pads = [sympy.Integer(0), extra_w, sympy.Integer(0), extra_h]
    if all(p.is_Integer and p <= 0 for p in pads):
        return v
    return _symbolic_constant_pad(ctx, v, pads, value)


def _example_sizes(t) -> list[int] | None:
    """The example call's sizes of a traced tensor (``meta["val"]``), without adding guards."""
    if not isinstance(t, torch.Tensor):
        return None
    sizes = []
    for d in t.shape:
        hint = d.node.hint if isinstance(d, torch.SymInt) else int(d)
        if hint is None:
            return None
        sizes.append(int(hint))
    return sizes


def _whole_window(ctx: ImportCtx, node, v, k, pad, out_t):
    """True where one window covers the whole unpadded input (EfficientNet's final
    ``AvgPool2d(1280, ceil_mode=True)`` over a 7x7 map): a 1x1 output, no padding, and guards that
    the input fits in the kernel; then the pool is a mean (or max) over the spatial dims. None
    otherwise."""
    example = _example_sizes(node.args[0].meta.get("val")) if isinstance(node.args[0], torch.fx.Node) else None
    if any(pad) or example is None or any(size > kernel for size, kernel in zip(example[2:], k)):
        return None  # the example itself does not fit in one window: its class pools windows
    checks = []
    for size, kernel, o in zip(v.type.shape[2:], k, out_t.shape[2:]):
        if (size.is_Integer and int(size) > kernel) or (o.is_Integer and int(o) != 1):
            return None
        if not size.is_Integer:
            checks.append(sympy.Le(size, kernel))
        if not o.is_Integer:
            checks.append(sympy.Eq(o, 1))
    for cond in checks:
        ctx.mapping.table.require(cond, "the input fits in one pooling window")
    return True


def _window_reduce(ctx: ImportCtx, v, k, st_, out_t, combine):
    """The ``k[0] * k[1]`` strided windows of ``v`` (already padded), shaped ``out_t``, combined
    pairwise with the elementwise op ``combine`` (maximum for max pooling, add for average)."""
    acc = None
    for i in range(k[0]):
        rows_shape = list(v.type.shape)
        rows_shape[2] = out_t.shape[2]
        rows = _slice(ctx, v, 2, sympy.Integer(i), v.type.with_shape(rows_shape), st_[0])
        for j in range(k[1]):
            win = _slice(ctx, rows, 3, sympy.Integer(j), out_t, st_[1])
            acc = win if acc is None else ctx.emit(combine, [acc, win], out_t)
    return acc


@handles("avg_pool2d.default")
def _avg_pool2d(ctx: ImportCtx, node, x, kernel_size, stride=(), padding=(0,), ceil_mode=False,
                count_include_pad=True, divisor_override=None):
    """Average pooling as the sum of ``kh * kw`` strided slices of the zero-padded input over the
    divisor: the window size, ``divisor_override``, or (``count_include_pad=False``, PoolFormer's
    token mixer) the same window sums over a padded tensor of ones, so border windows count only
    their in-bounds elements."""
    v = ctx.value(x)
    if v.type.rank != 4:
        return ctx.fallback(node, "average pooling of an unbatched input")
    k = _per_dim(kernel_size, 2)
    st_ = _per_dim(stride or kernel_size, 2)
    pad = _per_dim(padding, 2)
    out = ctx.out_type()
    if k[0] * k[1] > 16:
        whole = _whole_window(ctx, node, v, k, pad, out)
        if whole is None:
            return ctx.fallback(node, "average pooling with a window over 16 elements is not compiled")
        one = out.with_shape(list(out.shape[:2]) + [1, 1])
        if divisor_override:
            total = ctx.emit(st.ReduceSumOp, [v], one, dims=ints_attr([2, 3]), keepdim=int_attr(True))
            pooled = ctx.emit(ew.DivOp, [total, ctx.constant(float(divisor_override), out.dtype)], one)
        else:
            pooled = ctx.emit(st.ReduceMeanOp, [v], one, dims=ints_attr([2, 3]), keepdim=int_attr(True))
        return pooled if one == out else ctx.emit(dm.ReshapeOp, [pooled], out)
    if not out.dtype.is_floating_point:
        return ctx.fallback(node, "average pooling of an integer tensor")
    h, w = v.type.shape[2], v.type.shape[3]
    count_t = tensor_type([1, 1, out.shape[2], out.shape[3]], out.dtype)

    def padded(t, pad_value: float = 0.0):
        if any(pad):
            shape = list(t.type.shape)
            shape[2], shape[3] = shape[2] + 2 * pad[0], shape[3] + 2 * pad[1]
            t = ctx.emit(dm.PadOp, [t], t.type.with_shape(shape), pads=ints_attr([pad[1], pad[1], pad[0], pad[0]]),
                         value=float_attr(pad_value))
        # ceil_mode: windows past the padded end count nothing there (zeros, in the sum and the count)
        return _ceil_mode_tail(ctx, t, k, st_, out, 0.0) if ceil_mode else t

    total = _window_reduce(ctx, padded(v), k, st_, out, ew.AddOp)
    if divisor_override:
        return ctx.emit(ew.DivOp, [total, ctx.constant(float(divisor_override), out.dtype)], out)
    if not ceil_mode and (count_include_pad or not any(pad)):
        return ctx.emit(ew.DivOp, [total, ctx.constant(float(k[0] * k[1]), out.dtype)], out)
    # the count of each window: its in-bounds elements (and, with count_include_pad, its explicit
    # padding, which a padded tensor of ones counts; never the part past the padded end)
    ones = ctx.emit(dm.FullOp, [], tensor_type([1, 1, h, w], out.dtype), value=float_attr(1.0))
    count = _window_reduce(ctx, padded(ones, 1.0 if count_include_pad else 0.0), k, st_, count_t, ew.AddOp)
    return ctx.emit(ew.DivOp, [total, count], out)


@handles("adaptive_avg_pool2d.default", "_adaptive_avg_pool2d.default", "adaptive_avg_pool1d.default",
         "adaptive_avg_pool3d.default", "_adaptive_avg_pool3d.default")
def _adaptive_avg_pool(ctx: ImportCtx, node, x, output_size):
    v = ctx.value(x)
    n = len(output_size)
    if all(int(s) == 1 for s in output_size):  # global pooling: one mean
        dims = list(range(v.type.rank - n, v.type.rank))
        return ctx.emit(st.ReduceMeanOp, [v], ctx.out_type(), dims=ints_attr(dims), keepdim=int_attr(True))
    return _adaptive_pool(ctx, v, [int(s) for s in output_size], ctx.out_type(), average=True)


@handles("adaptive_max_pool2d.default", "adaptive_max_pool1d.default", "adaptive_max_pool3d.default")
def _adaptive_max_pool(ctx: ImportCtx, node, x, output_size):
    import operator

    if any(u.target is not operator.getitem or (u.args[1] != 0 and u.users) for u in node.users):
        return ctx.fallback(node, "adaptive max pooling whose indices are used")
    v = ctx.value(x)
    out_t = ctx.type_of(node.meta["val"][0])
    values = _adaptive_pool(ctx, v, [int(s) for s in output_size], out_t, average=False)
    return [values, None]


def _adaptive_pool(ctx: ImportCtx, v, output_size: list[int], out_t, average: bool):
    """Adaptive pooling to a fixed ``output_size`` from input sizes that may be symbolic, one
    pooled dim at a time (rectangular windows make it separable): output ``i`` of a dim of size
    ``n`` pools input rows ``[floor(i n / m), ceil((i + 1) n / m))``, PyTorch's windows. The rows
    of every window are selected by a ``[m, n]`` mask (``where``, so an inf or NaN outside a window
    stays out) and reduced: a sum over the window's row count, or a max."""
    i64 = torch.int64
    rank = v.type.rank
    first = rank - len(output_size)

    for k, m in enumerate(output_size):
        d = first + k
        n = v.type.shape[d]
        trailing = rank - 1 - d
        outs = ctx.emit(dm.IotaOp, [], tensor_type([m], i64), start=float_attr(0.0), step=float_attr(1.0))
        rows = ctx.emit(dm.IotaOp, [], tensor_type([n], i64), start=float_attr(0.0), step=float_attr(1.0))
        col = tensor_type([m], i64)
        start = ctx.emit(ew.FloorDivOp, [ctx.emit(ew.MulOp, [outs, ctx.size_value(n)], col), ctx.constant(m)], col)
        stop = ctx.emit(ew.FloorDivOp, [ctx.emit(ew.AddOp, [ctx.emit(ew.MulOp, [ctx.emit(
            ew.AddOp, [outs, ctx.constant(1)], col), ctx.size_value(n)], col), ctx.constant(m - 1)], col), ctx.constant(m)], col)
        start2 = ctx.emit(dm.ReshapeOp, [start], tensor_type([m, 1], i64))
        stop2 = ctx.emit(dm.ReshapeOp, [stop], tensor_type([m, 1], i64))
        rows2 = ctx.emit(dm.ReshapeOp, [rows], tensor_type([1, n], i64))
        flags = tensor_type([m, n], torch.bool)
        inside = ctx.emit(ew.LogicalAndOp, [ctx.emit(ew.GeOp, [rows2, start2], flags),
                                            ctx.emit(ew.LtOp, [rows2, stop2], flags)], flags)
        mask = ctx.emit(dm.ReshapeOp, [inside], tensor_type([m, n] + [1] * trailing, torch.bool))
        shape = list(v.type.shape)
        wide_shape = shape[:d] + [m, n] + shape[d + 1:]
        lifted = ctx.emit(dm.ReshapeOp, [v], v.type.with_shape(shape[:d] + [1, n] + shape[d + 1:]))
        wide_t = v.type.with_shape(wide_shape)
        if average:
            fill = ctx.constant(0.0) if v.type.dtype.is_floating_point else ctx.constant(0)
        else:
            fill = ctx.constant(float("-inf")) if v.type.dtype.is_floating_point else \
                ctx.constant(int(torch.iinfo(v.type.dtype).min))
        picked = ctx.emit(ew.WhereOp, [mask, lifted, fill], wide_t)
        pooled_t = v.type.with_shape(shape[:d] + [m] + shape[d + 1:])
        if average:
            total = ctx.emit(st.ReduceSumOp, [picked], pooled_t, dims=ints_attr([d + 1]), keepdim=int_attr(False))
            count_t = tensor_type([m] + [1] * trailing, v.type.dtype)
            count = ctx.emit(ew.CastOp, [ctx.emit(dm.ReshapeOp, [ctx.emit(ew.SubOp, [stop, start], col)],
                                                  tensor_type([m] + [1] * trailing, i64))], count_t)
            v = ctx.emit(ew.DivOp, [total, count], pooled_t)
        else:
            v = ctx.emit(st.ReduceMaxOp, [picked], pooled_t, dims=ints_attr([d + 1]), keepdim=int_attr(False))
    if v.type != out_t:
        raise NotLowered(f"adaptive pooling produced {v.type}, the graph has {out_t}")
    return v
