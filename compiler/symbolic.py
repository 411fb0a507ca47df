"""Symbolic shapes: the one service that owns every tensor dimension in Blade.

Every input dimension is an integer or an expression over named symbols (``s0``, ``s1``, ...);
every other dimension is an expression over those symbols. Expressions are sympy objects built
from integer, positive symbols with ``+``, ``*``, ``floor(a/b)`` (printed ``floordiv``),
``ceiling(a/b)`` (``ceildiv``), ``Mod`` (``mod``), ``Max`` and ``Min``. Sympy keeps them in a
canonical form, so two dims that are equal by construction compare equal structurally
(``(8*s1 - 1) floordiv 2 + 1`` and ``4*s1`` are the same object).

Two kinds of answers, kept apart on purpose
-------------------------------------------
*Statically known* answers (``known_equal``, ``known_divisible``, ``known_bounds``,
``known_ge``) are proved from the expressions and the symbol ranges alone. They never add a
runtime check; ``False`` means "not provable", not "false". Fusion legality, layout and memory
planning may only use these.

*Guarded* answers (``SymbolTable.require``) are assumptions the compiler makes about the input
sizes that it cannot prove (``s0 <= 63``, ``Eq(s2, s0)``). Each one becomes a ``Guard`` recorded
in the symbol table; the compiled module evaluates every guard from the input sizes before it
runs, and a call that breaks one is routed to another compiled variant (never silently run).
Guards coming from the frontend (torch.export's shape environment) are recorded the same way.

Runtime evaluation of an expression never touches sympy: ``compile_expr`` turns it into a tiny
Python function of the symbol values (and ``to_python_source`` gives the source, which is also
the form a C++ runtime can evaluate).
"""

from __future__ import annotations

import math
from contextvars import ContextVar
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Callable, Iterable, Mapping

import sympy

Expr = sympy.Expr
INF = math.inf


#: symbol ranges of the module being built, for the op verifiers (set by the importer)
ACTIVE_RANGES: ContextVar[dict | None] = ContextVar("blade_active_ranges", default=None)
#: while the importer builds a module: a function returning ``lhs - rhs`` of every ``Eq`` guard the
#: module assumes so far (two sizes torch.export checks equal at run time, such as a sequence
#: length that is a sum of two inputs' lengths on both sides of a broadcast)
ACTIVE_EQUALITIES: ContextVar[Callable[[], list] | None] = ContextVar("blade_active_equalities", default=None)


class ShapeError(ValueError):
    """A shape fact was violated or an expression cannot be handled."""


def make_symbol(name: str) -> sympy.Symbol:
    """The one way to create a dimension symbol: integer and positive (dims are >= 1)."""
    return sympy.Symbol(name, integer=True, positive=True)


def as_expr(value: int | Expr) -> Expr:
    if isinstance(value, bool):
        raise ShapeError(f"a dimension cannot be a bool: {value!r}")
    if isinstance(value, int):
        return sympy.Integer(value)
    if isinstance(value, sympy.Expr):
        return value
    raise ShapeError(f"not a dimension expression: {value!r} ({type(value).__name__})")


def floordiv(a: int | Expr, b: int | Expr) -> Expr:
    return canonical(sympy.floor(as_expr(a) / as_expr(b)))


def ceildiv(a: int | Expr, b: int | Expr) -> Expr:
    return canonical(sympy.ceiling(as_expr(a) / as_expr(b)))


def canonical(e: Expr) -> Expr:
    """Sympy's canonical form plus the integer-division identities it does not apply:
    ``(y floordiv a + c) floordiv b == (y + c*a) floordiv (a*b)`` for positive integers ``a, b``
    and an integer ``c`` (the same for ``ceildiv``). Downsampling twice by 2 and once by 4 then
    give the same expression."""
    if not isinstance(e, sympy.Basic) or not e.has(sympy.floor, sympy.ceiling):
        return e
    return e.replace(lambda x: isinstance(x, (sympy.floor, sympy.ceiling)), _merge_nested_division)


