"""A step check: System 1's calculation, evaluated exactly, against the answer it stated.

The calculation is read with a grammar of our own (numbers, ``+ - * / ^``, parentheses,
``\\frac``, percentages, ``sqrt``) and evaluated with SymPy's exact numbers; model text never
reaches ``sympify``/``parse_expr`` (they ``eval``). Sizes are bounded (text length, nesting,
power digits) and the whole check runs under a deadline, so hostile text costs microseconds.
"""

from __future__ import annotations

import math
import re
import time
from dataclasses import dataclass
from typing import Literal

import sympy

from scale.grading.verify import is_equivalent, strip_wrappers

MAX_CHARS = 400  # a longer calculation is not checked (it counts as unparseable)
MAX_DEPTH = 32  # parentheses / fractions nested deeper than this are refused
MAX_DIGITS = 2_000  # a power whose result would have more decimal digits is refused
DEADLINE = 0.5  # seconds for parsing and evaluating one calculation

_TOKEN = re.compile(
    r"\s*(?:(?P<number>\d[\d,]*(?:\.\d+)?|\.\d+)"
    r"|(?P<command>\\(?:d?frac|tfrac|sqrt|cdot|times|div|left|right)\b|sqrt\b)"
    r"|(?P<op>\*\*|[-+*/^()%{}\[\]×÷·−x]))"
)
_THOUSANDS = re.compile(r"^\d{1,3}(?:,\d{3})+(?:\.\d+)?$")
_SPACING = re.compile(r"\\[,;:! ]|\\q?quad\b")
_UNITS = re.compile(r"\s*(?:\\text\{[^{}]*\}|[A-Za-z][A-Za-z .]*)$")
_CURRENCY = re.compile(r"^\s*(?:\\\$|\$|€|£)\s*")
_CURRENCY_SIGN = re.compile(r"\\?\$|€|£")  # "$300 - $50": the signs carry no arithmetic


class CalcError(ValueError):
    """Text that is not a calculation this grammar accepts (or is too costly)."""


@dataclass(frozen=True)
class CheckResult:
    """``match``: the calculation gives the stated answer; ``mismatch``: it gives another
    value (or its sides disagree); ``unparseable``: no calculation could be read."""

    status: Literal["match", "mismatch", "unparseable"]
    value: str | None = None
    reason: str = ""


class _Parser:
    def __init__(self, text: str, deadline: float):
        self.tokens = self._tokenize(text)
        self.i = 0
        self.deadline = deadline
        self.depth = 0

    @staticmethod
    def _tokenize(text: str) -> list[tuple[str, str]]:
        tokens, pos = [], 0
        while pos < len(text):
            match = _TOKEN.match(text, pos)
            if not match or match.end() == pos:
                if text[pos:].strip() == "":
                    break
                raise CalcError(f"unexpected {text[pos : pos + 10]!r}")
            kind = match.lastgroup or "op"
            tokens.append((kind, match.group(kind)))
            pos = match.end()
        return tokens

    def peek(self) -> str | None:
        return self.tokens[self.i][1] if self.i < len(self.tokens) else None

    def take(self, expected: str | None = None) -> str:
        if self.i >= len(self.tokens):
            raise CalcError("the calculation ends too early")
        value = self.tokens[self.i][1]
        if expected is not None and value != expected:
            raise CalcError(f"expected {expected!r}, found {value!r}")
        self.i += 1
        return value

    def check_time(self) -> None:
        if time.monotonic() > self.deadline:
            raise CalcError("the calculation took too long to read")

    def parse(self) -> sympy.Expr:
        value = self.expr()
        if self.i != len(self.tokens):
            raise CalcError(f"unexpected {self.peek()!r}")
        return value

    def expr(self) -> sympy.Expr:
        value = self.term()
        while self.peek() in ("+", "-", "−"):
            op = self.take()
            right = self.term()
            value = value + right if op == "+" else value - right
        return value

    def term(self) -> sympy.Expr:
        value = self.unary()
        while True:
            op = self.peek()
            if op in ("*", "×", "·", "\\cdot", "\\times", "x"):
                self.take()
                value = value * self.unary()
            elif op in ("/", "÷", "\\div"):
                self.take()
                divisor = self.unary()
                if divisor == 0:
                    raise CalcError("division by zero")
                value = value / divisor
            elif op in ("(", "\\left") or (op is not None and op.startswith("\\frac")):
                value = value * self.unary()  # implicit product: 3(4 + 5)
            else:
                return value

    def unary(self) -> sympy.Expr:
        if self.peek() in ("-", "−"):
            self.take()
            return -self.unary()
        if self.peek() == "+":
            self.take()
            return self.unary()
        return self.power()

    def power(self) -> sympy.Expr:
        base = self.postfix()
        if self.peek() in ("^", "**"):
            self.take()
            exponent = self.unary()
            return _power(base, exponent)
        return base

    def postfix(self) -> sympy.Expr:
        value = self.atom()
        while self.peek() == "%":
            self.take()
            value = value / 100
        return value

    def atom(self) -> sympy.Expr:
        self.check_time()
        if self.i < len(self.tokens) and self.tokens[self.i][0] == "number":
            return _number(self.take())
        token = self.take()
        if token in ("(", "{", "[", "\\left"):
            if token == "\\left":
                token = self.take()
                if token not in ("(", "["):
                    raise CalcError(f"unexpected {token!r} after \\left")
            closing = {"(": ")", "{": "}", "[": "]"}[token]
            value = self.nested()
            if self.peek() == "\\right":
                self.take()
            self.take(closing)
            return value
        if token in ("\\frac", "\\dfrac", "\\tfrac"):
            numerator = self.group()
            denominator = self.group()
            if denominator == 0:
                raise CalcError("division by zero")
            return numerator / denominator
        if token in ("\\sqrt", "sqrt"):
            value = self.group() if self.peek() in ("{", "(") else self.atom()
            if value < 0:
                raise CalcError("square root of a negative number")
            return sympy.sqrt(value)
        raise CalcError(f"unexpected {token!r}")

    def group(self) -> sympy.Expr:
        opening = self.take()
        if opening not in ("{", "("):
            raise CalcError(f"expected a braced group, found {opening!r}")
        value = self.nested()
        self.take("}" if opening == "{" else ")")
        return value

    def nested(self) -> sympy.Expr:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise CalcError("nested too deeply")
        try:
            return self.expr()
        finally:
            self.depth -= 1


