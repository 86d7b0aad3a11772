"""What `bench.run` checks before VLMEvalKit sees a dataset or a model, and after it has run.

VLMEvalKit keys every prediction by the TSV's `index` column and catches every error of a dataset
(it logs the traceback and goes on), so a broken input can end in predictions that look right.
These checks turn each such input into one line that names the file and the rows:

- `check_tsv`: a readable, non-empty TSV with `index` and `image` (or `image_path`) columns;
  every index present and unique (duplicates make every row of an index get one prediction);
  the images of the rows that will run decode.
- Cells that VLMEvalKit evaluates as Python must be literals, since nothing from a data file may
  run: `index` (`vlmeval/smp/misc.py` `istype` calls `eval` on it), `image` and `image_path`
  written as lists (`toliststr` calls `eval`), `choices` (MathVista's and MathVision's
  scorers, `vlmeval/dataset/utils/mathvista.py` and `mathv.py`, call `eval`), and the columns of
  `EVALUATED_BY_SCORER` (OCRBench's `answer`).
- `check_model_folder`: a local checkpoint has a `config.json` that parses and weights whose
  safetensors headers parse.
- `finished_predictions`: after the run, a dataset's predictions cover exactly the items it had
  to answer, each once, and VLMEvalKit recorded no error for it in this run.
"""

from __future__ import annotations

import ast
import base64
import binascii
import io
import json
import re
import stat
from pathlib import Path
from typing import NamedTuple

import pandas as pd

from .provenance import index_key

EVALUATED_BY_SCORER: dict[str, tuple[str, ...]] = {
    "OCRBench": ("answer",),  # OCRBench.evaluate: `answers = eval(line['answer'])`, vlmeval/dataset/image_vqa.py:527
}
"""Dataset (its TSV's name) -> columns whose every cell its VLMEvalKit scorer evaluates as Python
(ms-vlmeval 0.0.20; found by reading every `eval(` of the scorers of the datasets this project runs)."""
SAFE_INDEX = re.compile(r"^[A-Za-z0-9_.\-]+$")  # no brackets or quotes: nothing a call can be made of
SHOWN = 5  # rows named in one message


def _rows(labels: list[str]) -> str:
    more = f" and {len(labels) - SHOWN} more" if len(labels) > SHOWN else ""
    return ", ".join(labels[:SHOWN]) + more


def _is_list_cell(value: str) -> bool:
    return value.startswith("[") and value.endswith("]")  # VLMEvalKit's toliststr test


def _any_cell(value: str) -> bool:
    return True


_NOT_A_LITERAL = object()


def _literal(value: str):
    """`ast.literal_eval(value)`, or _NOT_A_LITERAL where it refuses: a value it accepts runs
    nothing under Python's eval either."""
    try:
        return ast.literal_eval(value)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return _NOT_A_LITERAL


def _is_literal(value: str) -> bool:
    return _literal(value) is not _NOT_A_LITERAL


def _literal_strings(value: str) -> list[str] | None:
    """The strings of a list literal, or None when `value` is anything else (never evaluated)."""
    parsed = _literal(value)
    if isinstance(parsed, list) and all(isinstance(x, str) for x in parsed):
        return parsed
    return None


def _image_problem(encoded: str) -> str | None:
    from PIL import Image, UnidentifiedImageError

    try:
        data = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        return "image is not valid base64"
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.verify()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError):
        return "image does not decode"
    return None


def read_tsv(path: Path) -> pd.DataFrame:
    """A dataset TSV as strings; ValueError with one line for a file that is not one."""
    try:
        info = path.stat()
    except OSError as exc:
        raise ValueError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    if not stat.S_ISREG(info.st_mode):
        raise ValueError(f"{path}: not a regular file")
    if info.st_size == 0:
        raise ValueError(f"{path}: empty file")
    try:
        return pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, OSError, ValueError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ValueError(f"{path}: not a readable TSV ({first})") from None


class TsvCheck(NamedTuple):
    problems: list[str]
    """Each one line naming the file; any of them stops the run."""
    notes: list[str]
    """Printed, not fatal: rows without an image, which VLMEvalKit skips."""
    expected: list[str]
    """The indices VLMEvalKit will answer: rows with an image, the first `limit` of them."""


