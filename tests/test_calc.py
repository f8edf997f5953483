"""The step check: System 1's calculation read with our own grammar and evaluated exactly,
on ordinary, malformed and hostile text."""

from __future__ import annotations

import time

import pytest
import sympy

from scale.grading.calc import CalcError, check, evaluate


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("3 * 4", 12),
        ("(16 - 3 - 4) * 2", 18),
        ("$300 - $50", 250),
        ("1,000 + 500", 1500),
        ("\\frac{3}{4} \\times 8", 6),
        ("\\dfrac{1}{3} + \\frac{1}{6}", sympy.Rational(1, 2)),
        ("25% * 80", 20),
        ("2^10 - 2**3", 1016),
        ("-3 + +4", 1),
        ("3(4 + 5)", 27),
        ("sqrt(16) + \\sqrt{9}", 7),
        ("\\left( 2 + 3 \\right) \\cdot 4", 20),
        ("12 ÷ 4 × 3 − 1", 8),
        ("0.5 * 0.2", sympy.Rational(1, 10)),
    ],
)
def test_ordinary_calculations_are_exact(text, value):
    assert evaluate(text) == value


@pytest.mark.parametrize(
    ("calculation", "answer", "status"),
    [
        ("3 * 4", "12", "match"),
        ("3 * 4 = 12", "12", "match"),
        ("3 * 4", "$12", "match"),
        ("3 * 4", "12 dollars", "match"),
        ("1/2", "\\frac{2}{4}", "match"),
        ("2 * \\sqrt{2}", "\\sqrt{8}", "match"),
        ("3 * 4", "13", "mismatch"),
        ("3 * 4 = 13", "12", "mismatch"),
        ("3 * 4", "x = 12", "match"),  # an equation states the value after its "="
        ("three times four", "12", "unparseable"),
        ("12 hours/week * 2", "24", "unparseable"),
        ("", "12", "unparseable"),
        (None, "12", "unparseable"),
    ],
)
def test_check_against_the_stated_answer(calculation, answer, status):
    assert check(calculation, answer).status == status


HOSTILE = [
    "__import__('os').system('touch /tmp/scale-calc-pwned')",
    "eval('1+1')",
    "lambda: 0",
    "9^9^9^9",
    "10^{10^{10^{10}}}",
    "2^100000000",
    "(" * 10_000 + "1" + ")" * 10_000,
    "\\frac{" * 5_000,
    "1+" * 50_000,
    "1" * 100_000,
    "1/0",
    "0^-1",
    "sqrt(-4)",
    "2^0.5",
    "1e999999999",
    "\x00\x1b[31m1",
]


@pytest.mark.parametrize("text", HOSTILE, ids=range(len(HOSTILE)))
def test_hostile_calculations_are_refused_quickly_and_never_run(text, tmp_path):
    started = time.perf_counter()
    with pytest.raises(CalcError):
        evaluate(text)
    result = check(text, "1")
    assert result.status == "unparseable"
    assert time.perf_counter() - started < 1.0
    assert not (tmp_path / "scale-calc-pwned").exists()
