"""The shared base of every tensor-level op in the ``blade`` dialect.

A concrete op declares its operands, result and properties (xDSL IRDL) and implements two hooks:

* ``reference(args, env)``: the op's meaning, computed with torch on concrete tensors. The
  reference executor calls it; it is the semantic oracle every later stage is tested against.
* ``infer_shapes(operand_shapes)``: result dims as symbolic expressions of the operand dims, or
  ``None`` when the result type itself carries information the operands do not (``reshape``,
  ``expand``, ``iota``...). The ``shape-propagation`` pass uses it; the verifier checks that a
  fully known result type agrees with it.

All ops share one custom assembly form, readable and regular:

    %2 = blade.add %0, %1 : (!blade.tensor<[s0, 4], f32>, !blade.tensor<[4], f32>) -> !blade.tensor<[s0, 4], f32>
    %3 = blade.softmax %2 {dim = 1 : i64} : (!blade.tensor<[s0, 4], f32>) -> !blade.tensor<[s0, 4], f32>

Properties print in the braces; discardable attributes follow with the ``attributes`` keyword.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import sympy
from xdsl.dialects.builtin import DenseArrayBase, FloatAttr, IntegerAttr, StringAttr
from xdsl.ir import Attribute, Region
from xdsl.irdl import IRDLOperation
from xdsl.parser import Parser
from xdsl.printer import Printer
from xdsl.utils.exceptions import VerifyException

from blade.dialects.types import Dim, TensorType, attr_value
from blade.shape_syntax import format_shape
from blade.symbolic import ACTIVE_EQUALITIES, ACTIVE_RANGES, known_bounds, known_equal
from blade.lazy import LazyModule

torch = LazyModule("torch")  # imported on first use (see blade.lazy)

Shape = tuple[Dim, ...]


@dataclass
class ExecEnv:
    """What an op's reference implementation may need beyond its operands."""

    result_shapes: list[tuple[int, ...]]
    result_dtypes: list[torch.dtype]
    device: torch.device
    symbols: dict[str, int]
    weights: Any = None  # name -> tensor lookup (blade.weight)

    def eval_dim(self, d) -> int:
        from blade.symbolic import evaluate

        return evaluate(d, self.symbols)


class TensorOp(IRDLOperation):
    """Base of all ``blade`` tensor ops: shared printing, parsing and property access."""

    #: ops that allocate nothing and compute nothing (views, metadata) may set this
    CATEGORY: ClassVar[str] = "other"

    # ----------------------------------------------------------------- hooks
    def reference(self, args: list[torch.Tensor], env: ExecEnv) -> torch.Tensor | list[torch.Tensor]:
        raise NotImplementedError(f"{self.name} has no reference implementation")

    def infer_shapes(self, shapes: list[Shape]) -> list[Shape] | None:
        return None

    # ----------------------------------------------------------------- helpers
    def p(self, name: str, default: Any = None) -> Any:
        """Python value of property ``name`` (or ``default`` when absent)."""
        a = self.properties.get(name)
        return default if a is None else attr_value(a)

    @property
    def out_type(self) -> TensorType:
        t = self.results[0].type
        assert isinstance(t, TensorType)
        return t

    def in_type(self, i: int) -> TensorType:
        t = self.operands[i].type
        assert isinstance(t, TensorType)
        return t

    def verify_(self) -> None:
        for v in list(self.operands) + list(self.results):
            if not isinstance(v.type, TensorType):
                raise VerifyException(f"{self.name}: every operand and result must be a "
                                      f"!blade.tensor, got {v.type}")
        if not all(isinstance(v.type, TensorType) and v.type.is_fully_known() for v in self.operands):
            return
        try:
            inferred = self.infer_shapes([v.type.shape for v in self.operands])
        except ValueError as e:
            raise VerifyException(f"{self.name}: {e}") from e
        if inferred is None:
            return
        for r, shape in zip(self.results, inferred):
            got = r.type.shape
            if len(got) != len(shape) or any(
                g is not None and s is not None and not dims_equal(self, g, s)
                for g, s in zip(got, shape)
            ):
                raise VerifyException(
                    f"{self.name}: result type {format_shape(got)} does not match the shape "
                    f"{format_shape(shape)} implied by its operands")

    # ----------------------------------------------------------------- assembly
    def print(self, printer: Printer) -> None:
        if self.operands:
            printer.print_string(" ")
            printer.print_list(self.operands, printer.print_operand)
        for region in self.regions:  # in parentheses, so a region never reads as a property dict
            printer.print_string(" (")
            printer.print_region(region, print_entry_block_args=True)
            printer.print_string(")")
        if self.properties:
            printer.print_string(" ")
            printer.print_attr_dict(self.properties)
        printer.print_op_attributes(self.attributes, print_keyword=True)
        printer.print_string(" : ")
        printer.print_function_type([o.type for o in self.operands], [r.type for r in self.results])

    @classmethod
    def parse(cls, parser: Parser):
        unresolved = []
        if (first := parser.parse_optional_unresolved_operand()) is not None:
            unresolved.append(first)
            while parser.parse_optional_punctuation(","):
                unresolved.append(parser.parse_unresolved_operand())
        regions: list[Region] = []
        while parser.parse_optional_punctuation("(") is not None:
            regions.append(parser.parse_region())
            parser.parse_punctuation(")")
        properties = parser.parse_optional_attr_dict()
        attributes = {}
        if parser.parse_optional_keyword("attributes"):
            attributes = parser.parse_optional_attr_dict()
        parser.parse_punctuation(":")
        pos = parser.pos
        ftype = parser.parse_function_type()
        operands = parser.resolve_operands(unresolved, ftype.inputs.data, pos)
        return cls.create(operands=operands, result_types=ftype.outputs.data, properties=properties,
                          attributes=attributes, regions=regions)


