"""Turn torch.export's shape environment into Blade's symbol table.

torch.export describes every dim with sympy expressions over its own symbols (``s30``, ``s91``)
and functions of its own (``FloorDiv``, ``PythonMod``...), plus guards it assumed while tracing
(``Eq(Mod(s30, 8), 0)``, ``s53 < 64``). This module:

1. names one Blade symbol per independent input dim, in input order (``s0, s1, ...``), and folds
   divisibility facts into the input dims (``s30 % 8 == 0``  ->  the dim is ``8*s1``), so that
   downsampled dims simplify structurally (``(8*s1 - 1) floordiv 8 + 1`` is ``s1``);
2. converts any torch expression into a canonical Blade expression over those symbols;
3. keeps every guard that is not provably true as a runtime guard, except the ones FakeTensor's
   convolution memory-format heuristic adds (they only choose output strides, which Blade's
   value-semantics IR does not have).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import sympy
import torch

from blade.symbolic import ShapeError, SymbolTable, canonical, normalize_condition

# torch.utils._sympy.functions names -> how to rebuild them with plain sympy
_BINARY = {
    "FloorDiv": lambda a, b: sympy.floor(a / b),
    "CeilDiv": lambda a, b: sympy.ceiling(a / b),
    "CleanDiv": lambda a, b: a / b,
    "IntTrueDiv": lambda a, b: a / b,
    "Mod": lambda a, b: sympy.Mod(a, b),
    "PythonMod": lambda a, b: sympy.Mod(a, b),
    "FloatTrueDiv": lambda a, b: a / b,
    "PowByNatural": lambda a, b: a ** b,
}
_UNARY = {"CeilToInt": sympy.ceiling, "FloorToInt": sympy.floor, "TruncToInt": sympy.floor,
          "ToFloat": lambda a: a, "Identity": lambda a: a}


def _is_conv_layout_guard(guard) -> bool:
    loc = str(getattr(guard.sloc, "framework_loc", "") or "")
    return "fake_impls.py" in loc and "conv" in loc


@dataclass
class SymbolMapping:
    """How torch's symbols map to Blade's, and the resulting table."""

    table: SymbolTable
    subs: dict[sympy.Symbol, sympy.Expr] = field(default_factory=dict)
    shape_env: object | None = None
    _cache: dict = field(default_factory=dict)
    unbacked: dict[sympy.Symbol, sympy.Expr] = field(default_factory=dict)

    def convert(self, e) -> sympy.Expr:
        """A torch SymInt / int / sympy expression as a canonical Blade expression."""
        if isinstance(e, bool):
            return sympy.Integer(int(e))
        if isinstance(e, int):
            return sympy.Integer(e)
        if isinstance(e, torch.SymInt):
            e = e.node.expr
        if isinstance(e, (torch.SymFloat, torch.SymBool)):
            e = e.node.expr
        hit = self._cache.get(e)
        if hit is not None:
            return hit
        out = canonical(self._convert(e))
        self._cache[e] = out
        return out

    def _convert(self, e) -> sympy.Expr:
        if self.shape_env is not None:
            e = self.shape_env.replace(e)
        if e is sympy.true or e is sympy.false:
            return e
        if e.is_Integer or e.is_Rational or e.is_Float:
            return e
        if e.is_Symbol:
            if e in self.subs:
                return self.subs[e]
            if e in self.unbacked:
                return self.unbacked[e]
            raise ShapeError(f"torch symbol {e} is not determined by any input dim (a data-dependent "
                             "size); Blade cannot compile shapes that depend on tensor values")
        name = type(e).__name__
        args = [self._convert(a) for a in e.args]
        if name in _BINARY:
            return _BINARY[name](*args)
        if name in _UNARY:
            return _UNARY[name](*args)
        if name in ("Max", "Min"):
            return (sympy.Max if name == "Max" else sympy.Min)(*args)
        if isinstance(e, (sympy.Add, sympy.Mul, sympy.Pow, sympy.Rel, sympy.And, sympy.Or, sympy.Not)):
            return e.func(*args)
        if isinstance(e, (sympy.floor, sympy.ceiling, sympy.Mod)):
            return e.func(*args)
        raise ShapeError(f"Blade cannot represent the torch shape expression {e} ({name})")


def build_symbol_mapping(
    shape_env, inputs: list[tuple[str, tuple]], ranges: dict[tuple[str, int], tuple[int, int | None]],
) -> SymbolMapping:
    """Name Blade symbols for the symbolic dims of ``inputs`` (name, fake shape) in order."""
    table = SymbolTable()
    mapping = SymbolMapping(table, shape_env=shape_env)
    divisible: dict[sympy.Symbol, int] = {}
    if shape_env is not None:
        for m in shape_env.divisible:
            a, b = m.args
            if a.is_Symbol and b.is_Integer:
                divisible[a] = math.lcm(divisible.get(a, 1), int(b))
    fixed = _fixed_values(shape_env)
    for name, shape in inputs:
        for i, d in enumerate(shape):
            if not isinstance(d, torch.SymInt):
                continue
            expr = d.node.expr
            if shape_env is not None:
                expr = shape_env.replace(expr)
            if expr in fixed:  # export pinned this dim to one value (a guard or a [v, v] range)
                mapping.subs[expr] = sympy.Integer(fixed[expr])
                continue
            if not expr.is_Symbol or expr in mapping.subs:
                continue
            k = divisible.get(expr, 1)
            # Ranges come from the user (Config.dim_ranges), never from torch's var_to_range:
            # torch narrows those as a side effect of guards Blade drops (layout-only ones).
            lo, hi = ranges.get((name, i), (1, None))
            lo = 1 if lo is None else lo
            origin = f"{name}.size({i})" + (f" / {k}" if k > 1 else "")
            sym = table.fresh(origin, lo=max(1, -(-lo // k)), hi=None if hi is None else hi // k)
            mapping.subs[expr] = k * sym if k > 1 else sym
    return mapping


def _fixed_values(shape_env) -> dict[sympy.Symbol, int]:
    """Symbols torch.export pinned to a single value: ``Eq(s, c)`` guards and ``[c, c]`` ranges."""
    fixed: dict[sympy.Symbol, int] = {}
    if shape_env is None:
        return fixed
    for sym, vr in shape_env.var_to_range.items():
        if isinstance(vr.lower, sympy.Integer) and vr.lower == vr.upper:
            fixed[sym] = int(vr.lower)
    for g in shape_env.guards:
        e = g.expr
        if isinstance(e, sympy.Eq):
            a, b = e.args
            if a.is_Symbol and b.is_Integer:
                fixed[a] = int(b)
            elif b.is_Symbol and a.is_Integer:
                fixed[b] = int(a)
    return fixed


def _where(sloc) -> str:
    """``" at file.py:123"`` for a guard's source location, when torch recorded one."""
    for loc in (getattr(sloc, "maybe_user_loc", None), getattr(sloc, "framework_loc", None)):
        if loc is None:
            continue
        if hasattr(loc, "filename"):
            return f" at {loc.filename.rsplit('/', 1)[-1]}:{loc.lineno}"
        if isinstance(loc, str) and loc:
            return f" at {loc}"
    return ""


def import_guards(mapping: SymbolMapping) -> list[str]:
    """Record torch.export's guards in the symbol table; returns notes on dropped ones."""
    notes = []
    se = mapping.shape_env
    if se is None:
        return notes
    for g in se.guards:
        if _is_conv_layout_guard(g):
            notes.append(f"ignored layout-only guard {g.expr}")
            continue
        try:
            cond = mapping.convert(g.expr)
        except ShapeError as e:
            notes.append(f"ignored guard {g.expr}: {e}")
            continue
        cond = normalize_condition(cond)
        if cond is sympy.true:
            continue
        if cond is sympy.false:
            raise ShapeError(f"torch.export guard {g.expr} is false for the example inputs' symbols")
        mapping.table.require(cond, f"torch.export: {g.expr}" + _where(g.sloc))
    return notes
