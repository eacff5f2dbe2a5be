"""Arithmetic for the scripted model: find an expression in text and evaluate it safely.

A tiny recursive-descent parser over numbers, + - * / and parentheses (no eval). Integers stay
integers unless a division makes a fraction.
"""

from __future__ import annotations

import re
from fractions import Fraction

_RUN = re.compile(r"[0-9+\-*/(). ]+")
_TOKEN = re.compile(r"\s*(?:(\d+(?:\.\d*)?|\.\d+)|(.))")
_FIRST_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")
_MAX_DIGITS = 200


class ArithmeticError_(ValueError):
    """The text is not an expression this parser can evaluate."""


def find_expression(text: str) -> str | None:
    """The longest run of digits/operators/parentheses/spaces holding a digit, trimmed."""
    best = ""
    for run in _RUN.findall(text):
        cand = run.strip().rstrip(".").strip()
        if len(cand) > len(best) and any(ch.isdigit() for ch in cand):
            best = cand
    return best or None


def first_number(text: str) -> int | float | None:
    m = _FIRST_NUMBER.search(text)
    if not m:
        return None
    s = m.group(0)
    return float(s) if "." in s else int(s)


class _Parser:
    def __init__(self, text: str) -> None:
        self.toks: list[str] = []
        for m in _TOKEN.finditer(text):
            num, op = m.group(1), m.group(2)
            if num is not None:
                if len(num) > _MAX_DIGITS:
                    raise ArithmeticError_("number too long")
                self.toks.append(num)
            elif op is not None and not op.isspace():
                if op not in "+-*/()":
                    raise ArithmeticError_(f"unexpected {op!r}")
                self.toks.append(op)
        self.i = 0
        self.binary_ops = 0

    def peek(self) -> str | None:
        return self.toks[self.i] if self.i < len(self.toks) else None

    def take(self) -> str:
        tok = self.peek()
        if tok is None:
            raise ArithmeticError_("unexpected end")
        self.i += 1
        return tok

    def expr(self) -> Fraction:
        value = self.term()
        while self.peek() in ("+", "-"):
            op = self.take()
            rhs = self.term()
            self.binary_ops += 1
            value = value + rhs if op == "+" else value - rhs
        return value

    def term(self) -> Fraction:
        value = self.unary()
        while self.peek() in ("*", "/"):
            op = self.take()
            rhs = self.unary()
            self.binary_ops += 1
            if op == "*":
                value = value * rhs
            elif rhs == 0:
                raise ArithmeticError_("division by zero")
            else:
                value = value / rhs
        return value

    def unary(self) -> Fraction:
        if self.peek() in ("+", "-"):
            sign = self.take()
            value = self.unary()
            return -value if sign == "-" else value
        return self.atom()

    def atom(self) -> Fraction:
        tok = self.take()
        if tok == "(":
            value = self.expr()
            if self.take() != ")":
                raise ArithmeticError_("missing )")
            return value
        if tok[0].isdigit() or tok[0] == ".":
            return Fraction(tok)
        raise ArithmeticError_(f"unexpected {tok!r}")


def evaluate(expression: str) -> tuple[Fraction, int]:
    """(value, number of binary operators). Raises ArithmeticError_ on anything else."""
    p = _Parser(expression)
    if not p.toks:
        raise ArithmeticError_("empty expression")
    value = p.expr()
    if p.peek() is not None:
        raise ArithmeticError_(f"trailing {p.peek()!r}")
    return value, p.binary_ops


def format_number(value: Fraction) -> str:
    """Integers without `.0`; other values as a float rounded to 10 places."""
    if value.denominator == 1:
        return str(value.numerator)
    f = round(float(value), 10)
    return str(int(f)) if f.is_integer() else repr(f)


def solve(text: str) -> tuple[str, str] | None:
    """(expression, formatted value) for the first computable expression in `text` that has
    at least one operator; None when there is none."""
    expression = find_expression(text)
    if expression is None:
        return None
    try:
        value, ops = evaluate(expression)
    except (ArithmeticError_, ZeroDivisionError, ValueError):
        return None
    if ops == 0:
        return None
    return expression, format_number(value)
