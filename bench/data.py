"""Synthetic visual-reasoning benchmarks in VLMEvalKit's TSV format, and a matching training split:
the project's one generator of synthetic data (the tests, the benchmarks of the trainer and the
CPU-scale reproduction all draw from it).

    python -m bench.data --out DIR [--n N] [--seed S] [--side PX] [--train N_TRAIN] [--tasks NAME ...]

Writes one TSV per task under DIR (point $LMUData at it): columns index, image (base64 PNG),
question, answer, category, and A-D for the multiple-choice task. Deterministic for a seed.
With --train it also writes DIR/train.parquet in the released training format (problem with
<image>, answer, images, new_questions from paraphrase templates), with no image that also
appears in a benchmark.

Tasks (every answer survives the expansion's image transforms). Shapes sit in a 3x3 grid, one per
image token of the CPU-scale model. How the 1.6M-parameter CPU-scale model fares after its
supervised warm-up, and whether RL moves it, is measured in docs/reproduction.md:
- SynthColour: the colour of the shapes (one word).
- SynthCount: how many shapes (1-6).
- SynthCompare (multiple choice): which of three colours has the most shapes.
- SynthArith: the sum (or difference) of two digits drawn in the image, their places jittered.
- SynthChart: the height of the tallest bar of a small bar chart (1-9). Rotating the chart
  does not change the tallest bar's value.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import io
import os
import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from PIL import Image, ImageDraw, ImageFont

from .errors import UsageError, exit_on_usage_error

COLOURS = {"red": (220, 40, 40), "green": (30, 160, 60), "blue": (40, 80, 220), "orange": (240, 150, 20)}


def _png(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def _canvas(side: int) -> tuple[Image.Image, ImageDraw.ImageDraw]:
    image = Image.new("RGB", (side, side), (255, 255, 255))
    return image, ImageDraw.Draw(image)


GRID = 3
"""Shapes sit in the cells of a 3x3 grid: at the CPU scale (84-px images, 28-px image tokens) each
shape fills one image token's region, so what there is to see is what a token can hold."""