def _merge_nested_division(f: Expr) -> Expr:
    kind = type(f)
    num, den = sympy.fraction(sympy.together(f.args[0]))
    if not (den.is_Integer and int(den) > 0):
        return f
    num = sympy.expand(num)
    inner = [t for t in sympy.Add.make_args(num) if isinstance(t, kind)]
    rest = sympy.expand(num - sum(inner, sympy.Integer(0)))
    if len(inner) != 1 or not rest.is_Integer:
        return f
    inum, iden = sympy.fraction(sympy.together(inner[0].args[0]))
    if not (iden.is_Integer and int(iden) > 0):
        return f
    return kind((sympy.expand(inum) + rest * iden) / (iden * den))


def is_static(dim: int | Expr) -> bool:
    return isinstance(dim, int) or (isinstance(dim, sympy.Expr) and dim.is_Integer)


def static_value(dim: int | Expr) -> int | None:
    if isinstance(dim, int):
        return dim
    if isinstance(dim, sympy.Expr) and dim.is_Integer:
        return int(dim)
    return None


def product(dims: Iterable[int | Expr]) -> Expr:
    out: Expr = sympy.Integer(1)
    for d in dims:
        out = out * as_expr(d)
    return out


# --------------------------------------------------------------------------------------------
# Statically known facts (never add a runtime check)
# --------------------------------------------------------------------------------------------


def known_equal(a: int | Expr, b: int | Expr) -> bool:
    """True when ``a == b`` for every value of the symbols (structural, after canonicalisation)."""
    diff = sympy.expand(as_expr(a) - as_expr(b))
    return diff == 0


def known_divisible(a: int | Expr, k: int | Expr) -> bool:
    """True when ``a`` is a multiple of ``k`` for every value of the symbols."""
    q = as_expr(a) / as_expr(k)
    return bool(q.is_integer)


Bounds = tuple[float, float]


def known_bounds(expr: int | Expr, ranges: Mapping[sympy.Symbol, Bounds] | None = None) -> Bounds:
    """Interval bounds of ``expr`` given symbol ranges (default ``[1, inf)``); may be loose."""
    return _bounds(as_expr(expr), ranges or {})


def known_ge(a: int | Expr, b: int | Expr, ranges: Mapping[sympy.Symbol, Bounds] | None = None) -> bool:
    lo, _ = known_bounds(sympy.expand(as_expr(a) - as_expr(b)), ranges)
    return lo >= 0


def _mul_bounds(x: Bounds, y: Bounds) -> Bounds:
    prods = []
    for p in x:
        for q in y:
            if (p == 0 and abs(q) == INF) or (q == 0 and abs(p) == INF):
                prods.append(0.0)
            else:
                prods.append(p * q)
    return min(prods), max(prods)


def _bounds(e: Expr, ranges: Mapping[sympy.Symbol, Bounds]) -> Bounds:
    if e.is_Integer or e.is_Rational:
        v = float(e)
        return v, v
    if e.is_Symbol:
        return ranges.get(e, (1.0, INF))
    if e.is_Add:
        lo, hi = 0.0, 0.0
        for t in e.args:
            a, b = _bounds(t, ranges)
            lo, hi = lo + a, hi + b
        return lo, hi
    if e.is_Mul:
        acc: Bounds = (1.0, 1.0)
        for t in e.args:
            acc = _mul_bounds(acc, _bounds(t, ranges))
        return acc
    if e.is_Pow and e.exp.is_Integer and int(e.exp) > 0:
        acc = (1.0, 1.0)
        base = _bounds(e.base, ranges)
        for _ in range(int(e.exp)):
            acc = _mul_bounds(acc, base)
        return acc
    if isinstance(e, sympy.floor):
        lo, hi = _bounds(e.args[0], ranges)
        return (math.floor(lo) if lo != -INF else -INF), (math.floor(hi) if hi != INF else INF)
    if isinstance(e, sympy.ceiling):
        lo, hi = _bounds(e.args[0], ranges)
        return (math.ceil(lo) if lo != -INF else -INF), (math.ceil(hi) if hi != INF else INF)
    if isinstance(e, sympy.Mod):
        _, bhi = _bounds(e.args[1], ranges)
        return 0.0, max(bhi - 1, 0.0)
    if isinstance(e, (sympy.Max, sympy.Min)):
        bs = [_bounds(a, ranges) for a in e.args]
        f = max if isinstance(e, sympy.Max) else min
        return f(b[0] for b in bs), f(b[1] for b in bs)
    return -INF, INF


