"""A work dir of `bench.score` results (r1_scores.json per model) for table and submission tests."""

from __future__ import annotations

import json
from pathlib import Path


def scores_dir(tmp_path: Path, model: str, datasets: dict[str, float], mode: str = "default",
               categories: dict[str, dict[str, float]] | None = None) -> Path:
    d = tmp_path / "work" / model
    d.mkdir(parents=True, exist_ok=True)
    (d / "r1_scores.json").write_text(json.dumps({"model": model, "scale": "0-100", "datasets": {
        k: {"accuracy": v, "verifier_mode": mode, "categories": (categories or {}).get(k, {})}
        for k, v in datasets.items()}}))
    return tmp_path / "work"