def _shapes(draw: ImageDraw.ImageDraw, side: int, cells: list[int], colour: tuple) -> None:
    cell = side / GRID
    pad = cell * 0.12
    for c in cells:
        x, y = (c % GRID) * cell, (c // GRID) * cell
        draw.ellipse([x + pad, y + pad, x + cell - pad, y + cell - pad], fill=colour)


def count_item(rng: random.Random, side: int) -> dict:
    """How many shapes (1-6, all of one colour)."""
    colour = rng.choice(sorted(COLOURS))
    k = rng.randint(1, 6)
    image, draw = _canvas(side)
    _shapes(draw, side, rng.sample(range(GRID * GRID), k), COLOURS[colour])
    return {"image": image, "question": f"How many {colour} shapes are in the image?", "answer": str(k),
            "category": "count", "templates": [f"Count the {colour} shapes. How many are there?",
                                               f"What is the number of {colour} shapes shown?"]}


def colour_item(rng: random.Random, side: int) -> dict:
    """The colour of the shapes (one to four shapes, all of one colour)."""
    colour = rng.choice(sorted(COLOURS))
    image, draw = _canvas(side)
    _shapes(draw, side, rng.sample(range(GRID * GRID), rng.randint(1, 4)), COLOURS[colour])
    return {"image": image, "question": "What colour are the shapes in the image? Answer with one word.",
            "answer": colour, "category": "colour",
            "templates": ["Name the colour of the shapes shown, in one word.",
                          "Which colour do all the shapes in the picture have? One word."]}


def arith_item(rng: random.Random, side: int) -> dict:
    """The sum or difference of two digits drawn side by side. There are only 200 (digits,
    operation) combinations, so each digit's place is jittered: a benchmark image is never a
    training image, though its digits are."""
    a, b = rng.randint(0, 9), rng.randint(0, 9)
    op = rng.choice(["sum", "difference"])
    image, draw = _canvas(side)
    font = ImageFont.load_default(size=max(10, side // 3))
    jitter = max(1, side // 16)
    for digit, x in ((a, 0.12), (b, 0.62)):
        draw.text((side * x + rng.randint(-jitter, jitter), side * 0.3 + rng.randint(-jitter, jitter)), str(digit),
                  fill=(0, 0, 0), font=font)
    answer = a + b if op == "sum" else abs(a - b)
    q = ("What is the sum of the two digits in the image?" if op == "sum"
         else "What is the difference between the larger and the smaller digit in the image?")
    alt = ("Add the two digits shown. What do you get?" if op == "sum"
           else "Subtract the smaller digit shown from the larger one. What is the result?")
    return {"image": image, "question": q, "answer": str(answer), "category": op, "templates": [alt]}


def compare_item(rng: random.Random, side: int) -> dict:
    """Which of three colours has the most shapes (counts 1-4, all different); four options."""
    colours = rng.sample(sorted(COLOURS), 4)
    counts = rng.sample(range(1, 5), 3)
    cells = rng.sample(range(GRID * GRID), sum(counts))
    image, draw = _canvas(side)
    start = 0
    for c, k in zip(colours, counts, strict=False):
        _shapes(draw, side, cells[start : start + k], COLOURS[c])
        start += k
    best = colours[counts.index(max(counts))]
    rng.shuffle(colours)
    options = dict(zip("ABCD", colours, strict=True))
    letter = next(k for k, v in options.items() if v == best)
    return {"image": image, "question": "Which colour has the most shapes?", "answer": letter, "category": "compare",
            **options, "templates": ["Of the colours shown, which one appears on the most shapes?"]}


def chart_item(rng: random.Random, side: int) -> dict:
    bars = [rng.randint(1, 9) for _ in range(rng.randint(2, 4))]
    image, draw = _canvas(side)
    width = side // (len(bars) * 2 + 1)
    for i, h in enumerate(bars):
        x = width * (2 * i + 1)
        draw.rectangle([x, side - 2 - h * (side - 4) // 10, x + width, side - 2], fill=(60, 60, 60))
    return {"image": image, "question": "The bars have heights from 1 to 10. What is the height of the tallest bar?",
            "answer": str(max(bars)), "category": "chart",
            "templates": ["Read the bar chart: how tall is its highest bar (scale 1 to 10)?"]}


@dataclass(frozen=True)
class Task:
    make: Callable[[random.Random, int], dict]
    """(rng, image side) -> one item: image, question, answer, category, paraphrase templates."""
    in_miniature: bool
    """Used by the CPU-scale reproduction (reproduce/mini.py). SynthCompare and SynthArith are not:
    in pilots neither supervised training nor RL moved the 1.6M-parameter model on them within its
    budget, so they would only dilute the batch."""


TASKS: dict[str, Task] = {
    "SynthColour": Task(colour_item, in_miniature=True),
    "SynthCount": Task(count_item, in_miniature=True),
    "SynthCompare": Task(compare_item, in_miniature=False),
    "SynthArith": Task(arith_item, in_miniature=False),
    "SynthChart": Task(chart_item, in_miniature=True),
}
MINIATURE_TASKS = tuple(name for name, task in TASKS.items() if task.in_miniature)


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _draw(task: str, rng: random.Random, side: int, exclude: frozenset[str] | set[str]) -> tuple[dict, bytes]:
    """One item of `task` and its PNG, redrawn while the PNG's SHA-256 is in `exclude`."""
    while True:
        item = TASKS[task].make(rng, side)
        png = _png(item["image"])
        if _sha256(png) not in exclude:
            return item, png


def benchmark_frame(task: str, n: int, seed: int, side: int,
                    exclude: frozenset[str] | set[str] = frozenset()) -> pd.DataFrame:
    """`n` items of `task` as a VLMEvalKit TSV frame; images whose SHA-256 is in `exclude` (a
    training split's) are redrawn."""
    rng = random.Random(f"{task}/{seed}")
    rows = []
    while len(rows) < n:
        item, png = _draw(task, rng, side, exclude)
        row = {"index": len(rows), "image": base64.b64encode(png).decode(), "question": item["question"],
               "answer": item["answer"], "category": item["category"]}
        row.update({k: item[k] for k in "ABCD" if k in item})
        rows.append(row)
    return pd.DataFrame(rows)


def image_hashes(frame: pd.DataFrame) -> set[str]:
    """SHA-256 of every image of a benchmark frame (base64 column) or training frame (images column)."""
    if "images" in frame:
        return {_sha256(bytes(im)) for ims in frame["images"] for im in ims}
    return {_sha256(base64.b64decode(b)) for b in frame["image"]}


def training_rows(n: int, seed: int = 0, side: int = 56, tasks: list[str] | None = None,
                  exclude: frozenset[str] | set[str] = frozenset()) -> list[dict]:
    """`n` rows in the released training format (problem with one <image>, answer, images as PNG
    bytes, new_questions), plus the task name; tasks taken in turn. Images whose SHA-256 is in
    `exclude` (a benchmark's) are redrawn."""
    rng = random.Random(f"train/{seed}")
    names = tasks or list(TASKS)
    rows = []
    while len(rows) < n:
        task = names[len(rows) % len(names)]
        item, png = _draw(task, rng, side, exclude)
        question = item["question"]
        if "A" in item:
            question += " Options: " + " ".join(f"({k}) {item[k]}" for k in "ABCD")
            templates = [t + " Options: " + " ".join(f"({k}) {item[k]}" for k in "ABCD") for t in item["templates"]]
        else:
            templates = item["templates"]
        rows.append({"problem": "<image>" + question, "answer": item["answer"], "images": [png],
                     "new_questions": templates, "task": task})
    return rows


MIN_SIDE = 28  # pixels: one 2x2 group of Qwen2.5-VL's 14-pixel patches, and room for the 3x3 grid
MAX_SIDE = 4096  # pixels: 48 MiB an image, 4x the released max_pixels (1,048,576)


def item_bytes(side: int) -> int:
    """An upper bound on the memory one item takes while a split is built: its image as base64 of an
    uncompressed PNG (side x side x 3 bytes, x 4/3) and 1 KiB of text."""
    return side * side * 3 * 4 // 3 + 1024


def check_sizes(n: int, side: int, n_train: int = 0) -> None:
    """Before anything is written: sizes that can make every task, and splits that fit in a quarter
    of this machine's memory (each split is built in memory before it is written)."""
    if n < 1:
        raise UsageError(f"--n {n}: give at least 1 item per benchmark")
    if side < MIN_SIDE:
        raise UsageError(f"--side {side}: images must be at least {MIN_SIDE} pixels on a side")
    if side > MAX_SIDE:
        raise UsageError(f"--side {side}: one image would need {side * side * 3 / 2**30:.1f} GiB of memory "
                         f"(side x side x 3 bytes); the largest side is {MAX_SIDE}")
    if n_train < 0:
        raise UsageError(f"--train {n_train}: give 0 (no training split) or more rows")
    memory = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    need = max(n, n_train) * item_bytes(side)
    if need > memory // 4:
        raise UsageError(f"--n {n} --train {n_train} at --side {side}: a split would take up to {need / 2**30:.1f} GiB "
                         f"of memory while it is built, more than a quarter of this machine's {memory / 2**30:.0f} GiB; "
                         f"write at most {memory // 4 // item_bytes(side)} items per split")


def write(out: Path, n: int, seed: int, side: int, n_train: int = 0, tasks: list[str] | None = None,
          exclude: frozenset[str] | set[str] = frozenset()) -> list[Path]:
    """One TSV per task (`tasks`, default all) and, with n_train, train.parquet with no benchmark
    image; benchmark images whose hash is in `exclude` (an existing training split's) are redrawn."""
    check_sizes(n, side, n_train)
    out.mkdir(parents=True, exist_ok=True)
    written, hashes = [], set()
    for task in tasks or list(TASKS):
        frame = benchmark_frame(task, n, seed, side, exclude)
        hashes |= image_hashes(frame)
        path = out / f"{task}.tsv"
        frame.to_csv(path, sep="\t", index=False)
        written.append(path)
    if n_train:
        path = out / "train.parquet"
        pd.DataFrame(training_rows(n_train, seed, side, tasks, exclude=hashes)).to_parquet(path)
        written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.data", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--n", type=int, default=100, help="items per benchmark task")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--side", type=int, default=56, help="image side in pixels")
    parser.add_argument("--train", type=int, default=0, help="also write train.parquet with this many rows")
    parser.add_argument("--tasks", nargs="+", choices=list(TASKS), help="tasks to write (default: all)")
    args = parser.parse_args(argv)

    def run() -> None:
        for path in write(args.out, args.n, args.seed, args.side, args.train, args.tasks):
            print(path)

    return exit_on_usage_error(run)


if __name__ == "__main__":
    raise SystemExit(main())
