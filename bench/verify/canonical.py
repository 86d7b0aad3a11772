"""Cheap, exact decisions for the common answer shapes (numbers, option letters, short text),
taken before any symbolic work. Everything here is bounded: no exponentiation beyond small
powers of ten, no parsing of strings longer than `MAX_CHEAP_LEN`.

`decide(pred, gold)` returns True/False when the answer shapes settle it, or None when the pair
needs the symbolic judge (math-verify)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from fractions import Fraction

MAX_CHEAP_LEN = 200

_WRAPPERS = re.compile(r"\\(?:text|textbf|textit|textrm|mathrm|mathbf|mbox|operatorname)\s*\{([^{}]*)\}")
_DROP = re.compile(r"\\left|\\right|\\displaystyle|\\[!,;:]|\\ |~")
_DEGREE = re.compile(r"\^\s*\{?\s*\\circ\s*\}?|°|\\degree")
_FRAC_ALIAS = re.compile(r"\\[dt]frac")
_SPACES = re.compile(r"\s+")

UNIT_WORDS = frozenset(
    """cm mm m km dm in inch inches ft foot feet yd yard yards mi mile miles meter meters metre metres
    centimeter centimeters kilometer kilometers millimeter millimeters g kg mg gram grams kilogram kilograms
    l ml liter liters litre litres s sec second seconds min minute minutes h hr hour hours day days
    degree degrees deg rad radian radians unit units sq square cubic dollar dollars cent cents yuan
    people person students apples cm^2 cm^3 m^2 m^3 km^2 mm^2 in^2 ft^2 mph kmh km/h m/s""".split()
)

_NUM = r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)"
_PLAIN_NUMBER = re.compile(rf"^{_NUM}$")
_LIST_COMMA = re.compile(r"\s,|,\s")  # a thousands separator has digits right on both sides
_THOUSANDS = re.compile(r"^([+-]?)(\d{1,3}(?:,\d{3})+)(\.\d+)?$")
_SCI_TIMES = re.compile(rf"^({_NUM})\s*(?:\\times|\\cdot|\*|x)\s*10\s*\^\s*\{{?\s*([+-]?\d{{1,3}})\s*\}}?$")
_SCI_E = re.compile(rf"^({_NUM})[eE]([+-]?\d{{1,3}})$")
_FRAC = re.compile(r"^([+-]?)\\frac\s*(?:\{\s*([+-]?\d+(?:\.\d+)?)\s*\}|(\d))\s*(?:\{\s*([+-]?\d+(?:\.\d+)?)\s*\}|(\d))$")
_SLASH = re.compile(rf"^({_NUM})\s*/\s*({_NUM})$")
_MIXED = re.compile(r"^([+-]?)(\d+)\s*\\frac\s*(?:\{(\d+)\}|(\d))\s*(?:\{(\d+)\}|(\d))$")
_ASSIGN = re.compile(r"^[A-Za-z](?:_\{?\w+\}?)?\s*=\s*(.+)$")
_LETTER = re.compile(r"^\(?([A-Z])\)?(?:[.:)](?:\s.*)?)?$", re.DOTALL)
_GOLD_LETTER = re.compile(r"^\(?([A-Z])\)?\.?$")
_WORDS = re.compile(r"^[A-Za-z][A-Za-z' -]*$")
NUMBER_WORDS = {
    w: i
    for i, w in enumerate(
        "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
        "fifteen sixteen seventeen eighteen nineteen twenty".split()
    )
}


@dataclass(frozen=True)
class Number:
    value: Fraction
    percent: bool
    decimals: int | None  # digits after the point when written as a decimal, else None


def clean(answer: str) -> str:
    """Strip presentation: math delimiters, \\text{} wrappers, spacing macros, \\dfrac, a
    trailing full stop, repeated spaces. (Degree marks go only where the answer is a plain number:
    `\\sin 30^\\circ` must keep its degrees.)"""
    s = answer.strip()
    for left, right in (("$", "$"), ("\\(", "\\)"), ("\\[", "\\]")):
        while s.startswith(left) and s.endswith(right) and len(s) >= len(left) + len(right):
            s = s[len(left) : len(s) - len(right)].strip()
    for _ in range(3):  # nested wrappers such as \text{\textbf{B}}
        s = _WRAPPERS.sub(r"\1", s)
    s = _DROP.sub(" ", s)
    s = _FRAC_ALIAS.sub(r"\\frac", s)
    s = s.replace("{,}", ",").replace("\\%", "%").replace("\\$", "$")
    s = _SPACES.sub(" ", s).strip()
    return s.rstrip(".").strip() if not _PLAIN_NUMBER.match(s) else s


def _strip_units(s: str) -> tuple[str, bool]:
    """Remove a currency sign, degree marks, a percent sign and trailing unit words; report the
    percent."""
    s = _DEGREE.sub("", s).strip()
    percent = s.endswith("%")
    s = s.rstrip("%").strip()
    if s.startswith("$"):
        s = s[1:].strip()
    words = s.split(" ")
    while len(words) > 1 and words[-1].lower().rstrip(".") in UNIT_WORDS:
        words.pop()
    s = " ".join(words)
    if not percent and s.endswith("%"):
        percent, s = True, s[:-1].strip()
    return s, percent


def _decimals(text: str) -> int | None:
    return len(text.split(".", 1)[1]) if "." in text else None


def parse_number(answer: str) -> Number | None:
    """An exact rational for plain numeric answers (integers, decimals, thousands separators,
    fractions, mixed numbers, scientific notation, percent, units); None for anything else."""
    s, percent = _strip_units(answer)
    if m := _ASSIGN.match(s):
        s = m.group(1).strip()
    if _LIST_COMMA.search(s):  # "32, 349" is a list of two numbers, not 32349
        return None
    s = s.replace(" ", "") if len(s) <= MAX_CHEAP_LEN else s
    if len(s) > MAX_CHEAP_LEN:
        return None
    if m := _THOUSANDS.match(s):
        s = m.group(1) + m.group(2).replace(",", "") + (m.group(3) or "")
    if _PLAIN_NUMBER.match(s):
        return Number(Fraction(s), percent, _decimals(s))
    if s.lower() in NUMBER_WORDS:  # counting answers written out: "six"
        return Number(Fraction(NUMBER_WORDS[s.lower()]), percent, None)
    if m := _SCI_TIMES.match(s) or _SCI_E.match(s):
        return Number(Fraction(m.group(1)) * Fraction(10) ** int(m.group(2)), percent, None)
    if m := _FRAC.match(s):
        num, den = Fraction(m.group(2) or m.group(3)), Fraction(m.group(4) or m.group(5))
        if den == 0:
            return None
        value = num / den
        return Number(-value if m.group(1) == "-" else value, percent, None)
    if m := _SLASH.match(s):
        den = Fraction(m.group(2))
        return Number(Fraction(m.group(1)) / den, percent, None) if den else None
    if m := _MIXED.match(s):
        den = int(m.group(5) or m.group(6))
        if den == 0:
            return None
        value = int(m.group(2)) + Fraction(int(m.group(3) or m.group(4)), den)
        return Number(-value if m.group(1) == "-" else value, percent, None)
    return None


def _repeating(value: Fraction) -> bool:
    """True when `value` has no finite decimal expansion (1/3, 22/7; not 1/4)."""
    d = value.denominator
    for p in (2, 5):
        while d % p == 0:
            d //= p
    return d != 1


def _rounds_to(exact: Fraction, decimal: Fraction, places: int) -> bool:
    return abs(exact - decimal) <= Fraction(1, 2 * 10**places)


def _same_number(pred: Number, gold: Number) -> bool:
    """Exact equality, with two rounding allowances for values that no decimal can write:
    a gold decimal rounded to d places (gold 0.33, answer 1/3), and an answer decimal of at
    least three places (gold 1/3, answer 0.333; but not 22/7 against 3.14)."""
    candidates = [pred.value]
    if pred.percent != gold.percent:  # 50% against 0.5, or 0.5 against 50%
        candidates.append(pred.value / 100 if pred.percent else pred.value * 100)
    for value in candidates:
        if value == gold.value:
            return True
        if gold.decimals and pred.decimals is None and _repeating(value):
            if _rounds_to(value, gold.value, gold.decimals):
                return True
        if pred.decimals and pred.decimals >= 3 and gold.decimals is None and _repeating(gold.value):
            if _rounds_to(gold.value, value, pred.decimals):
                return True
    return False


def option_letter(answer: str) -> str | None:
    m = _LETTER.match(answer)
    return m.group(1) if m else None


def decide(pred: str, gold: str) -> bool | None:
    """True/False when cheap rules settle the pair, None when the symbolic judge must decide."""
    p, g = clean(pred), clean(gold)
    if p == g:
        return True
    if m := _GOLD_LETTER.match(g):  # multiple choice: only the letter counts
        return option_letter(p) == m.group(1)
    gold_num = parse_number(g)
    if gold_num is not None:
        pred_num = parse_number(p)
        if pred_num is not None:
            return _same_number(pred_num, gold_num)
        return None  # e.g. 3\sqrt{2} against 4.24: math-verify decides
    if _WORDS.match(g) and len(g) > 1:  # yes/no and short text answers
        if _WORDS.match(p):
            return p.casefold() == g.casefold()
        return None
    return None
