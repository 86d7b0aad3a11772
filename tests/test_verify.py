"""Verifier: exact rules, the regression table, paper mode, bounds on pathological input, CLI."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bench.prompts import R1_PROMPT, with_r1_prompt
from bench.verify import (
    Grade,
    answers_match,
    extract_boxed,
    format_ok,
    grade,
    grade_many,
    normalize_tag_spacing,
)
from bench.verify.table import load_table

RELEASED_FORMAT = re.compile(r"<think>.*</think>.*\\boxed\{.*\}.*", re.DOTALL)
CASES = load_table()


def released_normalize(text: str) -> str:
    return re.sub(r"\s*(<|>|/)\s*", r"\1", text)


# ---------------------------------------------------------------- prompt
def test_r1_prompt_is_the_released_text():
    first, second = R1_PROMPT.split("\n")
    assert first == (
        "You FIRST think about the reasoning process as an internal monologue and then provide the final answer."
    )
    assert second == (
        " The reasoning process MUST BE enclosed within <think> </think> tags."
        " The final answer MUST BE put in \\boxed{}."
    )
    assert with_r1_prompt("What is 2+2?") == "What is 2+2? " + R1_PROMPT


# ---------------------------------------------------------------- extraction and format
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (r"so \boxed{5}", "5"),
        (r"\boxed{3} then \boxed{4}", "4"),
        (r"\boxed{\frac{1}{2}}", r"\frac{1}{2}"),
        (r"\boxed {7}", "7"),
        (r"\boxed{\boxed{5}}", "5"),
        (r"\boxed{5} and an unfinished \boxed{6", "5"),
        (r"\boxed{\{1,2\}}", r"\{1,2\}"),
        (r"\boxed{a}} stray", "a"),
        (r"\boxed{}", ""),
        ("no box here", None),
        ("{x} and {y}", None),  # plain braces are not a box
        (r"\boxed{unclosed", None),
        ("", None),
    ],
)
def test_extract_boxed(text, expected):
    assert extract_boxed(text) == expected


@given(st.text(alphabet=" \t\n</>ab", max_size=40))
def test_tag_spacing_equals_released_regex(text):
    assert normalize_tag_spacing(text) == released_normalize(text)


FORMAT_PIECES = ["<think>", "</think>", "\\boxed{", "}", "{", "x", " ", "\n", "< think >", "</ think>", "/"]


@given(st.lists(st.sampled_from(FORMAT_PIECES), max_size=12).map("".join))
def test_format_rule_equals_released_regex(text):
    assert format_ok(text) == bool(RELEASED_FORMAT.fullmatch(released_normalize(text)))


@pytest.mark.parametrize(
    ("response", "ok"),
    [
        ("<think>reason</think> answer \\boxed{5}", True),
        ("<think>a\nb</think>\n\\boxed{5}.", True),
        ("< think >a</ think > \\boxed{5}", True),  # spaces around < > / are removed first
        ("<think></think>\\boxed{}", True),
        ("\\boxed{5}", False),
        ("<think>a</think> 5", False),
        ("<think>a \\boxed{5}", False),
        ("<think>a \\boxed{5}</think>", False),  # the box must come after </think>
        ("prefix <think>a</think>\\boxed{5}", False),  # fullmatch: nothing before <think>
        ("<think>a</think>\\boxed{5", False),
        ("<think>a</think>\\boxed{1}\\boxed{", True),  # the first box after </think> that closes counts
        ("<think>}</think>\\boxed{5", False),  # a brace before the box does not close it
        ("<think>a</think>}\\boxed{5", False),
        ("<think>a</think>\\boxed{5}</think>", True),  # the first </think> counts, not the last
    ],
)
def test_format_cases(response, ok):
    assert format_ok(response) is ok
    assert format_ok(response) == bool(RELEASED_FORMAT.fullmatch(released_normalize(response)))


# ---------------------------------------------------------------- the regression table
def test_table_is_large_and_balanced():
    assert len(CASES) >= 300
    assert sum(c.expected for c in CASES) == sum(not c.expected for c in CASES)


@pytest.fixture(scope="module")
def default_grades():
    return grade_many([c.response for c in CASES], [c.gold for c in CASES])


@pytest.fixture(scope="module")
def paper_grades():
    return grade_many([c.response for c in CASES], [c.gold for c in CASES], mode="paper")


@pytest.mark.parametrize(
    "i", range(len(CASES)), ids=[f"L{c.line}-{c.category}-{'eq' if c.expected else 'miss'}" for c in CASES]
)
def test_default_mode_table(default_grades, i):
    case, g = CASES[i], default_grades[i]
    assert g.status == "ok", (case, g)
    assert (g.accuracy == 1.0) is case.expected, f"line {case.line}: gold {case.gold!r}, answer {g.extracted!r}"
    assert g.format == 1.0 and g.overall == pytest.approx(0.9 * g.accuracy + 0.1)


# Where the released grader (mathruler, which inherits PRM800K's rules) decides differently from
# the table. Key: (gold, answer); the comment says why. In every one of these default mode is right.
PAPER_DISAGREES = {
    ('0.33', '\\frac{1}{3}'),  # no rounding: a rounded decimal gold never equals the exact fraction
    ('0.67', '\\frac{2}{3}'),  # no rounding: a rounded decimal gold never equals the exact fraction
    ('\\frac{7}{3}', '\\frac{14}{6}'),  # PRM800K rule: two fractions must match as written (reduced vs unreduced differ); no rounding
    ('\\frac{2}{3}', '\\frac{4}{6}'),  # PRM800K rule: two fractions must match as written (reduced vs unreduced differ); no rounding
    ('\\frac{5}{10}', '\\frac{1}{2}'),  # PRM800K rule: two fractions must match as written (reduced vs unreduced differ); no rounding
    ('\\frac{9}{12}', '\\frac{3}{4}'),  # PRM800K rule: two fractions must match as written (reduced vs unreduced differ); no rounding
    ('\\frac{1}{3}', '\\frac{2}{6}'),  # PRM800K rule: two fractions must match as written (reduced vs unreduced differ); no rounding
    ('\\frac{1}{3}', '0.333'),  # PRM800K rule: two fractions must match as written (reduced vs unreduced differ); no rounding
    ('\\frac{22}{7}', '\\frac{44}{14}'),  # PRM800K rule: two fractions must match as written (reduced vs unreduced differ); no rounding
    ('-1\\frac{1}{2}', '-\\frac{3}{2}'),  # a negative mixed number is not read as one number
    ('1000', '1\\,000'),  # the \, thin space is not removed
    ('5', '5 dollars'),  # unit words beyond its short list are kept, so the number is not isolated
    ('15', '15 \\mathrm{kg}'),  # unit words beyond its short list are kept, so the number is not isolated
    ('6', '6\\ \\text{m}'),  # unit words beyond its short list are kept, so the number is not isolated
    ('30', '30°'),  # only ^\circ is understood, not the degree sign or \degree
    ('45^{\\circ}', '45°'),  # only ^\circ is understood, not the degree sign or \degree
    ('60^{\\circ}', '60\\degree'),  # only ^\circ is understood, not the degree sign or \degree
    ('50\\%', '0.5'),  # 50% and 0.5 differ as strings and sympy never sees a percent
    ('0.5', '50\\%'),  # 50% and 0.5 differ as strings and sympy never sees a percent
    ('\\sqrt[3]{8}', '2'),  # \sqrt[3]{} is not converted for sympy
    ('\\log_2 8', '3'),  # logs and trig identities are not simplified
    ('\\sin^2 x+\\cos^2 x', '1'),  # logs and trig identities are not simplified
    ('2^{10}', '1024'),  # sympy is refused for any '^{' or multi-digit power (BAD_SUBSTRINGS / BAD_REGEXES)
    ('10^3', '1000'),  # sympy is refused for any '^{' or multi-digit power (BAD_SUBSTRINGS / BAD_REGEXES)
    ('2^5', '32'),  # sympy is refused for any '^{' or multi-digit power (BAD_SUBSTRINGS / BAD_REGEXES)
    ('3^4', '81'),  # sympy is refused for any '^{' or multi-digit power (BAD_SUBSTRINGS / BAD_REGEXES)
    ('5^2', '25'),  # sympy is refused for any '^{' or multi-digit power (BAD_SUBSTRINGS / BAD_REGEXES)
    ('4^{\\frac{1}{2}}', '2'),  # sympy is refused for any '^{' or multi-digit power (BAD_SUBSTRINGS / BAD_REGEXES)
    ('9^{0.5}', '3'),  # sympy is refused for any '^{' or multi-digit power (BAD_SUBSTRINGS / BAD_REGEXES)
    ('1200', '1.2\\times10^{3}'),  # \times10^{k} is refused ('^{' is a BAD_SUBSTRING)
    ('1.2\\times10^{3}', '1200'),  # \times10^{k} is refused ('^{' is a BAD_SUBSTRING)
    ('3\\times10^{8}', '300000000'),  # \times10^{k} is refused ('^{' is a BAD_SUBSTRING)
    ('0.00015', '1.5\\times10^{-4}'),  # \times10^{k} is refused ('^{' is a BAD_SUBSTRING)
    ('4.5 \\cdot 10^{2}', '450'),  # \times10^{k} is refused ('^{' is a BAD_SUBSTRING)
    ('B', 'B.'),  # trailing punctuation is kept; letters compare case-insensitively (d == D)
    ('B', 'B: 45'),  # trailing punctuation is kept; letters compare case-insensitively (d == D)
    ('D', 'd'),  # trailing punctuation is kept; letters compare case-insensitively (d == D)
    ('yes', 'yes.'),  # a trailing full stop is kept
    ('y=2x+1', 'y=1+2x'),  # equations are compared as strings, never rearranged
    ('y=-x+3', 'y=3-x'),  # equations are compared as strings, never rearranged
    ('\\{1,2,3\\}', '\\{3,2,1\\}'),  # set braces are compared as strings, so order matters
    ('\\{2,4\\}', '\\{4,2\\}'),  # set braces are compared as strings, so order matters
    ('1000000', '10^6'),  # 10^6 is refused (multi-digit power regex)
    ('\\ln e', '1'),  # logarithms are not evaluated
    ('\\log_{10} 100', '2'),  # logarithms are not evaluated
    ('\\sin 30^\\circ', '\\frac{1}{2}'),  # trig functions are not evaluated
    ('\\cos 0', '1'),  # trig functions are not evaluated
    ('\\tan 45^\\circ', '1'),  # trig functions are not evaluated
    ('6', 'six'),  # number words are not numbers
    ('e^{2}', '\\exp(2)'),  # \exp is not converted for sympy
    ('2e', '2\\exp(1)'),  # \exp is not converted for sympy
    ('32349', '32, 349'),  # commas and spaces are deleted first, so a list of two numbers reads as one
    ('1000', '1, 000'),  # commas and spaces are deleted first, so a list of two numbers reads as one
}


def test_paper_mode_disagrees_exactly_where_documented(paper_grades):
    seen = set()
    for case, g in zip(CASES, paper_grades, strict=True):
        key = (case.gold, g.extracted)
        if key in PAPER_DISAGREES:
            seen.add(key)
            assert (g.accuracy == 1.0) is not case.expected, f"line {case.line}: paper mode now agrees"
        else:
            assert (g.accuracy == 1.0) is case.expected, f"line {case.line}: undocumented paper disagreement"
    assert seen == set(PAPER_DISAGREES)


def test_paper_mode_uses_released_extraction():
    # mathruler takes the last "\boxed{" even when unfinished: no answer, where default finds 5
    response = "<think>x</think> \\boxed{5} and \\boxed{6"
    assert grade(response, "5", mode="paper").accuracy == 0.0
    assert grade(response, "5").accuracy == 1.0


# ---------------------------------------------------------------- API behaviour
def test_grade_fields_and_no_box():
    g = grade("<think>so</think> the answer is 5", "5")
    assert isinstance(g, Grade)
    assert (g.accuracy, g.format, g.overall, g.extracted, g.status) == (0.0, 0.0, 0.0, None, "no_box")
    g = grade("<think>so</think> \\boxed{5}", "5")
    assert (g.accuracy, g.format, g.overall) == (1.0, 1.0, 1.0)
    g = grade("\\boxed{5}", "5")
    assert (g.accuracy, g.format) == (1.0, 0.0) and g.overall == pytest.approx(0.9)


def test_empty_and_unparseable_gold_are_reported():
    assert grade("<think>a</think>\\boxed{}", "").status == "empty_gold"
    assert grade("<think>a</think>\\boxed{5}", "   ").accuracy == 0.0
    g = grade("<think>a</think>\\boxed{5}", "\\\\")
    assert (g.accuracy, g.status) == (0.0, "gold_unparseable")


def test_grade_many_order_cache_and_errors():
    responses = [f"<think>t</think>\\boxed{{{k}}}" for k in (1, 2, 3, 2, 1)]
    golds = ["1", "2", "4", "2", "\\frac{2}{2}"]
    assert [g.accuracy for g in grade_many(responses, golds, workers=2)] == [1, 1, 0, 1, 1]
    with pytest.raises(ValueError, match="2 responses but 1 gold"):
        grade_many(["a", "b"], ["a"])
    with pytest.raises(ValueError, match="valid names: default, paper"):
        grade("a", "a", mode="strict")


def test_answers_match():
    assert answers_match("3\\sqrt{2}", "\\sqrt{18}")
    assert answers_match("x=5", "5")
    assert not answers_match("(2,1)", "(1,2)")
    assert not answers_match("3.14", "\\pi")


# ---------------------------------------------------------------- bounds: never hang, never crash
PATHOLOGICAL = [
    "<think>a</think>\\boxed{10^{10^{10^{10}}}}",
    "<think>a</think>\\boxed{" + "{" * 10_000 + "1" + "}" * 10_000 + "}",
    "<think>a</think>\\boxed{" + "\\boxed{" * 5_000,
    "<think>" + " " * 1_000_000 + "</think>\\boxed{1}",
    "</think>" * 130_000,
    "\x00\xff\ufffd\x1b[31m" * 1000 + "\\boxed{\x00}",
    "",
    "\\boxed{" + "9" * 5000 + "}",
    "<think>a</think>\\boxed{(((((((((((((((((((((((((x)))))))))))))))))))))))))^{99999999}}",
]


@pytest.mark.parametrize("i", range(len(PATHOLOGICAL)))
def test_pathological_inputs_are_bounded(i):
    """Each returns a non-match (the pytest timeout catches a hang; no wall-clock bound here)."""
    g = grade(PATHOLOGICAL[i], "2", timeout_s=1.0)
    assert g.accuracy == 0.0


def test_huge_power_times_out_and_pool_recovers():
    g = grade("<think>a</think>\\boxed{10^{10^{10^{10}}}}", "10^{10^{10^{10}}}+1", timeout_s=0.5)
    assert g.accuracy == 0.0
    assert grade("<think>a</think>\\boxed{3\\sqrt{2}}", "\\sqrt{18}").accuracy == 1.0


def test_bounded_off_the_main_thread():
    """math-verify's own timeouts need the main thread; ours must not."""
    out = {}

    def work():
        out["slow"] = grade("<think>a</think>\\boxed{10^{10^{10^{10}}}}", "7", timeout_s=0.5)
        out["symbolic"] = grade("<think>a</think>\\boxed{(x+1)^2}", "x^2+2x+1")

    t = threading.Thread(target=work)
    t.start()
    t.join(30)
    assert not t.is_alive()
    assert out["slow"].accuracy == 0.0 and out["symbolic"].accuracy == 1.0


