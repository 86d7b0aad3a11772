"""Leaderboard submission: the OpenVLM record, the Open LMM Reasoning record, and the
`supported_VLM` entry for a VLMEvalKit pull request (that leaderboard takes models by PR).

    python -m reproduce submit --work-dir DIR --model NAME --out FILE.json

Scores come from `bench.score` (`{work_dir}/{model}/r1_scores.json`, 0-100, judge-free; META
says so in "Scored By"). Both records are validated against the JSON Schemas in
reproduce/schemas/. Missing benchmarks, non-numeric scores and mixed 0-1 / 0-100 scales are errors.
"""

from __future__ import annotations

import datetime
import json
import math
from pathlib import Path

from jsonschema import Draft202012Validator
from referencing import Registry, Resource

from bench.adapter import PAPER_MODELS

SCHEMAS = Path(__file__).resolve().parent / "schemas"
RECORDS = {
    "openvlm": ("openvlm_record.schema.json", ["MMStar", "MMMU_DEV_VAL", "MathVista_MINI", "AI2D_TEST"]),
    "reasoning": ("reasoning_record.schema.json", ["MathVista_MINI", "MathVerse_MINI", "MathVision"]),
}


class SubmissionError(ValueError):
    pass


def _registry() -> Registry:
    resources = [(p.name, Resource.from_contents(json.loads(p.read_text()))) for p in SCHEMAS.glob("*.json")]
    return Registry().with_resources(resources)


def validate(record: dict, schema_name: str) -> None:
    schema = json.loads((SCHEMAS / schema_name).read_text())
    errors = sorted(Draft202012Validator(schema, registry=_registry()).iter_errors(record), key=lambda e: list(e.path))
    if errors:
        lines = [f"{'/'.join(map(str, e.path)) or '(record)'}: {e.message}" for e in errors]
        raise SubmissionError(f"record does not match {schema_name}:\n  " + "\n  ".join(lines))


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


def build_records(scores: dict[str, float], model: str, meta: dict) -> dict[str, dict]:
    records = {}
    for name, (schema, required) in RECORDS.items():
        missing = [d for d in required if d not in scores]
        if missing:
            raise SubmissionError(f"{model}: missing benchmark(s) for the {name} record: {', '.join(missing)}")
        record = {"META": meta, **{d: {"Overall": round(scores[d], 1)} for d in required}}
        validate(record, schema)
        records[name] = record
    return records


def supported_vlm_entry(model: str, model_path: str) -> str:
    return (
        "# vlmeval/config.py, in the Qwen2.5-VL series dict. Evaluated with the R1 prompt appended once\n"
        "# after the question (see bench/adapter.py: R1Qwen2VLChat), as R1-ShareVL's README asks.\n"
        f'"{model}": partial(\n'
        "    Qwen2VLChat,\n"
        f'    model_path="{model_path}",\n'
        "    min_pixels=1280 * 28 * 28,\n"
        "    max_pixels=16384 * 28 * 28,\n"
        "    use_custom_prompt=False,\n"
        "),\n"
    )


def submit(work_dir: Path, model: str, out: Path, meta_overrides: dict | None = None) -> list[Path]:
    scores_file = Path(work_dir) / model / "r1_scores.json"
    if not scores_file.exists():
        raise SubmissionError(f"{scores_file}: not found (run python -m bench.score --work-dir {work_dir})")
    data = json.loads(scores_file.read_text())
    scores = check_scores({d: m.get("accuracy") for d, m in data["datasets"].items()})
    modes = sorted({str(m.get("verifier_mode")) for m in data["datasets"].values()})
    known = PAPER_MODELS[model].meta if model in PAPER_MODELS else {}
    meta = {**known, **(meta_overrides or {})}
    meta.setdefault("Method", [model, f"https://huggingface.co/{PAPER_MODELS['R1-ShareVL-7B'].hub_id}"])
    meta["Eval Date"] = datetime.date.today().strftime("%Y/%m/%d")
    meta["Scored By"] = f"r1-sharevl bench.score, judge-free verifier (mode {', '.join(modes)})"
    records = build_records(scores, model, meta)
    from bench.fileio import write_json_atomic

    write_json_atomic(out, records)
    entry = out.with_suffix(".supported_vlm.py")
    model_path = meta["Method"][1].removeprefix("https://huggingface.co/")
    entry.write_text(supported_vlm_entry(model, model_path))
    return [out, entry]
