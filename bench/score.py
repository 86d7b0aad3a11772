"""Judge-free scoring of VLMEvalKit prediction files with this project's verifier.

    python -m bench.score --work-dir DIR [--mode default|paper] [--allow-unverified]

For every `{work_dir}/{model}/{model}_{dataset}.xlsx` (or .tsv/.csv/.json) the full responses are
graded against the gold answers (boxed answer against gold; for multiple choice the option letter
or the option's text, wherever the dataset keeps its options; yes/no and short text). MMMU is
scored on its validation split. Writes, per dataset,
`{model}_{dataset}_r1_score.csv` (one row of metrics) and, per model, `r1_scores.json` (with each
dataset's accuracy per category, as VLMEvalKit's result tables group it); and
`{work_dir}/scores.csv` for all models. For multiple choice with options in columns (MMStar,
AI2D, MMMU) `exact_match` is VLMEvalKit's own judge-free matching of the prediction, beside
`accuracy`, which needs a boxed answer. VLMEvalKit's own scores (status.json) are read where they
exist. Every score is on the 0-100 scale.

Only the predictions bench.run recorded are scored, while they match its record (name, sha256, row
count, index set: `unlike_record`); a file without a record is refused unless --allow-unverified,
and then marked unverified in every output. A prediction file that cannot be read, lacks the
columns needed, or differs from its record, is reported by name and skipped (counted in the
summary); the others are still scored.
"""

from __future__ import annotations

import argparse
import ast
import io
import json
import math
import numbers
import re
import sys
from collections import Counter
from pathlib import Path

import pandas as pd

from .errors import exit_on_usage_error
from .fileio import read_text_regular, regular_file, write_json_atomic, write_text_atomic
from .lock import holder
from .provenance import file_sha256, index_digest, index_key
from .verify import grade_many

PRED_SUFFIXES = (".xlsx", ".tsv", ".csv", ".json")
MAX_RECORD_CHARS = 1_000_000
"""An extra_records cell longer than this is not parsed (a response of 2,048 tokens is ~10k characters)."""
OWN_SUFFIXES = ("_r1_score.csv",)


class ResultsError(ValueError):
    """A results file that cannot be scored."""


def write_csv_atomic(frame: pd.DataFrame, path: Path) -> None:
    write_text_atomic(path, frame.to_csv(index=False))


def normalise(value: float) -> float:
    """VLMEvalKit reports some metrics on 0-1 and others on 0-100: put everything on 0-100.
    (A value <= 1 is read as a fraction.)"""
    value = float(value)
    return value * 100.0 if 0.0 <= value <= 1.0 else value


EMPTY_MARKERS = frozenset({""})
"""Cell texts that mean "no value" in a results file read as text (after stripping): only the empty
cell. pandas' default markers ("None", "NA", "null", "N/A", "nan", "NaN", ...) are answers some
benchmarks have (read as missing, 6 of 7 such exact answers scored 0)."""


def is_null(value) -> bool:
    """A JSON null as pandas gives it back from a results file: None or NaN."""
    return value is None or (isinstance(value, float) and math.isnan(value))


def _json_cell_text(value) -> str:
    """A cell of a JSON results file as text: a string as it is, null as "" (`is_null`), anything
    else (a number, a list) as its JSON."""
    if is_null(value):
        return ""
    return value if isinstance(value, str) else json.dumps(value)


def read_predictions(path: Path, text: bool = False, require: tuple[str, ...] = ("answer", "prediction"),
                     data: bytes | None = None) -> pd.DataFrame:
    """A results file (.xlsx, .tsv, .csv or JSON) as a frame, with the columns `require`. `text`:
    every cell as the string it holds (empty cells and JSON nulls "", no value read as missing: see
    EMPTY_MARKERS), as scoring and coverage checks read it. Otherwise every cell as stored, for the
    files this project rewrites in place: a spreadsheet's numbers as numbers and its strings as
    strings, every cell of a TSV or CSV as its text, JSON's values as JSON typed them (nulls as None
    or NaN). Never pandas' type inference, which would turn a gold "007" into 7.0 and "NA" into an
    empty cell, and a rewrite would write them back so. `data`: the file's bytes, already read
    (`read_recorded`), parsed instead of reading `path` again."""
    try:
        source = io.BytesIO(data) if data is not None else regular_file(path)
        if path.suffix == ".xlsx":
            frame = pd.read_excel(source, dtype=str if text else object, keep_default_na=False)
        elif path.suffix in (".tsv", ".csv"):
            frame = pd.read_csv(source, sep="\t" if path.suffix == ".tsv" else ",", dtype=str, keep_default_na=False)
        else:
            frame = pd.read_json(source, dtype=False)
            if text:
                frame = frame.map(_json_cell_text)
    except Exception as exc:  # noqa: BLE001 - any reader failure is a broken results file
        raise ResultsError(f"{path}: cannot be read ({type(exc).__name__}: {exc})") from None
    missing = set(require) - set(frame.columns)
    if missing:
        raise ResultsError(f"{path}: missing column(s) {', '.join(sorted(missing))}")
    return frame


