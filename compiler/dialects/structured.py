"""Reductions, normalisations and contractions of the ``blade`` dialect.

These are the ops Blade keeps at a high level instead of decomposing: later stages either fuse
them (norms, softmax: stitch fusion) or hand them to a kernel library (linear, matmul, conv,
attention). Optional operands (bias, norm affine parameters, attention mask) are a trailing
variadic group, so the op has no operand-segment bookkeeping.
"""

from __future__ import annotations

from typing import ClassVar

import sympy
from xdsl.dialects.builtin import DenseArrayBase, FloatAttr, IntegerAttr, StringAttr
from xdsl.irdl import irdl_op_definition, operand_def, opt_prop_def, prop_def, result_def, traits_def, var_operand_def
from xdsl.traits import Pure
from xdsl.utils.exceptions import VerifyException

from blade.dialects.base import Shape, TensorOp, broadcast_shapes, normalize_dim
from blade.dialects.types import TensorType
from blade.symbolic import floordiv
from blade.lazy import LazyModule

torch = LazyModule("torch")  # imported on first use (see blade.lazy)
F = LazyModule("torch.nn.functional")


class ReductionOp(TensorOp):
    """Reduce ``input`` over ``dims``; ``keepdim = 1`` keeps them as size 1."""

    CATEGORY: ClassVar[str] = "reduction"
    input = operand_def(TensorType)
    result = result_def(TensorType)
    dims = prop_def(DenseArrayBase)
    keepdim = prop_def(IntegerAttr)
    traits = traits_def(Pure())

    def reduced_dims(self) -> list[int]:
        rank = self.in_type(0).rank
        return sorted({normalize_dim(d, rank, self.name) for d in self.p("dims")})

    def infer_shapes(self, shapes):
        red = set(self.reduced_dims())
        keep = bool(self.p("keepdim"))
        out = [sympy.Integer(1) if i in red else d for i, d in enumerate(shapes[0]) if keep or i not in red]
        return [tuple(out)]


@irdl_op_definition
class ReduceSumOp(ReductionOp):
    """Sum over dims.

    %y = blade.reduce_sum %x {dims = array<i64: 1>, keepdim = 0 : i64} : (!blade.tensor<[s0, 8], f32>) -> !blade.tensor<[s0], f32>
    """

    name = "blade.reduce_sum"

    def reference(self, args, env):
        return torch.sum(args[0], dim=self.reduced_dims(), keepdim=bool(self.p("keepdim")),
                         dtype=env.result_dtypes[0])


@irdl_op_definition
class ReduceMeanOp(ReductionOp):
    """Mean over dims.

    %y = blade.reduce_mean %x {dims = array<i64: -1>, keepdim = 1 : i64} : (!blade.tensor<[s0, 8], f32>) -> !blade.tensor<[s0, 1], f32>
    """

    name = "blade.reduce_mean"

    def reference(self, args, env):
        return torch.mean(args[0], dim=self.reduced_dims(), keepdim=bool(self.p("keepdim")),
                          dtype=env.result_dtypes[0])


@irdl_op_definition
class ReduceMaxOp(ReductionOp):
    """Maximum over dims.

    %y = blade.reduce_max %x {dims = array<i64: 1>, keepdim = 0 : i64} : (!blade.tensor<[s0, 8], f32>) -> !blade.tensor<[s0], f32>
    """

    name = "blade.reduce_max"

    def reference(self, args, env):
        return torch.amax(args[0], dim=self.reduced_dims(), keepdim=bool(self.p("keepdim")))


@irdl_op_definition
class ReduceMinOp(ReductionOp):
    """Minimum over dims.

    %y = blade.reduce_min %x {dims = array<i64: 1>, keepdim = 0 : i64} : (!blade.tensor<[s0, 8], f32>) -> !blade.tensor<[s0], f32>
    """

    name = "blade.reduce_min"

    def reference(self, args, env):
        return torch.amin(args[0], dim=self.reduced_dims(), keepdim=bool(self.p("keepdim")))


