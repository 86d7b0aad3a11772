"""Leaderboard submission: the OpenVLM and Open LMM Reasoning records, and what a VLMEvalKit pull
request needs (both leaderboards take models by PR; their maintainers re-run the evaluation).

    python -m reproduce submit --work-dir DIR --model NAME --out results/submission.json \
        --mmbench-scores '{"MMBench_TEST_EN_V11": 82.1, "MMBench_TEST_CN_V11": 80.4}'

writes `submission.openvlm.json` and `submission.reasoning.json`, each in the layout of the
leaderboards' data file (OpenVLM.json, which the leaderboard app reads):

    {"time": "YYYYMMDDHHMMSS",
     "results": {MODEL: {"META": {"Method": [name, url], "Parameters": "8.3B", "Language Model": ...,
                                  "Vision Model": ..., "OpenSource": "Yes", "Verified": "Yes"},
                         LEADERBOARD_KEY: {"Overall": score, CATEGORY: score, ...}, ...}}}

Each record is loaded by `reproduce.openvlm_app` (the app's own rules) before it is written, so
no record the app cannot load is ever written. What that means here:

- MMBench v1.1: the app asserts that every model has `MMBench_TEST_EN_V11` and
  `MMBench_TEST_CN_V11`. Their test splits have no public answers, so our scorer cannot score
  them: evaluate them with bench.run, upload VLMEvalKit's prediction files
  (`{model}_MMBench_TEST_EN_V11.xlsx`, `..._CN_V11.xlsx`) to the official MMBench evaluation
  server, and pass its overall scores with `--mmbench-scores`. Without them the OpenVLM record is
  refused, naming what is missing (`--boards reasoning` writes the other record alone).
- Sub-scores: each benchmark carries `Overall` and the categories VLMEvalKit's own result tables
  report for it (`bench.score`'s `categories`: multiple choice per `l2-category` and `category`,
  MathVista per task and skill), since a benchmark's tab takes its columns from the first model
  in the file that has it.
- `Verified`: in the app, among closed models, API models ("Yes") versus proprietary ones ("No");
  it is not read for an open-source model. Open-source records say "Yes" (public weights); a
  closed model must say which with `--meta`.
- Keys: OpenVLM's are the app's (`MMMU_DEV_VAL` is shown as `MMMU_VAL`, validation only, which
  `bench.score` scores). The reasoning leaderboard reads its own file; its six benchmarks go under
  VLMEvalKit's dataset names, which no public source confirms as that file's keys (README).

Scores come from `bench.score` (`{work_dir}/{model}/r1_scores.json`, 0-100, judge-free); how they
were scored is written in the pull-request description. Files are also validated against
reproduce/schemas/leaderboard_file.schema.json, which describes what this module writes; missing
benchmarks, non-numeric scores and mixed 0-1 / 0-100 scales are errors.
"""

from __future__ import annotations

import datetime
import json
import math
import re
from pathlib import Path

from jsonschema import Draft202012Validator, ValidationError, validators

from bench.adapter import DEFAULT_PLACEMENT, PAPER_MODELS
from bench.fileio import output_stem, read_text_regular
from bench.prompts import R1_PROMPT
from bench.score import ResultsError, checked_scores

from . import openvlm_app

SCHEMA = Path(__file__).resolve().parent / "schemas" / "leaderboard_file.schema.json"
LEADERBOARDS: dict[str, dict[str, str]] = {
    # leaderboard -> {VLMEvalKit dataset we evaluate and score: the key the leaderboard's data file uses}
    "openvlm": {"MMStar": "MMStar", "MMMU_DEV_VAL": "MMMU_VAL", "MathVista_MINI": "MathVista", "AI2D_TEST": "AI2D"},
    # The Open LMM Reasoning leaderboard's six benchmarks (MathVerse on its vision-only testmini
    # subset), under VLMEvalKit's names: unconfirmed as that leaderboard's own keys.
    "reasoning": {"MathVista_MINI": "MathVista_MINI", "MathVision": "MathVision",
                  "MathVerse_MINI_Vision_Only": "MathVerse_MINI_Vision_Only", "DynaMath": "DynaMath",
                  "WeMath": "WeMath", "LogicVista": "LogicVista"},
}
MMBENCH_SERVER = openvlm_app.MMBENCH_V11
"""Scored by the official MMBench server only (no public answers): given with --mmbench-scores."""
SUBMISSION_DATASETS = sorted({d for keys in LEADERBOARDS.values() for d in keys} | set(MMBENCH_SERVER))
"""Every VLMEvalKit dataset the two records need evaluated."""


class SubmissionError(ValueError):
    pass


