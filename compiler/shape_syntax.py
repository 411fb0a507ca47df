"""Textual form of symbolic dimensions, as they appear inside ``!blade.tensor<...>`` types.

The syntax is MLIR's affine-expression syntax, so it reads like upstream IR and parses in upstream
MLIR as part of an opaque dialect type:

    dim  := sum
    sum  := term (('+' | '-') term)*
    term := unary (('*' | 'floordiv' | 'ceildiv' | 'mod') unary)*
    unary:= '-' unary | INT | SYMBOL | '(' sum ')' | ('max' | 'min') '(' sum ',' sum ')' | '?'

``?`` is an unknown dim (a file written by hand before shape propagation). Symbols are bare
identifiers such as ``s0``. Printing is canonical: the same sympy expression always prints the
same text, e.g. ``(s1 - 1) floordiv 2 + 1`` or ``8*s1``.

The same grammar is parsed from two token sources: xDSL's attribute parser (types in IR files)
and plain strings (guards stored as string attributes, command-line options).
"""

from __future__ import annotations

import re
from typing import Protocol

import sympy

from blade.symbolic import ShapeError, ceildiv, floordiv, integer_form, is_integer_valued, make_symbol

UNKNOWN = None  # an unknown dim is represented by None in shapes


# --------------------------------------------------------------------------------------------
# printing
# --------------------------------------------------------------------------------------------


def format_dim(e: sympy.Expr | None) -> str:
    if e is None:
        return "?"
    e = sympy.sympify(e)
    if not is_integer_valued(e):
        # an exact quotient (torch's CleanDiv) such as s0/2 + s1/2 prints as one division,
        # (s0 + s1) floordiv 2: term-by-term floordivs would mean something else
        e = integer_form(e)
    return _fmt(e)


def format_shape(shape) -> str:
    return "[" + ", ".join(format_dim(d) for d in shape) + "]"


def _is_atom(e: sympy.Expr) -> bool:
    return e.is_Integer or e.is_Symbol or isinstance(e, (sympy.Max, sympy.Min))


def _paren(e: sympy.Expr, text: str | None = None) -> str:
    text = text if text is not None else _fmt(e)
    return text if _is_atom(e) else f"({text})"


def _fmt(e: sympy.Expr) -> str:
    if e.is_Integer:
        return str(int(e))
    if e.is_Symbol:
        return e.name
    if e.is_Add:
        terms = e.as_ordered_terms()
        out = _fmt(terms[0])
        for t in terms[1:]:
            coeff, rest = t.as_coeff_Mul()
            if coeff.is_Number and coeff < 0:
                out += " - " + _fmt(-t)
            else:
                out += " + " + _fmt(t)
        return out
    if (e.is_Mul or e.is_Pow) and sympy.fraction(e)[1] != 1:
        # a quotient only appears where torch divided exactly (CleanDiv); printed as floordiv
        num, den = sympy.fraction(e)
        num_text = f"({_fmt(num)})" if num.is_Add else _fmt(num)
        return f"{num_text} floordiv {_paren(den)}"
    if e.is_Mul:
        coeff, rest = e.as_coeff_Mul()
        if coeff.is_Number and coeff < 0:
            return "-" + _paren(-e)
        if not coeff.is_Integer:
            raise ShapeError(f"dimension {e} is not integer-valued (rational coefficient)")
        factors = [a for a in sympy.Mul.make_args(rest)]
        parts = [_paren(f) for f in sorted(factors, key=sympy.default_sort_key)]
        if coeff != 1:
            parts.insert(0, str(int(coeff)))
        return "*".join(parts)
    if e.is_Pow and e.exp.is_Integer and int(e.exp) > 0:
        return "*".join([_paren(e.base)] * int(e.exp))
    if isinstance(e, (sympy.floor, sympy.ceiling)):
        num, den = sympy.fraction(sympy.together(e.args[0]))
        num = sympy.expand(num)
        kw = "floordiv" if isinstance(e, sympy.floor) else "ceildiv"
        num_text = _fmt(num)
        if num.is_Add:
            num_text = f"({num_text})"
        return f"{num_text} {kw} {_paren(den)}"
    if isinstance(e, sympy.Mod):
        a, b = e.args
        a_text = f"({_fmt(a)})" if a.is_Add else _fmt(a)
        return f"{a_text} mod {_paren(b)}"
    if isinstance(e, (sympy.Max, sympy.Min)):
        fn = "max" if isinstance(e, sympy.Max) else "min"
        args = sorted(e.args, key=sympy.default_sort_key)
        out = _fmt(args[0])
        for a in args[1:]:  # n-ary Max prints as nested binary calls
            out = f"{fn}({out}, {_fmt(a)})"
        return out
    raise ShapeError(f"cannot print dimension {e} ({type(e).__name__})")


