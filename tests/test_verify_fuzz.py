"""Property tests for answer extraction and equivalence."""

from fractions import Fraction

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from scale.grading.verify import extract_answer, is_equivalent

FUZZ = settings(deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])

LATEXISH = st.text(alphabet="\\boxedfracsqt{}()[]^_$.,:=-+*/%0123456789 x\n", max_size=80)


def _decimal(value: Fraction) -> str:
    """The exact decimal rendering of ``value``, whose denominator divides 10**6."""
    places = next(k for k in range(7) if 10**k % value.denominator == 0)
    digits = str(abs(value.numerator) * 10**places // value.denominator).rjust(places + 1, "0")
    sign = "-" if value < 0 else ""
    return sign + (f"{digits[:-places]}.{digits[-places:]}" if places else digits)


INTEGERS = st.integers(-(10**6), 10**6).map(str)
DECIMALS = st.builds(
    lambda n, k: _decimal(Fraction(n, 10**k)), st.integers(-(10**6), 10**6), st.integers(0, 4)
)
FRACTIONS = st.builds(
    lambda n, d: f"\\frac{{{n}}}{{{d}}}", st.integers(-200, 200), st.integers(1, 50)
)
NUMERALS = st.one_of(INTEGERS, DECIMALS, FRACTIONS)


@FUZZ
@given(st.one_of(st.text(), LATEXISH))
def test_extract_answer_never_raises(text: str) -> None:
    assert isinstance(extract_answer(text), str)


@settings(FUZZ, max_examples=40)
@given(st.one_of(st.text(max_size=40), LATEXISH), st.one_of(st.text(max_size=40), LATEXISH))
def test_is_equivalent_never_raises(gold: str, predicted: str) -> None:
    assert isinstance(is_equivalent(gold, predicted), bool)


@settings(FUZZ, max_examples=60)
@given(NUMERALS)
def test_is_equivalent_is_reflexive(numeral: str) -> None:
    assert is_equivalent(numeral, numeral) is True
    assert is_equivalent(numeral, f"The answer is $\\boxed{{{numeral}}}$.") is True


@settings(FUZZ, max_examples=40)
@given(st.integers(-(10**4), 10**4), st.integers(1, 20))
def test_value_preserving_rewrites_are_equivalent(n: int, d: int) -> None:
    assert is_equivalent(str(n), f"\\frac{{{n * d}}}{{{d}}}") is True
    assert is_equivalent(str(n), f"{n}.0") is True
    assert is_equivalent(str(n), str(n + d)) is False


VALUES = st.builds(
    Fraction, st.integers(-1000, 1000), st.sampled_from([1, 2, 3, 4, 5, 7, 8, 10, 20, 25])
)


@st.composite
def renderings(draw: st.DrawFn, value: Fraction) -> str:
    """``value`` as an integer, exact or 6-place decimal, or (unreduced) LaTeX fraction."""
    k = draw(st.integers(1, 3))
    forms = [f"\\frac{{{value.numerator * k}}}{{{value.denominator * k}}}"]
    forms.append(_decimal(value) if 10**6 % value.denominator == 0 else f"{float(value):.6f}")
    if value.denominator == 1:
        forms.append(str(value.numerator))
    return draw(st.sampled_from(forms))


@st.composite
def numeric_pairs(draw: st.DrawFn) -> tuple[str, str, bool]:
    """Two renderings of the same value or of distinct values, and whether they agree."""
    a = draw(VALUES)
    b = a if draw(st.booleans()) else draw(VALUES)
    return draw(renderings(a)), draw(renderings(b)), a == b


@settings(FUZZ, max_examples=60)
@given(numeric_pairs())
def test_is_equivalent_is_symmetric_on_numbers(pair: tuple[str, str, bool]) -> None:
    a, b, same = pair
    assert is_equivalent(a, b) is same
    assert is_equivalent(b, a) is same
