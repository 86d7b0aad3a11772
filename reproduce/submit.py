"""Leaderboard submission: the OpenVLM record, and what a VLMEvalKit pull request needs (the
leaderboard takes models by PR; its maintainers re-run the evaluation).

    python -m reproduce submit --work-dir DIR --model NAME --out results/submission \
        --mmbench-scores '{"MMBench_TEST_EN_V11": "server/en.xlsx", "MMBench_TEST_CN_V11": "server/cn.xlsx"}'

writes `submission.openvlm.json` in the layout of the leaderboard's data file (OpenVLM.json,
which the leaderboard app reads):

    {"time": "YYYYMMDDHHMMSS",
     "results": {MODEL: {"META": {"Method": [name, url], "Parameters": "8.3B", "Language Model": ...,
                                  "Vision Model": ..., "OpenSource": "Yes", "Verified": "Yes"},
                         LEADERBOARD_KEY: {"Overall": score, SUB_SCORE: score, ...}, ...}}}

Before it is written, the record is loaded by `reproduce.openvlm_app` (the app's own rules) twice:
placed after a complete first model (`openvlm_keys.reference_model`) and placed first, as it may
stand in the real file. What that means here:

- Sub-scores: every benchmark carries exactly the keys of `openvlm_keys.SUBSCORES`, every
  category of the full benchmark under the app's names. Scores of part of a benchmark (a
  `--limit` run) lack some and are refused, naming them.
- MMBench v1.1: the app asserts that every model has `MMBench_TEST_EN_V11` and
  `MMBench_TEST_CN_V11`. Their test splits have no public answers: evaluate them with bench.run,
  upload VLMEvalKit's prediction files to the official MMBench evaluation server, and pass its
  per-category result file for each split with `--mmbench-scores` (a table in the layout of
  VLMEvalKit's `report_acc`: `Overall`, the six abilities, the 20 dimensions, on 0-1 or 0-100).
- `Verified`: in the app, among closed models, API models ("Yes") versus proprietary ones ("No");
  it is not read for an open-source model. Open-source records say "Yes" (public weights); a
  closed model must say which with `--meta`.
- Keys: the app's (`MMMU_DEV_VAL` is shown as `MMMU_VAL`, validation only, which `bench.score`
  scores).
- OCRBench, HallusionBench and MMVet carry VLMEvalKit's own metrics (`reproduce.openvlm_metrics`;
  MMVet needs the judge model bench.run was given), so that the record has all eight of the
  app's default benchmarks and ranks.
- A run made with `--limit` is refused.
- No reasoning record: no public leaderboard app reads one (VLMEvalKit's repository has the
  OpenVLM app only, on its `leaderboard` branch). The pull request lists every scored benchmark
  in its scores table instead.

Scores come from `bench.score` (`{work_dir}/{model}/r1_scores.json`, 0-100, judge-free), each
re-checked against the predictions bench.run recorded; how they were scored is written in the
pull-request description. The record is also validated against
reproduce/schemas/leaderboard_file.schema.json; missing benchmarks, non-numeric scores and 0-1
scores given as numbers are errors.
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
from .openvlm_keys import REFERENCE_MODEL, SubscoreError, leaderboard_block, reference_model
from .openvlm_metrics import LEADERBOARD_KEYS as VLMEVAL_SCORED
from .openvlm_metrics import MetricError, leaderboard_scores

SCHEMA = Path(__file__).resolve().parent / "schemas" / "leaderboard_file.schema.json"
OPENVLM: dict[str, str] = {"MMStar": "MMStar", "MMMU_DEV_VAL": "MMMU_VAL", "MathVista_MINI": "MathVista", "AI2D_TEST": "AI2D"}
"""VLMEvalKit dataset we evaluate and score -> the key the leaderboard's data file uses."""
MMBENCH_SERVER = openvlm_app.MMBENCH_V11
"""Scored by the official MMBench server only (no public answers): given with --mmbench-scores."""
SUBMISSION_DATASETS = sorted(set(OPENVLM) | set(VLMEVAL_SCORED) | set(MMBENCH_SERVER))
"""Every VLMEvalKit dataset the record needs evaluated."""


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