def full_response(row: pd.Series) -> str:
    """The whole response: extra_records' full_response (our adapters), else thinking + prediction."""
    extra = row.get("extra_records")
    if isinstance(extra, str) and extra.startswith("{") and len(extra) <= MAX_RECORD_CHARS:
        try:
            record = ast.literal_eval(extra)  # parsed as a literal, never executed
            if isinstance(record, dict) and isinstance(record.get("full_response"), str):
                return record["full_response"]
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            pass  # not our record: the prediction columns below stand in
    elif isinstance(extra, dict) and isinstance(extra.get("full_response"), str):
        return extra["full_response"]
    prediction = "" if pd.isna(row["prediction"]) else str(row["prediction"])
    thinking = row.get("thinking")
    if isinstance(thinking, str) and thinking:
        return f"<think>{thinking}</think>{prediction}"
    return prediction


OPTION_LETTERS = "ABCDEFGHI"  # MMMU goes up to I
_OPTION_LINE = re.compile(r"^\s*\(?([A-I])\)?\s*[.:：)]\s*(.+?)\s*$", re.MULTILINE)


def gold_answer(row: pd.Series) -> str:
    value = row["answer"]
    if not isinstance(value, str) and pd.isna(value):
        return ""
    value = str(value).strip()
    return "" if value in EMPTY_MARKERS else value


def _option_text(value) -> str:
    """A cell of an option column as text: a number read back from a spreadsheet (2, or 2.0 in a
    column with gaps) is the option "2"; an empty cell is ""."""
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, numbers.Real) and not isinstance(value, bool):  # numpy's scalars too
        value = float(value)
        if math.isnan(value):  # no option in this column
            return ""
        return str(int(value)) if value.is_integer() else str(value)
    return ""


def column_options(row: pd.Series) -> dict[str, str]:
    """Option letter -> text from columns A-I (MMMU, MMStar, AI2D), numbers included; {} when there
    are none."""
    found = {c: _option_text(row[c]) for c in OPTION_LETTERS if c in row}
    return {c: text for c, text in found.items() if text}


def options(row: pd.Series) -> dict[str, str]:
    """Option letter -> option text of a multiple-choice row, in the layout its dataset uses:
    columns A-I (MMMU, MMStar, AI2D), a `choices` list literal (MathVista, MathVision; parsed,
    never executed), or lines such as "A: 3" in `question_for_eval` / `question` (MathVerse)."""
    found = column_options(row)
    if found:
        return found
    choices = row.get("choices")
    if isinstance(choices, str) and choices.strip().startswith(("[", "(")):
        try:
            values = ast.literal_eval(choices.strip())
        except (ValueError, SyntaxError, MemoryError, RecursionError):
            values = None
        if isinstance(values, (list, tuple)) and values:
            return {OPTION_LETTERS[i]: str(v).strip() for i, v in enumerate(values[: len(OPTION_LETTERS)])}
    for key in ("question_for_eval", "question"):
        text = row.get(key)
        if isinstance(text, str):
            lines = dict(_OPTION_LINE.findall(text))
            if len(lines) >= 2:
                return lines
    return {}


def accepted_golds(row: pd.Series) -> list[str]:
    """The answers that count for a row: its gold and, for multiple choice, both the option letter
    and the option's text (as VLMEvalKit's can_infer does). MathVista keeps the option text in
    `answer` and the letter in `answer_option`; the other datasets keep the letter in `answer`."""
    gold = gold_answer(row)
    found = options(row)
    letter = row.get("answer_option")
    letter = letter.strip() if isinstance(letter, str) and letter.strip() in found else (gold if gold in found else None)
    accepted = [gold] + ([letter, found[letter]] if letter else [])
    return list(dict.fromkeys(a for a in accepted if a)) or [gold]


