"""Shape programs: the size arithmetic and guards that remain at run time, as flat bytecode.

Every call of a compiled module must check its guards and, later, compute buffer sizes and launch
grids from the input sizes. A ``ShapeProgram`` compiles a list of canonical dimension expressions
(or guard conditions) once into an int64 stack-machine program; ``run(values)`` evaluates all of
them in one go. The native runtime (``runtime/cpp/shape_program.cpp``, built by CMakeLists.txt)
evaluates it when present, otherwise the Python loop below does, with identical semantics
(Python's floor division and modulo).

    ShapeProgram([floordiv(s1 - 1, 2) + 1, s0 * s1], ["s0", "s1"]).run([2, 9]) == [5, 18]
"""

from __future__ import annotations

from collections.abc import Sequence

import sympy

from blade.runtime.shape_eval import (  # noqa: F401 - re-exported: the evaluator lives there
    ADD, AND, CEILDIV, CONST, EMIT, EQ, FLOORDIV, GE, GT, LE, LT, MAX, MIN, MOD, MUL, NE, NEG, NOT, OR, SUB, SYM,
    load_native, run_python)
from blade.symbolic import ShapeError, integer_form

_REL = {sympy.Eq: EQ, sympy.Ne: NE, sympy.Lt: LT, sympy.Le: LE, sympy.Gt: GT, sympy.Ge: GE}


class ShapeProgram:
    def __init__(self, exprs: Sequence[sympy.Basic], symbols: Sequence[str], native=None):
        self.symbols = list(symbols)
        self._index = {n: i for i, n in enumerate(self.symbols)}
        code: list[int] = []
        for e in exprs:
            self._emit(integer_form(sympy.sympify(e)), code)
            code.append(EMIT)
        self.code = code
        self.native = native if native is not None else load_native()

    def run(self, values: Sequence[int]) -> list[int]:
        if self.native is not None:
            return self.native.run_shape_program(self.code, list(values))
        return run_python(self.code, values)

    def run_named(self, values: dict[str, int]) -> list[int]:
        return self.run([values[n] for n in self.symbols])

    # ------------------------------------------------------------------ compiler
    def _emit(self, e: sympy.Basic, code: list[int]) -> None:
        if e is sympy.true or e is sympy.false:
            code += [CONST, int(bool(e))]
        elif isinstance(e, sympy.Integer):
            code += [CONST, int(e)]
        elif isinstance(e, sympy.Symbol):
            if e.name not in self._index:
                raise ShapeError(f"shape program: unknown symbol {e.name}")
            code += [SYM, self._index[e.name]]
        elif isinstance(e, sympy.Add):
            self._fold(e.args, ADD, code)
        elif isinstance(e, (sympy.Mul, sympy.Pow)):
            num, den = sympy.fraction(e)
            if den != 1:  # exact quotients only reach here (see shape_syntax)
                self._emit(num, code)
                self._emit(den, code)
                code.append(FLOORDIV)
            elif isinstance(e, sympy.Pow):
                if not (e.exp.is_Integer and int(e.exp) > 0):
                    raise ShapeError(f"shape program: cannot evaluate {e}")
                self._fold([e.base] * int(e.exp), MUL, code)
            else:
                self._fold(e.args, MUL, code)
        elif isinstance(e, (sympy.floor, sympy.ceiling)):
            num, den = sympy.fraction(sympy.together(e.args[0]))
            self._emit(sympy.expand(num), code)
            self._emit(den, code)
            code.append(FLOORDIV if isinstance(e, sympy.floor) else CEILDIV)
        elif isinstance(e, sympy.Mod):
            self._emit(e.args[0], code)
            self._emit(e.args[1], code)
            code.append(MOD)
        elif isinstance(e, (sympy.Max, sympy.Min)):
            self._fold(e.args, MAX if isinstance(e, sympy.Max) else MIN, code)
        elif type(e) in _REL:
            self._emit(e.lhs, code)
            self._emit(e.rhs, code)
            code.append(_REL[type(e)])
        elif isinstance(e, (sympy.And, sympy.Or)):
            self._fold(e.args, AND if isinstance(e, sympy.And) else OR, code)
        elif isinstance(e, sympy.Not):
            self._emit(e.args[0], code)
            code.append(NOT)
        else:
            raise ShapeError(f"shape program: cannot evaluate {e} ({type(e).__name__})")

    def _fold(self, args, op: int, code: list[int]) -> None:
        args = list(args)
        self._emit(args[0], code)
        for a in args[1:]:
            self._emit(a, code)
            code.append(op)