def on_unit_scale(scores: dict[str, float]) -> bool:
    """Whether `scores` are on 0-1 (none above 1, one above 0); SubmissionError when some look
    like 0-1 and others like 0-100."""
    values = list(scores.values())
    small = [k for k, v in scores.items() if 0 < v < 1.0]
    if small and any(v > 1.0 for v in values):
        raise SubmissionError(f"mixed scales: {', '.join(small)} look like 0-1, the others like 0-100")
    return bool(values) and max(values) <= 1.0 and any(v > 0 for v in values)


def check_scores(scores: dict[str, object], scale_check: bool = True) -> dict[str, float]:
    """Finite numbers on 0-100 (`scale_check`: refuse what looks like 0-1, or a mix of both)."""
    bad = {k: v for k, v in scores.items() if not isinstance(v, (int, float)) or isinstance(v, bool)
           or not math.isfinite(v)}
    if bad:
        raise SubmissionError(f"non-numeric scores: {bad}")
    if scale_check and on_unit_scale(scores):
        raise SubmissionError(f"scores look like the 0-1 scale ({scores}); leaderboards take 0-100")
    return {k: float(v) for k, v in scores.items()}


def timestamp(now: datetime.datetime | None = None) -> str:
    """The data file's `time`: YYYYMMDDHHMMSS, which the leaderboard app prints as YYYY.MM.DD HH:MM:SS."""
    return (now or datetime.datetime.now()).strftime("%Y%m%d%H%M%S")


def benchmark_block(metrics: dict, dataset: str) -> dict[str, float]:
    """The record's block for one scored dataset: {"Overall": accuracy, sub-score: accuracy, ...} on
    0-100, one decimal, exactly the leaderboard's keys (`openvlm_keys.leaderboard_block`)."""
    categories = metrics.get("categories") or {}
    if not isinstance(categories, dict):
        raise SubmissionError(f"{dataset}: 'categories' is not an object of scores")
    scores = check_scores({str(k): v for k, v in categories.items()}, scale_check=False)
    scores = {k: round(v, 1) for k, v in scores.items()} | {"Overall": round(metrics["accuracy"], 1)}
    try:
        return leaderboard_block(OPENVLM[dataset], scores)
    except SubscoreError as exc:
        hint = ("; scores of part of the benchmark (a --limit run, a subset TSV) cannot be submitted: evaluate all "
                f"of {dataset} (python -m bench.run --data {dataset} ...) and score it again") if exc.missing else \
            f"; {dataset} is not the benchmark the leaderboard holds (its TSV has other categories)"
        raise SubmissionError(f"{dataset} -> {exc}{hint}") from None


def read_server_table(path: Path, name: str) -> dict[str, float]:
    """The MMBench server's per-category result for one split, as a table in the layout of
    VLMEvalKit's `report_acc` (.xlsx, .csv or .json: one row; `split`, `Overall`, the abilities, the
    dimensions). Scores on 0-1 become 0-100, as bench.score does with VLMEvalKit's own metrics."""
    from bench.score import ResultsError, normalise, read_predictions

    try:
        if path.suffix not in (".xlsx", ".csv", ".json"):
            raise ResultsError(f"{path}: give the server's result table as .xlsx, .csv or .json")
        frame = read_predictions(path, require=())
    except ResultsError as exc:
        raise SubmissionError(f"--mmbench-scores {name}: {exc}") from None
    if len(frame) != 1:
        raise SubmissionError(f"--mmbench-scores {name}: {path} has {len(frame)} rows; the server's result for one "
                              "split has one")
    row = frame.drop(columns=[c for c in ("split",) if c in frame.columns]).iloc[0]
    values = {}
    for column, value in row.items():
        try:
            values[str(column)] = float(value)
        except (TypeError, ValueError):
            raise SubmissionError(f"--mmbench-scores {name}: {path} column {column!r} = {value!r} is not a number") from None
    checked = check_scores(values, scale_check=False)
    try:
        unit = on_unit_scale(checked)
    except SubmissionError as exc:
        raise SubmissionError(f"--mmbench-scores {name}: {path}: {exc}") from None
    return {k: normalise(v) if unit else v for k, v in checked.items()}


