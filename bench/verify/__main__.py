"""Command line for the verifier.

    python -m bench.verify --response R --answer A [--mode paper]   # one Grade as JSON
    python -m bench.verify --jsonl FILE [--out GRADES.jsonl]        # grade {"response","answer"} rows
                                                                    # (--out: a line per input line)
    python -m bench.verify --agreement [--table FILE]               # judges against the regression table
"""

from __future__ import annotations

import argparse
import collections
import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path

from ..errors import UsageError, exit_on_usage_error
from ..fileio import write_text_atomic
from .grade import DEFAULT_TIMEOUT_S, MODES, grade, grade_many
from .judge import get_judge
from .table import DEFAULT_TABLE, load_table


@dataclass
class InputRow:
    line: int
    response: str | None = None
    answer: str | None = None
    problem: str | None = None  # why the row is skipped


def read_jsonl(path: Path) -> list[InputRow]:
    """One InputRow per line of the file (lines end at "\n" only; a raw "\r" inside a line does not
    start a new one). A malformed row carries a problem naming the file and line."""
    data = path.read_bytes().split(b"\n")
    if data and not data[-1].strip():
        data.pop()  # the newline that ends the last line
    rows = []
    for n, raw in enumerate(data, 1):
        where = f"{path}:{n}"
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            rows.append(InputRow(n, problem=f"{where}: not UTF-8 text"))
            continue
        if not text.strip():
            rows.append(InputRow(n, problem=f"{where}: empty line"))
            continue
        try:
            row = json.loads(text)
        except json.JSONDecodeError as exc:
            rows.append(InputRow(n, problem=f"{where}: not valid JSON ({exc.msg})"))
            continue
        except RecursionError:
            rows.append(InputRow(n, problem=f"{where}: not valid JSON here (nested too deep)"))
            continue
        answer = row.get("answer") if isinstance(row, dict) else None
        if not isinstance(row, dict) or not isinstance(row.get("response"), str) or \
                not isinstance(answer, (str, int, float)) or isinstance(answer, bool):
            rows.append(InputRow(n, problem=f'{where}: needs a string "response" and a string or number "answer"'))
            continue
        rows.append(InputRow(n, row["response"], str(answer)))
    return rows


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
    parser.add_argument("--mode", choices=MODES, default="default",
                        help="default: exact rules, then math-verify; paper: the released grader (mathruler)")
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_S, help="seconds per answer")
    parser.add_argument("--out", type=Path, help="with --jsonl: write each row's grade here (JSONL)")
    parser.add_argument("--table", type=Path, default=DEFAULT_TABLE, help="with --agreement (default: the packaged regression table)")
    args = parser.parse_args(argv)
    return exit_on_usage_error(lambda: run(args))


MAX_TIMEOUT_S = 3600.0


def run(args: argparse.Namespace) -> int:
    if not (math.isfinite(args.timeout) and 0 < args.timeout <= MAX_TIMEOUT_S):
        raise UsageError(f"--timeout {args.timeout}: give seconds per answer in (0, {MAX_TIMEOUT_S:g}]")
    if args.response is not None:
        if args.answer is None:
            raise UsageError("--response needs --answer")
        print(json.dumps(grade(args.response, args.answer, mode=args.mode, timeout_s=args.timeout).to_dict()))
        return 0
    if args.agreement:
        print(agreement(args.table, args.timeout))
        return 0
    if not args.jsonl.exists():
        raise UsageError(f"--jsonl {args.jsonl}: no such file")
    if not args.jsonl.is_file():
        raise UsageError(f"--jsonl {args.jsonl}: not a regular file")
    if args.jsonl.stat().st_size == 0:
        raise UsageError(f"--jsonl {args.jsonl}: empty file")
    rows = read_jsonl(args.jsonl)
    problems = [r.problem for r in rows if r.problem]
    for problem in problems:
        print(problem, file=sys.stderr)
    valid = [r for r in rows if not r.problem]
    grades = grade_many([r.response for r in valid], [r.answer for r in valid], mode=args.mode, timeout_s=args.timeout)
    if args.out:  # one line per input line, in order, with its line number; status "skipped" or the grade's
        by_line = {r.line: g for r, g in zip(valid, grades, strict=True)}
        out = [{"line": r.line, "status": "skipped", "problem": r.problem} if r.problem else
               {"line": r.line, **by_line[r.line].to_dict()} for r in rows]
        write_text_atomic(args.out, "".join(json.dumps(o) + "\n" for o in out))
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