@irdl_op_definition
class ArgMaxOp(ReductionOp):
    """Index of the maximum along one dim (``dims`` has one entry); i64 result.

    %i = blade.argmax %x {dims = array<i64: -1>, keepdim = 0 : i64} : (!blade.tensor<[s0, s1], i64>) -> !blade.tensor<[s0], i64>
    """

    name = "blade.argmax"

    def reference(self, args, env):
        (d,) = self.reduced_dims()
        return torch.argmax(args[0], dim=d, keepdim=bool(self.p("keepdim")))


@irdl_op_definition
class ArgMinOp(ReductionOp):
    """Index of the minimum along one dim (``dims`` has one entry); i64 result.

    %i = blade.argmin %x {dims = array<i64: -1>, keepdim = 0 : i64} : (!blade.tensor<[s0, s1], f32>) -> !blade.tensor<[s0], i64>
    """

    name = "blade.argmin"

    def reference(self, args, env):
        (d,) = self.reduced_dims()
        return torch.argmin(args[0], dim=d, keepdim=bool(self.p("keepdim")))


@irdl_op_definition
class CumsumOp(TensorOp):
    """Inclusive prefix sum along ``dim`` in the result's type (position ids from attention masks:
    RoBERTa, OPT, BLOOM, MPNet).

    %y = blade.cumsum %x {dim = 1 : i64} : (!blade.tensor<[s0, s1], i64>) -> !blade.tensor<[s0, s1], i64>
    """

    name = "blade.cumsum"
    CATEGORY: ClassVar[str] = "scan"
    input = operand_def(TensorType)
    result = result_def(TensorType)
    dim = prop_def(IntegerAttr)
    traits = traits_def(Pure())

    def infer_shapes(self, shapes):
        normalize_dim(self.p("dim"), len(shapes[0]), self.name)
        return [shapes[0]]

    def reference(self, args, env):
        return torch.cumsum(args[0], self.p("dim"), dtype=env.result_dtypes[0])


class _SoftmaxBase(TensorOp):
    CATEGORY: ClassVar[str] = "reduction"
    input = operand_def(TensorType)
    result = result_def(TensorType)
    dim = prop_def(IntegerAttr)
    traits = traits_def(Pure())

    def infer_shapes(self, shapes):
        normalize_dim(self.p("dim"), len(shapes[0]), self.name)
        return [shapes[0]]


@irdl_op_definition
class SoftmaxOp(_SoftmaxBase):
    """Softmax along ``dim`` (computed in at least f32, returned in the result type).

    %y = blade.softmax %x {dim = -1 : i64} : (!blade.tensor<[s0, 8, s1, s1], f16>) -> !blade.tensor<[s0, 8, s1, s1], f16>
    """

    name = "blade.softmax"

    def reference(self, args, env):
        return torch.softmax(args[0], dim=self.p("dim")).to(env.result_dtypes[0])


@irdl_op_definition
class LogSoftmaxOp(_SoftmaxBase):
    """Log-softmax along ``dim``.

    %y = blade.log_softmax %x {dim = -1 : i64} : (!blade.tensor<[s0, 10], f32>) -> !blade.tensor<[s0, 10], f32>
    """

    name = "blade.log_softmax"

    def reference(self, args, env):
        return torch.log_softmax(args[0], dim=self.p("dim")).to(env.result_dtypes[0])


