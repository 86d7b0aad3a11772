"""The verifier's cheap rules (`bench/verify/canonical.py`), case by case and worked by hand.

The regression table (test_verify.py) grades whole responses, where math-verify stands behind
every rule and can hide a broken one. These call each rule directly, so a rule that strips the
wrong characters, mislabels a percent or moves a bound fails here."""

from __future__ import annotations

from fractions import Fraction as F

import pytest

from bench.verify.canonical import (
    MAX_CHEAP_LEN,
    Number,
    _repeating,
    _rounds_to,
    _strip_units,
    clean,
    decide,
    parse_number,
)


@pytest.mark.parametrize(
    "raw, cleaned",
    [
        ("$5$", "5"),
        ("$$5$$", "5"),
        ("\\(x+1\\)", "x+1"),
        ("\\[x+1\\]", "x+1"),
        ("$$", ""),  # a pair of delimiters around nothing is nothing
        ("$", "$"),  # one sign is not a pair
        ("$5", "$5"),  # an opening delimiter alone stays (a currency sign)
        ("5$", "5$"),
        ("\\text{\\textbf{\\mathrm{B}}}", "B"),  # three levels unwrapped...
        ("\\text{\\text{\\text{\\text{B}}}}", "\\text{B}"),  # ...and no deeper: the work is bounded
        ("\\dfrac{1}{2}", "\\frac{1}{2}"),
        ("\\tfrac12", "\\frac12"),
        ("1{,}000", "1,000"),
        ("50\\%", "50%"),
        ("\\$5", "$5"),
        ("\\left( 1 \\right)", "( 1 )"),
        ("yes.", "yes"),
        ("BOX.", "BOX"),  # only the full stop goes, not the letters around it
        ("5.", "5."),  # a plain number keeps its point
        ("  a   b  ", "a b"),
    ],
)
def test_clean(raw, cleaned):
    assert clean(raw) == cleaned


@pytest.mark.parametrize(
    "raw, stripped",
    [
        ("30^\\circ", ("30", False)),
        ("30°", ("30", False)),
        ("$5", ("5", False)),
        ("$ 5", ("5", False)),
        ("50%", ("50", True)),
        ("2X%", ("2X", True)),
        ("5 cm", ("5", False)),
        ("5 cm.", ("5", False)),  # a unit word ending the sentence
        ("5 square cm", ("5", False)),
        ("5 big cm", ("5 big", False)),  # unit words come off the end only
        ("cm", ("cm", False)),  # a unit alone is the answer, not a unit
        ("50% people", ("50", True)),  # the percent sign found after the unit word goes
        ("5 apples%", ("5", True)),
    ],
)
def test_strip_units(raw, stripped):
    assert _strip_units(raw) == stripped


@pytest.mark.parametrize(
    "answer, number",
    [
        ("42", Number(F(42), False, None)),
        ("-0.50", Number(F(1, 2) * -1, False, 2)),
        ("1,000", Number(F(1000), False, None)),
        ("-1,000", Number(F(-1000), False, None)),
        ("+12,345.5", Number(F(24691, 2), False, 1)),
        ("x = 7", Number(F(7), False, None)),
        ("six", Number(F(6), False, None)),
        ("Six%", Number(F(6), True, None)),
        ("1e3", Number(F(1000), False, None)),
        ("2.5 \\times 10^{-2}", Number(F(1, 40), False, None)),
        ("5%", Number(F(5), True, None)),
        ("\\frac{1}{2}", Number(F(1, 2), False, None)),
        ("-\\frac{3}{4}", Number(F(-3, 4), False, None)),
        ("\\frac{1}{1}", Number(F(1), False, None)),
        ("\\frac12%", Number(F(1, 2), True, None)),
        ("1/2", Number(F(1, 2), False, None)),
        ("3/4%", Number(F(3, 4), True, None)),
        ("2\\frac{1}{4}", Number(F(9, 4), False, None)),
        ("2\\frac14", Number(F(9, 4), False, None)),  # single-digit numerator and denominator
        ("-2\\frac14", Number(F(-9, 4), False, None)),
        ("1\\frac{1}{1}", Number(F(2), False, None)),
        ("1\\frac{1}{2}%", Number(F(3, 2), True, None)),
        ("\\frac{1}{0}", None),
        ("1/0", None),
        ("1\\frac{1}{0}", None),
        ("32, 349", None),  # a list, not a thousands separator
        ("3\\sqrt{2}", None),
    ],
)
def test_parse_number(answer, number):
    assert parse_number(answer) == number


def test_parse_number_bound_is_exactly_max_cheap_len():
    """Spaces go before the length bound applies, and the bound is inclusive: a string of exactly
    MAX_CHEAP_LEN characters is parsed, one more is not, whatever it would shrink to."""
    assert parse_number("1" * MAX_CHEAP_LEN) == Number(F(int("1" * MAX_CHEAP_LEN)), False, None)
    assert parse_number("1" * (MAX_CHEAP_LEN + 1)) is None
    spaced = "1" + " " * (MAX_CHEAP_LEN - 2) + "2"
    assert len(spaced) == MAX_CHEAP_LEN and parse_number(spaced) == Number(F(12), False, None)
    assert parse_number("1" + " " * (MAX_CHEAP_LEN - 1) + "2") is None


@pytest.mark.parametrize(
    "value, repeats",
    [(F(1, 3), True), (F(22, 7), True), (F(1, 6), True), (F(1, 4), False), (F(1, 5), False), (F(7, 10), False),
     (F(3), False), (F(1, 5**30), False), (F(1, 2**70 * 5**3), False), (F(1, 2**70 * 3), True)],
)
def test_repeating(value, repeats):
    assert _repeating(value) is repeats


def test_rounds_to_is_half_a_unit_in_the_last_place_inclusive():
    assert _rounds_to(F(1, 8), F(13, 100), 2)  # 0.125 rounds (half up) to 0.13: the boundary counts
    assert _rounds_to(F(1, 8), F(12, 100), 2)  # and to 0.12 (half even)
    assert not _rounds_to(F(1, 8), F(14, 100), 2)
    assert _rounds_to(F(1, 3), F(333, 1000), 3)
    assert not _rounds_to(F(1, 3), F(334, 1000), 3)
    assert not _rounds_to(F(1, 3), F(34, 100), 2)


@pytest.mark.parametrize(
    "pred, gold, verdict",
    [
        ("50%", "0.5", True),
        ("0.5", "50%", True),
        ("50%", "0.500", True),  # exact, not within a rounding allowance
        ("49.5%", "0.500", False),
        ("50%", "50", True),  # same digits: the percent sign is presentation
        ("1/3", "0.33", True),  # gold rounded: an exact repeating answer matches it
        ("1/4", "0.3", False),  # but 1/4 is not repeating, so no allowance
        ("0.333", "1/3", True),
        ("0.33", "1/3", False),  # fewer than three places is too coarse
        ("3.14", "22/7", False),
        ("No", "no", True),
        ("no", "yes", False),
        ("y", "x", None),  # a one-letter gold is a variable: math-verify decides
        ("abc", "2x", None),
        ("x+1", "yes", None),
        ("(B) 5", "B", True),
        ("C", "B", False),
        ("3\\sqrt{2}", "4.24", None),
    ],
)
def test_decide(pred, gold, verdict):
    assert decide(pred, gold) is verdict
