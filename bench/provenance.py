"""What makes a model's predictions, and which predictions a run made: by content, not by name.

`prediction_entry(file)` is what `bench.run` records of each predictions file it finished, and
`bench.score` scores a file only while it matches. `weights_digest(folder)` is the sha256 over the folder's config.json and weight files (name, size,
content; sorted by name), so a checkpoint retrained in place, or another checkpoint in a folder of
the same name, gets another digest. `bench.run` records it in its settings (so `--reuse` never
keeps predictions of other weights) and the CPU reproduction keys its evaluations on it. At 7B it
reads about 16 GB once per run (about 10 s at disk speed)."""

from __future__ import annotations

import hashlib
from pathlib import Path

WEIGHT_FILES = ("*.safetensors", "*.bin", "*.pt", "*.pth")


def weights_digest(folder: Path) -> str:
    """sha256 hex of config.json and the weight files of a local checkpoint folder."""
    files = sorted({p for pattern in ("config.json", *WEIGHT_FILES) for p in Path(folder).glob(pattern) if p.is_file()})
    digest = hashlib.sha256()
    for path in files:
        digest.update(f"{path.name}\0{path.stat().st_size}\0".encode())
        with path.open("rb") as handle:
            digest.update(hashlib.file_digest(handle, "sha256").digest())
    return digest.hexdigest()


def file_sha256(path: Path) -> str:
    with Path(path).open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def prediction_entry(path: Path) -> dict:
    """What bench.run records of a finished predictions file: its name and sha256. bench.score
    scores the file only while both match (a file truncated, rewritten or swapped for a sibling
    since is refused)."""
    return {"file": Path(path).name, "sha256": file_sha256(path)}