def _number(text: str) -> sympy.Rational:
    if "," in text:
        if not _THOUSANDS.match(text):
            raise CalcError(f"{text!r} is not a number")
        text = text.replace(",", "")
    return sympy.Rational(text)


def _power(base: sympy.Expr, exponent: sympy.Expr) -> sympy.Expr:
    if not exponent.is_Rational or not exponent.is_integer:
        raise CalcError("only whole-number powers are evaluated")
    if base == 0:
        if exponent < 0:
            raise CalcError("division by zero")
        return base ** int(exponent)
    try:
        digits = abs(math.log10(abs(float(base))))
    except (OverflowError, ValueError):
        digits = float(MAX_DIGITS)
    if abs(int(exponent)) * max(digits, 1e-9) > MAX_DIGITS:
        raise CalcError("the power is too large to evaluate")
    return base ** int(exponent)


def evaluate(text: str, *, deadline: float = DEADLINE) -> sympy.Expr:
    """The exact value of an arithmetic expression; raises ``CalcError`` for anything else."""
    text = _CURRENCY_SIGN.sub("", _SPACING.sub(" ", strip_wrappers(str(text))))
    if not text.strip():
        raise CalcError("no calculation")
    if len(text) > MAX_CHARS:
        raise CalcError(f"the calculation is longer than {MAX_CHARS} characters")
    return _Parser(text, time.monotonic() + deadline).parse()


def _answer_value(answer: str) -> sympy.Expr | None:
    """A stated answer as an exact number, when it is one (units and currency dropped)."""
    text = _CURRENCY.sub("", strip_wrappers(answer))
    text = _UNITS.sub("", text) if re.search(r"\d", text) else text
    try:
        return evaluate(text)
    except CalcError:
        return None


def check(calculation: str, answer: str, *, deadline: float = DEADLINE) -> CheckResult:
    """Does ``calculation`` give ``answer``? Every side of an ``a = b = c`` chain must agree;
    an answer that is not a plain number is compared with math-verify."""
    started = time.monotonic()
    sides = [s for s in str(calculation or "").split("=") if s.strip()]
    if not sides:
        return CheckResult("unparseable", reason="no calculation")
    values = []
    for side in sides:
        remaining = deadline - (time.monotonic() - started)
        if remaining <= 0:
            break
        try:
            values.append(evaluate(side, deadline=remaining))
        except CalcError as exc:
            if not values:
                return CheckResult("unparseable", reason=str(exc))
    value = values[0]
    shown = str(value)
    if any(sympy.simplify(v - value) != 0 for v in values[1:]):
        return CheckResult("mismatch", shown, "the sides of the calculation disagree")
    stated = _answer_value(answer)
    if stated is not None:
        same = sympy.simplify(stated - value) == 0
    else:
        same = is_equivalent(shown, str(answer), timeout=max(0.1, deadline))
    if same:
        return CheckResult("match", shown)
    return CheckResult("mismatch", shown, f"the calculation gives {shown}, not {answer!r}")
