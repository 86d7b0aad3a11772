"""Training data in the released format: columns `problem`, `answer`, `images`, optional
`new_questions`, from parquet, JSONL/JSON or a `datasets` folder.

Every row is checked once at load: a missing question or answer, an `<image>` count that does not
match the images, an unreadable image, unparseable rewrites, or a prompt over the length limit is
skipped with a message naming the file and row, and counted. If no row survives, loading stops
with an error before any training. Images are decoded again, lazily, when a row is sampled.
"""

from __future__ import annotations

import io
import json
import math
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image

from bench.errors import UsageError
from bench.prompts import with_r1_prompt

from .config import DataConfig
from .expand import IMAGE_TRANSFORMS, parse_new_questions, resize_to_pixel_budget

IMAGE_PLACEHOLDER = "<image>"


class DataError(UsageError, ValueError):
    """No usable training row (or an unreadable data source)."""


@dataclass
class Row:
    question: str  # verbatim, with its <image> placeholders
    answer: str
    images: list[Any]  # raw references; `load_images` decodes them
    rewrites: list[str]
    source: str  # "file row N", for messages
    base_dir: Path = field(default=Path("."))

    def load_images(self, min_pixels: int, max_pixels: int) -> list[Image.Image]:
        return [resize_to_pixel_budget(decode_image(ref, self.base_dir), min_pixels, max_pixels) for ref in self.images]


def decode_image(ref: Any, base_dir: Path) -> Image.Image:
    """bytes, a path (relative to the data file), a {"bytes"|"path"} dict, or a PIL image."""
    if isinstance(ref, Image.Image):
        image = ref
    elif isinstance(ref, dict):
        if ref.get("bytes") is not None:
            return decode_image(ref["bytes"], base_dir)
        if ref.get("path"):
            return decode_image(ref["path"], base_dir)
        raise ValueError("image dict has neither bytes nor path")
    elif isinstance(ref, (bytes, bytearray, memoryview)):
        image = Image.open(io.BytesIO(bytes(ref)))
    elif isinstance(ref, str):
        path = Path(ref) if Path(ref).is_absolute() else base_dir / ref
        if not path.is_file():  # a FIFO or a device would block or never end
            raise ValueError(f"{path}: {'no such file' if not path.exists() else 'not a regular file'}")
        image = Image.open(path)
    else:
        raise ValueError(f"unsupported image value of type {type(ref).__name__}")
    image.load()
    return image.convert("RGB")


def read_records(path: str | Path) -> tuple[list[str], list[dict[str, Any]]]:
    """(column names, one dict per row) of a training file. Read with pyarrow and json rather than
    pandas, which would add about 60 MB to every training process for a one-off read."""
    path = Path(path)
    if path.is_dir():
        import datasets

        try:
            ds = datasets.load_from_disk(str(path))
        except (FileNotFoundError, ValueError) as exc:
            raise DataError(f"{path}: not a saved `datasets` folder ({' '.join(str(exc).split())})") from None
        if isinstance(ds, datasets.DatasetDict):
            ds = ds["train"] if "train" in ds else next(iter(ds.values()))
        return list(ds.column_names), ds.to_list()
    if not path.exists():
        raise DataError(f"training data not found: {path}")
    if path.is_file() and path.stat().st_size == 0:
        raise DataError(f"{path}: empty file")
    if path.suffix == ".parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        try:
            table = pq.ParquetFile(path).read()  # pq.read_table would import pandas through pyarrow.dataset
        except (pa.ArrowException, OSError) as exc:
            raise DataError(f"{path}: not a readable parquet file ({' '.join(str(exc).split())})") from None
        return list(table.column_names), table.to_pylist()
    if path.suffix in (".jsonl", ".json"):
        data = path.read_bytes()
        if path.suffix == ".jsonl":
            # lines end at "\n" only: U+2028, U+2029 and \x85 are valid inside JSON strings
            records = [_json(_utf8(line, path, n), path, n) for n, line in enumerate(data.split(b"\n"), 1)
                       if line.strip()]
        else:
            records = _json(_utf8(data, path), path)
        if isinstance(records, dict):  # {"column": [values, ...]}
            lengths = {k: len(v) if isinstance(v, list) else None for k, v in records.items()}
            if None in lengths.values() or len(set(lengths.values())) > 1:
                raise DataError(f"{path}: a column-form JSON needs one list per column, all of one length "
                                f"(lengths: {', '.join(f'{k}={n}' for k, n in list(lengths.items())[:8])})")
            records = [dict(zip(records, values, strict=True)) for values in zip(*records.values(), strict=True)]
        if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
            raise DataError(f"{path}: expected JSON objects, one per row")
        return list(dict.fromkeys(k for r in records for k in r)), records
    raise DataError(f"{path}: unsupported data format {path.suffix!r}; use .parquet, .jsonl, .json or a datasets folder")