_REL_TEXT = {sympy.Eq: "==", sympy.Ne: "!=", sympy.Lt: "<", sympy.Le: "<=", sympy.Gt: ">",
             sympy.Ge: ">="}


def format_condition(cond: sympy.Basic) -> str:
    """A guard condition (stored as a string attribute): relations of dims combined with ``and``,
    ``or`` and ``not``; an operand of another connective is parenthesised, so the text never
    depends on precedence rules:

        s0 <= 63 and (s1 - s3 + 3 > 0 or s2 - s4 + 3 > 0)
    """
    if cond is sympy.true or cond is sympy.false:
        return "true" if cond is sympy.true else "false"
    if isinstance(cond, (sympy.And, sympy.Or)):
        word = " and " if isinstance(cond, sympy.And) else " or "
        parts = [format_condition(a) for a in sorted(cond.args, key=sympy.default_sort_key)]
        return word.join(f"({p})" if isinstance(a, (sympy.And, sympy.Or, sympy.Not)) else p
                         for a, p in zip(sorted(cond.args, key=sympy.default_sort_key), parts))
    if isinstance(cond, sympy.Not):
        return f"not ({format_condition(cond.args[0])})"
    if isinstance(cond, sympy.Rel):
        return f"{format_dim(cond.lhs)} {_REL_TEXT[type(cond)]} {format_dim(cond.rhs)}"
    raise ShapeError(f"cannot print condition {cond} ({type(cond).__name__}): guards are relations "
                     "of dims combined with and/or/not")


# --------------------------------------------------------------------------------------------
# parsing
# --------------------------------------------------------------------------------------------


class TokenSource(Protocol):
    def accept(self, punct: str) -> bool: ...
    def accept_keyword(self, word: str) -> bool: ...
    def accept_int(self) -> int | None: ...
    def accept_ident(self) -> str | None: ...
    def error(self, msg: str) -> Exception: ...


_KEYWORDS = ("floordiv", "ceildiv", "mod", "max", "min", "and", "or", "not", "true", "false")


def parse_dim(src: TokenSource) -> sympy.Expr | None:
    if src.accept("?"):
        return UNKNOWN
    return _parse_sum(src)


def _parse_sum(src: TokenSource) -> sympy.Expr:
    acc = _parse_term(src)
    while True:
        if src.accept("+"):
            acc = acc + _parse_term(src)
        elif src.accept("-"):
            acc = acc - _parse_term(src)
        else:
            return acc


def _parse_term(src: TokenSource) -> sympy.Expr:
    acc = _parse_unary(src)
    while True:
        if src.accept("*"):
            acc = acc * _parse_unary(src)
        elif src.accept_keyword("floordiv"):
            acc = floordiv(acc, _parse_unary(src))
        elif src.accept_keyword("ceildiv"):
            acc = ceildiv(acc, _parse_unary(src))
        elif src.accept_keyword("mod"):
            acc = sympy.Mod(acc, _parse_unary(src))
        else:
            return acc


def _parse_unary(src: TokenSource) -> sympy.Expr:
    if src.accept("-"):
        return -_parse_unary(src)
    if (v := src.accept_int()) is not None:
        return sympy.Integer(v)
    if src.accept("("):
        e = _parse_sum(src)
        if not src.accept(")"):
            raise src.error("expected ')' in dimension expression")
        return e
    for fn, cls in (("max", sympy.Max), ("min", sympy.Min)):
        if src.accept_keyword(fn):
            if not src.accept("("):
                raise src.error(f"expected '(' after {fn}")
            a = _parse_sum(src)
            if not src.accept(","):
                raise src.error(f"expected ',' in {fn}(a, b)")
            b = _parse_sum(src)
            if not src.accept(")"):
                raise src.error(f"expected ')' after {fn}(a, b")
            return cls(a, b)
    if (name := src.accept_ident()) is not None:
        if name in _KEYWORDS:
            raise src.error(f"unexpected keyword '{name}' in dimension expression")
        return make_symbol(name)
    raise src.error("expected a dimension: an integer, a symbol, '(' or '?'")


