"""Printing and parsing of symbolic dims (the text inside ``!blade.tensor<...>``)."""

import pytest
import sympy

from blade.shape_syntax import format_condition, format_dim, parse_condition_text, parse_dim_text
from blade.symbolic import ShapeError, ceildiv, floordiv, make_symbol

s0, s1, s2 = (make_symbol(n) for n in ("s0", "s1", "s2"))


@pytest.mark.parametrize("expr,text", [
    (8 * s1, "8*s1"),
    (floordiv(s1 - 1, 2) + 1, "(s1 - 1) floordiv 2 + 1"),
    (ceildiv(s1, 3), "s1 ceildiv 3"),
    (sympy.Mod(s1 + 3, 4), "(s1 + 3) mod 4"),
    (s0 * s1 - 2, "s0*s1 - 2"),
    (sympy.Max(s1, 2), "max(2, s1)"),
    ((floordiv(s1 - 1, 2) + 1) * (floordiv(s2 - 1, 2) + 1), "((s1 - 1) floordiv 2 + 1)*((s2 - 1) floordiv 2 + 1)"),
])
def test_print_then_parse_round_trips(expr, text):
    assert format_dim(expr) == text
    assert parse_dim_text(text) == expr


def test_unknown_dim():
    assert parse_dim_text("?") is None
    assert format_dim(None) == "?"


def test_parse_errors_name_the_position():
    with pytest.raises(ShapeError, match="column"):
        parse_dim_text("s1 + ")
    with pytest.raises(ShapeError):
        parse_dim_text("s1 floordiv floordiv")


def test_conditions_round_trip():
    cond = sympy.And(sympy.Le(s0, 63), sympy.Ne(s1 * s2, 1), evaluate=False)
    text = format_condition(cond)
    assert parse_condition_text(text) == cond or format_condition(parse_condition_text(text)) == text
