"""Command line for the verifier.

    python -m bench.verify --response R --answer A [--mode paper]   # one Grade as JSON
    python -m bench.verify --jsonl FILE [--out GRADES.jsonl]        # grade {"response","answer"} rows
    python -m bench.verify --agreement [--table FILE]               # judges against the regression table
"""

from __future__ import annotations

import argparse
import collections
import json
import sys
from pathlib import Path

from ..fileio import write_text_atomic
from .grade import DEFAULT_TIMEOUT_S, MODES, grade, grade_many
from .judge import get_judge
from .table import DEFAULT_TABLE, load_table


def read_jsonl(path: Path) -> tuple[list[str], list[str], list[str]]:
    """(responses, answers, problems): a malformed row is named by file and line, and skipped."""
    responses, answers, problems = [], [], []
    with path.open(encoding="utf-8", errors="replace") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                problems.append(f"{path}:{n}: not valid JSON ({exc.msg})")
                continue
            if not isinstance(row, dict) or not isinstance(row.get("response"), str) or "answer" not in row:
                problems.append(f'{path}:{n}: needs a string "response" and an "answer"')
                continue
            responses.append(row["response"])
            answers.append(str(row["answer"]))
    return responses, answers, problems


def agreement(table: Path, timeout_s: float) -> str:
    """Markdown: how often each judge agrees with the table's expected decisions."""
    cases = load_table(table)
    responses, golds = [c.response for c in cases], [c.gold for c in cases]
    decisions = {mode: [g.accuracy == 1.0 for g in grade_many(responses, golds, mode=mode, timeout_s=timeout_s)] for mode in MODES}
    plain = get_judge().run("plain_math_verify", list(zip(responses, golds, strict=True)), timeout_s)
    decisions["math-verify alone"] = [match for match, _ in plain]
    pos = sum(c.expected for c in cases)
    lines = [
        f"Verifier agreement with the regression table ({len(cases)} rows: {pos} equivalent, {len(cases) - pos} near-miss)",
        "",
        "| judge | agrees | equivalents accepted | near-misses rejected |",
        "|---|---|---|---|",
    ]
    for name, said in decisions.items():
        agree = sum(s == c.expected for s, c in zip(said, cases, strict=True))
        accepted = sum(s and c.expected for s, c in zip(said, cases, strict=True))
        rejected = sum(not s and not c.expected for s, c in zip(said, cases, strict=True))
        lines.append(
            f"| {name} | {100 * agree / len(cases):.1f}% | {accepted}/{pos} | {rejected}/{len(cases) - pos} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.verify", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--response", help="one response to grade (with --answer)")
    what.add_argument("--jsonl", type=Path, help='file of {"response": ..., "answer": ...} rows')
    what.add_argument("--agreement", action="store_true", help="judges against the regression table")
    parser.add_argument("--answer", help="gold answer for --response")
    parser.add_argument("--mode", choices=MODES, default="default")
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_S, help="seconds per answer")
    parser.add_argument("--out", type=Path, help="with --jsonl: write each row's grade here (JSONL)")
    parser.add_argument("--table", type=Path, default=DEFAULT_TABLE, help="with --agreement")
    args = parser.parse_args(argv)

    if args.response is not None:
        if args.answer is None:
            parser.error("--response needs --answer")
        print(json.dumps(grade(args.response, args.answer, mode=args.mode, timeout_s=args.timeout).to_dict()))
        return 0
    if args.agreement:
        print(agreement(args.table, args.timeout))
        return 0
    if not args.jsonl.is_file():
        parser.error(f"no such file: {args.jsonl}")
    responses, answers, problems = read_jsonl(args.jsonl)
    for problem in problems:
        print(problem, file=sys.stderr)
    grades = grade_many(responses, answers, mode=args.mode, timeout_s=args.timeout)
    if args.out:
        write_text_atomic(args.out, "".join(json.dumps(g.to_dict()) + "\n" for g in grades))
    n = len(grades)
    summary = {
        "file": str(args.jsonl),
        "mode": args.mode,
        "graded": n,
        "skipped_rows": len(problems),
        "accuracy": sum(g.accuracy for g in grades) / n if n else None,
        "format": sum(g.format for g in grades) / n if n else None,
        "overall": sum(g.overall for g in grades) / n if n else None,
        "status": dict(collections.Counter(g.status for g in grades)),
    }
    print(json.dumps(summary, indent=2))
    return 0 if n else 1


if __name__ == "__main__":
    sys.exit(main())
