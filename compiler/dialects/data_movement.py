"""Data-movement and value-producing ops of the ``blade`` dialect.

Ops whose result shape is not a function of their operands (``reshape``, ``expand``, ``slice``,
``upsample``, ``iota``, ``full``) carry it in the result type: dims there are symbolic
expressions, so no shape operands are needed and the reference executor evaluates them from the
input sizes.

    %y = blade.reshape %x : (!blade.tensor<[s0, 320, s1, s2], f32>) -> !blade.tensor<[s0, 320, s1*s2], f32>
    %w = blade.weight {name = "conv_in.weight"} : () -> !blade.tensor<[320, 4, 3, 3], f32>
"""

from __future__ import annotations

from typing import ClassVar

import sympy
from xdsl.dialects.builtin import DenseArrayBase, FloatAttr, IntegerAttr, StringAttr
from xdsl.irdl import (
    base,
    irdl_op_definition,
    operand_def,
    opt_prop_def,
    prop_def,
    result_def,
    traits_def,
    var_operand_def,
)
from xdsl.traits import Pure
from xdsl.utils.exceptions import VerifyException

from blade.dialects.base import TensorOp, normalize_dim
from blade.dialects.types import DimsAttr, TensorType
from blade.symbolic import known_equal, product
from blade.lazy import LazyModule

torch = LazyModule("torch")  # imported on first use (see blade.lazy)
F = LazyModule("torch.nn.functional")


@irdl_op_definition
class ReshapeOp(TensorOp):
    """Same elements, new shape (the result type's dims).

    %y = blade.reshape %x : (!blade.tensor<[s0, 320, s1, s2], f32>) -> !blade.tensor<[s0, 320, s1*s2], f32>
    """

    name = "blade.reshape"
    CATEGORY: ClassVar[str] = "view"
    input = operand_def(TensorType)
    result = result_def(TensorType)
    traits = traits_def(Pure())

    def verify_(self):
        super().verify_()
        a, b = self.in_type(0), self.out_type
        if a.is_fully_known() and b.is_fully_known():
            na, nb = sympy.expand(product(a.shape)), sympy.expand(product(b.shape))
            if na.is_Integer and nb.is_Integer and na != nb:
                raise VerifyException(f"blade.reshape: {na} elements cannot become {nb}")

    def reference(self, args, env):
        return args[0].reshape(env.result_shapes[0])


@irdl_op_definition
class PermuteOp(TensorOp):
    """Reorder dims: ``result.dim[i] = input.dim[perm[i]]``.

    %y = blade.permute %x {perm = array<i64: 0, 2, 1>} : (!blade.tensor<[s0, 320, s1], f32>) -> !blade.tensor<[s0, s1, 320], f32>
    """

    name = "blade.permute"
    CATEGORY: ClassVar[str] = "layout"
    input = operand_def(TensorType)
    result = result_def(TensorType)
    perm = prop_def(DenseArrayBase)
    traits = traits_def(Pure())

    def infer_shapes(self, shapes):
        perm = self.p("perm")
        if sorted(perm) != list(range(len(shapes[0]))):
            raise ValueError(f"blade.permute: {list(perm)} is not a permutation of rank {len(shapes[0])}")
        return [tuple(shapes[0][i] for i in perm)]

    def reference(self, args, env):
        return args[0].permute(self.p("perm"))


@irdl_op_definition
class ExpandOp(TensorOp):
    """Broadcast size-1 dims (and new leading dims) to the result type's dims.

    %y = blade.expand %x : (!blade.tensor<[1, 77], i64>) -> !blade.tensor<[s0, 77], i64>
    """

    name = "blade.expand"
    CATEGORY: ClassVar[str] = "broadcast"
    input = operand_def(TensorType)
    result = result_def(TensorType)
    traits = traits_def(Pure())

    def verify_(self):
        super().verify_()
        if self.in_type(0).rank > self.out_type.rank:
            raise VerifyException("blade.expand: result rank must be >= input rank")

    def reference(self, args, env):
        return args[0].expand(env.result_shapes[0])