def mmbench_blocks(given: dict | None) -> dict[str, dict[str, float]]:
    """--mmbench-scores: {split: the server's result file}, or {split: {"Overall": x, sub-score: y}}
    (0-100), each with every sub-score the leaderboard holds. An overall score alone is refused."""
    if given is None:
        return {}
    if not isinstance(given, dict):
        raise SubmissionError("--mmbench-scores: give a JSON object, e.g. "
                              '\'{"MMBench_TEST_EN_V11": "en.xlsx", "MMBench_TEST_CN_V11": "cn.xlsx"}\'')
    unknown = sorted(set(given) - set(MMBENCH_SERVER))
    if unknown:
        raise SubmissionError(f"--mmbench-scores: {', '.join(unknown)} (expected {', '.join(MMBENCH_SERVER)})")
    blocks = {}
    for name, value in given.items():
        if isinstance(value, str):
            block = read_server_table(Path(value), name)
        else:
            block = value if isinstance(value, dict) else {"Overall": value}
            block = check_scores({str(k): v for k, v in block.items()})
        try:
            blocks[name] = leaderboard_block(name, {k: round(v, 1) for k, v in block.items()})
        except SubscoreError as exc:
            hint = ("; the leaderboard holds every ability and dimension: pass the server's per-category result file "
                    f"for this split, --mmbench-scores '{{\"{name}\": \"path/to/result.xlsx\", ...}}'") if exc.missing else ""
            raise SubmissionError(f"--mmbench-scores {exc}{hint}") from None
    return blocks


def own_metric_blocks(model_dir: Path, datasets: dict[str, dict], judge: str | None) -> dict[str, dict[str, float]]:
    """{leaderboard key: block} of the record's benchmarks VLMEvalKit scores with its own metric
    (`reproduce.openvlm_metrics`), from the prediction files `datasets` (checked scores) recorded."""
    blocks = {}
    for dataset, key in VLMEVAL_SCORED.items():
        if dataset in datasets:
            entry = datasets[dataset]["predictions"]
            path = model_dir / str(entry["file"])
            try:
                scores = leaderboard_scores(dataset, path, judge, entry)
                blocks[key] = leaderboard_block(key, {k: round(v, 1) if isinstance(v, float) else v
                                                      for k, v in scores.items()})
            except (MetricError, ResultsError, SubscoreError) as exc:
                raise SubmissionError(f"{dataset}: {exc}") from None
    return blocks


def build_record(scored: dict[str, dict], model: str, meta: dict, mmbench: dict | None = None,
                 own: dict[str, dict] | None = None, now: datetime.datetime | None = None) -> tuple[dict, dict]:
    """The OpenVLM data file holding this one model, and the app's tables of it (`openvlm_app.load`).
    `scored` maps VLMEvalKit dataset names to bench.score's metrics (accuracy, categories), `own`
    leaderboard keys to the blocks of VLMEvalKit's own metrics (`own_metric_blocks`). Loaded by the
    app's rules twice before it is returned: after a complete first model, and first."""
    own = own or {}
    missing = [d for d in OPENVLM if d not in scored] + [d for d, k in VLMEVAL_SCORED.items() if k not in own]
    if missing:
        raise SubmissionError(f"{model}: missing benchmark(s) for the OpenVLM record: {', '.join(missing)} "
                              f"(evaluate them: python -m bench.run --data {' '.join(missing)} --judge MODEL ..., "
                              "then bench.score; MMVet needs the judge)")
    entry = {"META": meta, **{key: benchmark_block(scored[d], d) for d, key in OPENVLM.items()}, **own}
    server = mmbench_blocks(mmbench)
    absent = [k for k in MMBENCH_SERVER if k not in server]
    if absent:
        raise SubmissionError(
            f"{model}: the OpenVLM leaderboard app requires MMBench v1.1 for every model, and "
            f"{', '.join(absent)} {'is' if len(absent) == 1 else 'are'} missing. Their test splits have no "
            "public answers: evaluate them (python -m bench.run --data MMBench_TEST_EN_V11 MMBench_TEST_CN_V11 ...), "
            "upload the prediction files to the official MMBench server, and pass its per-category result files "
            "with --mmbench-scores")
    data = {"time": timestamp(now), "results": {model: entry | server}}
    reference = REFERENCE_MODEL if model != REFERENCE_MODEL else REFERENCE_MODEL + "-2"
    try:
        validate(data)
        openvlm_app.load({"time": data["time"], "results": {reference: reference_model(), model: entry | server}})
        tables = openvlm_app.load(data)
    except (SubmissionError, openvlm_app.AppError) as exc:
        raise SubmissionError(f"{model}: the OpenVLM record {exc}") from None
    return data, tables


