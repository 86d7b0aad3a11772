"""The verifier regression table (bench/verify/regression_table.tsv: category, gold, an equivalent
answer, a near miss) as (response, gold, expected) rows; `python -m bench.verify --agreement`
grades it and tests/test_verify.py pins it."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from ..errors import UsageError

DEFAULT_TABLE = Path(__file__).resolve().with_name("regression_table.tsv")


@dataclass(frozen=True)
class Case:
    category: str
    response: str
    gold: str
    expected: bool
    line: int


def as_response(answer: str) -> str:
    """A well-formed response around a bare answer; full responses pass through."""
    if "\\boxed" in answer:
        return answer
    return f"<think>Working it out step by step.</think> The answer is \\boxed{{{answer}}}."


def load_table(path: str | Path = DEFAULT_TABLE) -> list[Case]:
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"verifier table not found: {path} (pass --table FILE)")
    cases: list[Case] = []
    with path.open(encoding="utf-8", newline="") as f:
        lines = [(n, line) for n, line in enumerate(f, 1) if line.strip() and not line.startswith("#")]
    reader = csv.reader((line for _, line in lines), delimiter="\t", quoting=csv.QUOTE_NONE)
    header = next(reader)
    if header != ["category", "gold", "equivalent", "near_miss"]:
        raise UsageError(f"{path}: header must be category, gold, equivalent, near_miss; got {header}")
    for (n, _), row in zip(lines[1:], reader, strict=True):
        if len(row) != 4:
            raise UsageError(f"{path}:{n}: expected 4 tab-separated columns, got {len(row)}")
        category, gold, same, near = row
        cases.append(Case(category, as_response(same), gold, True, n))
        cases.append(Case(category, as_response(near), gold, False, n))
    return cases