def exact_number(f: sympy.Float) -> sympy.Rational:
    """The exact value of a float constant (a double): ``0.5`` is ``1/2``. torch computes float
    size arithmetic in doubles; with the double's exact value, integer-only evaluation agrees with
    torch wherever the double arithmetic is exact (every dyadic constant such as ``2.0`` or ``0.5``
    times sizes below 2**40), and elsewhere differs only where torch's result is a rounding
    artefact."""
    return sympy.Rational(float(f))


def is_integer_valued(e: sympy.Basic) -> bool:
    """True when ``e`` is built only from integers, symbols, ``+``, ``*``, positive integer powers,
    ``floor``/``ceiling`` (of anything) and ``Mod``/``Max``/``Min`` of integer-valued arguments:
    the expressions that integer-only evaluation (``//``, ``%``) computes exactly."""
    if e.is_Integer or e.is_Symbol:
        return True
    if isinstance(e, (sympy.floor, sympy.ceiling)):
        return True
    if e.is_Add or e.is_Mul or isinstance(e, (sympy.Mod, sympy.Max, sympy.Min)):
        return all(is_integer_valued(a) for a in e.args)
    if e.is_Pow:
        return e.exp.is_Integer and int(e.exp) > 0 and is_integer_valued(e.base)
    return False


def _integer_parts(e: Expr) -> Expr:
    """``e`` with every ``floor``/``ceiling``/``Mod``/``Max``/``Min`` made integer-only inside:
    ``floor(p/q)`` keeps the quotient of two integer expressions (evaluated as ``p // q``, exact for
    either sign of ``q``), and ``Max(a/2, b)`` becomes ``Max(a, 2*b)/2`` (a common positive constant
    denominator moves out). A symbolic denominator inside ``Max``/``Min``/``Mod`` cannot move out
    exactly and raises."""
    if not isinstance(e, sympy.Basic) or e.is_Atom:
        return e
    args = [_integer_parts(a) for a in e.args]
    if isinstance(e, (sympy.floor, sympy.ceiling)):
        num, den = sympy.fraction(sympy.together(args[0]))
        num, den = _integer_parts(sympy.expand(num)), sympy.expand(den)
        for _ in range(2):  # together() may hand back s/2 - 1 whole: clear rational coefficients
            content, num = num.as_content_primitive() if num.is_Add else (sympy.Integer(1), num)
            num, den = num * content.p, den * content.q
            content, den = den.as_content_primitive() if den.is_Add else (sympy.Integer(1), den)
            num, den = sympy.expand(num * content.q), den * content.p
        if not (is_integer_valued(num) and is_integer_valued(den)):
            raise ShapeError(f"cannot evaluate {e} with integers: {num} / {den}")
        return e.func(num / den)
    if isinstance(e, (sympy.Mod, sympy.Max, sympy.Min)):
        if all(is_integer_valued(a) for a in args):
            return e.func(*args)
        numbers, symbolic = [], []
        for a in args:
            _, den = sympy.fraction(sympy.together(a))
            if not den.is_positive:  # a size expression such as floor((s - 1)/2) + 1 is provably positive
                raise ShapeError(f"cannot evaluate {e} with integers (the denominator {den} of {a} may "
                                 "have either sign)")
            if den.is_Integer:
                numbers.append(int(den))
            elif den not in symbolic:
                symbolic.append(den)
        # Max(a/q, b/r) = Max(a*r, b*q) / (q*r) and Mod(a/q, b/q) = Mod(a, b) / q for positive q, r
        k = sympy.Integer(math.lcm(*numbers)) * sympy.Mul(*symbolic)
        scaled = [_integer_parts(sympy.expand(sympy.cancel(a * k))) for a in args]
        if not all(is_integer_valued(a) for a in scaled):
            raise ShapeError(f"cannot evaluate {e} with integers ({scaled})")
        return e.func(*scaled) / k
    return e.func(*args)


def is_condition(e: sympy.Basic) -> bool:
    """A boolean (relation, connective, true/false); a ``Symbol`` is never one, though sympy
    also lets symbols stand for booleans."""
    return isinstance(e, (sympy.Rel, sympy.And, sympy.Or, sympy.Not, sympy.logic.boolalg.BooleanAtom))