def _utf8(data: bytes, path: Path, line: int | None = None) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        if line is None:
            line = data.count(b"\n", 0, exc.start) + 1
        raise DataError(f"{path} line {line}: not UTF-8 text (byte {data[exc.start]:#04x})") from None


def _json(text: str, path: Path, line: int | None = None) -> Any:
    """Parsed JSON; a DataError naming the file and line where it is not valid JSON."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise DataError(f"{path} line {line or e.lineno}: not valid JSON ({e.msg})") from None
    except RecursionError:
        raise DataError(f"{path}{f' line {line}' if line else ''}: JSON nested too deep to read") from None


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value)) or (isinstance(value, str) and not value.strip())


def _as_list(value: Any) -> list[Any]:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return []
    if hasattr(value, "tolist") and not isinstance(value, (bytes, str)):
        value = value.tolist()
    return list(value) if isinstance(value, (list, tuple)) else [value]


LONGEST_INSTRUCTION = max((t.instruction for t in IMAGE_TRANSFORMS.values()), key=len)


def build_messages(question: str, n_images: int, instruction: str = "") -> list[dict]:
    """The user turn as the released data loader builds it: the question verbatim, a space and the
    R1 prompt, split at its `<image>` placeholders with an image at each, and the image-transform
    instruction before every text segment. A question without placeholders gets its images first."""
    text = with_r1_prompt(question)
    count = text.count(IMAGE_PLACEHOLDER)
    if count == 0:
        text = IMAGE_PLACEHOLDER * n_images + text
    elif count != n_images:
        raise ValueError(f"{count} {IMAGE_PLACEHOLDER} placeholder(s) but {n_images} image(s)")
    content: list[dict] = []
    for i, segment in enumerate(text.split(IMAGE_PLACEHOLDER)):
        if i:
            content.append({"type": "image"})
        if segment:
            content.append({"type": "text", "text": instruction + segment})
    return [{"role": "user", "content": content}]


def load_rows(cfg: DataConfig, processor, log=print, min_variants: int = 1) -> tuple[list[Row], Counter]:
    """Valid rows and the counts of what was skipped and why. Rows with fewer than `min_variants`
    distinct texts (the question and its rewrites) are skipped as `short_variants`."""
    path = Path(cfg.train_files)
    columns, records = read_records(path)
    for key in (cfg.prompt_key, cfg.answer_key):
        if key not in columns:
            raise DataError(f"{path}: no column {key!r} (columns: {', '.join(map(str, columns))})")
    base_dir = path if path.is_dir() else path.parent
    rows: list[Row] = []
    skipped: Counter = Counter()
    for n, record in enumerate(records):
        where = f"{path} row {n}"
        try:
            rows.append(read_row(record, where, cfg, processor, base_dir, min_variants))
        except SkippedRow as skip:
            skipped[skip.reason] += 1
            log(f"{where}: skipped: {skip.detail}", file=sys.stderr)
    if not rows:
        raise DataError(f"{path}: no usable training row ({sum(skipped.values())} skipped: {dict(skipped)})")
    if skipped:
        log(f"{path}: {len(rows)} rows kept, {sum(skipped.values())} skipped: {dict(skipped)}", file=sys.stderr)
    return rows, skipped


class SkippedRow(Exception):
    """A training row that cannot be used: `reason` (the count's key) and `detail` (the message)."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason, self.detail = reason, detail


def read_row(record: dict, where: str, cfg: DataConfig, processor, base_dir: Path, min_variants: int) -> Row:
    """One record as a training row, checked in the order a row can fail: question and answer
    present, images matching the placeholders and decodable, rewrites parseable and matching, enough
    distinct texts, and a prompt the processor takes within data.max_prompt_length. SkippedRow
    otherwise."""
    question, answer = record.get(cfg.prompt_key), record.get(cfg.answer_key)
    if _missing(question):
        raise SkippedRow("missing_question", f"no {cfg.prompt_key!r}")
    if _missing(answer):
        raise SkippedRow("missing_answer", f"no {cfg.answer_key!r}")
    images = _as_list(record.get(cfg.image_key))
    question = str(question)
    if question.count(IMAGE_PLACEHOLDER) != len(images):
        raise SkippedRow("image_count_mismatch", f"{question.count(IMAGE_PLACEHOLDER)} {IMAGE_PLACEHOLDER} "
                                                 f"placeholder(s) but {len(images)} image(s)")
    try:
        decoded = [resize_to_pixel_budget(decode_image(ref, base_dir), cfg.min_pixels, cfg.max_pixels) for ref in images]
    except Exception as exc:  # noqa: BLE001 - any decoder failure is a bad row
        raise SkippedRow("unreadable_image", f"image unreadable ({type(exc).__name__}: {exc})") from None
    rewrites = _rewrites(record.get(cfg.rewrites_key), len(images))
    if len({question, *rewrites}) < min_variants:
        raise SkippedRow("short_variants", f"{len({question, *rewrites})} distinct text variant(s), fewer than "
                                           f"algorithm.num_variants={min_variants} (algorithm.short_variants=skip)")
    length = _prompt_length(processor, max([question, *rewrites], key=len), decoded)
    if length > cfg.max_prompt_length:
        raise SkippedRow("prompt_too_long", f"prompt of {length} tokens > data.max_prompt_length={cfg.max_prompt_length}")
    return Row(question, str(answer).strip(), images, rewrites, where, base_dir)


def _rewrites(value, images: int) -> list[str]:
    """A row's `new_questions`, parsed (never executed), each with 0 or all of its images' placeholders."""
    try:
        rewrites = parse_new_questions(value)
    except ValueError as exc:
        raise SkippedRow("bad_rewrites", str(exc)) from None
    wrong = [k for k, r in enumerate(rewrites) if r.count(IMAGE_PLACEHOLDER) not in (0, images)]
    if wrong:
        raise SkippedRow("bad_rewrites", f"rewrite {wrong[0]} has {rewrites[wrong[0]].count(IMAGE_PLACEHOLDER)} "
                                         f"{IMAGE_PLACEHOLDER} placeholder(s) but the row has {images} image(s)")
    return rewrites


def _prompt_length(processor, longest: str, decoded: list) -> int:
    """Tokens of the row's longest prompt (its longest text, with the longest instruction sentence)."""
    messages = build_messages(longest, len(decoded), LONGEST_INSTRUCTION)
    text = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    try:
        return processor(text=[text], images=decoded or None, return_tensors="pt")["input_ids"].shape[1]
    except ValueError as exc:  # e.g. Qwen's resize refuses an aspect ratio over 200 (a 4000x1 image)
        raise SkippedRow("unprocessable_image", f"the processor refuses it ({' '.join(str(exc).split())[:160]})") from None