# ------------------------------------------------------------------------------------------
# shape helpers shared by op families
# ------------------------------------------------------------------------------------------


def broadcast_shapes(op_name: str, shapes: Sequence[Shape], op: IRDLOperation | None = None) -> Shape:
    """NumPy broadcasting over symbolic dims. Unknown (None) dims stay unknown. Two dims that
    differ as expressions broadcast when a guard of the module (``op``'s, or the one being
    imported) says they are equal."""
    rank = max(len(s) for s in shapes)
    out: list[Dim] = []
    for i in range(rank):
        dims = [s[len(s) - rank + i] for s in shapes if len(s) - rank + i >= 0]
        chosen: Dim = sympy.Integer(1)
        for d in dims:
            if d is None:
                chosen = None if chosen == 1 else chosen
                continue
            if d == 1:
                continue
            if chosen is None or chosen == 1:
                chosen = d
            elif not known_equal(chosen, d) and not equal_by_guard(op, chosen, d):
                raise ValueError(f"{op_name}: cannot broadcast dims {chosen} and {d} "
                                 f"(shapes {[format_shape(s) for s in shapes]})")
        out.append(chosen)
    return tuple(out)


def normalize_dim(dim: int, rank: int, op_name: str) -> int:
    if not -max(rank, 1) <= dim < max(rank, 1):
        raise ValueError(f"{op_name}: dim {dim} out of range for rank {rank}")
    return dim % max(rank, 1)


def prop_repr(a: Attribute) -> str:
    """Short text of a property value, for reports."""
    if isinstance(a, (IntegerAttr, FloatAttr, StringAttr, DenseArrayBase)):
        return str(attr_value(a))
    return str(a)


def equal_by_guard(op: IRDLOperation | None, a: Dim, b: Dim) -> bool:
    """Whether an ``Eq`` guard of the module says ``a == b`` (torch.export checks such equalities
    at run time, e.g. Flux's rotary table over ``len(txt_ids) + len(img_ids)`` rows against the
    ``len(text) + len(image)`` tokens it rotates; Blade's guards check them before every call)."""
    if a is None or b is None:
        return False
    diff = sympy.expand(sympy.sympify(a) - sympy.sympify(b))
    facts = ACTIVE_EQUALITIES.get()
    if facts is not None:
        diffs = facts()
    else:
        diffs = _module_equalities(op) if op is not None else []
    return any(sympy.expand(diff - f) == 0 or sympy.expand(diff + f) == 0 for f in diffs)


def _module_equalities(op: IRDLOperation) -> list:
    from blade.shape_syntax import parse_condition_text

    top = op
    while top.parent_op() is not None:
        top = top.parent_op()
    out = []
    for o in getattr(top, "ops", ()):
        if o.name == "blade.guard":
            text = o.properties["cond"].data
            if "==" not in text:
                continue
            try:
                cond = parse_condition_text(text)
            except Exception:  # noqa: BLE001 - a form the equality test cannot use
                continue
            if isinstance(cond, sympy.Eq):
                out.append(sympy.expand(cond.lhs - cond.rhs))
    return out


def dims_equal(op: IRDLOperation, a: Dim, b: Dim) -> bool:
    """``a == b`` structurally, or for every size in the module's symbol ranges (a guard class can pin a dim:
    DiT at its native resolution has ``s1`` in ``[16, 17]``, so a stride-2 conv's
    ``s1 floordiv 2`` is the 8 torch.export recorded). The ranges are the importer's while it
    builds the module (``ACTIVE_RANGES``), else the module's ``blade.symbol`` ops."""
    if known_equal(a, b) or equal_by_guard(op, a, b):
        return True
    ranges = ACTIVE_RANGES.get()
    if ranges is None:
        top = op
        while top.parent_op() is not None:
            top = top.parent_op()
        ranges = {}
        for o in getattr(top, "ops", ()):
            if o.name == "blade.symbol":
                lo, hi = o.properties["lo"], o.properties.get("hi")
                sym = sympy.Symbol(o.properties["sym_name"].data, integer=True, positive=True)
                ranges[sym] = (float(lo.value.data), float(hi.value.data) if hi is not None else float("inf"))
    if not ranges or not any(hi != float("inf") for _, hi in ranges.values()):
        return False
    lo, hi = known_bounds(sympy.expand(sympy.sympify(a) - sympy.sympify(b)), ranges)
    return lo == hi == 0