def normalize_condition(cond: sympy.Basic) -> sympy.Basic:
    """A guard condition in integer-only form, with its exact meaning kept.

    Float constants become their exact rational values (``exact_number``). A relation whose sides
    are not integer-valued (true division ``a/b``, rational coefficients, ``Max`` of quotients) is
    rewritten over one common denominator: ``p/q REL 0`` becomes ``p REL 0`` when ``q`` is known
    positive, the flipped relation when it is known negative, and ``p*q REL 0`` otherwise (the same
    truth value for every nonzero ``q``; ``q = 0`` is a division by zero in torch too). So
    ``IntTrueDiv(a, b) > IntTrueDiv(c, d)`` is ``a*d > c*b`` for positive ``b``, ``d``, never
    floor division. ``And``/``Or``/``Not`` are normalized argument by argument. The result prints
    in dim syntax and evaluates with integer arithmetic only."""
    floats = {f: exact_number(f) for f in cond.atoms(sympy.Float)}
    if floats:
        cond = cond.xreplace(floats)
    return _normalize(cond)


def _split_min_max(cond: sympy.Rel) -> sympy.Basic | None:
    """``cond`` with one ``Max``/``Min`` of non-integer arguments replaced by a case split:
    ``R(Max(x, y))`` is ``(x >= y and R(x)) or (x < y and R(y))``. Each case compares fractions,
    which ``_normalize`` writes with integers whatever the denominators' signs; a Max whose
    denominators are provably positive never gets here (``_integer_parts`` scales it)."""
    for m in sorted(cond.atoms(sympy.Max, sympy.Min), key=sympy.count_ops):
        if all(is_integer_valued(a) for a in m.args):
            continue
        x, rest = m.args[0], m.args[1:]
        y = rest[0] if len(rest) == 1 else m.func(*rest)
        pick_x = sympy.Ge(x, y) if isinstance(m, sympy.Max) else sympy.Le(x, y)
        return sympy.Or(sympy.And(pick_x, cond.xreplace({m: x})), sympy.And(sympy.Not(pick_x), cond.xreplace({m: y})))
    return None


_FLIPPED = {sympy.Eq: sympy.Eq, sympy.Ne: sympy.Ne, sympy.Lt: sympy.Gt, sympy.Le: sympy.Ge,
            sympy.Gt: sympy.Lt, sympy.Ge: sympy.Le}


def _normalize(cond: sympy.Basic) -> sympy.Basic:
    if cond is sympy.true or cond is sympy.false:
        return cond
    if isinstance(cond, (sympy.And, sympy.Or)):
        return cond.func(*[_normalize(a) for a in cond.args])
    if isinstance(cond, sympy.Not):
        return sympy.Not(_normalize(cond.args[0]))
    if not isinstance(cond, sympy.Rel):
        raise ShapeError(f"not a condition: {cond} ({type(cond).__name__})")
    try:
        lhs, rhs = _integer_parts(cond.lhs), _integer_parts(cond.rhs)
    except ShapeError:
        split = _split_min_max(cond)
        if split is None:
            raise
        return _normalize(split)
    if is_integer_valued(lhs) and is_integer_valued(rhs):
        return cond.func(lhs, rhs)
    num, den = sympy.fraction(sympy.together(sympy.expand(lhs - rhs)))
    num, den = _integer_parts(sympy.expand(num)), _integer_parts(sympy.expand(den))
    if not (is_integer_valued(num) and is_integer_valued(den)):
        raise ShapeError(f"cannot write the condition {cond} with integers ({num} / {den})")
    content, num = num.as_content_primitive() if num.is_Add else (sympy.Integer(1), num)
    rel = type(cond)
    if (den * content).is_negative:
        rel = _FLIPPED[rel]
    elif not (den * content).is_positive:
        num = sympy.expand(num * den) if rel not in (sympy.Eq, sympy.Ne) else num
    return rel(num, 0)


# --------------------------------------------------------------------------------------------
# Runtime evaluation (no sympy on the hot path)
# --------------------------------------------------------------------------------------------