LATEX_PIECES = ["\\frac{", "}", "{", "^", "_", "\\sqrt", "x", "1", "2", "\\pi", "(", ")", "[", ",", "=",
                "\\boxed{", "\\circ", "%", "-", ".", "e", "\\"]
LATEX = st.lists(st.sampled_from(LATEX_PIECES), max_size=25).map("".join)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    response=st.one_of(st.text(max_size=200), LATEX.map(lambda s: "<think>t</think>\\boxed{" + s + "}")),
    gold=st.one_of(st.text(max_size=20), LATEX),
)
def test_fuzz_never_raises_and_stays_bounded(response, gold):
    g = grade(response, gold, timeout_s=1.0)
    assert g.accuracy in (0.0, 1.0) and g.format in (0.0, 1.0)
    assert g.overall == pytest.approx(0.9 * g.accuracy + 0.1 * g.format)


# ---------------------------------------------------------------- command line
def run_cli(*args):
    return subprocess.run(
        [sys.executable, "-m", "bench.verify", *args], capture_output=True, text=True, timeout=120
    )


def test_cli_single_response():
    out = run_cli("--response", "<think>t</think>\\boxed{\\frac{1}{2}}", "--answer", "0.5")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == {
        "accuracy": 1.0, "format": 1.0, "overall": 1.0, "extracted": "\\frac{1}{2}", "status": "ok"
    }


