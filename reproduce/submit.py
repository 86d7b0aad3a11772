"""Leaderboard submission: the OpenVLM and Open LMM Reasoning records, and what a VLMEvalKit pull
request needs (both leaderboards take models by PR; their maintainers re-run the evaluation).

    python -m reproduce submit --work-dir DIR --model NAME --out results/submission.json

writes `submission.openvlm.json` and `submission.reasoning.json`, each in the layout of the
leaderboards' data file (OpenVLM.json, which the leaderboard app reads):

    {"time": "YYMMDDHHMMSS",
     "results": {MODEL: {"META": {"Method": [name, url], "Parameters": "8.3B", "Language Model": ...,
                                  "Vision Model": ..., "OpenSource": "Yes", "Verified": "No"},
                         LEADERBOARD_KEY: {"Overall": score}, ...}}}

The app reads `Parameters` as a number followed by "B", `Method` as a (name, link) pair, and each
benchmark under the leaderboard's own key, which is not always VLMEvalKit's dataset name
(`MMMU_DEV_VAL` is reported as `MMMU_VAL`, validation only, which `bench.score` already scores).
`Verified` is "No": these are our own numbers until the maintainers re-run them. Scores come
from `bench.score` (`{work_dir}/{model}/r1_scores.json`, 0-100, judge-free); how they were scored
is written in the pull-request description. Every file is validated against
reproduce/schemas/leaderboard_file.schema.json; missing benchmarks, non-numeric scores and mixed
0-1 / 0-100 scales are errors.
"""

from __future__ import annotations

import datetime
import json
import math
from pathlib import Path

from jsonschema import Draft202012Validator

from bench.adapter import DEFAULT_PLACEMENT, PAPER_MODELS
from bench.prompts import R1_PROMPT

SCHEMA = Path(__file__).resolve().parent / "schemas" / "leaderboard_file.schema.json"
LEADERBOARDS: dict[str, dict[str, str]] = {
    # leaderboard -> {VLMEvalKit dataset we evaluate: the key the leaderboard's data file uses}
    "openvlm": {"MMStar": "MMStar", "MMMU_DEV_VAL": "MMMU_VAL", "MathVista_MINI": "MathVista", "AI2D_TEST": "AI2D"},
    # The reasoning leaderboard reports MathVerse on its vision-only testmini subset.
    "reasoning": {"MathVista_MINI": "MathVista_MINI", "MathVerse_MINI_Vision_Only": "MathVerse_MINI_Vision_Only",
                  "MathVision": "MathVision"},
}
SUBMISSION_DATASETS = sorted({d for keys in LEADERBOARDS.values() for d in keys})
"""Every VLMEvalKit dataset the two records need (a superset of Table 1's except MathVerse_MINI)."""


class SubmissionError(ValueError):
    pass


def validate(data: dict) -> None:
    schema = json.loads(SCHEMA.read_text())
    errors = sorted(Draft202012Validator(schema).iter_errors(data), key=lambda e: list(e.path))
    if errors:
        lines = [f"{'/'.join(map(str, e.path)) or '(file)'}: {e.message}" for e in errors]
        raise SubmissionError(f"does not match {SCHEMA.name}:\n  " + "\n  ".join(lines))


def check_scores(scores: dict[str, object]) -> dict[str, float]:
    bad = {k: v for k, v in scores.items() if not isinstance(v, (int, float)) or isinstance(v, bool)
           or not math.isfinite(v)}
    if bad:
        raise SubmissionError(f"non-numeric scores: {bad}")
    values = list(scores.values())
    if values and max(values) <= 1.0 and any(v > 0 for v in values):
        raise SubmissionError(f"scores look like the 0-1 scale ({scores}); leaderboards take 0-100")
    small = [k for k, v in scores.items() if 0 < v < 1.0]
    if small and any(v > 1.0 for v in values):
        raise SubmissionError(f"mixed scales: {', '.join(small)} look like 0-1, the others like 0-100")
    return {k: float(v) for k, v in scores.items()}