def to_python_source(e: Expr) -> str:
    """Integer-exact Python source of ``e`` (symbols appear by name)."""
    if e.is_Integer:
        return str(int(e))
    if e.is_Symbol:
        return e.name
    if e.is_Add:
        return "(" + " + ".join(to_python_source(a) for a in e.args) + ")"
    if e.is_Mul:
        num, den = sympy.fraction(e)
        if den != 1:
            return f"({to_python_source(num)} // {to_python_source(den)})"
        return "(" + " * ".join(to_python_source(a) for a in e.args) + ")"
    if e.is_Pow and e.exp.is_Integer and int(e.exp) > 0:
        return "(" + " * ".join([to_python_source(e.base)] * int(e.exp)) + ")"
    if isinstance(e, (sympy.floor, sympy.ceiling)):
        num, den = sympy.fraction(sympy.together(e.args[0]))
        n, d = to_python_source(sympy.expand(num)), to_python_source(den)
        return f"({n} // {d})" if isinstance(e, sympy.floor) else f"(-((-{n}) // {d}))"
    if isinstance(e, sympy.Mod):
        return f"({to_python_source(e.args[0])} % {to_python_source(e.args[1])})"
    if isinstance(e, (sympy.Max, sympy.Min)):
        fn = "max" if isinstance(e, sympy.Max) else "min"
        return f"{fn}(" + ", ".join(to_python_source(a) for a in e.args) + ")"
    if isinstance(e, sympy.Rel):
        if not (is_integer_valued(e.lhs) and is_integer_valued(e.rhs)):
            normal = normalize_condition(e)
            if normal == e:
                raise ShapeError(f"cannot evaluate the condition {e} with integers")
            return to_python_source(normal)
        ops = {sympy.Eq: "==", sympy.Ne: "!=", sympy.Lt: "<", sympy.Le: "<=", sympy.Gt: ">", sympy.Ge: ">="}
        return f"({to_python_source(e.lhs)} {ops[type(e)]} {to_python_source(e.rhs)})"
    if isinstance(e, (sympy.And, sympy.Or)):
        j = " and " if isinstance(e, sympy.And) else " or "
        return "(" + j.join(to_python_source(a) for a in e.args) + ")"
    if isinstance(e, sympy.Not):
        return f"(not {to_python_source(e.args[0])})"
    if e is sympy.true or e is sympy.false:
        return str(bool(e))
    raise ShapeError(f"cannot evaluate dimension expression {e} (unsupported {type(e).__name__})")


def _integer_dim(e: Expr) -> Expr:
    """A dim in a form that integer evaluation computes exactly: an exact quotient such as
    ``s0/2 + s1/2`` (torch's ``CleanDiv``) is evaluated as one floor division of its numerator."""
    e = _integer_parts(e)
    if is_integer_valued(e):
        return e
    num, den = sympy.fraction(sympy.together(e))
    num, den = _integer_parts(sympy.expand(num)), sympy.expand(den)
    if not (is_integer_valued(num) and is_integer_valued(den)):
        raise ShapeError(f"dimension {e} is not integer-valued")
    return sympy.floor(num / den, evaluate=False)


def integer_form(e: sympy.Basic) -> sympy.Basic:
    """``e`` (a dim or a condition) in the form integer-only evaluators compute exactly: every
    evaluator (``compile_expr``, shape programs) goes through this."""
    return normalize_condition(e) if is_condition(e) else _integer_dim(e)


@lru_cache(maxsize=None)
def compile_expr(e: Expr) -> Callable[[Mapping[str, int]], int]:
    """A fast evaluator ``f(values_by_symbol_name) -> int`` for ``e`` (a dim or a condition;
    conditions are first put in integer-only form, so true division compares exactly)."""
    names = sorted(s.name for s in e.free_symbols)
    src = to_python_source(integer_form(e))
    args = ", ".join(names)
    code = f"lambda {args}: {src}" if names else f"lambda: {src}"
    fn = eval(code, {"max": max, "min": min})  # noqa: S307 - source generated above, integers only
    if not names:
        value = fn()
        return lambda values: value
    return lambda values: fn(*[values[n] for n in names])


def evaluate(e: int | Expr, values: Mapping[str, int]) -> int:
    if isinstance(e, int):
        return e
    return int(compile_expr(e)(values))


_SEARCH_LIMIT = 2 ** 40