class StringTokens:
    """Token source over a plain string (guards, command-line text)."""

    _TOKEN = re.compile(r"\s*(?:(\d+)|([A-Za-z_][A-Za-z0-9_]*)|(==|!=|<=|>=|[-+*(),?<>]))")

    def __init__(self, text: str):
        self.text = text
        self.pos = 0
        self._peeked: tuple[str, str] | None = None

    def _peek(self) -> tuple[str, str] | None:
        if self._peeked is None:
            m = self._TOKEN.match(self.text, self.pos)
            if not m or m.end() == self.pos:
                return None
            kind = "int" if m.group(1) else "ident" if m.group(2) else "punct"
            self._peeked = (kind, m.group(m.lastindex))
            self._end = m.end()
        return self._peeked

    def _take(self) -> str:
        assert self._peeked is not None
        value = self._peeked[1]
        self.pos, self._peeked = self._end, None
        return value

    def accept(self, punct: str) -> bool:
        t = self._peek()
        if t and t[0] == "punct" and t[1] == punct:
            self._take()
            return True
        return False

    def accept_keyword(self, word: str) -> bool:
        t = self._peek()
        if t and t[0] == "ident" and t[1] == word:
            self._take()
            return True
        return False

    def accept_int(self) -> int | None:
        t = self._peek()
        if t and t[0] == "int":
            return int(self._take())
        return None

    def accept_ident(self) -> str | None:
        t = self._peek()
        if t and t[0] == "ident":
            return self._take()
        return None

    def mark(self) -> int:
        return self.pos

    def reset(self, pos: int) -> None:
        self.pos, self._peeked = pos, None

    def at_end(self) -> bool:
        return self.text[self.pos:].strip() == ""

    def error(self, msg: str) -> Exception:
        return ShapeError(f"{msg} at column {self.pos} of '{self.text}'")


def parse_dim_text(text: str) -> sympy.Expr | None:
    src = StringTokens(text)
    e = parse_dim(src)
    if not src.at_end():
        raise src.error("unexpected text after dimension")
    return e


_REL_BY_TEXT = {v: k for k, v in _REL_TEXT.items()}


def parse_condition_text(text: str) -> sympy.Basic:
    """Parse ``format_condition``'s text:

        cond := conj ('or' conj)*
        conj := atom ('and' atom)*
        atom := 'not' atom | 'true' | 'false' | sum REL sum | '(' cond ')'
    """
    src = StringTokens(text)
    cond = _parse_or(src)
    if not src.at_end():
        raise src.error("unexpected text after condition")
    return cond


def _parse_or(src: StringTokens) -> sympy.Basic:
    parts = [_parse_and(src)]
    while src.accept_keyword("or"):
        parts.append(_parse_and(src))
    return parts[0] if len(parts) == 1 else sympy.Or(*parts, evaluate=False)


def _parse_and(src: StringTokens) -> sympy.Basic:
    parts = [_parse_atom(src)]
    while src.accept_keyword("and"):
        parts.append(_parse_atom(src))
    return parts[0] if len(parts) == 1 else sympy.And(*parts, evaluate=False)


def _parse_atom(src: StringTokens) -> sympy.Basic:
    if src.accept_keyword("not"):
        return sympy.Not(_parse_atom(src))
    if src.accept_keyword("true"):
        return sympy.true
    if src.accept_keyword("false"):
        return sympy.false
    start = src.mark()
    try:
        return _parse_relation(src)
    except ShapeError:
        # '(' opens either a sum (``(s0 + 1) > 2``) or a condition (``(s0 > 1 or s1 > 2)``)
        src.reset(start)
        if not src.accept("("):
            raise
        cond = _parse_or(src)
        if not src.accept(")"):
            raise src.error("expected ')' after a condition") from None
        return cond


def _parse_relation(src: StringTokens) -> sympy.Basic:
    lhs = _parse_sum(src)
    for op in ("==", "!=", "<=", ">=", "<", ">"):
        if src.accept(op):
            return _REL_BY_TEXT[op](lhs, _parse_sum(src), evaluate=False)
    raise src.error("expected a comparison (==, !=, <, <=, >, >=)")
