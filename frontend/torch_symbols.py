"""Turn torch.export's shape environment into Blade's symbol table.

torch.export describes every dim with sympy expressions over its own symbols (``s30``, ``s91``)
and functions of its own (``FloorDiv``, ``IntTrueDiv``, ``PythonMod``...), plus guards it assumed
while tracing (``Eq(Mod(s30, 8), 0)``, ``s53 < 64``, ``IntTrueDiv(a, b) > IntTrueDiv(c, d)``).
This module:

1. names one Blade symbol per independent input dim, in input order (``s0, s1, ...``), and folds
   the relations export proved into the input dims: divisibility and residue classes
   (``s30 % 8 == 0``  ->  the dim is ``8*s1``; ``Eq(2*((s - 1)//2) + 2, s)``, "s is even", from a
   stride-2 conv upsampled back), dims pinned to a constant, and export's replacements (two dims
   unified, a dim equal to an expression of others), so that such dims are structurally equal and
   the verifier never rejects a valid model;
2. converts any torch expression into a canonical Blade expression over those symbols, keeping
   its exact meaning: true division stays a rational (conditions over it are compared exactly by
   ``symbolic.normalize_condition``), truncation, rounding, ``Mod``/``PythonMod``, ``Min``/``Max``
   and float constants are exact;
3. keeps every guard that is not provably true as a runtime guard, except the ones that only
   choose strides (FakeTensor's convolution memory-format heuristic, stride indicators), which
   Blade's value-semantics IR does not have. A guard it cannot translate stops the compile.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import sympy
import torch

from blade.symbolic import ShapeError, SymbolTable, canonical, exact_number, make_symbol, normalize_condition

def _trunc(x):
    """Truncation toward zero with floor/ceiling only: ``max(floor(x), 0) + min(ceil(x), 0)``."""
    return sympy.Max(sympy.floor(x), 0) + sympy.Min(sympy.ceiling(x), 0)


def _round_half_even(x):
    """Python's ``round(x)`` (ties to even) with integer operations only, for ``x = n/d`` with a
    positive constant ``d``: ``r = floor(x + 1/2)``, minus one where ``x + 1/2`` is an integer
    (``(2n + d) mod 2d == 0``) and ``r`` is odd."""
    n, d = sympy.fraction(sympy.together(x))
    if not (d.is_Integer and int(d) > 0):
        raise ShapeError(f"round({x}) has a denominator {d} of unknown sign")
    r = sympy.floor((2 * n + d) / (2 * d))
    tie = 1 - sympy.Min(1, sympy.Mod(2 * n + d, 2 * d))
    return r - tie * sympy.Mod(r, 2)


# torch.utils._sympy.functions names -> their exact meaning in plain sympy. True division
# (IntTrueDiv, FloatTrueDiv) stays a rational quotient: conditions over it are compared exactly
# (symbolic.normalize_condition), never as floor division. torch's Mod is C-style on the
# non-negative arguments it is defined for, where it agrees with sympy's (Python-style) Mod.
def _quotient(a: sympy.Expr, b: sympy.Expr) -> sympy.Expr:
    """``a / b``, with common factors of a symbolic divisor cancelled (``(4*s0 + 4*s1) // (s0 + s1)``
    is 4: a rotary table's width Flux computes that way; uncancelled, a broadcast against 8 failed)."""
    q = a / b
    return q if sympy.sympify(b).is_number else sympy.cancel(q)


_BINARY = {
    "FloorDiv": lambda a, b: sympy.floor(_quotient(a, b)),
    "CeilDiv": lambda a, b: sympy.ceiling(_quotient(a, b)),
    "CleanDiv": lambda a, b: a / b,
    "IntTrueDiv": lambda a, b: a / b,
    "FloatTrueDiv": lambda a, b: a / b,
    "Mod": lambda a, b: sympy.Mod(a, b),
    "PythonMod": lambda a, b: sympy.Mod(a, b),
    "PowByNatural": lambda a, b: a ** b,
    "FloatPow": lambda a, b: a ** b,
    "LShift": lambda a, b: a * 2 ** b,
    "RShift": lambda a, b: sympy.floor(a / 2 ** b),
}
_UNARY = {"CeilToInt": sympy.ceiling, "FloorToInt": sympy.floor, "TruncToInt": _trunc,
          "TruncToFloat": _trunc, "ToFloat": lambda a: a, "Identity": lambda a: a,
          "Abs": lambda a: sympy.Max(a, -a), "RoundToInt": _round_half_even}
_TERNARY = {"ModularIndexing": lambda x, d, m: sympy.Mod(sympy.floor(x / d), m)}


def _is_layout_guard(guard) -> bool:
    """Guards that only choose strides: FakeTensor's convolution memory-format heuristic, and
    any guard over torch's ``IsNonOverlappingAndDenseIndicator`` (a stride property). Blade's IR
    has value semantics, so strides never change what it computes."""
    loc = str(getattr(guard.sloc, "framework_loc", "") or "")
    if "fake_impls.py" in loc and "conv" in loc:
        return True
    return any(type(f).__name__ == "IsNonOverlappingAndDenseIndicator"
               for f in guard.expr.atoms(sympy.Function))


@dataclass
class SymbolMapping:
    """How torch's symbols map to Blade's, and the resulting table."""

    table: SymbolTable
    subs: dict[sympy.Symbol, sympy.Expr] = field(default_factory=dict)
    shape_env: object | None = None
    _cache: dict = field(default_factory=dict)
    unbacked: dict[sympy.Symbol, sympy.Expr] = field(default_factory=dict)
    #: expressions a guard pins to one value (``(s1 floordiv 8)**2 == 16``), replaced in every dim
    pinned: dict[sympy.Expr, sympy.Integer] = field(default_factory=dict)

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
        out = self.table.simplify(canonical(self._convert(e)))
        if self.pinned and isinstance(out, sympy.Expr) and out.free_symbols:
            out = canonical(out.xreplace(self.pinned))
        self._cache[e] = out
        return out

    def _convert(self, e) -> sympy.Expr:
        if self.shape_env is not None:
            e = self.shape_env.replace(e)
        if e is sympy.true or e is sympy.false:
            return e
        if e.is_Integer or e.is_Rational:
            return e
        if e.is_Symbol:
            if e in self.subs:
                return self.subs[e]
            if e in self.unbacked:
                return self.unbacked[e]
            raise ShapeError(f"torch symbol {e} is not determined by any input dim (a data-dependent "
                             "size); Blade cannot compile shapes that depend on tensor values")
        if isinstance(e, sympy.Float):
            return exact_number(e)
        name = type(e).__name__
        args = [self._convert(a) for a in e.args]
        if name in _BINARY and len(args) == 2:
            return _BINARY[name](*args)
        if name in _UNARY and len(args) == 1:
            return _UNARY[name](*args)
        if name in _TERNARY and len(args) == 3:
            return _TERNARY[name](*args)
        if name in ("Max", "Min"):
            return (sympy.Max if name == "Max" else sympy.Min)(*args)
        if isinstance(e, sympy.Rel):
            # built unevaluated and decided in integer form: sympy 1.14 evaluates some relations of
            # quotients wrongly for positive integer symbols (5/(a*b) < 1 is "False")
            return normalize_condition(e.func(*args, evaluate=False))
        if isinstance(e, (sympy.Add, sympy.Mul, sympy.Pow, sympy.And, sympy.Or, sympy.Not)):
            return e.func(*args)
        if isinstance(e, (sympy.floor, sympy.ceiling, sympy.Mod)):
            return e.func(*args)
        raise ShapeError(f"Blade cannot represent the torch shape expression {e} ({name})")


def build_symbol_mapping(
    shape_env, inputs: list[tuple[str, tuple]], ranges: dict[tuple[str, int], tuple[int, int | None]],
    int_arguments: list[tuple[str, torch.SymInt]] = (),
) -> SymbolMapping:
    """Name Blade symbols for the symbolic dims of ``inputs`` (name, fake shape) in order, then for
    the symbolic ``int_arguments`` (name, SymInt): such an int is ``sym - 1``, ``sym`` the size of
    its carrier input (``runtime/call_signature.size_carrier``), so an int of 0 is a symbol of 1."""
    table = SymbolTable()
    mapping = SymbolMapping(table, shape_env=shape_env)
    residues = _residue_facts(shape_env)
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
            # a dim known to be r mod k is k*sym - c (c = (k - r) mod k, sym >= 1): downsampled and
            # re-upsampled dims then simplify to the input dim structurally
            k, r = residues.get(expr, (1, 0))
            c = (k - r) % k
            # Ranges come from the user (Config.dim_ranges), never from torch's var_to_range:
            # torch narrows those as a side effect of guards Blade drops (layout-only ones).
            lo, hi = ranges.get((name, i), (1, None))
            lo = 1 if lo is None else lo
            origin = f"{name}.size({i})"
            if k > 1:
                origin = f"({origin} + {c}) / {k}" if c else f"{origin} / {k}"
            sym = table.fresh(origin, lo=max(1, -(-(lo + c) // k)), hi=None if hi is None else (hi + c) // k)
            mapping.subs[expr] = k * sym - c if k > 1 else sym
    for name, value in int_arguments:
        expr = shape_env.replace(value.node.expr) if shape_env is not None else value.node.expr
        if expr in fixed:
            mapping.subs[expr] = sympy.Integer(fixed[expr])
        elif expr.is_Symbol and expr not in mapping.subs:
            mapping.subs[expr] = table.fresh(f"{name} + 1 (int argument {name})") - 1
    return mapping


_MAX_PERIOD = 64  # residue facts with a larger modulus are kept as plain guards


def _residue_facts(shape_env) -> dict[sympy.Symbol, tuple[int, int]]:
    """Symbols that export proved to lie in one residue class: ``s -> (k, r)`` for ``s % k == r``.

    Sources: ``shape_env.divisible`` and every ``Eq`` guard over one symbol that is equivalent to
    a residue class, such as ``Eq(2*((s0 - 1)//2) + 2, s0)`` (a stride-2 conv followed by a 2x
    upsample, added back to its input: ``s0`` is even). Equivalence is proved, not sampled: with
    ``k`` the lcm of the guard's divisors, the guard is simplified symbolically at ``s = k*t + r``
    for every ``r < k``; it is a fact only when each case simplifies to a constant True/False.
    """
    facts: dict[sympy.Symbol, tuple[int, int]] = {}
    if shape_env is None:
        return facts

    def add(sym, k, r):
        k0, r0 = facts.get(sym, (1, 0))
        m = math.lcm(k0, k)
        if m > _MAX_PERIOD:
            return
        both = [v for v in range(m) if v % k0 == r0 and v % k == r]
        if both:  # an empty intersection is a contradiction export would have raised
            facts[sym] = (m, both[0])

    for m in shape_env.divisible:
        a, b = m.args
        if a.is_Symbol and b.is_Integer and int(b) > 1:
            add(a, int(b), 0)
    for g in shape_env.guards:
        e = shape_env.replace(g.expr)
        if not isinstance(e, sympy.Eq) or len(e.free_symbols) != 1:
            continue
        (sym,) = e.free_symbols
        fact = _as_residue_class(e, sym)
        if fact is not None:
            add(sym, *fact)
    return facts


def _as_residue_class(cond: sympy.Basic, sym: sympy.Symbol) -> tuple[int, int] | None:
    x = make_symbol("_x")
    try:
        c = SymbolMapping(SymbolTable(), subs={sym: x}).convert(cond)
    except ShapeError:
        return None
    dens = [sympy.Integer(1)]
    for f in c.atoms(sympy.floor, sympy.ceiling):
        dens.append(sympy.fraction(sympy.together(f.args[0]))[1])
    for f in c.atoms(sympy.Mod):
        dens.append(f.args[1])
    if not all(isinstance(d, sympy.Integer) and d > 0 for d in dens):
        return None
    k = math.lcm(*(int(d) for d in dens))
    if k == 1 or k > _MAX_PERIOD:
        return None
    t = make_symbol("_t")
    holds = []
    for r in range(k):  # x = k*t - (k - r) with t >= 1 covers exactly the x >= 1 with x % k == r
        v = c.xreplace({x: k * t - (k - r) % k})
        v = sympy.simplify(v) if v not in (sympy.true, sympy.false) else v
        if v not in (sympy.true, sympy.false):
            return None
        holds.append(v is sympy.true)
    for p in sorted(d for d in range(1, k + 1) if k % d == 0):  # the smallest period
        if all(holds[r] == holds[r % p] for r in range(k)):
            classes = [r for r in range(p) if holds[r]]
            return (p, classes[0]) if len(classes) == 1 and p > 1 else None
    return None


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


def _input_determined(mapping: SymbolMapping, expr) -> bool:
    se = mapping.shape_env
    return all(s in mapping.subs for s in se.replace(expr).free_symbols)


def import_guards(mapping: SymbolMapping) -> list[str]:
    """Record torch.export's guards in the symbol table; returns notes on dropped ones."""
    notes = []
    se = mapping.shape_env
    if se is None:
        return notes
    # Bounds on one symbol (``s1 < 80``: BERT-like position tables) become the symbol's range
    # first, so the other guards and every dim are converted knowing them: ``min(80, s1)`` is
    # then ``s1`` and the position embedding adds to the token embedding structurally.
    narrowed = set()
    for g in se.guards:
        if _is_layout_guard(g):
            continue
        try:
            cond = normalize_condition(mapping.convert(g.expr))
        except ShapeError:
            continue
        if mapping.table.narrow(cond):
            narrowed.add(id(g))
            # A symbol narrowed to one size keeps its symbol (range [c, c]; verifiers and shape
            # questions see it as c): the narrowing guard may only be a stride question torch's C++
            # asked (suggest_memory_format's ``batch <= 1`` in GroupNorm on a batch-1 example), and
            # a program with the symbol can serve the other sizes' guard class as a twin (same code).
        _record_pinned(mapping, cond)
    if narrowed or mapping.pinned:
        mapping._cache.clear()
    for g in se.guards:
        if id(g) in narrowed:
            continue
        if _is_layout_guard(g):
            notes.append(f"dropped stride-only guard {g.expr}")
            continue
        try:
            cond = normalize_condition(_integer_sqrt_condition(mapping, g.expr) or mapping.convert(g.expr))
        except ShapeError as e:
            if not _input_determined(mapping, g.expr):
                # over a data-dependent (unbacked) size: export asserts it inside the graph
                notes.append(f"guard {g.expr} is over a data-dependent size; checked in the graph")
                continue
            raise ShapeError(f"torch.export guard {g.expr}{_where(g.sloc)} cannot be translated "
                             f"exactly ({e}); Blade will not compile without it. Pin the dims it "
                             "involves with Config(static_dims=...) or report the guard form") from e
        if cond is sympy.true:
            continue
        if cond is sympy.false:
            raise ShapeError(f"torch.export guard {g.expr} is false for the example inputs' symbols")
        if (solved := _defining_equality(mapping, cond)) is not None:
            notes.append(_eliminate(mapping, *solved, "a torch.export guard" + _where(g.sloc)))
            continue
        # the reason names where export asked, not its expression (torch's own symbol names
        # mean nothing to the user; the condition itself is printed in Blade's symbols)
        mapping.table.require(cond, "torch.export guard" + _where(g.sloc))
    return notes


def _record_pinned(mapping: SymbolMapping, cond) -> None:
    """An ``Eq(e, c)`` guard with ``e`` a compound size expression pins ``e`` to ``c`` in its
    guard class: CLIP/DeiT at the native resolution (``(s1 floordiv 8)**2 == 16``: 16 patches
    plus a class token meet a 17-row position table) and DiT (``(s1 floordiv 2)*(s2 floordiv 2)
    == 64``). Dims that contain ``e`` then use ``c``, so the position embedding adds to the
    tokens structurally; the guard itself is still checked at call time. Exact-subexpression
    replacement only: ``e`` inside a larger product is left alone."""
    if not isinstance(cond, sympy.Eq):
        return
    for e, c in (cond.args, cond.args[::-1]):
        if not (c.is_Integer and e.free_symbols):
            continue
        # the core without constant terms and factors: ``(s1 floordiv 4)**2 + 1 == 17`` pins
        # ``(s1 floordiv 4)**2`` to 16, so the tokens before the class token is prepended are
        # 16 too and the concat of 1 and 16 rows is the 17 torch recorded
        offset, term = e.as_coeff_Add()
        coeff, core = term.as_coeff_Mul()
        if not (offset.is_Integer and coeff.is_Integer and int(coeff) != 0):
            continue
        value, rest = divmod(int(c) - int(offset), int(coeff))
        # a sum is never pinned: concat and pad state their result dims as sums of their
        # operands', which must stay comparable (SDXL's text and time embeddings: s4 + t == 80)
        if rest == 0 and not core.is_Symbol and not core.is_Add:
            mapping.pinned.setdefault(core, sympy.Integer(value))
        return


def _integer_sqrt_condition(mapping: SymbolMapping, expr) -> sympy.Basic | None:
    """A guard comparing ``int(x ** 0.5)`` with an integer constant, as a condition on ``x``.

    Diffusers' DiT unpatchifies with ``height = int(tokens ** 0.5)``; export specialises the
    ``int()`` and guards ``Eq(TruncToInt(FloatPow(ToFloat(x), 0.5)), 8)``. A square root has no
    integer form, but the guard has: ``isqrt(x) == c`` is ``c**2 <= x < (c + 1)**2`` (IEEE sqrt is
    correctly rounded, so ``int(sqrt(x))`` is ``isqrt(x)`` for every ``x`` below 2**52). None when
    ``expr`` is not such a comparison."""
    if not isinstance(expr, sympy.Rel):
        return None
    for root, other, rel in ((expr.lhs, expr.rhs, type(expr)), (expr.rhs, expr.lhs, _FLIP[type(expr)])):
        if not (type(root).__name__ in ("TruncToInt", "FloorToInt") and other.is_Integer and int(other) >= 0):
            continue
        power = root.args[0]
        if not (type(power).__name__ == "FloatPow" and power.args[1] == sympy.Rational(1, 2)
                or type(power).__name__ == "FloatPow" and float(power.args[1]) == 0.5):
            continue
        base = power.args[0]
        if type(base).__name__ == "ToFloat":
            base = base.args[0]
        x, c = mapping.convert(base), int(other)
        lo, hi = c * c, (c + 1) ** 2  # isqrt(x) == c exactly for x in [lo, hi)
        return {sympy.Eq: lambda: sympy.And(sympy.Ge(x, lo), sympy.Lt(x, hi)),
                sympy.Ne: lambda: sympy.Or(sympy.Lt(x, lo), sympy.Ge(x, hi)),
                sympy.Ge: lambda: sympy.Ge(x, lo), sympy.Gt: lambda: sympy.Ge(x, hi),
                sympy.Le: lambda: sympy.Lt(x, hi), sympy.Lt: lambda: sympy.Lt(x, lo)}[rel]()
    return None


_FLIP = {sympy.Eq: sympy.Eq, sympy.Ne: sympy.Ne, sympy.Lt: sympy.Gt, sympy.Le: sympy.Ge,
         sympy.Gt: sympy.Lt, sympy.Ge: sympy.Le}


def _defining_equality(mapping: SymbolMapping, cond) -> tuple[sympy.Symbol, sympy.Expr] | None:
    """``(s, e)`` when ``cond`` is ``Eq(s, e)`` for a Blade symbol ``s`` that ``e`` does not use.

    torch.export states a relation between two inputs' sizes that it cannot solve for one symbol
    as a guard, e.g. ControlNet's latent and conditioning image: ``Eq(s1, (s4 - 1) floordiv 8 + 1)``.
    Such a guard is a definition, and a fact every later shape question must see (the residual
    add of the two paths needs ``s1`` and ``(s4 - 1) floordiv 8 + 1`` to be the same dim). Of two
    plain symbols the later one is defined by the earlier one."""
    if not isinstance(cond, sympy.Eq):
        return None
    table = mapping.table.symbols
    sides = [(a, b) for a, b in (cond.args, cond.args[::-1]) if a.is_Symbol and a.name in table
             and a not in b.free_symbols and all(x.name in table for x in b.free_symbols)]
    if not sides:
        return None
    if len(sides) == 2:  # s_i == s_j: keep the earlier symbol
        order = list(table)
        return max(sides, key=lambda ab: order.index(ab[0].name))
    return sides[0]


def _eliminate(mapping: SymbolMapping, sym: sympy.Symbol, expr: sympy.Expr, reason: str) -> str:
    """Replace ``sym`` by ``expr`` everywhere (input dims, recorded guards) and drop it from the
    table; its range becomes guards on ``expr``."""
    info = mapping.table.symbols.pop(sym.name)
    for k, v in list(mapping.subs.items()):
        mapping.subs[k] = canonical(v.xreplace({sym: expr}))
    mapping._cache.clear()
    mapping.table.guards = [type(g)(normalize_condition(g.cond.xreplace({sym: expr})), g.reason)
                            for g in mapping.table.guards]
    mapping.table.guards = [g for g in mapping.table.guards if g.cond is not sympy.true]
    mapping.table.require(sympy.Ge(expr, info.lo), f"range of {info.origin} ({reason})")
    if info.hi is not None:
        mapping.table.require(sympy.Le(expr, info.hi), f"range of {info.origin} ({reason})")
    from blade.shape_syntax import format_dim

    return f"{info.origin} is {format_dim(expr)} by {reason}: one symbol fewer"