def exact_match(rows: list[pd.Series]) -> float | None:
    """VLMEvalKit's own judge-free multiple-choice score, 0-100: its `can_infer` (the matching its
    MCQ evaluation falls back to without a judge model) on the prediction column, the text after
    </think>, so "The answer is B" counts without a box. Over the rows whose options are columns
    A-I and whose gold is a letter (MMStar, AI2D, MMMU); None when there are none."""
    scored = []
    for row in rows:
        found, gold = column_options(row), gold_answer(row)
        if found and gold in found:
            scored.append((row, found, gold))
    if not scored:
        return None
    from .vlmeval_compat import import_vlmeval

    import_vlmeval()
    from vlmeval.utils import can_infer

    hits = [can_infer("" if pd.isna(row["prediction"]) else str(row["prediction"]), found) == gold
            for row, found, gold in scored]
    return 100.0 * sum(hits) / len(hits)


MMB_ABBREVIATIONS = {
    "coarse_perception": "CP", "finegrained_perception (instance-level)": "FP-S",
    "finegrained_perception (cross-instance)": "FP-C", "logic_reasoning": "LR", "relation_reasoning": "RR",
    "attribute_reasoning": "AR",
}
"""MMBench's abilities under the short names VLMEvalKit's result tables give them."""


def category_scores(frame: pd.DataFrame, correct: list[float], dataset: str) -> dict[str, float]:
    """Accuracy (0-100) per category, grouped as VLMEvalKit's own result tables group the dataset
    (its `report_acc` for multiple choice, `MathVista_acc`): MathVista per `task` and per skill in
    `skills` (a list literal, parsed, never evaluated); otherwise per value of `l2-category`, then
    of `category`. Empty where the file has none of these columns."""
    groups: dict[str, list[float]] = {}

    def add(name, value: float) -> None:
        name = "" if pd.isna(name) else str(name).strip()
        if name:
            groups.setdefault(MMB_ABBREVIATIONS.get(name, name), []).append(value)

    for (_, row), value in zip(frame.iterrows(), correct, strict=True):
        if dataset.startswith("MathVista"):
            if "task" in row:
                add(row["task"], value)
            if "skills" in row and not pd.isna(row["skills"]):
                try:
                    skills = ast.literal_eval(str(row["skills"]))
                except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
                    skills = [row["skills"]]
                for skill in skills if isinstance(skills, (list, tuple)) else [skills]:
                    add(skill, value)
        else:
            for column in ("l2-category", "category"):
                if column in row:
                    add(row[column], value)
    return {name: 100.0 * sum(v) / len(v) for name, v in groups.items()}


def score_file(path: Path, mode: str = "default", dataset: str = "", frame: pd.DataFrame | None = None) -> dict:
    """Metrics of one prediction file (`frame`: the file as `read_recorded` read and checked it). MMMU
    is scored on its validation split only (VLMEvalKit's primary metric and the leaderboard's); the
    dev rows are left out."""
    frame = read_predictions(path, text=True) if frame is None else frame
    split = None
    if dataset.startswith("MMMU") and "split" in frame.columns:
        split = "validation"
        frame = frame[frame["split"].astype(str) == split]
    if frame.empty:
        raise ResultsError(f"{path}: no rows" + (f" in the {split} split" if split else ""))
    rows = [row for _, row in frame.iterrows()]
    responses = [full_response(row) for row in rows]
    golds = [accepted_golds(row) for row in rows]
    flat = grade_many([r for r, g in zip(responses, golds, strict=True) for _ in g], [a for g in golds for a in g],
                      mode=mode)
    grades, accuracy, k = [], [], 0
    for g in golds:  # a row is right when its answer matches any accepted gold
        grades.append(flat[k])
        accuracy.append(max(x.accuracy for x in flat[k : k + len(g)]))
        k += len(g)
    n = len(grades)
    return {
        "n": n,
        "accuracy": 100.0 * sum(accuracy) / n,
        "exact_match": exact_match(rows),
        "format": 100.0 * sum(g.format for g in grades) / n,
        "no_box": 100.0 * sum(g.extracted is None for g in grades) / n,
        "empty_gold": sum(g.status == "empty_gold" for g in grades),
        "judge_timeouts": sum(x.status == "timeout" for x in flat),
        "verifier_mode": mode,
        **({"split": split} if split else {}),
        "categories": category_scores(frame, accuracy, dataset),
    }