@irdl_op_definition
class SliceOp(TensorOp):
    """Take ``result.dim[dim]`` elements along ``dim`` from ``start`` with ``step``.

    %y = blade.slice %x {dim = 1 : i64, start = #blade.dims<[s1]>, step = 1 : i64} : (!blade.tensor<[s0, 2*s1], f32>) -> !blade.tensor<[s0, s1], f32>
    """

    name = "blade.slice"
    CATEGORY: ClassVar[str] = "view"
    input = operand_def(TensorType)
    result = result_def(TensorType)
    dim = prop_def(IntegerAttr)
    start = prop_def(DimsAttr)
    step = prop_def(IntegerAttr)
    traits = traits_def(Pure())

    def verify_(self):
        super().verify_()
        if self.in_type(0).rank != self.out_type.rank:
            raise VerifyException("blade.slice: result rank must equal input rank")
        if len(self.p("start")) != 1 or self.p("step") < 1:
            raise VerifyException("blade.slice: one start expression and a positive step")

    def reference(self, args, env):
        d = normalize_dim(self.p("dim"), args[0].dim(), self.name)
        start = env.eval_dim(self.p("start")[0])
        n, step = env.result_shapes[0][d], self.p("step")
        return torch.ops.aten.slice.Tensor(args[0], d, start, start + (n - 1) * step + 1 if n else start, step)


@irdl_op_definition
class ConcatOp(TensorOp):
    """Concatenate along ``dim``.

    %y = blade.concat %a, %b {dim = 1 : i64} : (!blade.tensor<[s0, 640, s1], f32>, !blade.tensor<[s0, 320, s1], f32>) -> !blade.tensor<[s0, 960, s1], f32>
    """

    name = "blade.concat"
    CATEGORY: ClassVar[str] = "concat"
    inputs = var_operand_def(TensorType)
    result = result_def(TensorType)
    dim = prop_def(IntegerAttr)
    traits = traits_def(Pure())

    def infer_shapes(self, shapes):
        d = normalize_dim(self.p("dim"), len(shapes[0]), self.name)
        out = list(shapes[0])
        out[d] = sum((s[d] for s in shapes), sympy.Integer(0))
        return [tuple(out)]

    def reference(self, args, env):
        return torch.cat(args, dim=self.p("dim")).to(env.result_dtypes[0])


