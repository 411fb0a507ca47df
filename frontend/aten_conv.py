"""ATen handlers for convolutions: ``conv1d/2d/3d`` (``padding="same"`` where symmetric) and
``aten.convolution`` become ``blade.conv``; transposed ones (``conv_transpose1d/2d/3d``,
``aten.convolution`` with ``transposed=True``) become ``blade.conv_transpose``. Registered into
``aten_table``'s table (which imports this module)."""

from __future__ import annotations

from blade.dialects import structured as st
from blade.dialects.types import int_attr, ints_attr
from blade.frontend.aten_table import _per_dim
from blade.frontend.fx_importer import ImportCtx, NotLowered, handles


def _conv(ctx: ImportCtx, x, weight, bias, stride, padding, dilation, groups):
    xv, wv = ctx.value(x), ctx.value(weight)
    nsp = wv.type.rank - 2
    if isinstance(padding, str):
        if padding == "valid":
            padding = [0] * nsp
        else:
            k = [int(d) for d in wv.type.shape[2:]]
            dil = _per_dim(dilation, nsp)
            if any((dil[i] * (k[i] - 1)) % 2 for i in range(nsp)) or any(s != 1 for s in _per_dim(stride, nsp)):
                raise NotLowered("padding='same' with asymmetric padding")
            padding = [dil[i] * (k[i] - 1) // 2 for i in range(nsp)]
    ops = [xv, wv] + ([ctx.value(bias)] if bias is not None else [])
    return ctx.emit(st.ConvOp, ops, ctx.out_type(), stride=ints_attr(_per_dim(stride, nsp)),
                    padding=ints_attr(_per_dim(padding, nsp)), dilation=ints_attr(_per_dim(dilation, nsp)),
                    groups=int_attr(groups))


@handles("conv1d.default", "conv2d.default", "conv3d.default", "conv1d.padding", "conv2d.padding",
         "conv3d.padding")
def _convnd(ctx: ImportCtx, node, x, weight, bias=None, stride=(1,), padding=(0,), dilation=(1,), groups=1):
    return _conv(ctx, x, weight, bias, stride, padding, dilation, groups)


@handles("convolution.default")
def _convolution(ctx: ImportCtx, node, x, weight, bias, stride, padding, dilation, transposed,
                 output_padding, groups):
    if transposed:
        return _conv_transpose(ctx, x, weight, bias, stride, padding, output_padding, groups, dilation)
    return _conv(ctx, x, weight, bias, stride, padding, dilation, groups)


def _conv_transpose(ctx: ImportCtx, x, weight, bias, stride, padding, output_padding, groups, dilation):
    xv, wv = ctx.value(x), ctx.value(weight)
    nsp = wv.type.rank - 2
    if isinstance(padding, str):
        raise NotLowered(f"transposed convolution with padding={padding!r}")
    ops = [xv, wv] + ([ctx.value(bias)] if bias is not None else [])
    return ctx.emit(st.ConvTransposeOp, ops, ctx.out_type(), stride=ints_attr(_per_dim(stride, nsp)),
                    padding=ints_attr(_per_dim(padding, nsp)), output_padding=ints_attr(_per_dim(output_padding, nsp)),
                    dilation=ints_attr(_per_dim(dilation, nsp)), groups=int_attr(groups))


@handles("conv_transpose1d.default", "conv_transpose2d.input", "conv_transpose3d.input")
def _conv_transpose_nd(ctx: ImportCtx, node, x, weight, bias=None, stride=(1,), padding=(0,), output_padding=(0,),
                       groups=1, dilation=(1,)):
    return _conv_transpose(ctx, x, weight, bias, stride, padding, output_padding, groups, dilation)