def vlmeval_scores(model_dir: Path) -> dict[str, float]:
    """VLMEvalKit's primary metrics from status.json, normalised to 0-100."""
    status = model_dir / "status.json"
    if not status.exists():
        return {}
    try:
        data = json.loads(read_text_regular(status))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        print(f"{status}: not readable JSON ({type(exc).__name__}); VLMEvalKit's own scores are ignored", file=sys.stderr)
        return {}
    datasets = data.get("datasets", {}) if isinstance(data, dict) else None
    if not isinstance(datasets, dict):
        print(f"{status}: no 'datasets' object; VLMEvalKit's own scores are ignored", file=sys.stderr)
        return {}
    out = {}
    for name, info in datasets.items():
        value = info.get("primary_metric_value") if isinstance(info, dict) else None
        if isinstance(value, (int, float)):
            out[name] = normalise(value)
    return out


def run_record(model_dir: Path) -> dict:
    """The model folder's bench_run.json, or {} where there is none or it cannot be read."""
    try:
        record = json.loads(read_text_regular(model_dir / "bench_run.json"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        return {}
    return record if isinstance(record, dict) else {}


RECORDED = ("file", "sha256", "rows", "indices_sha256")
"""The fields of a predictions record (`bench.provenance.prediction_entry`) that scoring checks."""


def prediction_keys(path: Path, data: bytes | None = None, frame: pd.DataFrame | None = None) -> list[str]:
    """The index key of every row of a predictions file, in file order (`bench.provenance.index_key`).
    `frame`: the file already read as text (`read_predictions(text=True)`)."""
    frame = read_predictions(path, text=True, data=data) if frame is None else frame
    if "index" not in frame.columns:
        raise ResultsError(f"{path}: no index column")
    return [index_key(i) for i in frame["index"]]


def unlike_record(path: Path, entry, data: bytes | None = None) -> str | None:
    """Why `path` is not the predictions file bench.run recorded for its dataset (`entry`, from
    bench_run.json), or None: its name, sha256, row count and index set must all be the recorded
    ones, and every index answered once. `data`: its bytes, when the caller read them already."""
    why = _unlike_bytes(path, entry, data)
    if why:
        return why
    try:
        return _unlike_keys(prediction_keys(path, data), entry)
    except ResultsError as exc:
        return str(exc)


def _unlike_bytes(path: Path, entry, data: bytes | None) -> str | None:
    """unlike_record's checks of the record and of the file's bytes, before they are parsed."""
    if not isinstance(entry, dict):
        return "not among the predictions bench.run recorded (bench_run.json)"
    if entry.get("file") != path.name:
        return f"bench.run recorded {entry.get('file')!r} for this dataset, not this file"
    if any(k not in entry for k in RECORDED):
        return "recorded by an earlier bench.run, without its row count and index set; run bench.run again"
    if file_sha256(path, data) != entry["sha256"]:
        return "changed since bench.run wrote it (its sha256 is not the recorded one)"
    return None


def _unlike_keys(keys: list[str], entry: dict) -> str | None:
    """unlike_record's checks of the index keys the file answers, one per row."""
    twice = sorted(k for k, n in Counter(keys).items() if n > 1)
    if twice:
        return f"answers index {twice[0]!r} more than once ({len(twice)} such)"
    if len(keys) != entry["rows"] or index_digest(keys) != entry["indices_sha256"]:
        return f"answers other items than the {entry['rows']} bench.run recorded"
    return None


def read_recorded(path: Path, entry, require: tuple[str, ...] = ("answer", "prediction")) -> pd.DataFrame:
    """The predictions file bench.run recorded as `entry`, as text (`read_predictions(text=True)`)
    with the columns `require`: its bytes read once, checked against the record (`unlike_record`)
    and parsed once, so that what is scored is what was checked, not a second read of a file that
    may have changed in between. ResultsError naming the file otherwise."""
    try:
        data = regular_file(path).read_bytes()
    except OSError as exc:
        raise ResultsError(f"{path}: cannot be read ({exc.strerror or type(exc).__name__})") from None
    why = _unlike_bytes(path, entry, data)
    if why:
        raise ResultsError(f"{path}: {why}")
    frame = read_predictions(path, text=True, require=require, data=data)
    why = _unlike_keys(prediction_keys(path, frame=frame), entry)
    if why:
        raise ResultsError(f"{path}: {why}")
    return frame


def prediction_files(model_dir: Path, judge: str | None = None) -> dict[str, Path | list[Path]]:
    """{dataset: its predictions file}, or every file that claims it where there are several (a
    stale .csv beside the .xlsx VLMEvalKit wrote, say): which one holds the run's predictions
    cannot be told from the names, so `score_work_dir` scores the one bench.run recorded, or none.
    VLMEvalKit's own outputs are not predictions: its result tables, and the files its judge
    (`judge`, the run's) wrote, `{model}_{dataset}_{judge}.xlsx`."""
    model = model_dir.name
    found: dict[str, list[Path]] = {}
    for path in sorted(model_dir.iterdir()):
        if path.suffix not in PRED_SUFFIXES or path.name.endswith(OWN_SUFFIXES) or not path.stem.startswith(f"{model}_"):
            continue
        dataset = path.stem[len(model) + 1 :]
        if re.search(r"_(acc|score|judge|gpt|auxmatch|result)", dataset) or (judge and dataset.endswith(f"_{judge}")):
            continue
        found.setdefault(dataset, []).append(path)
    return {dataset: paths[0] if len(paths) == 1 else paths for dataset, paths in found.items()}


def score_work_dir(work_dir: Path, mode: str = "default", allow_unverified: bool = False) -> pd.DataFrame:
    """Score every model folder's recorded predictions (see the module docstring). A file with no
    bench.run record (an earlier version's, or VLMEvalKit's own run) is refused unless
    `allow_unverified`, and then scored with verified = False, which every output shows."""
    if not work_dir.is_dir():
        raise ResultsError(f"--work-dir {work_dir}: {'not a folder' if work_dir.exists() else 'no such folder'}")
    rows, problems = [], 0
    for model_dir in sorted(p for p in work_dir.iterdir() if p.is_dir() and p.name != "logs"):
        running = holder(model_dir)
        if running:  # its predictions may be half written, or some datasets not begun
            print(f"{model_dir}: a bench.run ({running}) is still writing it; not scored", file=sys.stderr)
            problems += 1
            continue
        record = run_record(model_dir)
        if record.get("status") == "running":
            print(f"{model_dir}: its bench.run did not finish (bench_run.json says running: killed?); not scored; "
                  "run it again", file=sys.stderr)
            (model_dir / "r1_scores.json").unlink(missing_ok=True)
            problems += 1
            continue
        recorded = record.get("predictions")
        theirs = vlmeval_scores(model_dir)
        summary = {}
        judge = record.get("judge") if isinstance(record.get("judge"), str) else None
        for dataset, path in prediction_files(model_dir, judge).items():
            if isinstance(path, list):  # the record, where there is one, says which file is the run's
                entry = recorded.get(dataset) if isinstance(recorded, dict) else None
                named = [p for p in path if isinstance(entry, dict) and p.name == entry.get("file")]
                if not named:
                    print(f"{model_dir}: {', '.join(p.name for p in path)} all claim {dataset}; none is scored "
                          "(remove the stale one)", file=sys.stderr)
                    problems += 1
                    continue
                path = named[0]
            checked = None
            if isinstance(recorded, dict):
                try:  # read once: the bytes scored are the bytes checked against the record
                    checked = read_recorded(path, recorded.get(dataset))
                except ResultsError as exc:
                    print(f"{exc}; not scored", file=sys.stderr)
                    problems += 1
                    continue
            elif not allow_unverified:
                print(f"{path}: no bench.run record of what made it (an earlier version's file, or VLMEvalKit's own); "
                      "not scored; run bench.run again, or pass --allow-unverified to score it marked unverified",
                      file=sys.stderr)
                problems += 1
                continue
            try:
                metrics = score_file(path, mode, dataset, checked)
            except ResultsError as exc:
                print(exc, file=sys.stderr)
                problems += 1
                continue
            # verified: the file is the one bench.run recorded (`unlike_record`), whose entry is kept
            # for `checked_scores`; a file without a record is scored only when asked, marked unverified
            metrics["verified"] = isinstance(recorded, dict)
            metrics["predictions"] = recorded[dataset] if metrics["verified"] else None
            metrics["vlmeval_score"] = theirs.get(dataset)
            row = {"model": model_dir.name, "dataset": dataset,
                   **{k: v for k, v in metrics.items() if k not in ("categories", "predictions")}}
            write_csv_atomic(pd.DataFrame([row]), model_dir / f"{model_dir.name}_{dataset}_r1_score.csv")
            summary[dataset] = metrics  # with its categories: r1_scores.json
            rows.append(row)
        if summary:
            write_json_atomic(model_dir / "r1_scores.json", {"model": model_dir.name, "scale": "0-100",
                                                            "datasets": summary})
    frame = pd.DataFrame(rows)
    if rows:
        write_csv_atomic(frame, work_dir / "scores.csv")
    if not rows:
        raise ResultsError(f"{work_dir}: no prediction file could be scored ({problems} unreadable or ambiguous)")
    frame.attrs["problems"] = problems
    return frame


def checked_scores(model_dir: Path, allow_unverified: bool = False) -> tuple[dict[str, dict], list[str]]:
    """A model folder's r1_scores.json, each dataset re-checked against what made it: no bench.run
    holds or left the folder half done, the scored file is the one bench.run recorded last, and it
    still matches that record (`unlike_record`). Returns ({dataset: metrics}, the datasets scored
    without a record, which only `allow_unverified` lets through). Raises ResultsError naming the
    file and what differs. `reproduce table1`, `submit` and the miniature read scores only here."""
    path = model_dir / "r1_scores.json"
    running = holder(model_dir)
    if running:
        raise ResultsError(f"{model_dir}: a bench.run ({running}) is writing it; wait for it, then run bench.score")
    try:
        data = json.loads(read_text_regular(path))
        datasets = data["datasets"]
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError, KeyError, TypeError) as exc:
        raise ResultsError(f"{path}: not a scores file ({type(exc).__name__}); run python -m bench.score") from None
    if not isinstance(datasets, dict) or not all(isinstance(m, dict) for m in datasets.values()):
        raise ResultsError(f"{path}: not a scores file ('datasets' is not an object of per-dataset metrics)")
    record = run_record(model_dir)
    if not record and any(m.get("verified") is True for m in datasets.values()):
        raise ResultsError(f"{model_dir / 'bench_run.json'}: missing or not a readable JSON object, so what made the "
                           "scores is unknown; run bench.run and bench.score again")
    if record.get("status") == "running":
        raise ResultsError(f"{model_dir}: its last bench.run did not finish (bench_run.json says running); run it again")
    recorded = record.get("predictions") if isinstance(record.get("predictions"), dict) else {}
    unverified = []
    for dataset, metrics in datasets.items():
        if metrics.get("verified") is not True:
            if not allow_unverified:
                raise ResultsError(f"{path}: {dataset} was scored from a file with no bench.run record (unverified); "
                                   "run bench.run and bench.score again, or pass --allow-unverified")
            unverified.append(dataset)
            continue
        entry = metrics.get("predictions")
        if not isinstance(entry, dict) or entry != recorded.get(dataset):
            raise ResultsError(f"{path}: {dataset}'s score is not of the predictions bench.run recorded last; "
                               "run python -m bench.score again")
        why = unlike_record(model_dir / str(entry.get("file")), entry)
        if why:
            raise ResultsError(f"{model_dir / str(entry.get('file'))}: {why}; its score is not used")
    return datasets, unverified


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.score", description=__doc__.split("\n\n")[0])
    parser.add_argument("--work-dir", type=Path, required=True)
    parser.add_argument("--mode", choices=("default", "paper"), default="default", help="verifier mode")
    parser.add_argument("--allow-unverified", action="store_true",
                        help="also score prediction files bench.run did not record (marked unverified everywhere)")
    args = parser.parse_args(argv)
    return exit_on_usage_error(lambda: _score(args))


def _score(args: argparse.Namespace) -> int:
    try:
        frame = score_work_dir(args.work_dir, args.mode, args.allow_unverified)
    except ResultsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(frame[["model", "dataset", "n", "accuracy", "format", "vlmeval_score", "verified"]].to_string(index=False))
    if not frame["verified"].all():
        print(f"UNVERIFIED: {int((~frame['verified']).sum())} score(s) above come from files bench.run did not record")
    if frame.attrs.get("problems"):
        print(f"{frame.attrs['problems']} prediction file(s) skipped (see messages above)", file=sys.stderr)
    print(f"wrote {args.work_dir / 'scores.csv'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
