"""Work dirs as bench.run and bench.score leave them, for scoring, table and submission tests:
`record_predictions` writes the bench_run.json record of finished prediction files, and
`scores_dir` a model folder of r1_scores.json whose every score is of recorded predictions."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd


def record_predictions(model_dir: Path, files: dict[str, Path], status: str = "finished", **extra) -> dict:
    """bench_run.json recording `files` ({dataset: predictions file}) as bench.run does; returns it."""
    from bench.run import recorded_entry

    record = {"status": status, **extra, "predictions": {d: recorded_entry(p, None) for d, p in files.items()}}
    (model_dir / "bench_run.json").write_text(json.dumps(record))
    return record


def scores_dir(tmp_path: Path, model: str, datasets: dict[str, float], mode: str = "default",
               categories: dict[str, dict[str, float]] | None = None, record: dict | None = None) -> Path:
    """{tmp_path}/work/{model} as `write_scores` makes it; returns {tmp_path}/work."""
    write_scores(tmp_path / "work" / model, datasets, mode, categories, record)
    return tmp_path / "work"


def write_scores(d: Path, datasets: dict[str, float], mode: str = "default",
                 categories: dict[str, dict[str, float]] | None = None, record: dict | None = None) -> None:
    """Model folder `d`: a one-row predictions file per dataset, recorded (`record`: more
    bench_run.json fields; "model" is the folder's name unless given), and r1_scores.json with
    the given accuracies, verified."""
    model = d.name
    d.mkdir(parents=True, exist_ok=True)
    files = {}
    for dataset in datasets:
        files[dataset] = d / f"{model}_{dataset}.csv"
        pd.DataFrame([{"index": 0, "question": "q", "answer": "A", "prediction": "A"}]).to_csv(files[dataset], index=False)
    recorded = record_predictions(d, files, **{"model": model, **(record or {})})["predictions"]
    (d / "r1_scores.json").write_text(json.dumps({"model": model, "scale": "0-100", "datasets": {
        k: {"accuracy": v, "verifier_mode": mode, "categories": (categories or {}).get(k, {}), "verified": True,
            "predictions": recorded[k]}
        for k, v in datasets.items()}}))


def update_record(model_dir: Path, **fields) -> None:
    """Set fields of a model folder's bench_run.json, keeping its predictions record."""
    path = model_dir / "bench_run.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), **fields}))
