"""Synthetic visual-reasoning benchmarks in VLMEvalKit's TSV format, and a matching training split:
the project's one generator of synthetic data (the tests, the benchmarks of the trainer and the
CPU-scale reproduction all draw from it).

    python -m bench.data --out DIR [--n N] [--seed S] [--side PX] [--train N_TRAIN]

Writes one TSV per task under DIR (point $LMUData at it): columns index, image (base64 PNG),
question, answer, category, and A-D for the multiple-choice task. Deterministic for a seed.
With --train it also writes DIR/train.parquet in the released training format (problem with
<image>, answer, images, new_questions from paraphrase templates), with no image that also
appears in a benchmark.

Tasks (every answer survives the expansion's image transforms):
- SynthCount: how many shapes of a colour (1-9).
- SynthArith: the sum (or difference) of two digits drawn in the image.
- SynthCompare (multiple choice): which colour has the most shapes.
- SynthChart: the height of the tallest bar of a small bar chart (1-9). Rotating the chart
  does not change the tallest bar's value.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import io
import random
from collections.abc import Callable
from pathlib import Path

import pandas as pd
from PIL import Image, ImageDraw, ImageFont

COLOURS = {"red": (220, 40, 40), "green": (30, 160, 60), "blue": (40, 80, 220), "orange": (240, 150, 20)}


def _png(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def _canvas(side: int) -> tuple[Image.Image, ImageDraw.ImageDraw]:
    image = Image.new("RGB", (side, side), (255, 255, 255))
    return image, ImageDraw.Draw(image)


def _dots(draw: ImageDraw.ImageDraw, side: int, slots: list[int], colour: tuple, grid: int = 4) -> None:
    cell = side // grid
    r = max(2, cell // 3)
    for s in slots:
        cx, cy = (s % grid) * cell + cell // 2, (s // grid) * cell + cell // 2
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=colour)


def count_item(rng: random.Random, side: int) -> dict:
    colour, other = rng.sample(sorted(COLOURS), 2)
    k, m = rng.randint(1, 9), rng.randint(0, 4)
    slots = rng.sample(range(16), k + m)
    image, draw = _canvas(side)
    _dots(draw, side, slots[:k], COLOURS[colour])
    _dots(draw, side, slots[k:], COLOURS[other])
    return {"image": image, "question": f"How many {colour} dots are in the image?", "answer": str(k),
            "category": "count", "templates": [f"Count the {colour} dots. How many are there?",
                                               f"What is the number of {colour} dots shown?"]}


def arith_item(rng: random.Random, side: int) -> dict:
    a, b = rng.randint(0, 9), rng.randint(0, 9)
    op = rng.choice(["sum", "difference"])
    image, draw = _canvas(side)
    font = ImageFont.load_default(size=max(10, side // 3))
    draw.text((side * 0.12, side * 0.3), str(a), fill=(0, 0, 0), font=font)
    draw.text((side * 0.62, side * 0.3), str(b), fill=(0, 0, 0), font=font)
    answer = a + b if op == "sum" else abs(a - b)
    q = ("What is the sum of the two digits in the image?" if op == "sum"
         else "What is the difference between the larger and the smaller digit in the image?")
    alt = ("Add the two digits shown. What do you get?" if op == "sum"
           else "Subtract the smaller digit shown from the larger one. What is the result?")
    return {"image": image, "question": q, "answer": str(answer), "category": op, "templates": [alt]}


def compare_item(rng: random.Random, side: int) -> dict:
    colours = rng.sample(sorted(COLOURS), 4)
    counts = rng.sample(range(1, 6), 4)
    slots = rng.sample(range(16), sum(counts))
    image, draw = _canvas(side)
    start = 0
    for c, k in zip(colours, counts, strict=True):
        _dots(draw, side, slots[start : start + k], COLOURS[c])
        start += k
    best = colours[counts.index(max(counts))]
    options = dict(zip("ABCD", colours, strict=True))
    letter = next(k for k, v in options.items() if v == best)
    return {"image": image, "question": "Which colour has the most dots?", "answer": letter, "category": "compare",
            **options, "templates": ["Of the colours shown, which one appears on the most dots?"]}


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


TASKS: dict[str, Callable[[random.Random, int], dict]] = {
    "SynthCount": count_item,
    "SynthArith": arith_item,
    "SynthCompare": compare_item,
    "SynthChart": chart_item,
}


def benchmark_frame(task: str, n: int, seed: int, side: int) -> pd.DataFrame:
    rng = random.Random(f"{task}/{seed}")
    rows = []
    for i in range(n):
        item = TASKS[task](rng, side)
        row = {"index": i, "image": base64.b64encode(_png(item["image"])).decode(), "question": item["question"],
               "answer": item["answer"], "category": item["category"]}
        row.update({k: item[k] for k in "ABCD" if k in item})
        rows.append(row)
    return pd.DataFrame(rows)


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
        item = TASKS[task](rng, side)
        png = _png(item["image"])
        if hashlib.sha256(png).hexdigest() in exclude:
            continue
        question = item["question"]
        if "A" in item:
            question += " Options: " + " ".join(f"({k}) {item[k]}" for k in "ABCD")
            templates = [t + " Options: " + " ".join(f"({k}) {item[k]}" for k in "ABCD") for t in item["templates"]]
        else:
            templates = item["templates"]
        rows.append({"problem": "<image>" + question, "answer": item["answer"], "images": [png],
                     "new_questions": templates, "task": task})
    return rows


def write(out: Path, n: int, seed: int, side: int, n_train: int = 0) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    written, hashes = [], set()
    for task in TASKS:
        frame = benchmark_frame(task, n, seed, side)
        hashes |= {hashlib.sha256(base64.b64decode(b)).hexdigest() for b in frame["image"]}
        path = out / f"{task}.tsv"
        frame.to_csv(path, sep="\t", index=False)
        written.append(path)
    if n_train:
        path = out / "train.parquet"
        pd.DataFrame(training_rows(n_train, seed, side, exclude=hashes)).to_parquet(path)
        written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.data", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--n", type=int, default=100, help="items per benchmark task")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--side", type=int, default=56, help="image side in pixels")
    parser.add_argument("--train", type=int, default=0, help="also write train.parquet with this many rows")
    args = parser.parse_args(argv)
    for path in write(args.out, args.n, args.seed, args.side, args.train):
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