def ecma_pattern(pattern: str) -> str:
    """A JSON Schema `pattern` (ECMA-262, where `$` matches at the end of the text only) for Python's
    `re`, where `$` also matches before a final newline ("8.3B" and a newline would pass "...B$"): each `$`
    outside a character class and not escaped becomes `\\Z`."""
    out, escaped, in_class = [], False, False
    for ch in pattern:
        if escaped:
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch == "[":
            in_class = True
        elif ch == "]":
            in_class = False
        elif ch == "$" and not in_class:
            ch = "\\Z"
        out.append(ch)
    return "".join(out)


def _ecma_pattern_keyword(validator, pattern, instance, schema):
    if validator.is_type(instance, "string") and not re.search(ecma_pattern(pattern), instance):
        yield ValidationError(f"{instance!r} does not match {pattern!r}")


SchemaValidator = validators.extend(Draft202012Validator, {"pattern": _ecma_pattern_keyword})
"""Draft 2020-12 with `pattern` matched as JSON Schema defines it (ECMA-262 `$`)."""


def validate(data: dict) -> None:
    schema = json.loads(SCHEMA.read_text())
    errors = sorted(SchemaValidator(schema).iter_errors(data), key=lambda e: list(e.path))
    if errors:
        lines = [f"{'/'.join(map(str, e.path)) or '(file)'}: {e.message}" for e in errors]
        raise SubmissionError(f"does not match {SCHEMA.name}:\n  " + "\n  ".join(lines))


def check_scores(scores: dict[str, object], scale_check: bool = True) -> dict[str, float]:
    """Finite numbers on 0-100 (`scale_check`: refuse what looks like 0-1, or a mix of both)."""
    bad = {k: v for k, v in scores.items() if not isinstance(v, (int, float)) or isinstance(v, bool)
           or not math.isfinite(v)}
    if bad:
        raise SubmissionError(f"non-numeric scores: {bad}")
    if not scale_check:
        return {k: float(v) for k, v in scores.items()}
    values = list(scores.values())
    if values and max(values) <= 1.0 and any(v > 0 for v in values):
        raise SubmissionError(f"scores look like the 0-1 scale ({scores}); leaderboards take 0-100")
    small = [k for k, v in scores.items() if 0 < v < 1.0]
    if small and any(v > 1.0 for v in values):
        raise SubmissionError(f"mixed scales: {', '.join(small)} look like 0-1, the others like 0-100")
    return {k: float(v) for k, v in scores.items()}


def timestamp(now: datetime.datetime | None = None) -> str:
    """The data file's `time`: YYYYMMDDHHMMSS, which the leaderboard app prints as YYYY.MM.DD HH:MM:SS."""
    return (now or datetime.datetime.now()).strftime("%Y%m%d%H%M%S")


def benchmark_block(metrics: dict, dataset: str) -> dict[str, float]:
    """{"Overall": accuracy, category: accuracy, ...} of one scored dataset, on 0-100, one decimal."""
    block = {"Overall": round(metrics["accuracy"], 1)}
    categories = metrics.get("categories") or {}
    if not isinstance(categories, dict):
        raise SubmissionError(f"{dataset}: 'categories' is not an object of scores")
    for name, value in check_scores({str(k): v for k, v in categories.items()}, scale_check=False).items():
        if name != "Overall":
            block[name] = round(value, 1)
    return block


def mmbench_blocks(given: dict | None) -> dict[str, dict[str, float]]:
    """--mmbench-scores: {dataset: overall} or {dataset: {"Overall": x, category: y}} from the server."""
    if given is None:
        return {}
    if not isinstance(given, dict):
        raise SubmissionError("--mmbench-scores: give a JSON object, e.g. "
                              '\'{"MMBench_TEST_EN_V11": 82.1, "MMBench_TEST_CN_V11": 80.4}\'')
    unknown = sorted(set(given) - set(MMBENCH_SERVER))
    if unknown:
        raise SubmissionError(f"--mmbench-scores: {', '.join(unknown)} (expected {', '.join(MMBENCH_SERVER)})")
    blocks = {}
    for name, value in given.items():
        block = value if isinstance(value, dict) else {"Overall": value}
        if "Overall" not in block:
            raise SubmissionError(f"--mmbench-scores: {name} has no Overall")
        blocks[name] = {k: round(v, 1) for k, v in check_scores({str(k): v for k, v in block.items()}).items()}
    return blocks