def test_cli_jsonl_names_bad_rows(tmp_path):
    f = tmp_path / "rows.jsonl"
    f.write_text(
        json.dumps({"response": "<think>t</think>\\boxed{4}", "answer": "4"}) + "\n"
        + "{not json\n"
        + json.dumps({"response": 5, "answer": "4"}) + "\n"
        + json.dumps({"response": "\\boxed{3}", "answer": 4}) + "\n"
        + json.dumps({"response": "a\u2028b\u2029c\x85 \\boxed{7}", "answer": None}) + "\n"
        + '{"response": "<think>t</think>\\\\boxed{7}",\r"answer": "7"}\r\n'
        + "\n"
        + json.dumps({"response": "<think>t</think>\\boxed{9}", "answer": "9"}) + "\n"
    )
    out = run_cli("--jsonl", str(f), "--out", str(tmp_path / "grades.jsonl"))
    assert out.returncode == 0, out.stderr
    assert f"{f}:2: not valid JSON" in out.stderr and f"{f}:3:" in out.stderr
    assert f'{f}:5: needs a string "response" and a string or number "answer"' in out.stderr  # null answer
    summary = json.loads(out.stdout)
    assert summary["graded"] == 4 and summary["skipped_rows"] == 4
    grades = [json.loads(line) for line in (tmp_path / "grades.jsonl").read_text().splitlines()]
    # one output line per input line, with its number: a raw \r does not shift the numbering
    assert [(g["line"], g["status"], g.get("accuracy")) for g in grades] == [
        (1, "ok", 1.0), (2, "skipped", None), (3, "skipped", None), (4, "ok", 0.0), (5, "skipped", None),
        (6, "ok", 1.0), (7, "skipped", None), (8, "ok", 1.0)]


def test_cli_agreement_table():
    out = run_cli("--agreement")
    assert out.returncode == 0, out.stderr
    rows = {
        line.split("|")[1].strip(): line for line in out.stdout.splitlines() if line.startswith("| ") and "%" in line
    }
    assert set(rows) == {"default", "paper", "math-verify alone"}
    assert "| 100.0% |" in rows["default"]