def timestamp(now: datetime.datetime | None = None) -> str:
    """The data file's `time`: YYMMDDHHMMSS, which the leaderboard app prints as YY.MM.DD HH:MM:SS."""
    return (now or datetime.datetime.now()).strftime("%y%m%d%H%M%S")


def build_records(scores: dict[str, float], model: str, meta: dict, now: datetime.datetime | None = None
                  ) -> dict[str, dict]:
    """{leaderboard: its data file holding this one model}; scores keyed by VLMEvalKit dataset name."""
    files = {}
    for board, keys in LEADERBOARDS.items():
        missing = [d for d in keys if d not in scores]
        if missing:
            raise SubmissionError(f"{model}: missing benchmark(s) for the {board} record: {', '.join(missing)} "
                                  f"(evaluate them: python -m bench.run --data {' '.join(missing)} ..., then bench.score)")
        entry = {"META": meta, **{key: {"Overall": round(scores[d], 1)} for d, key in keys.items()}}
        data = {"time": timestamp(now), "results": {model: entry}}
        try:
            validate(data)
        except SubmissionError as exc:
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
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise SubmissionError(f"{path}: not a readable JSON file ({type(exc).__name__})") from None
    if not isinstance(data, dict):
        raise SubmissionError(f"{path}: not a JSON object")
    return data


def submit(work_dir: Path, model: str, out: Path, meta_overrides: dict | None = None,
           model_path: str | None = None) -> list[Path]:
    """Write {out}.openvlm.json, {out}.reasoning.json, {out}.supported_vlm.py, {out}.pull_request.md."""
    scores_file = Path(work_dir) / model / "r1_scores.json"
    if not scores_file.exists():
        raise SubmissionError(f"{scores_file}: not found (run python -m bench.score --work-dir {work_dir})")
    data = read_json_object(scores_file)
    datasets = data.get("datasets")
    if not isinstance(datasets, dict) or not all(isinstance(m, dict) for m in datasets.values()):
        raise SubmissionError(f"{scores_file}: no 'datasets' object of per-dataset metrics (re-run python -m bench.score)")
    if meta_overrides is not None and not isinstance(meta_overrides, dict):
        raise SubmissionError(f"--meta {json.dumps(meta_overrides)[:60]}: give a JSON object of META fields")
    run_file = Path(work_dir) / model / "bench_run.json"
    run = read_json_object(run_file) if run_file.exists() else {}
    if run.get("status") == "failed":
        raise SubmissionError(f"{run_file}: that evaluation failed ({'; '.join(f'{d}: {w}' for d, w in run.get('failed', {}).items())[:300]}); "
                              "fix it and re-run bench.run before submitting")
    scores = check_scores({d: m.get("accuracy") for d, m in datasets.items()})
    modes = sorted({str(m.get("verifier_mode")) for m in datasets.values()})
    known = PAPER_MODELS[model].meta if model in PAPER_MODELS else {}
    meta = {"Verified": "No", **known, **(meta_overrides or {})}
    meta.setdefault("Method", [model, f"https://huggingface.co/{PAPER_MODELS['R1-ShareVL-7B'].hub_id}"])
    records = build_records(scores, model, meta)
    from bench.fileio import write_json_atomic, write_text_atomic

    if model_path is None:  # the weights that were evaluated: a paper model's hub id, else what bench.run loaded
        model_path = PAPER_MODELS[model].hub_id if model in PAPER_MODELS else run.get("model")
    if not model_path:
        raise SubmissionError(f"{model}: no bench_run.json in {run_file.parent}; pass --model-path (its hub id)")
    out = Path(out)
    paths = [write_json_atomic(out.with_suffix(f".{board}.json"), record) for board, record in records.items()]
    entry = write_text_atomic(out.with_suffix(".supported_vlm.py"),
                              supported_vlm_entry(model, model_path, run.get("prompt_placement", DEFAULT_PLACEMENT)))
    pr = write_text_atomic(out.with_suffix(".pull_request.md"), pull_request_text(model, model_path, run, scores, modes))
    return [*paths, entry, pr]