@irdl_op_definition
class GroupNormOp(TensorOp):
    """GroupNorm over ``[N, C, *]`` with ``num_groups`` groups; optional ``weight, bias`` of [C].

    %y = blade.group_norm %x, %w, %b {num_groups = 32 : i64, eps = 1.0e-05 : f64} : (!blade.tensor<[s0, 320, s1, s2], f32>, !blade.tensor<[320], f32>, !blade.tensor<[320], f32>) -> !blade.tensor<[s0, 320, s1, s2], f32>
    """

    name = "blade.group_norm"
    CATEGORY: ClassVar[str] = "norm"
    input = operand_def(TensorType)
    affine = var_operand_def(TensorType)
    result = result_def(TensorType)
    num_groups = prop_def(IntegerAttr)
    eps = prop_def(FloatAttr)
    layout = opt_prop_def(StringAttr)
    traits = traits_def(Pure())

    @property
    def channels_last(self) -> bool:
        """``layout = "nhwc"``: channels are the last dim (``[N, *spatial, C]``)."""
        return self.p("layout", "nchw") == "nhwc"

    def verify_(self):
        super().verify_()
        if len(self.affine) not in (0, 2):
            raise VerifyException("blade.group_norm takes weight and bias together or neither")

    def infer_shapes(self, shapes):
        return [shapes[0]]

    def reference(self, args, env):
        x = args[0].movedim(-1, 1) if self.channels_last else args[0]
        w, b = (args[1], args[2]) if len(args) == 3 else (None, None)
        y = F.group_norm(x, self.p("num_groups"), w, b, self.p("eps"))
        return (y.movedim(1, -1) if self.channels_last else y).to(env.result_dtypes[0])


@irdl_op_definition
class LayerNormOp(TensorOp):
    """LayerNorm over the last ``normalized_ndim`` dims; optional ``weight, bias``.

    %y = blade.layer_norm %x, %w, %b {normalized_ndim = 1 : i64, eps = 1.0e-05 : f64} : (!blade.tensor<[s0, s1, 768], f32>, !blade.tensor<[768], f32>, !blade.tensor<[768], f32>) -> !blade.tensor<[s0, s1, 768], f32>
    """

    name = "blade.layer_norm"
    CATEGORY: ClassVar[str] = "norm"
    input = operand_def(TensorType)
    affine = var_operand_def(TensorType)
    result = result_def(TensorType)
    normalized_ndim = prop_def(IntegerAttr)
    eps = prop_def(FloatAttr)
    traits = traits_def(Pure())

    def verify_(self):
        super().verify_()
        if len(self.affine) not in (0, 2):
            raise VerifyException("blade.layer_norm takes weight and bias together or neither")

    def infer_shapes(self, shapes):
        return [shapes[0]]

    def reference(self, args, env):
        x = args[0]
        n = self.p("normalized_ndim")
        w, b = (args[1], args[2]) if len(args) == 3 else (None, None)
        return F.layer_norm(x, tuple(x.shape[-n:]), w, b, self.p("eps")).to(env.result_dtypes[0])


@irdl_op_definition
class LinearOp(TensorOp):
    """``input @ weight^T (+ bias)`` over any leading dims; weight is ``[N, K]``.

    %y = blade.linear %x, %w, %b : (!blade.tensor<[s0, s1, 320], f32>, !blade.tensor<[640, 320], f32>, !blade.tensor<[640], f32>) -> !blade.tensor<[s0, s1, 640], f32>
    """

    name = "blade.linear"
    CATEGORY: ClassVar[str] = "gemm"
    input = operand_def(TensorType)
    weight = operand_def(TensorType)
    bias = var_operand_def(TensorType)
    result = result_def(TensorType)
    traits = traits_def(Pure())

    def infer_shapes(self, shapes):
        x, w = shapes[0], shapes[1]
        if len(w) != 2:
            raise ValueError(f"blade.linear: weight must be 2-D, got rank {len(w)}")
        return [tuple(x[:-1]) + (w[0],)]

    def reference(self, args, env):
        return F.linear(args[0], args[1], args[2] if len(args) == 3 else None).to(env.result_dtypes[0])


