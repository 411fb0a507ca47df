"""The tensor type of Blade's IR and the small attributes its ops carry.

``!blade.tensor<[s0, 4, 8*s1, 8*s2], f32>`` is a value-semantics tensor whose dims are
integers or symbolic expressions (see ``blade.shape_syntax``); ``?`` marks a dim that shape
propagation has not filled in yet. ``#blade.dims<[s1, 3]>`` is a list of dim expressions used
as an op property (slice starts, ``blade.dim_value``).

In upstream MLIR (unregistered dialects allowed) both parse as opaque dialect types/attributes,
so the generic form of every Blade module is valid MLIR.
"""

from __future__ import annotations

import functools

from collections.abc import Sequence

import sympy
from xdsl.dialects.builtin import (
    BFloat16Type,
    ComplexType,
    DenseArrayBase,
    Float16Type,
    Float32Type,
    Float64Type,
    FloatAttr,
    IntegerAttr,
    IntegerType,
    Signedness,
    StringAttr,
    i64,
)
from xdsl.ir import Attribute, Data, ParametrizedAttribute, TypeAttribute
from xdsl.irdl import irdl_attr_definition
from xdsl.parser import AttrParser
from xdsl.printer import Printer

from blade.shape_syntax import format_dim, parse_dim
from blade.symbolic import as_expr
from blade.lazy import LazyModule

torch = LazyModule("torch")  # imported on first use (see blade.lazy)

Dim = sympy.Expr | None  # None: unknown (before shape propagation)


class _XdslTokens:
    """Adapts xDSL's attribute parser to ``shape_syntax.TokenSource``."""

    def __init__(self, parser: AttrParser):
        self.p = parser

    def accept(self, punct: str) -> bool:
        return self.p.parse_optional_punctuation(punct) is not None  # type: ignore[arg-type]

    def accept_keyword(self, word: str) -> bool:
        return self.p.parse_optional_keyword(word) is not None

    def accept_int(self) -> int | None:
        return self.p.parse_optional_integer(allow_boolean=False, allow_negative=False)

    def accept_ident(self) -> str | None:
        return self.p.parse_optional_identifier()

    def error(self, msg: str) -> Exception:
        try:
            self.p.raise_error(msg)
        except Exception as e:  # noqa: BLE001 - raise_error always raises; return it instead
            return e
        return ValueError(msg)


def _parse_dim_list(parser: AttrParser) -> tuple[Dim, ...]:
    src = _XdslTokens(parser)
    return tuple(parser.parse_comma_separated_list(parser.Delimiter.SQUARE, lambda: parse_dim(src)))


def _normalize_dims(dims: Sequence[int | sympy.Expr | None]) -> tuple[Dim, ...]:
    return tuple(None if d is None else as_expr(d) for d in dims)


@irdl_attr_definition
class DimsAttr(Data[tuple]):
    """A list of dimension expressions: ``#blade.dims<[s0, 2*s1]>``."""

    name = "blade.dims"

    @classmethod
    def from_dims(cls, dims: Sequence[int | sympy.Expr | None]) -> DimsAttr:
        return cls(_normalize_dims(dims))

    @classmethod
    def parse_parameter(cls, parser: AttrParser) -> tuple:
        with parser.in_angle_brackets():
            return _parse_dim_list(parser)

    def print_parameter(self, printer: Printer) -> None:
        printer.print_string("<[" + ", ".join(format_dim(d) for d in self.data) + "]>")


