"""The symbolic-shape service: canonical forms, known facts, guards, binding, evaluation."""

import pytest
import sympy

from blade.symbolic import (
    ShapeError,
    SymbolInfo,
    SymbolTable,
    bind_symbols,
    canonical,
    ceildiv,
    evaluate,
    floordiv,
    known_bounds,
    known_divisible,
    known_equal,
    make_symbol,
    normalize_condition,
    to_python_source,
)

s0, s1, s2 = (make_symbol(n) for n in ("s0", "s1", "s2"))


def test_downsampling_a_multiple_of_8_is_structural():
    h = 8 * s1
    once = floordiv(h + 2 - 3, 2) + 1          # conv k3 s2 p1
    twice = floordiv(once + 2 - 3, 2) + 1
    assert once == 4 * s1
    assert twice == 2 * s1
    assert known_equal(floordiv(floordiv(8 * s1 - 1, 8) + 1, 1), s1)


def test_nested_floordiv_merges_to_one_canonical_form():
    a = floordiv(floordiv(s2 - 1, 2), 2) + 1
    b = floordiv(s2 - 1, 4) + 1
    assert a == b
    assert ceildiv(ceildiv(s2, 2), 3) == ceildiv(s2, 6)
    # not merged when the inner term has a coefficient (not an identity)
    assert canonical(sympy.floor(3 * sympy.floor(s2 / 2) / 4)) != sympy.floor(3 * s2 / 8)


@pytest.mark.parametrize("expr", [floordiv(s1 - 1, 2) + 1, ceildiv(s1, 3) * s0, sympy.Mod(s1 + 3, 4),
                                  sympy.Max(s1, s2 + 1), 8 * s1 * s2 + 3])
def test_evaluation_matches_integer_arithmetic(expr):
    for v0, v1, v2 in [(1, 1, 1), (3, 17, 5), (2, 64, 63), (7, 1023, 2)]:
        values = {"s0": v0, "s1": v1, "s2": v2}
        exact = expr.subs({s0: v0, s1: v1, s2: v2})
        assert evaluate(expr, values) == int(exact)


def test_python_source_is_integer_exact():
    src = to_python_source(floordiv(s1 - 1, 2) + 1)
    assert "//" in src and "/" not in src.replace("//", "")


def test_known_divisible_and_bounds():
    assert known_divisible(8 * s1, 4)
    assert not known_divisible(8 * s1 + 2, 4)
    assert known_bounds(floordiv(s1 - 1, 2) + 1) == (1, float("inf"))
    assert known_bounds(s0 * 2 + 1, {s0: (1, 3)}) == (3, 7)


def test_statically_known_answers_never_add_guards():
    t = SymbolTable()
    t.add(SymbolInfo("s0", 1, 63))
    assert t.known_true(sympy.Le(s0, 63)) is True
    assert t.known_true(sympy.Le(s0, 10)) is None      # not provable: needs a guard
    assert t.known_true(sympy.Gt(s0, 100)) is False
    assert t.guards == []


def test_require_adds_a_guard_only_when_not_provable():
    t = SymbolTable()
    t.add(SymbolInfo("s0", 1, 63))
    t.require(sympy.Le(s0, 63), "provable")
    assert t.guards == []
    t.require(sympy.Le(s0, 10), "needs a runtime check")
    assert len(t.guards) == 1
    assert t.guard_failures({"s0": 5}) == []
    assert "s0 <= 10" in t.guard_failures({"s0": 11})[0]
    assert "outside [1, 63]" in t.guard_failures({"s0": 64})[0]
    with pytest.raises(ShapeError):
        t.require(sympy.Gt(s0, 100), "impossible")


def test_bind_symbols_solves_multiples_and_checks_consistency():
    dims = [("x", (s0, sympy.Integer(4), 8 * s1)), ("ctx", (s0, s2))]
    assert bind_symbols(dims, [(2, 4, 64), (2, 77)]) == {"s0": 2, "s1": 8, "s2": 77}
    with pytest.raises(ShapeError, match="multiple of 8"):
        bind_symbols(dims, [(2, 4, 63), (2, 77)])
    with pytest.raises(ShapeError, match="compiled for exactly 4"):
        bind_symbols(dims, [(2, 3, 64), (2, 77)])
    with pytest.raises(ShapeError, match="s0 = 2"):
        bind_symbols(dims, [(2, 4, 64), (3, 77)])