def build_records(scored: dict[str, dict], model: str, meta: dict, mmbench: dict | None = None,
                  boards: tuple[str, ...] = tuple(LEADERBOARDS), now: datetime.datetime | None = None
                  ) -> dict[str, dict]:
    """{leaderboard: its data file holding this one model}; `scored` maps VLMEvalKit dataset names to
    bench.score's metrics (accuracy, categories). Each record is loaded by the app's rules first."""
    files = {}
    server = mmbench_blocks(mmbench)
    for board in boards:
        keys = LEADERBOARDS[board]
        missing = [d for d in keys if d not in scored]
        if missing:
            raise SubmissionError(f"{model}: missing benchmark(s) for the {board} record: {', '.join(missing)} "
                                  f"(evaluate them: python -m bench.run --data {' '.join(missing)} ..., then bench.score)")
        entry = {"META": meta, **{key: benchmark_block(scored[d], d) for d, key in keys.items()}}
        if board == "openvlm":
            absent = [k for k in MMBENCH_SERVER if k not in server]
            if absent:
                raise SubmissionError(
                    f"{model}: the OpenVLM leaderboard app requires MMBench v1.1 for every model, and "
                    f"{', '.join(absent)} {'is' if len(absent) == 1 else 'are'} missing. Their test splits have no "
                    "public answers: evaluate them (python -m bench.run --data MMBench_TEST_EN_V11 "
                    "MMBench_TEST_CN_V11 ...), upload the prediction files to the official MMBench server, and pass "
                    "its scores with --mmbench-scores; or write only the other record with --boards reasoning")
            entry |= server
        data = {"time": timestamp(now), "results": {model: entry}}
        try:
            validate(data)
            openvlm_app.load(data, **({} if board == "openvlm" else {"main_fields": (), "default_bench": ()}))
        except (SubmissionError, openvlm_app.AppError) as exc:
            raise SubmissionError(f"{model}: the {board} record {exc}") from None
        files[board] = data
    return files


def supported_vlm_entry(model: str, model_path: str, placement: str) -> str:
    """What a VLMEvalKit pull request adds: a Qwen2VLChat subclass that appends the R1 prompt as the
    evaluation did, and the `supported_VLM` entry that uses it with the model's own weights."""
    every = placement == "every_text"
    where = "every text item, as the released evaluation patch does" if every else "the last text item"
    return (
        "# 1. vlmeval/vlm/qwen2_vl/model.py: Qwen2VLChat with R1-ShareVL's thinking prompt after the question\n"
        f"#    ({where}).\n"
        f"R1_PROMPT = {R1_PROMPT!r}\n\n\n"
        "class Qwen2VLChatR1(Qwen2VLChat):\n"
        "    def generate_inner(self, message, dataset=None):\n"
        "        message = [dict(m) for m in message]\n"
        "        texts = [i for i, m in enumerate(message) if m['type'] == 'text']\n"
        f"        for i in {'texts' if every else 'texts[-1:]'}:\n"
        "            message[i]['value'] = message[i]['value'] + ' ' + R1_PROMPT\n"
        "        return super().generate_inner(message, dataset=dataset)\n\n\n"
        "# 2. vlmeval/config.py, in the Qwen2.5-VL series dict:\n"
        f"{json.dumps(model)}: partial(\n"  # JSON strings are Python literals: quotes in names stay quoted
        "    Qwen2VLChatR1,\n"
        f"    model_path={json.dumps(model_path)},\n"
        "    min_pixels=1280 * 28 * 28,\n"
        "    max_pixels=16384 * 28 * 28,\n"
        "    use_custom_prompt=False,\n"
        "),\n"
    )


def pull_request_text(model: str, model_path: str, run: dict, scores: dict[str, float], modes: list[str]) -> str:
    """A short pull-request description: what is added, the scores, and the commands behind them."""
    datasets = run.get("datasets") or sorted(scores)
    placement = f" --prompt-placement {run['prompt_placement']}" if run.get("prompt_placement") else ""
    lines = [
        f"## Add {model} (R1-ShareVL: Qwen2.5-VL with the R1 thinking prompt)",
        "",
        f"Adds `Qwen2VLChatR1`, `Qwen2VLChat` with R1-ShareVL's thinking prompt after the question, and the "
        f"`{model}` entry (weights: `{model_path}`).",
        "",
        "Scores we measured (0-100, judge-free: the last \\boxed{} answer against the gold; verifier mode "
        f"{', '.join(modes)}):",
        "",
        "| dataset | score |",
        "|---|---|",
        *(f"| {d} | {scores[d]:.1f} |" for d in sorted(scores)),
        "",
        "Commands (r1-sharevl harness):",
        "",
        "```bash",
        f"python -m bench.run --model {run.get('model', model)} --data {' '.join(datasets)}{placement}",
        "python -m bench.score --work-dir WORK_DIR",
        "```",
        "",
        "VLMEvalKit command line run by bench.run: `" + " ".join(map(str, run.get("argv", []))) + "`",
        "",
        "Versions: " + ", ".join(f"{k} {v}" for k, v in sorted((run.get("versions") or {}).items())),
    ]
    return "\n".join(lines) + "\n"


