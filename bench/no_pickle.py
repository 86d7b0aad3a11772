"""VLMEvalKit's `.pkl` intermediates written and read as JSON, so no pickle from a work folder is
ever loaded.

VLMEvalKit keeps its resume state in `.pkl` files beside the predictions (`{rank}{world}_{dataset}.pkl`,
`{model}_{dataset}_PREV.pkl`, `_checkpoint.pkl`: vlmeval/inference.py `infer_data_job`, `infer_data`)
and reads them with `pickle.load` (vlmeval/smp/file.py `load`, handler `load_pkl`, in ms-vlmeval
0.0.20): a file put in a work folder, or left there by another version, would run code when loaded.
`install()` replaces the `pickle` module that vlmeval/smp/file.py calls with `JsonPickle`, whose
`dump` writes a JSON document (a tagged list of [key, value] pairs, so integer indices stay
integers) and whose `load` reads only that and refuses anything else with the file named.
`remove_foreign(folder)` deletes the `.pkl` files in a folder that are not such documents (real
pickles), before VLMEvalKit could reach them. What VLMEvalKit stores there are {index: prediction}
dicts (a prediction is a string, or a dict of strings with --use-vllm's structured records);
anything JSON cannot hold is refused at `dump`.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import IO, Any

MAGIC = b'{"bench.no_pickle": 1'
"""How every document `JsonPickle.dump` writes begins."""


def _plain(value: Any) -> Any:
    """numpy scalars (an index read from a TSV is numpy.int64) as their Python value."""
    if hasattr(value, "item") and callable(value.item):
        return value.item()
    raise TypeError(f"{type(value).__name__} cannot be kept as JSON (bench.no_pickle)")


class JsonPickle:
    """The two functions of the `pickle` module that vlmeval/smp/file.py calls."""

    @staticmethod
    def dump(data: Any, handle: IO[bytes]) -> None:
        if isinstance(data, dict):
            body = {"dict": [[_plain(k) if not isinstance(k, (str, int, float)) else k, v] for k, v in data.items()]}
        else:
            body = {"value": data}
        text = json.dumps(body, default=_plain, ensure_ascii=False)
        handle.write(MAGIC + b", " + text[1:].encode())
        handle.flush()

    @staticmethod
    def load(handle: IO[bytes]) -> Any:
        raw = handle.read()
        name = getattr(handle, "name", "a .pkl file")
        if not raw.startswith(MAGIC):
            raise ValueError(f"{name}: not a JSON intermediate bench.run wrote; a pickle is never loaded (remove it)")
        body = json.loads(raw)
        return {k: v for k, v in body["dict"]} if "dict" in body else body["value"]


def install() -> None:
    """Route vlmeval/smp/file.py's pickle calls through `JsonPickle` in this process."""
    import vlmeval.smp.file

    vlmeval.smp.file.pickle = JsonPickle


def remove_foreign(folder: Path) -> list[Path]:
    """Delete the `.pkl` files in `folder` that `JsonPickle` did not write; returns them."""
    removed = []
    for path in sorted(Path(folder).glob("*.pkl")) if Path(folder).is_dir() else []:
        if path.is_file() and not path.is_symlink():  # a link or a FIFO is never opened
            with path.open("rb") as handle:
                if handle.read(len(MAGIC)) == MAGIC:
                    continue
        path.unlink()
        print(f"note: {path}: removed (a pickle: VLMEvalKit's own or an earlier version's; bench.run never loads one)",
              file=sys.stderr)
        removed.append(path)
    return removed