@irdl_op_definition
class MatmulOp(TensorOp):
    """``torch.matmul`` semantics on rank >= 2 operands (batch dims broadcast).

    %y = blade.matmul %a, %b : (!blade.tensor<[s0, 8, s1, 40], f32>, !blade.tensor<[s0, 8, 40, s2], f32>) -> !blade.tensor<[s0, 8, s1, s2], f32>
    """

    name = "blade.matmul"
    CATEGORY: ClassVar[str] = "gemm"
    lhs = operand_def(TensorType)
    rhs = operand_def(TensorType)
    result = result_def(TensorType)
    traits = traits_def(Pure())

    def infer_shapes(self, shapes):
        a, b = shapes
        if len(a) < 2 or len(b) < 2:
            raise ValueError("blade.matmul: operands must have rank >= 2")
        batch = broadcast_shapes(self.name, [a[:-2], b[:-2]], self)
        return [tuple(batch) + (a[-2], b[-1])]

    def reference(self, args, env):
        return torch.matmul(args[0], args[1]).to(env.result_dtypes[0])


@irdl_op_definition
class ConvOp(TensorOp):
    """N-d convolution, NCHW input and OIHW weight (``groups`` splits channels); optional bias.

    %y = blade.conv %x, %w, %b {stride = array<i64: 1, 1>, padding = array<i64: 1, 1>, dilation = array<i64: 1, 1>, groups = 1 : i64} : (!blade.tensor<[s0, 4, s1, s2], f32>, !blade.tensor<[320, 4, 3, 3], f32>, !blade.tensor<[320], f32>) -> !blade.tensor<[s0, 320, s1, s2], f32>
    """

    name = "blade.conv"
    CATEGORY: ClassVar[str] = "conv"
    input = operand_def(TensorType)
    weight = operand_def(TensorType)
    bias = var_operand_def(TensorType)
    result = result_def(TensorType)
    stride = prop_def(DenseArrayBase)
    padding = prop_def(DenseArrayBase)
    dilation = prop_def(DenseArrayBase)
    groups = prop_def(IntegerAttr)
    layout = opt_prop_def(StringAttr)
    traits = traits_def(Pure())

    @property
    def channels_last(self) -> bool:
        """``layout = "nhwc"``: input and result are ``[N, *spatial, C]`` (weight stays OIHW)."""
        return self.p("layout", "nchw") == "nhwc"

    def infer_shapes(self, shapes):
        x, w = shapes[0], shapes[1]
        nsp = len(w) - 2
        if len(x) != nsp + 2:
            raise ValueError(f"blade.conv: input rank {len(x)} does not match weight rank {len(w)}")
        stride, pad, dil = self.p("stride"), self.p("padding"), self.p("dilation")
        in_spatial = x[1:-1] if self.channels_last else x[2:]
        spatial = []
        for i in range(nsp):
            eff = dil[i] * (w[2 + i] - 1) + 1
            spatial.append(floordiv(in_spatial[i] + 2 * pad[i] - eff, stride[i]) + 1)
        return [(x[0], *spatial, w[0])] if self.channels_last else [(x[0], w[0], *spatial)]

    def reference(self, args, env):
        x, w = args[0], args[1]
        b = args[2] if len(args) == 3 else None
        conv = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}[w.dim() - 2]
        if self.channels_last:
            x = x.movedim(-1, 1)
        y = conv(x, w, b, self.p("stride"), self.p("padding"), self.p("dilation"), self.p("groups"))
        if self.channels_last:
            y = y.movedim(1, -1)
        return y.to(env.result_dtypes[0])