def read_json_object(path: Path) -> dict:
    """A JSON object from `path`; SubmissionError naming the file otherwise."""
    try:
        data = json.loads(read_text_regular(path))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise SubmissionError(f"{path}: not a readable JSON file ({type(exc).__name__})") from None
    if not isinstance(data, dict):
        raise SubmissionError(f"{path}: not a JSON object")
    return data


def evaluated_weights(run: dict, run_file: Path) -> str:
    """The hub id of the weights bench.run evaluated, from its record (`settings.model`, the model as
    loaded): a paper model's registered name maps to its hub id, a hub id is itself. A local folder
    has no id the leaderboard could load, whatever its name (a folder named R1-ShareVL-7B holds
    whatever was put there): the caller must name one (--model-path). (A record always exists here:
    `bench.score.checked_scores` refuses scores without one.)"""
    settings = run.get("settings")
    loaded = settings.get("model") if isinstance(settings, dict) else None
    loaded = loaded if isinstance(loaded, str) and loaded else run.get("model")
    if not isinstance(loaded, str) or not loaded:
        raise SubmissionError(f"{run_file}: no model recorded; pass --model-path (the evaluated weights' hub id)")
    if loaded in PAPER_MODELS:
        return PAPER_MODELS[loaded].hub_id
    if loaded.startswith(("/", ".", "~")) or Path(loaded).exists() or loaded.count("/") != 1:
        raise SubmissionError(f"{run_file}: the evaluated weights are {loaded}, not a hub id; pass --model-path with the "
                              "hub id they are published under (the submission's supported_vlm.py loads it)")
    return loaded


def submit(work_dir: Path, model: str, out: Path, meta_overrides: dict | None = None,
           model_path: str | None = None, mmbench: dict | None = None,
           boards: tuple[str, ...] = tuple(LEADERBOARDS)) -> list[Path]:
    """Write {out}.{board}.json for each board, {out}.supported_vlm.py and {out}.pull_request.md
    (`out` a folder: {out}/{model}.{board}.json, ...; `bench.fileio.output_stem`)."""
    out = output_stem(out, model)
    scores_file = Path(work_dir) / model / "r1_scores.json"
    if not scores_file.exists():
        raise SubmissionError(f"{scores_file}: not found (run python -m bench.score --work-dir {work_dir})")
    try:  # every score re-checked against the predictions bench.run recorded; never an unverified one
        datasets, _ = checked_scores(scores_file.parent)
    except ResultsError as exc:
        raise SubmissionError(str(exc)) from None
    if meta_overrides is not None and not isinstance(meta_overrides, dict):
        raise SubmissionError(f"--meta {json.dumps(meta_overrides)[:60]}: give a JSON object of META fields")
    run_file = Path(work_dir) / model / "bench_run.json"
    run = read_json_object(run_file)
    if run.get("status") == "failed":
        raise SubmissionError(f"{run_file}: that evaluation failed ({'; '.join(f'{d}: {w}' for d, w in run.get('failed', {}).items())[:300]}); "
                              "fix it and re-run bench.run before submitting")
    scores = check_scores({d: m.get("accuracy") for d, m in datasets.items()})
    scored = {d: {**m, "accuracy": scores[d]} for d, m in datasets.items()}
    modes = sorted({str(m.get("verifier_mode")) for m in datasets.values()})
    unknown = sorted(set(boards) - set(LEADERBOARDS))
    if unknown or not boards:
        raise SubmissionError(f"--boards {' '.join(boards)}: choose from {', '.join(LEADERBOARDS)}")
    model_path = model_path or evaluated_weights(run, run_file)
    # a paper model's facts only where its own weights were evaluated, not a folder of that name
    known = next((p.meta for p in PAPER_MODELS.values() if p.hub_id == model_path), {})
    meta = {**known, **(meta_overrides or {})}
    meta.setdefault("Method", [model, f"https://huggingface.co/{model_path}"])
    if meta.get("OpenSource") == "Yes":
        meta.setdefault("Verified", "Yes")  # not read by the app for open-source models; public weights
    records = build_records(scored, model, meta, mmbench, tuple(boards))
    from bench.fileio import write_json_atomic, write_text_atomic

    paths = [write_json_atomic(out.with_name(f"{out.name}.{board}.json"), record) for board, record in records.items()]
    entry = write_text_atomic(out.with_name(f"{out.name}.supported_vlm.py"),
                              supported_vlm_entry(model, model_path, run.get("prompt_placement", DEFAULT_PLACEMENT)))
    pr = write_text_atomic(out.with_name(f"{out.name}.pull_request.md"), pull_request_text(model, model_path, run, scores, modes))
    return [*paths, entry, pr]