def check_tsv(path: Path, limit: int | None = None) -> TsvCheck:
    """A dataset TSV as VLMEvalKit will read it, read once. The images of the first `limit` rows
    with an image (all, without a limit) are decoded."""
    try:
        frame = read_tsv(path)
    except ValueError as exc:
        return TsvCheck([str(exc)], [], [])
    problems, notes = [], []
    missing = [c for c in ("index",) if c not in frame.columns]
    if "image" not in frame.columns and "image_path" not in frame.columns:
        missing.append("image")
    if missing:
        return TsvCheck([f"{path}: no {' or '.join(repr(c) for c in missing)} column (columns: "
                         f"{', '.join(frame.columns)})"], [], [])
    index = frame["index"].str.strip()
    rows = [f"row {k + 1}" for k in range(len(frame))]
    empty = [rows[k] for k in range(len(frame)) if not index.iloc[k]]
    if empty:
        problems.append(f"{path}: no index in {_rows(empty)}")
    unsafe = [f"{rows[k]} ({index.iloc[k][:40]!r})" for k in range(len(frame))
              if index.iloc[k] and not SAFE_INDEX.match(index.iloc[k])]
    if unsafe:
        problems.append(f"{path}: index cells that are not plain numbers or names (VLMEvalKit evaluates them as Python): "
                        f"{_rows(unsafe)}")
    # compared as VLMEvalKit files them (`index_key`: "7" and "07" are both index 7)
    spelled: dict[str, list[str]] = {}
    for value in index[index != ""]:
        spelled.setdefault(index_key(value), []).append(value)
    duplicated = {key: values for key, values in spelled.items() if len(values) > 1}
    if duplicated:
        problems.append(f"{path}: duplicate index values "
                        + _rows([f"{key} ({len(values)} rows" + (f": {', '.join(dict.fromkeys(values))}" if
                                                               len(set(values)) > 1 else "") + ")"
                                 for key, values in duplicated.items()])
                        + "; every index must be unique, or rows get one another's predictions")
    evaluated = [("image_path", _is_list_cell), ("choices", bool), *((c, _any_cell) for c in EVALUATED_BY_SCORER.get(path.stem, ()))]
    for column, must_eval in evaluated:
        if column in frame.columns:
            bad = [rows[k] for k, v in enumerate(frame[column].str.strip()) if must_eval(v) and not _is_literal(v)]
            if bad:
                problems.append(f"{path}: {column} cells that are not Python literals (VLMEvalKit evaluates them): "
                                f"{_rows(bad)}")
    expected = list(index)
    if "image" in frame.columns:
        problems += _image_problems(path, frame, index, rows, limit, notes)
        expected = [i for i, image in zip(index, frame["image"], strict=True) if image.strip()]
    return TsvCheck(problems, notes, expected[:limit] if limit else expected)


def _image_problems(path: Path, frame: pd.DataFrame, index: pd.Series, rows: list[str], limit: int | None,
                    notes: list[str]) -> list[str]:
    images = frame["image"]
    no_image = [rows[k] for k in range(len(frame)) if not images.iloc[k].strip()]
    if no_image:
        notes.append(f"{path}: {len(no_image)} row(s) without an image, which VLMEvalKit skips: {_rows(no_image)}")
    by_index = dict(zip(index, images, strict=True))
    with_image = [k for k in range(len(frame)) if images.iloc[k].strip()]
    bad = []
    for k in with_image[:limit] if limit else with_image:
        value = images.iloc[k].strip()
        if len(value) <= 64:  # VLMEvalKit reads a short value as the index of the row holding the image
            target = by_index.get(value, "")
            if len(target.strip()) <= 64:
                bad.append(f"{rows[k]}: image refers to index {value[:40]!r}, which holds no image")
                continue
            value = target.strip()
        if _is_list_cell(value):
            encoded = _literal_strings(value)
            if encoded is None:
                bad.append(f"{rows[k]}: image list is not a list of strings (VLMEvalKit evaluates it as Python)")
                continue
        else:
            encoded = [value]
        problem = next((p for p in map(_image_problem, encoded) if p), None)
        if problem:
            bad.append(f"{rows[k]}: {problem}")
    return [f"{path}: {_rows(bad)}"] if bad else []