CONFIG_MARKER = "# 3. vlmeval/config.py, in the qwen2vl_series dict:\n"


def supported_vlm_entry(model: str, model_path: str, placement: str) -> str:
    """What a VLMEvalKit pull request adds: a Qwen2VLChat subclass that appends the R1 prompt as the
    evaluation did, its exports, and the `supported_VLM` entry that uses it with the model's own
    weights. Paths and names as in ms-vlmeval 0.0.20: the class beside Qwen2VLChat
    (vlmeval/vlm/qwen2_vl/model.py), exported as it is (vlm/qwen2_vl/__init__.py:1,
    vlm/__init__.py:73), and the entry in `qwen2vl_series` (config.py:1846), whose entries name
    their class through the `vlm` module (`partial(vlm.Qwen2VLChat, ...)`)."""
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
        "# 2. export it where Qwen2VLChat is exported: add Qwen2VLChatR1 to the imports of\n"
        "#    vlmeval/vlm/qwen2_vl/__init__.py (from .model import ...) and vlmeval/vlm/__init__.py\n"
        "#    (from .qwen2_vl import ...).\n"
        + CONFIG_MARKER +
        f"{json.dumps(model)}: partial(\n"  # JSON strings are Python literals: quotes in names stay quoted
        "    vlm.Qwen2VLChatR1,\n"
        f"    model_path={json.dumps(model_path)},\n"
        "    min_pixels=1280 * 28 * 28,\n"
        "    max_pixels=16384 * 28 * 28,\n"
        "    use_custom_prompt=False,\n"
        "),\n"
    )


def pull_request_text(model: str, model_path: str, run: dict, scores: dict[str, float], modes: list[str],
                      row: str = "") -> str:
    """A short pull-request description: what is added, the scores, the record's row as the
    leaderboard's main table will show it (`row`, markdown), and the commands behind them."""
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
        *([f"The attached `{model}.openvlm.json` record in the OpenVLM leaderboard's main table (its default "
           "columns; Avg Rank among this file's one model). OCRBench, HallusionBench and MMVet carry VLMEvalKit's own "
           f"metrics (judge: {run.get('judge') or 'none'}):", "", row, ""] if row else []),
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
           model_path: str | None = None, mmbench: dict | None = None) -> list[Path]:
    """Write {out}.openvlm.json, {out}.supported_vlm.py and {out}.pull_request.md (`out` a folder:
    {out}/{model}.openvlm.json, ...; `bench.fileio.output_stem`)."""
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
    if "--limit" in (run.get("argv") or []):
        raise SubmissionError(f"{run_file}: bench.run ran with --limit (a smoke run): its scores are of part of each "
                              "benchmark; evaluate the full benchmarks before submitting")
    scores = check_scores({d: m.get("accuracy") for d, m in datasets.items()})
    scored = {d: {**m, "accuracy": scores[d]} for d, m in datasets.items()}
    modes = sorted({str(m.get("verifier_mode")) for m in datasets.values()})
    model_path = model_path or evaluated_weights(run, run_file)
    # a paper model's facts only where its own weights were evaluated, not a folder of that name
    known = next((p.meta for p in PAPER_MODELS.values() if p.hub_id == model_path), {})
    meta = {**known, **(meta_overrides or {})}
    meta.setdefault("Method", [model, f"https://huggingface.co/{model_path}"])
    if meta.get("OpenSource") == "Yes":
        meta.setdefault("Verified", "Yes")  # not read by the app for open-source models; public weights
    own = own_metric_blocks(scores_file.parent, datasets, run.get("judge"))
    record, tables = build_record(scored, model, meta, mmbench, own)
    from bench.fileio import write_json_atomic, write_text_atomic

    path = write_json_atomic(out.with_name(f"{out.name}.openvlm.json"), record)
    entry = write_text_atomic(out.with_name(f"{out.name}.supported_vlm.py"),
                              supported_vlm_entry(model, model_path, run.get("prompt_placement", DEFAULT_PLACEMENT)))
    row = openvlm_app.row_markdown(tables, model)
    judge_free = {d: v for d, v in scores.items() if d not in VLMEVAL_SCORED}  # those three: VLMEvalKit's metrics
    pr = write_text_atomic(out.with_name(f"{out.name}.pull_request.md"),
                           pull_request_text(model, model_path, run, judge_free, modes, row))
    return [path, entry, pr]