@irdl_op_definition
class ConvTransposeOp(TensorOp):
    """N-d transposed convolution (the gradient of ``blade.conv`` with respect to its input:
    ``nn.ConvTranspose1d/2d/3d``), NCHW input, weight ``[C_in, C_out / groups, *kernel]``;
    optional bias. Each output size is ``(in - 1) * stride - 2 * padding + dilation * (kernel - 1)
    + output_padding + 1``.

    %y = blade.conv_transpose %x, %w, %b {stride = array<i64: 2, 2>, padding = array<i64: 1, 1>, output_padding = array<i64: 0, 0>, dilation = array<i64: 1, 1>, groups = 1 : i64} : (!blade.tensor<[s0, 4, s1, s2], f32>, !blade.tensor<[4, 8, 4, 4], f32>, !blade.tensor<[8], f32>) -> !blade.tensor<[s0, 8, 2*s1, 2*s2], f32>
    """

    name = "blade.conv_transpose"
    CATEGORY: ClassVar[str] = "conv"
    input = operand_def(TensorType)
    weight = operand_def(TensorType)
    bias = var_operand_def(TensorType)
    result = result_def(TensorType)
    stride = prop_def(DenseArrayBase)
    padding = prop_def(DenseArrayBase)
    output_padding = prop_def(DenseArrayBase)
    dilation = prop_def(DenseArrayBase)
    groups = prop_def(IntegerAttr)
    traits = traits_def(Pure())

    def infer_shapes(self, shapes):
        x, w = shapes[0], shapes[1]
        nsp = len(w) - 2
        if len(x) != nsp + 2:
            raise ValueError(f"blade.conv_transpose: input rank {len(x)} does not match weight rank {len(w)}")
        if all(isinstance(d, int) or getattr(d, "is_Integer", False) for d in (x[1], w[0])) and int(x[1]) != int(w[0]):
            raise ValueError(f"blade.conv_transpose: {x[1]} input channels, the weight takes {w[0]}")
        stride, pad, out_pad, dil = self.p("stride"), self.p("padding"), self.p("output_padding"), self.p("dilation")
        spatial = [(x[2 + i] - 1) * stride[i] - 2 * pad[i] + dil[i] * (w[2 + i] - 1) + out_pad[i] + 1
                   for i in range(nsp)]
        return [(x[0], w[1] * self.p("groups"), *spatial)]

    def reference(self, args, env):
        from blade.runtime.host_provider import conv_transpose

        return conv_transpose(self.attrs(), *args).to(env.result_dtypes[0])

    def attrs(self) -> dict:
        return {k: self.p(k) for k in ("stride", "padding", "output_padding", "dilation", "groups")}


@irdl_op_definition
class AttentionOp(TensorOp):
    """Scaled dot-product attention ``softmax(q k^T * scale + mask) v`` over ``[..., L, E]``.

    %o = blade.attention %q, %k, %v {is_causal = 0 : i64} : (!blade.tensor<[s0, 8, s1, 40], f32>, !blade.tensor<[s0, 8, 77, 40], f32>, !blade.tensor<[s0, 8, 77, 40], f32>) -> !blade.tensor<[s0, 8, s1, 40], f32>
    """

    name = "blade.attention"
    CATEGORY: ClassVar[str] = "attention"
    query = operand_def(TensorType)
    key = operand_def(TensorType)
    value = operand_def(TensorType)
    mask = var_operand_def(TensorType)
    result = result_def(TensorType)
    is_causal = prop_def(IntegerAttr)
    scale = opt_prop_def(FloatAttr)
    traits = traits_def(Pure())

    def infer_shapes(self, shapes):
        q, v = shapes[0], shapes[2]
        return [tuple(q[:-1]) + (v[-1],)]

    def reference(self, args, env):
        q, k, v = args[:3]
        mask = args[3] if len(args) == 4 else None
        # on CUDA a shape's first call avoids cuDNN's per-shape plan (runtime/host_provider.py;
        # imported here: the dialects do not import torch until they run)
        from blade.runtime.host_provider import attention

        return attention(q, k, v, mask, bool(self.p("is_causal")), self.p("scale")).to(env.result_dtypes[0])


STRUCTURED_OPS = [ReduceSumOp, ReduceMeanOp, ReduceMaxOp, ReduceMinOp, ArgMaxOp, ArgMinOp, CumsumOp, SoftmaxOp,
                  LogSoftmaxOp,
                  GroupNormOp, LayerNormOp, LinearOp, MatmulOp, ConvOp, ConvTransposeOp, AttentionOp]
