"""Evaluating shape programs without the compiler: the opcodes, the Python evaluator and the
native one.

``compiler/shape_program.py`` compiles sympy expressions into this bytecode (that needs sympy and
the symbolic service, compiler-side); a runtime that only *runs* compiled programs (the Program
executor, ``runtime/program_executor.py``) needs just this file, which imports neither sympy nor
any compiler module. The native evaluator (``runtime/cpp/shape_program.cpp``) follows the same
semantics bit for bit (Python floor division and modulo).
"""

from __future__ import annotations

from collections.abc import Sequence

CONST, SYM, ADD, SUB, MUL, FLOORDIV, CEILDIV, MOD, MAX, MIN, NEG = range(11)
EQ, NE, LT, LE, GT, GE, AND, OR, NOT, EMIT = range(11, 21)


def load_native():
    """The native evaluator module, or None when it was not built."""
    try:
        from blade.runtime import _native  # type: ignore[attr-defined]
    except ImportError:
        return None
    return _native


def run_python(code: Sequence[int], values: Sequence[int]) -> list[int]:
    """The reference evaluator (the native one must agree with it)."""
    stack: list[int] = []
    out: list[int] = []
    pc = 0
    n = len(code)
    while pc < n:
        op = code[pc]
        if op == CONST:
            stack.append(code[pc + 1])
            pc += 2
            continue
        if op == SYM:
            stack.append(values[code[pc + 1]])
            pc += 2
            continue
        pc += 1
        if op == EMIT:
            out.append(stack.pop())
        elif op == NEG:
            stack.append(-stack.pop())
        elif op == NOT:
            stack.append(int(stack.pop() == 0))
        else:
            b, a = stack.pop(), stack.pop()
            stack.append(_BINARY[op](a, b))
    return out


def run(code: Sequence[int], values: Sequence[int], native=None) -> list[int]:
    """Evaluate with ``native`` (None: the built module if any; False: Python only)."""
    native = load_native() if native is None else native
    if native:
        return native.run_shape_program(list(code), list(values))
    return run_python(code, values)


_BINARY = {
    ADD: lambda a, b: a + b, SUB: lambda a, b: a - b, MUL: lambda a, b: a * b,
    FLOORDIV: lambda a, b: a // b, CEILDIV: lambda a, b: -((-a) // b), MOD: lambda a, b: a % b,
    MAX: max, MIN: min, EQ: lambda a, b: int(a == b), NE: lambda a, b: int(a != b),
    LT: lambda a, b: int(a < b), LE: lambda a, b: int(a <= b), GT: lambda a, b: int(a > b),
    GE: lambda a, b: int(a >= b), AND: lambda a, b: int(bool(a) and bool(b)),
    OR: lambda a, b: int(bool(a) or bool(b)),
}