def _first_at_least(at: Callable[[int], int], t: int, lo: int, hi: int | None) -> int | None:
    """The smallest ``v`` in ``[lo, hi]`` with ``at(v) >= t`` for a nondecreasing ``at``; None when
    there is none (up to ``2**40`` when ``hi`` is None)."""
    top = _SEARCH_LIMIT if hi is None else hi
    if at(lo) >= t:
        return lo
    if at(top) < t:
        return None
    a, b = lo, top  # at(a) < t <= at(b)
    while b - a > 1:
        m = (a + b) // 2
        a, b = (a, m) if at(m) >= t else (m, b)
    return b


def monotonicity(e: Expr, s: sympy.Symbol, ranges: Mapping[sympy.Symbol, Bounds]) -> int | None:
    """1 when ``e`` is nondecreasing in ``s`` (over the ranges), -1 when nonincreasing, 0 when it
    does not depend on ``s``, None when neither is evident from its structure: sums of terms of
    one direction, products of nonnegative nondecreasing factors times a constant, positive integer
    powers of nonnegative ones, ``floor``/``ceiling``, ``Min``/``Max`` of one direction."""
    if s not in e.free_symbols:
        return 0
    if e == s:
        return 1
    if e.is_Add or isinstance(e, (sympy.Min, sympy.Max)):
        signs = {monotonicity(a, s, ranges) for a in e.args} - {0}
        return signs.pop() if len(signs) == 1 and None not in signs else None
    if e.is_Mul:
        coeff, rest = e.as_coeff_Mul()
        factors = sympy.Mul.make_args(rest)
        if any(monotonicity(f, s, ranges) not in (0, 1) or known_bounds(f, ranges)[0] < 0 for f in factors):
            return None
        return 1 if coeff > 0 else -1
    if e.is_Pow:
        if e.exp.is_Integer and int(e.exp) > 0 and known_bounds(e.base, ranges)[0] >= 0:
            return monotonicity(e.base, s, ranges)
        return None
    if isinstance(e, (sympy.floor, sympy.ceiling)):
        return monotonicity(e.args[0], s, ranges)
    return None


# --------------------------------------------------------------------------------------------
# The symbol table of one module
# --------------------------------------------------------------------------------------------


@dataclass
class SymbolInfo:
    """One symbol: its range (``hi=None`` is unbounded) and where its value comes from."""

    name: str
    lo: int = 1
    hi: int | None = None
    origin: str = ""

    @property
    def symbol(self) -> sympy.Symbol:
        return make_symbol(self.name)


@dataclass
class Guard:
    """An assumption on input sizes checked at call time. ``cond`` is a sympy boolean."""

    cond: sympy.Basic
    reason: str = ""

    def holds(self, values: Mapping[str, int]) -> bool:
        return bool(compile_expr(self.cond)(values))