@irdl_op_definition
class PadOp(TensorOp):
    """Constant padding, ``pads`` as in ``F.pad`` (last dim first, low then high).

    %y = blade.pad %x {pads = array<i64: 0, 1, 0, 1>, value = 0.0 : f64} : (!blade.tensor<[s0, 4, s1, s2], f32>) -> !blade.tensor<[s0, 4, s1 + 1, s2 + 1], f32>
    """

    name = "blade.pad"
    CATEGORY: ClassVar[str] = "layout"
    input = operand_def(TensorType)
    result = result_def(TensorType)
    pads = prop_def(DenseArrayBase)
    value = prop_def(FloatAttr)
    traits = traits_def(Pure())

    def infer_shapes(self, shapes):
        out = list(shapes[0])
        pads = self.p("pads")
        for i in range(len(pads) // 2):
            d = len(out) - 1 - i
            out[d] = out[d] + pads[2 * i] + pads[2 * i + 1]
        return [tuple(out)]

    def reference(self, args, env):
        return F.pad(args[0], list(self.p("pads")), value=self.p("value"))


@irdl_op_definition
class UpsampleOp(TensorOp):
    """Resize the spatial dims of ``[N, C, *]`` to the result type's dims (``mode = "nearest"``).

    %y = blade.upsample %x {mode = "nearest"} : (!blade.tensor<[s0, 640, s1, s2], f32>) -> !blade.tensor<[s0, 640, 2*s1, 2*s2], f32>
    """

    name = "blade.upsample"
    CATEGORY: ClassVar[str] = "gather"
    input = operand_def(TensorType)
    result = result_def(TensorType)
    mode = prop_def(StringAttr)
    layout = opt_prop_def(StringAttr)
    traits = traits_def(Pure())

    def reference(self, args, env):
        if self.p("layout", "nchw") == "nhwc":  # [N, *spatial, C]
            y = F.interpolate(args[0].movedim(-1, 1), size=env.result_shapes[0][1:-1], mode=self.p("mode"))
            return y.movedim(1, -1)
        return F.interpolate(args[0], size=env.result_shapes[0][2:], mode=self.p("mode"))


@irdl_op_definition
class EmbeddingOp(TensorOp):
    """Rows of ``weight [V, E]`` selected by integer ``ids``.

    %y = blade.embedding %w, %ids : (!blade.tensor<[49408, 768], f32>, !blade.tensor<[s0, s1], i64>) -> !blade.tensor<[s0, s1, 768], f32>
    """

    name = "blade.embedding"
    CATEGORY: ClassVar[str] = "gather"
    weight = operand_def(TensorType)
    ids = operand_def(TensorType)
    result = result_def(TensorType)
    traits = traits_def(Pure())

    def infer_shapes(self, shapes):
        return [tuple(shapes[1]) + (shapes[0][1],)]

    def reference(self, args, env):
        return F.embedding(args[1], args[0])


@irdl_op_definition
class IndexOp(TensorOp):
    """Advanced indexing ``input[..., idx, ...]``: ``indexed[i]`` is the dim the i-th index tensor
    indexes (``aten.index.Tensor``); the result type gives the shape.

    %y = blade.index %x, %rows, %cols {indexed = array<i64: 0, 1>} : (!blade.tensor<[s0, s1, 768], f32>, !blade.tensor<[s0], i64>, !blade.tensor<[s0], i64>) -> !blade.tensor<[s0, 768], f32>
    """

    name = "blade.index"
    CATEGORY: ClassVar[str] = "gather"
    input = operand_def(TensorType)
    indices = var_operand_def(TensorType)
    result = result_def(TensorType)
    indexed = prop_def(DenseArrayBase)
    traits = traits_def(Pure())

    def reference(self, args, env):
        slots: list[torch.Tensor | None] = [None] * (max(self.p("indexed")) + 1)
        for d, t in zip(self.p("indexed"), args[1:]):
            slots[d] = t
        return torch.ops.aten.index.Tensor(args[0], slots)


@irdl_op_definition
class GatherRowsOp(TensorOp):
    """Rows of ``table`` picked by integer index columns, the form a row gather (``embedding``,
    or ``index`` over every dim but the last) takes inside a ``blade.fused`` group (``fuse-stitch``
    makes it): ``result[..., k] = table[col0[..., 0], col1[..., 0], ..., k]``. Each column is the
    index tensor viewed with a trailing size-1 dim, so the kernel reads it once per row; the
    kernel reads the table's rows through its strides. With ``wrap`` (``index``'s semantics) a
    negative index counts from the end; without it (``embedding``'s) it is out of range. An index
    out of range reads zeros in a generated kernel (eager PyTorch raises; ``Config(bounds_check=True)``
    asserts) and raises here.

    %y = blade.gather_rows %w, %ids_col {wrap = 0 : i64} : (!blade.tensor<[49408, 768], f16>, !blade.tensor<[s0, s1, 1], i64>) -> !blade.tensor<[s0, s1, 768], f16>
    """

    name = "blade.gather_rows"
    CATEGORY: ClassVar[str] = "gather"
    table = operand_def(TensorType)
    columns = var_operand_def(TensorType)
    result = result_def(TensorType)
    wrap = prop_def(IntegerAttr)
    traits = traits_def(Pure())

    def verify_(self):
        super().verify_()
        t, cols = self.in_type(0), [c.type for c in self.columns]
        if not cols or t.rank != len(cols) + 1:
            raise VerifyException(f"blade.gather_rows: a rank-{t.rank} table takes {t.rank - 1} index columns, "
                                  f"got {len(cols)}")
        if any(c.rank != self.out_type.rank or c.shape[-1] != 1 for c in cols):
            raise VerifyException("blade.gather_rows: every index column has the result's rank and a last dim of 1")

    def reference(self, args, env):
        table, cols = args[0], [c[..., 0] for c in args[1:]]
        cols = list(torch.broadcast_tensors(*cols))
        for j, c in enumerate(cols):
            n = table.shape[j]
            if self.p("wrap"):
                c = torch.where(c < 0, c + n, c)
            if c.numel() and (int(c.min()) < 0 or int(c.max()) >= n):
                raise IndexError(f"blade.gather_rows: index {int(c.min()) if int(c.min()) < 0 else int(c.max())} "
                                 f"is out of range for dim {j} of size {n}")
            cols[j] = c
        return table[tuple(cols)]


@irdl_op_definition
class GatherOp(TensorOp):
    """``torch.gather``: ``result[i][j][k] = input[index[i][j][k]][j][k]`` for ``dim = 0`` (and so
    on); the result has the index's shape.

    %y = blade.gather %x, %idx {dim = 1 : i64} : (!blade.tensor<[s0, 80], i64>, !blade.tensor<[s0, s1], i64>) -> !blade.tensor<[s0, s1], i64>
    """

    name = "blade.gather"
    CATEGORY: ClassVar[str] = "gather"
    input = operand_def(TensorType)
    index = operand_def(TensorType)
    result = result_def(TensorType)
    dim = prop_def(IntegerAttr)
    traits = traits_def(Pure())

    def infer_shapes(self, shapes):
        if len(shapes[0]) != len(shapes[1]):
            raise ValueError(f"{self.name}: input rank {len(shapes[0])} and index rank {len(shapes[1])} differ")
        normalize_dim(self.p("dim"), len(shapes[0]), self.name)
        return [shapes[1]]

    def reference(self, args, env):
        return torch.gather(args[0], self.p("dim"), args[1])


@irdl_op_definition
class IotaOp(TensorOp):
    """``start + step * i`` for ``i`` in the (1-D) result.

    %r = blade.iota {start = 0.0 : f64, step = 1.0 : f64} : () -> !blade.tensor<[s1], i64>
    """

    name = "blade.iota"
    CATEGORY: ClassVar[str] = "source"
    result = result_def(TensorType)
    start = prop_def(FloatAttr)
    step = prop_def(FloatAttr)
    traits = traits_def(Pure())

    def reference(self, args, env):
        (n,) = env.result_shapes[0]
        start, step = self.p("start"), self.p("step")
        if not env.result_dtypes[0].is_floating_point:
            start, step = int(start), int(step)
        return torch.arange(n, device=env.device, dtype=env.result_dtypes[0]) * step + start


@irdl_op_definition
class FullOp(TensorOp):
    """A tensor of the result type filled with ``value``.

    %z = blade.full {value = 0.0 : f64} : () -> !blade.tensor<[s0, 77, 77], f32>
    """

    name = "blade.full"
    CATEGORY: ClassVar[str] = "source"
    result = result_def(TensorType)
    value = prop_def(base(FloatAttr) | base(IntegerAttr))  # i64 for integers past 2**53 (types.scalar_attr)
    traits = traits_def(Pure())

    def reference(self, args, env):
        return torch.full(env.result_shapes[0], self.p("value"), dtype=env.result_dtypes[0], device=env.device)


@irdl_op_definition
class ConstantOp(TensorOp):
    """A rank-0 constant (Python scalars in the source program). The value is an f64 attribute,
    or an i64 one for an integer a double does not hold exactly (past 2**53: ``2**63 - 1`` would
    round to 2**63, which wraps in int64).

    %c = blade.constant {value = 0.5 : f64} : () -> !blade.tensor<[], f32>
    %m = blade.constant {value = 9223372036854775807 : i64} : () -> !blade.tensor<[], i64>
    """

    name = "blade.constant"
    CATEGORY: ClassVar[str] = "source"
    result = result_def(TensorType)
    value = prop_def(base(FloatAttr) | base(IntegerAttr))
    traits = traits_def(Pure())

    def verify_(self):
        super().verify_()
        if self.out_type.rank != 0:
            raise VerifyException("blade.constant produces a rank-0 tensor; use blade.full for shapes")

    def reference(self, args, env):
        return torch.full((), self.p("value"), dtype=env.result_dtypes[0], device=env.device)  # capturable


@irdl_op_definition
class WeightOp(TensorOp):
    """A parameter, buffer or constant tensor of the source module, referenced by name (never
    copied into the IR, so in-place updates of the module's weights are seen).

    %w = blade.weight {name = "conv_in.weight"} : () -> !blade.tensor<[320, 4, 3, 3], f32>
    """

    name = "blade.weight"
    CATEGORY: ClassVar[str] = "source"
    result = result_def(TensorType)
    weight_name = prop_def(StringAttr, prop_name="name")
    traits = traits_def(Pure())

    def reference(self, args, env):
        return env.weights(self.p("name"))


@irdl_op_definition
class DimValueOp(TensorOp):
    """A rank-0 integer tensor holding a dimension expression (``x.shape[2] * x.shape[3]``
    used as data).

    %n = blade.dim_value {value = #blade.dims<[s1*s2]>} : () -> !blade.tensor<[], i64>
    """

    name = "blade.dim_value"
    CATEGORY: ClassVar[str] = "source"
    result = result_def(TensorType)
    value = prop_def(DimsAttr)
    traits = traits_def(Pure())

    def reference(self, args, env):
        # a fill (capturable; a CUDA graph is kept per input shape, which fixes the value)
        return torch.full((), env.eval_dim(self.p("value")[0]), dtype=env.result_dtypes[0], device=env.device)


DATA_MOVEMENT_OPS = [ReshapeOp, PermuteOp, ExpandOp, SliceOp, ConcatOp, PadOp, UpsampleOp, EmbeddingOp, GatherRowsOp,
                     IndexOp, GatherOp, IotaOp, FullOp, ConstantOp, WeightOp, DimValueOp]
