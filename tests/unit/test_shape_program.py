"""Shape programs against sympy, in Python and in the native runtime built with CMake."""

import random

import pytest
import sympy

from blade.shape_program import ShapeProgram, run_python
from tests.native_build import build_native
from blade.symbolic import ceildiv, floordiv, make_symbol

s0, s1, s2 = (make_symbol(n) for n in ("s0", "s1", "s2"))
EXPRS = [floordiv(s1 - 1, 2) + 1, ceildiv(s1, 3) * s0, sympy.Mod(s1 + 3, 4), sympy.Max(s1, s2 + 1),
         8 * s1 * s2 - 7, floordiv(s0 * s1, s2), sympy.Le(2560 * s0 * s1 * s2, 2**31),
         sympy.And(sympy.Ne(s1, 1), sympy.Gt(s2, 2)), -s0 + floordiv(-s1, 4), sympy.Min(s0, s1, s2)]


def _cases():
    rng = random.Random(0)
    return [[rng.randint(1, 300) for _ in range(3)] for _ in range(200)] + [[1, 1, 1], [7, 1, 3]]


def _expected(values):
    sub = dict(zip((s0, s1, s2), values))
    return [int(bool(e.subs(sub))) if isinstance(e, sympy.logic.boolalg.Boolean) else int(e.subs(sub))
            for e in EXPRS]


def test_python_evaluator_matches_sympy():
    prog = ShapeProgram(EXPRS, ["s0", "s1", "s2"])
    for values in _cases():
        assert run_python(prog.code, values) == _expected(values), values


@pytest.fixture(scope="module")
def native(tmp_path_factory):
    return build_native(tmp_path_factory)[1]


def test_native_evaluator_matches_python(native):
    prog = ShapeProgram(EXPRS, ["s0", "s1", "s2"], native=native)
    for values in _cases():
        assert prog.run(values) == run_python(prog.code, values) == _expected(values), values
    with pytest.raises(Exception, match="division by zero"):
        native.run_shape_program(ShapeProgram([floordiv(s0, s1)], ["s0", "s1"]).code, [3, 0])