@dataclass
class SymbolTable:
    """Symbols of a module with their ranges, plus the guards the compiled code relies on."""

    symbols: dict[str, SymbolInfo] = field(default_factory=dict)
    guards: list[Guard] = field(default_factory=list)

    def add(self, info: SymbolInfo) -> sympy.Symbol:
        if info.name in self.symbols:
            raise ShapeError(f"symbol {info.name} defined twice")
        self.symbols[info.name] = info
        return info.symbol

    def fresh(self, origin: str = "", lo: int = 1, hi: int | None = None) -> sympy.Symbol:
        i = len(self.symbols)
        while f"s{i}" in self.symbols:
            i += 1
        return self.add(SymbolInfo(f"s{i}", lo, hi, origin))

    def ranges(self) -> dict[sympy.Symbol, Bounds]:
        return {
            info.symbol: (float(info.lo), INF if info.hi is None else float(info.hi))
            for info in self.symbols.values()
        }

    # statically known, using this table's ranges -------------------------------------------
    def bounds(self, e: int | Expr) -> Bounds:
        return known_bounds(e, self.ranges())

    def known_ge(self, a: int | Expr, b: int | Expr) -> bool:
        return known_ge(a, b, self.ranges())

    def known_true(self, cond: sympy.Basic) -> bool | None:
        """True/False when ``cond`` is decided by structure and ranges, else None."""
        if cond is sympy.true or cond is sympy.false:
            return bool(cond)
        if isinstance(cond, sympy.Rel):
            diff = sympy.expand(cond.lhs - cond.rhs)
            lo, hi = self.bounds(diff)
            if isinstance(cond, sympy.Eq):
                if diff == 0:
                    return True
                return False if (lo > 0 or hi < 0) else None
            if isinstance(cond, sympy.Ne):
                if diff == 0:
                    return False
                return True if (lo > 0 or hi < 0) else None
            if isinstance(cond, (sympy.Ge, sympy.Gt)):
                strict = isinstance(cond, sympy.Gt)
                if lo > 0 or (lo >= 0 and not strict):
                    return True
                if hi < 0 or (hi <= 0 and strict):
                    return False
                return None
            if isinstance(cond, (sympy.Le, sympy.Lt)):
                strict = isinstance(cond, sympy.Lt)
                if hi < 0 or (hi <= 0 and not strict):
                    return True
                if lo > 0 or (lo >= 0 and strict):
                    return False
                return None
        if isinstance(cond, (sympy.And, sympy.Or)):
            parts = [self.known_true(a) for a in cond.args]
            decisive = isinstance(cond, sympy.Or)  # the value one argument decides alone
            if any(p is decisive for p in parts):
                return decisive
            return (not decisive) if all(p is (not decisive) for p in parts) else None
        if isinstance(cond, sympy.Not):
            inner = self.known_true(cond.args[0])
            return None if inner is None else not inner
        return None

    def simplify(self, e: int | Expr) -> int | Expr:
        """``e`` with every ``Min``/``Max`` whose order the ranges decide replaced by the winning
        argument: with ``s1`` in ``[1, 79]``, ``min(80, s1)`` is ``s1`` (BERT-like models slice a
        position table of 80 rows by the sequence length). Statically known, adds no guard."""
        if not isinstance(e, sympy.Basic) or not e.free_symbols or not e.has(sympy.Min, sympy.Max):
            return e
        ranges = self.ranges()

        def decide(f):
            args = list(f.args)
            # an argument loses when another is known to be on its winning side (and differs)
            loses = (lambda a, b: known_ge(b, a, ranges)) if isinstance(f, sympy.Max) else \
                (lambda a, b: known_ge(a, b, ranges))
            keep = [a for a in args if not any(b is not a and not known_equal(a, b) and loses(a, b) for b in args)]
            # of arguments known equal to each other only the first is kept
            out = []
            for a in keep:
                if not any(known_equal(a, b) for b in out):
                    out.append(a)
            return f.func(*out) if len(out) > 1 else out[0]

        return e.replace(lambda x: isinstance(x, (sympy.Min, sympy.Max)), decide)

    def narrow(self, cond: sympy.Basic) -> bool:
        """Record a condition on one symbol whose truth set is an interval in that symbol's range
        instead of as a guard; True when it did. Such are relations ``f(s) REL 0`` (``<``, ``<=``,
        ``>``, ``>=``, ``==``) with ``f`` monotone in ``s`` (``monotonicity``): ``s1 < 80``
        (BERT-like position tables), ``(s1 floordiv 8)**2 == 16`` (CLIP/DeiT at the native
        resolution: ``s1`` in ``[32, 39]``). The range is checked at call time exactly like the
        guard would be, and every static question then sees it. The interval is found by integer search over exact
        evaluation; a bound beyond ``2**40`` is left to the guard."""
        if not isinstance(cond, (sympy.Lt, sympy.Le, sympy.Gt, sympy.Ge, sympy.Eq)) or len(cond.free_symbols) != 1:
            return False
        (sym,) = cond.free_symbols
        info = self.symbols.get(sym.name)
        if info is None or info.symbol != sym:
            return False
        f = cond.lhs - cond.rhs
        if not is_integer_valued(f):
            f = sympy.expand(f)
            if not is_integer_valued(f):
                return False
        mono = monotonicity(f, sym, self.ranges())
        if not mono:
            return False
        g = f if mono > 0 else -f  # nondecreasing from here on
        rel = type(cond) if mono > 0 else {sympy.Lt: sympy.Gt, sympy.Le: sympy.Ge, sympy.Gt: sympy.Lt,
                                            sympy.Ge: sympy.Le, sympy.Eq: sympy.Eq}[type(cond)]
        at = lambda v: evaluate(g, {sym.name: v})  # noqa: E731
        lo, hi = info.lo, info.hi
        if rel in (sympy.Ge, sympy.Gt, sympy.Eq):  # the set starts at the first g(s) >= t
            first = _first_at_least(at, 1 if rel is sympy.Gt else 0, lo, hi)
            if first is None:
                return False  # empty (or beyond 2**40): the guard says so
            lo = first
        if rel in (sympy.Le, sympy.Lt, sympy.Eq):  # and ends at the last g(s) <= t
            t = -1 if rel is sympy.Lt else 0
            if at(lo) > t:
                return False
            after = _first_at_least(at, t + 1, lo, hi)
            if after is None and hi is None:
                return False  # unbounded as far as 2**40: leave it to the guard
            hi = hi if after is None else after - 1
        if hi is not None and hi < lo:
            return False
        info.lo, info.hi = lo, hi
        return True

    # guarded ----------------------------------------------------------------------------
    def require(self, cond: sympy.Basic, reason: str) -> None:
        """Assume ``cond`` holds for every call; record a runtime guard unless it is provable.

        Raises ``ShapeError`` when ``cond`` is provably false.
        """
        cond = normalize_condition(cond)
        known = self.known_true(cond)
        if known is True:
            return
        if known is False:
            raise ShapeError(f"shape condition {cond} is false for every input ({reason})")
        if not any(g.cond == cond for g in self.guards):
            self.guards.append(Guard(cond, reason))

    def guard_failures(self, values: Mapping[str, int]) -> list[str]:
        """Why ``values`` are outside this table's guard class (empty when every guard holds)."""
        from blade.shape_syntax import format_condition

        out = []
        for name, info in self.symbols.items():
            v = values.get(name)
            if v is not None and (v < info.lo or (info.hi is not None and v > info.hi)):
                hi = "inf" if info.hi is None else info.hi
                out.append(f"{name} = {v} is outside [{info.lo}, {hi}] ({info.origin})")
        for g in self.guards:
            if not g.holds(values):
                out.append(f"{format_condition(g.cond)} is false" + (f" ({g.reason})" if g.reason else ""))
        return out


