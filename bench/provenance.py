"""What makes a model's predictions, and which predictions a run made: by content, not by name.

`prediction_entry(file, keys, tsv_md5)` is what `bench.run` records of each predictions file it
finished (beside the run's settings: weights digest, generation budget, prompt placement, code
versions), and `bench.score` scores a file only while it matches (`bench.score.unlike_record`);
`reproduce table1`, `submit` and the miniature re-check the same record before they use a score
(`bench.score.checked_scores`). `weights_digest(folder)` is the sha256 over the folder's config.json and weight files (name, size,
content; sorted by name), so a checkpoint retrained in place, or another checkpoint in a folder of
the same name, gets another digest. `bench.run` records it in its settings (so `--reuse` never
keeps predictions of other weights) and the CPU reproduction keys its evaluations on it. At 7B it
reads about 16 GB once per run (about 10 s at disk speed)."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
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


def file_sha256(path: Path, data: bytes | None = None) -> str:
    """sha256 hex of a file's bytes; `data`: those bytes, when the caller has read them already."""
    if data is not None:
        return hashlib.sha256(data).hexdigest()
    with Path(path).open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def index_key(index) -> str:
    """An item's index as VLMEvalKit files it: integer-looking ones become ints (so "007" is 7,
    and a TSV holding both 7 and 007 is refused by `bench.preflight.check_tsv`)."""
    text = str(index).strip()
    return str(int(text)) if re.fullmatch(r"-?\d+", text) else text


def index_digest(keys: Iterable[str]) -> str:
    """sha256 hex of a set of index keys (sorted, one per line): which items a file answers."""
    return hashlib.sha256("\n".join(sorted(keys)).encode()).hexdigest()


def prediction_entry(path: Path, keys: list[str], tsv_md5: str | None, data: bytes | None = None) -> dict:
    """What bench.run records of a finished predictions file: its name, sha256 and row count, the
    digest of the index keys it answers (`keys`, one per row, as read from it) and the md5 of the
    TSV they come from (None: a TSV VLMEvalKit fetched itself). bench.score scores the file only
    while all of it matches (a file truncated, rewritten or swapped for a sibling since, or one
    answering an item twice, is refused). `data`: the file's bytes, when the caller read them once."""
    return {"file": Path(path).name, "sha256": file_sha256(path, data), "rows": len(keys),
            "indices_sha256": index_digest(keys), "tsv_md5": tsv_md5}