def check_model_folder(path: Path) -> list[str]:
    """Problems of a local checkpoint folder that would make VLMEvalKit's model fail to load."""
    config = path / "config.json"
    if not config.is_file():
        return [f"{path}: no config.json (not a Hugging Face checkpoint folder)"]
    try:
        data = json.loads(config.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        return [f"{config}: not valid JSON ({exc})"]
    problem = architecture_problem(config, data)
    if problem:
        return [problem]
    weights = sorted(path.glob("*.safetensors"))
    if not weights and not any(path.glob("pytorch_model*.bin")):
        return [f"{path}: no weights (*.safetensors or pytorch_model*.bin)"]
    problems = []
    for file in weights:
        problem = _safetensors_problem(file)
        if problem:
            problems.append(f"{file}: {problem}")
    return problems


SUPPORTED_MODEL_TYPES = ("qwen2_5_vl",)
"""The architectures this harness builds from a folder (Qwen2.5-VL: `LocalHFChat`, the trainer)."""


def architecture_problem(config: Path, data, value_bytes: int = 4, memory_bytes: int | None = None) -> str | None:
    """Why a config.json cannot be built here, before anything is: another architecture (a config
    that parses but describes, say, a Llama would be built at its full default size), or more
    parameters, at `value_bytes` each (float32 on the CPU), than this machine's memory holds.
    The count is taken on PyTorch's meta device: no memory is allocated."""
    model_type = data.get("model_type") if isinstance(data, dict) else None
    if model_type not in SUPPORTED_MODEL_TYPES:
        return (f"{config}: model_type {model_type!r} is not an architecture this harness runs "
                f"({', '.join(SUPPORTED_MODEL_TYPES)})")
    import psutil
    import torch
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    try:
        with torch.device("meta"):
            count = sum(p.numel() for p in Qwen2_5_VLForConditionalGeneration(Qwen2_5_VLConfig(**data)).parameters())
    except Exception as exc:  # noqa: BLE001 - any failure to build it from the file is the file's
        cause = exc.__cause__ or exc
        return f"{config}: not a Qwen2.5-VL config that can be built ({type(cause).__name__}: {str(cause)[:120]})"
    memory = memory_bytes if memory_bytes is not None else psutil.virtual_memory().total
    if not torch.cuda.is_available() and count * value_bytes > memory:
        return (f"{config}: {count:,} parameters take {count * value_bytes / 2**30:.1f} GiB at {value_bytes} "
                f"bytes each, more than this machine's {memory / 2**30:.1f} GiB")
    return None


def _safetensors_problem(file: Path) -> str | None:
    """The safetensors layout: an 8-byte header length, a JSON header, then exactly the bytes it
    describes (a cut-off or overwritten file fails here, before a model is built)."""
    size = file.stat().st_size
    try:
        with file.open("rb") as f:
            length = int.from_bytes(f.read(8), "little")
            if size < 8 or length > size - 8:
                return "not a safetensors file (its header is cut off)"
            header = json.loads(f.read(length))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        return f"not a safetensors file ({type(exc).__name__})"
    if not isinstance(header, dict):
        return "not a safetensors file (its header is not a JSON object)"
    ends = [t["data_offsets"][1] for k, t in header.items() if k != "__metadata__" and isinstance(t, dict)
            and isinstance(t.get("data_offsets"), list) and len(t["data_offsets"]) == 2]
    if len(ends) != len([k for k in header if k != "__metadata__"]):
        return "not a safetensors file (a tensor entry has no data_offsets)"
    if 8 + length + max(ends, default=0) != size:
        return f"cut off or padded: its header describes {8 + length + max(ends, default=0)} bytes, the file has {size}"
    return None


class Finished(NamedTuple):
    """A (model, dataset) pair after the run (`finished_predictions`)."""

    problem: str | None
    """why it did not finish, or None"""
    keys: list[str]
    """the index key of every row of its predictions file, in file order ([] with a problem)"""


def finished_predictions(model_dir: Path, path: Path | None, dataset: str, expected: list[str] | None,
                         since: str, data: bytes | None = None) -> Finished:
    """Whether a model's dataset finished, and the index keys its predictions file `path` (the one
    bench.run found in `model_dir`; None: none was written) holds. `expected`: the indices it had to
    answer (None when the TSV is not local); `since`: this run's start, ISO 8601, as VLMEvalKit
    stamps the folder's status.json;
    `data`: the file's bytes, read once by the caller, who records the same bytes with these keys
    (`bench.provenance.prediction_entry`)."""
    from .score import ResultsError, read_predictions

    try:
        status = json.loads((model_dir / "status.json").read_text(encoding="utf-8"))
        entry = status.get("datasets", {}).get(dataset, {}) if isinstance(status, dict) else {}
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, AttributeError):
        entry = {}
    if isinstance(entry, dict) and entry.get("error_message") and str(entry.get("updated_at", "")) >= since:
        message = " ".join(str(entry["error_message"]).split())
        return Finished(f"VLMEvalKit: {message[:300] or 'failed'}", [])
    if path is None:
        return Finished("no prediction file was written (see VLMEvalKit's log above)", [])
    try:
        frame = read_predictions(path, text=True, data=data)
    except ResultsError as exc:
        return Finished(str(exc), [])
    if "index" not in frame.columns:
        return Finished(f"{path.name} has no index column", [])
    keys = [index_key(i) for i in frame["index"]]
    if expected is not None and sorted(keys) != sorted(map(index_key, expected)):
        answered = len(set(keys) & set(map(index_key, expected)))
        return Finished(f"{path.name} answers {answered} of the {len(expected)} items it had to", [])
    return Finished(None, keys)
