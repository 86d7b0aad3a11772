"""Offline question rewriting: K paraphrases per question from any OpenAI-compatible chat endpoint
(a local vLLM server, OpenAI), filtered, written to `new_questions`.

    python -m train.expand rewrite --input IN --output OUT --endpoint URL --model NAME --k K

Reads and writes parquet or JSONL (by extension). Each finished row is appended to
`OUT.partial.jsonl` at once, so an interrupted run resumes where it stopped; the output is
written atomically at the end. Requests run concurrently; the client retries with exponential
backoff. The API key comes from the environment (`--api-key-env`, default OPENAI_API_KEY) and
is never printed.

A rewrite is dropped when it changes the numbers or the answer options of the question, loses
an `<image>` placeholder, repeats the original, or repeats another rewrite.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from collections import Counter
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

import pandas as pd
from tqdm import tqdm

from bench.errors import UsageError
from bench.fileio import write_table_atomic

SYSTEM_PROMPT = (
    "You rewrite exam questions. Keep the meaning, every number, every answer option and the answer "
    "exactly; change only the wording. Reply with a JSON list of strings and nothing else."
)
_NUMBERS = re.compile(r"\d+(?:\.\d+)?")
_OPTION = re.compile(r"^\s*\(?([A-H])[.):]\s*(.+?)\s*$", re.MULTILINE)
_PUNCT = re.compile(r"[^\w\s]")


def _norm(text: str) -> str:
    return " ".join(_PUNCT.sub(" ", text.casefold()).split())


def filter_rewrites(original: str, rewrites: list[str]) -> tuple[list[str], Counter]:
    """Keep rewrites that preserve numbers, options and image placeholders and repeat nothing.
    Returns (kept, counts of why the others were dropped)."""
    numbers = sorted(_NUMBERS.findall(original))
    options = [text for _, text in _OPTION.findall(original)]
    images = original.count("<image>")
    seen = {_norm(original)}
    kept, dropped = [], Counter()
    for rw in rewrites:
        if not isinstance(rw, str) or not rw.strip():
            dropped["empty"] += 1
        elif sorted(_NUMBERS.findall(rw)) != numbers:
            dropped["numbers_changed"] += 1
        elif any(opt not in rw for opt in options):
            dropped["options_changed"] += 1
        elif rw.count("<image>") != images:
            dropped["image_placeholder"] += 1
        elif _norm(rw) in seen:
            dropped["repeat"] += 1
        else:
            seen.add(_norm(rw))
            kept.append(rw.strip())
    return kept, dropped


def parse_reply(content: str) -> list[str]:
    """The JSON list in a model reply (code fences tolerated); [] when there is none."""
    text = content.strip()
    if text.startswith("```"):
        text = text.strip("`")
        text = text[text.find("\n") + 1 :] if "\n" in text else text
    start, end = text.find("["), text.rfind("]")
    if start < 0 or end <= start:
        return []
    try:
        value = json.loads(text[start : end + 1])
    except json.JSONDecodeError:
        return []
    return [v for v in value if isinstance(v, str)] if isinstance(value, list) else []


def read_table(path: Path) -> pd.DataFrame:
    """The input rows, each cell as the file holds it: JSON is read with dtype=False, since pandas'
    inference would turn an answer "007" into 7.0 and "1e3" into 1000.0, and write them back so."""
    if path.suffix not in (".parquet", ".jsonl", ".json"):
        raise UsageError(f"{path}: unsupported extension {path.suffix!r}; use .parquet, .jsonl or .json")
    try:
        if path.suffix == ".parquet":
            return pd.read_parquet(path)
        return pd.read_json(path, lines=path.suffix == ".jsonl", dtype=False)
    except (OSError, ValueError) as exc:  # pyarrow's and pandas' parse errors are ValueErrors
        raise UsageError(f"{path}: cannot be read ({type(exc).__name__}: {' '.join(str(exc).split())[:200]})") from None


def load_progress(partial: Path) -> dict[int, list[str]]:
    done: dict[int, list[str]] = {}
    if partial.exists():
        for line in partial.read_text(encoding="utf-8").splitlines():
            try:
                row = json.loads(line)
                done[int(row["index"])] = list(row["new_questions"])
            except (json.JSONDecodeError, KeyError, TypeError, ValueError):
                continue  # a line cut short by a kill: that row is simply redone
    return done


def rewrite(args: argparse.Namespace) -> dict:
    from openai import OpenAI

    df = read_table(args.input)
    if args.question_key not in df.columns:
        raise UsageError(f"{args.input}: no column {args.question_key!r} (columns: {', '.join(df.columns)})")
    partial = args.output.with_name(args.output.name + ".partial.jsonl")
    done = load_progress(partial)
    client = OpenAI(
        base_url=args.endpoint,
        api_key=os.environ.get(args.api_key_env) or "EMPTY",
        max_retries=args.max_retries,
        timeout=args.timeout,
    )

    def ask(question: str) -> list[str]:
        reply = client.chat.completions.create(
            model=args.model,
            messages=[
                {"role": "system", "content": SYSTEM_PROMPT},
                {"role": "user", "content": f"Write {args.k} rewrites of this question:\n{question}"},
            ],
            temperature=args.temperature,
        )
        return parse_reply(reply.choices[0].message.content or "")

    stats: Counter = Counter(resumed=len(done))
    todo = [i for i in range(len(df)) if i not in done]
    with partial.open("a", encoding="utf-8") as log, ThreadPoolExecutor(args.concurrency) as pool:
        futures = {pool.submit(ask, str(df.iloc[i][args.question_key])): i for i in todo}
        for future in tqdm(as_completed(futures), total=len(futures), desc="rewriting", disable=args.quiet):
            i = futures[future]
            try:
                raw = future.result()
            except Exception as exc:  # after the client's retries: counted, redone on the next run
                print(f"{args.input}: row {i}: request failed ({type(exc).__name__})", file=sys.stderr)
                stats["failed_rows"] += 1
                continue
            kept, dropped = filter_rewrites(str(df.iloc[i][args.question_key]), raw)
            stats.update({f"dropped_{k}": v for k, v in dropped.items()})
            stats["kept"] += len(kept[: args.k])
            done[i] = kept[: args.k]
            log.write(json.dumps({"index": i, "new_questions": done[i]}, ensure_ascii=False) + "\n")
            log.flush()
    if todo and stats["failed_rows"] == len(todo) and not done:
        raise UsageError(f"every request to {args.endpoint} failed ({len(todo)} rows; see the messages above); "
                         f"nothing written to {args.output}")
    out = df.copy()
    out["new_questions"] = [done.get(i, []) for i in range(len(df))]
    write_table_atomic(out, args.output)
    if not stats["failed_rows"]:
        partial.unlink(missing_ok=True)
    summary = {"rows": len(df), **stats, "output": str(args.output)}
    print(json.dumps(summary))
    return summary


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--input", type=Path, required=True, help="parquet or JSONL with a question column")
    parser.add_argument("--output", type=Path, required=True, help="parquet or JSONL, adds new_questions")
    parser.add_argument("--endpoint", required=True, help="OpenAI-compatible base URL, e.g. http://127.0.0.1:8000/v1")
    parser.add_argument("--model", required=True)
    parser.add_argument("--k", type=int, default=4, help="rewrites to keep per question")
    parser.add_argument("--question-key", default="problem")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--max-retries", type=int, default=4)
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds per request")
    parser.add_argument("--temperature", type=float, default=0.7)
    parser.add_argument("--api-key-env", default="OPENAI_API_KEY", help="environment variable holding the key")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def main(argv: list[str] | None = None) -> int:
    """`python -m train.expand rewrite ...` (train.expand's command line, whose one subcommand this is)."""
    from bench.errors import exit_on_usage_error

    parser = argparse.ArgumentParser(prog="python -m train.expand", description="Question-space expansion tools.")
    commands = parser.add_subparsers(dest="command", required=True)
    add_arguments(commands.add_parser("rewrite", help="K paraphrases per question from a chat endpoint"))
    args = parser.parse_args(argv)

    def run() -> int:
        rewrite(args)
        return 0

    return exit_on_usage_error(run)


if __name__ == "__main__":  # `python -m train.rewrite ...` is `python -m train.expand rewrite ...`
    raise SystemExit(main(["rewrite", *sys.argv[1:]]))