def test_normalize_condition_removes_floats_and_fractions():
    cond = normalize_condition(sympy.Le(2560.0 * s0 * s1, 2147483648.0))
    assert not cond.atoms(sympy.Float)
    cond = normalize_condition(sympy.Le(sympy.Rational(5, 2) * s0, s1))
    assert cond == sympy.Le(5 * s0 - 2 * s1, 0)


@pytest.mark.parametrize("cond,lo,hi", [
    (sympy.Lt(s1, 80), 1, 79), (sympy.Le(s1, 80), 1, 80), (sympy.Gt(s1, 1), 2, None),
    (sympy.Ge(s1, 3), 3, None), (sympy.Lt(3 * s1 - 2, 10), 1, 3), (sympy.Gt(20 - 2 * s1, 0), 1, 9),
    (sympy.Ge(2 * s1, 7), 4, None), (sympy.Lt(s1 * s1, 10), 1, 3),
    # CLIP/DeiT at their native resolution: 32 // 8 patches a side, a 16-position table
    (sympy.Eq(sympy.floor(s1 / 8) ** 2, 16), 32, 39), (sympy.Eq(sympy.floor(s1 / 8) ** 2 + 1, 17), 32, 39),
    (sympy.Le(sympy.Min(sympy.floor((s1 + 1) / 2), 7), 4), 1, 8), (sympy.Gt(sympy.ceiling(-s1 / 4) + 9, 0), 1, 35),
])
def test_one_symbol_bounds_narrow_the_range(cond, lo, hi):
    """A guard bounding one symbol becomes its range (checked at call time like the guard), so
    later static questions see it."""
    t = SymbolTable()
    t.add(SymbolInfo("s1"))
    assert t.narrow(cond)
    assert (t.symbols["s1"].lo, t.symbols["s1"].hi) == (lo, hi)
    for v in range(1, 30):  # the range holds exactly where the condition does
        in_range = v >= lo and (hi is None or v <= hi)
        assert in_range == bool(cond.subs(s1, v)), v


def test_narrow_leaves_other_conditions_to_guards():
    t = SymbolTable()
    t.add(SymbolInfo("s0"))
    t.add(SymbolInfo("s1"))
    assert not t.narrow(sympy.Ne(s1, 1))
    assert not t.narrow(sympy.Lt(s0, s1))
    assert not t.narrow(sympy.Eq(sympy.Mod(s1, 8), 0))  # not an interval
    assert not t.narrow(sympy.Eq(sympy.floor(s1 / 8) ** 2, 15))  # no size: left to the guard
    assert not t.narrow(sympy.Lt(s1, 2 ** 45))  # no bound below 2**40: left to the guard
    t.symbols["s1"].lo = 5
    assert not t.narrow(sympy.Lt(s1, 3))  # no size is left: the guard says so
    with pytest.raises(ShapeError):
        t.require(sympy.Lt(s1, 3), "test")


def test_simplify_decides_min_max_from_ranges():
    """BERT-like models slice an 80-row position table to the sequence length: with s1 <= 79,
    min(80, s1) is s1, and an add of the slice to the tokens verifies structurally."""
    t = SymbolTable()
    t.add(SymbolInfo("s0"))
    t.add(SymbolInfo("s1", 2, 79))
    assert t.simplify(sympy.Min(80, s1)) == s1
    assert t.simplify(sympy.Max(80, s1) + s0) == 80 + s0
    assert t.simplify(sympy.Min(1, s1)) == 1
    assert t.simplify(sympy.Min(s0, s1)) == sympy.Min(s0, s1)  # undecided: kept
    assert t.simplify(sympy.Min(40, s1)) == sympy.Min(40, s1)