@irdl_attr_definition
class TensorType(ParametrizedAttribute, TypeAttribute):
    """A tensor with symbolic dims: ``!blade.tensor<[s0, 320, 8*s1], f16>``."""

    name = "blade.tensor"

    shape_attr: DimsAttr
    element_type: Attribute

    def __init__(self, shape: Sequence[int | sympy.Expr | None] | DimsAttr, element_type: Attribute):
        if not isinstance(shape, DimsAttr):
            shape = DimsAttr.from_dims(shape)
        super().__init__(shape, element_type)

    @property
    def shape(self) -> tuple[Dim, ...]:
        return self.shape_attr.data

    @property
    def rank(self) -> int:
        return len(self.shape)

    @property
    def dtype(self) -> torch.dtype:
        return to_torch_dtype(self.element_type)

    def with_shape(self, shape: Sequence[int | sympy.Expr | None]) -> TensorType:
        return TensorType(shape, self.element_type)

    def with_element_type(self, element_type: Attribute) -> TensorType:
        return TensorType(self.shape_attr, element_type)

    def is_fully_known(self) -> bool:
        return all(d is not None for d in self.shape)

    def print_parameters(self, printer: Printer) -> None:
        printer.print_string("<[" + ", ".join(format_dim(d) for d in self.shape) + "], ")
        printer.print_attribute(self.element_type)
        printer.print_string(">")

    @classmethod
    def parse_parameters(cls, parser: AttrParser) -> tuple[DimsAttr, Attribute]:
        with parser.in_angle_brackets():
            dims = _parse_dim_list(parser)
            parser.parse_punctuation(",")
            elem = parser.parse_type()
        return DimsAttr(dims), elem


# --------------------------------------------------------------------------------------------
# dtypes and property helpers
# --------------------------------------------------------------------------------------------

@functools.cache
def _dtype_tables() -> tuple[dict, dict]:
    """torch dtype -> element type and back, built on first use (torch is imported lazily)."""
    to_xdsl = {
        torch.float32: Float32Type(),
        torch.float16: Float16Type(),
        torch.bfloat16: BFloat16Type(),
        torch.float64: Float64Type(),
        torch.int64: IntegerType(64),
        torch.int32: IntegerType(32),
        torch.int16: IntegerType(16),
        torch.int8: IntegerType(8),
        torch.uint8: IntegerType(8, Signedness.UNSIGNED),
        torch.bool: IntegerType(1),
        # complex values only flow between eager-fallback ops; no compiled op accepts them
        torch.complex64: ComplexType(Float32Type()),
        torch.complex128: ComplexType(Float64Type()),
    }
    return to_xdsl, {v: k for k, v in to_xdsl.items()}


def from_torch_dtype(dtype: torch.dtype) -> Attribute:
    try:
        return _dtype_tables()[0][dtype]
    except KeyError:
        raise TypeError(f"Blade has no element type for torch dtype {dtype}") from None


def to_torch_dtype(t: Attribute) -> torch.dtype:
    try:
        return _dtype_tables()[1][t]
    except KeyError:
        raise TypeError(f"element type {t} has no torch dtype") from None


def tensor_type(shape: Sequence[int | sympy.Expr | None], dtype: torch.dtype) -> TensorType:
    return TensorType(shape, from_torch_dtype(dtype))


def int_attr(v: int) -> IntegerAttr:
    return IntegerAttr(int(v), i64)


def ints_attr(vs: Sequence[int]) -> DenseArrayBase:
    return DenseArrayBase.from_list(i64, [int(v) for v in vs])


def float_attr(v: float) -> FloatAttr:
    return FloatAttr(float(v), Float64Type())


def scalar_attr(v, dtype) -> FloatAttr | IntegerAttr:
    """A fill value for a tensor of ``dtype`` (``blade.constant``, ``blade.full``): f64, or i64 for
    an integer a double does not hold exactly (past 2**53: ``2**63 - 1`` would round to 2**63,
    which wraps in int64)."""
    if (isinstance(v, int) and not isinstance(v, bool) and 2 ** 53 < abs(v) < 2 ** 63
            and not dtype.is_floating_point):
        return int_attr(v)
    return float_attr(float(v))


def str_attr(s: str) -> StringAttr:
    return StringAttr(s)


def attr_value(a: Attribute):
    """The Python value of a property attribute (ints, floats, strings, int lists, dims)."""
    if isinstance(a, IntegerAttr):
        return a.value.data
    if isinstance(a, FloatAttr):
        return a.value.data
    if isinstance(a, StringAttr):
        return a.data
    if isinstance(a, DenseArrayBase):
        return tuple(a.get_values())
    if isinstance(a, DimsAttr):
        return a.data
    raise TypeError(f"no Python value for attribute {a}")