def bind_symbols(
    dims_per_input: list[tuple[str, tuple[Expr, ...]]], sizes_per_input: list[tuple[int, ...]]
) -> dict[str, int]:
    """Solve symbol values from concrete input sizes.

    Each input dim is an integer, a symbol or ``k*symbol + c``; anything else is checked after the
    simple dims are bound. Raises ``ShapeError`` naming the input and the dim on a mismatch.
    """
    values: dict[str, int] = {}
    deferred: list[tuple[str, int, Expr, int]] = []
    for (name, dims), sizes in zip(dims_per_input, sizes_per_input):
        if len(dims) != len(sizes):
            raise ShapeError(f"input '{name}' has rank {len(sizes)}, compiled for rank {len(dims)}"
                             f" with dims {list(dims)}")
        for i, (d, n) in enumerate(zip(dims, sizes)):
            if d.is_Integer:
                if int(d) != n:
                    raise ShapeError(f"input '{name}' dim {i} is {n}; this program was compiled "
                                     f"for exactly {int(d)} (mark the dim dynamic to vary it)")
                continue
            offset, term = d.as_coeff_Add()
            coeff, rest = term.as_coeff_Mul()
            if rest.is_Symbol and coeff.is_Integer and int(coeff) > 0 and offset.is_Integer:
                k, c = int(coeff), int(offset)
                if (n - c) % k:
                    what = f"a multiple of {k}" if c == 0 else f"{c % k} modulo {k}"
                    raise ShapeError(f"input '{name}' dim {i} is {n}; it must be {what} "
                                     f"(compiled as {d})")
                v = (n - c) // k
                old = values.setdefault(rest.name, v)
                if old != v:
                    raise ShapeError(f"input '{name}' dim {i} is {n}, but {rest.name} = {old} from an "
                                     f"earlier input requires {k * old + c}")
            else:
                deferred.append((name, i, d, n))
    for name, i, d, n in deferred:
        missing = {s.name for s in d.free_symbols} - values.keys()
        if missing:
            raise ShapeError(f"input '{name}' dim {i} ({d}) uses symbols {sorted(missing)} that no "
                             "simple input dim determines")
        if evaluate(d, values) != n:
            raise ShapeError(f"input '{name}' dim {i} is {n}; expected {d} = {evaluate(d, values)}")
    return values
