"""A few items of each Table 1 benchmark in the column layout of VLMEvalKit's own TSV, made here.

`make smoke-paper` (`reproduce.paper_smoke`) runs the paper-scale path on these where the real
TSVs cannot be downloaded. Each row carries the columns that VLMEvalKit's dataset class
(`build_prompt`), its scorer and `bench.score` read for that benchmark:

- MathVista_MINI: `question_type` (multi_choice / free_form), `answer_type`, `choices` (a list
  literal), `answer_option`, `precision`, `skills` (a list literal) and `task`.
- MMStar, AI2D_TEST: options in columns A-D, `category` (MMStar also `l2-category`).
- MMMU_DEV_VAL: the question refers to `<image 1>` (split into an interleaved message by
  `MMMUDataset.split_MMMU`), options in columns, `split` (dev / validation).
- MathVerse_MINI: `question_for_eval` with "Choices:" lines, `problem_version`, `question_type`.
- MathVision: `choices` (empty for free-form answers), `category`, `level`.

The answers are fixed and the images are drawn shapes: the figures they give are about the path
and its speed, never about a model's accuracy.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Callable
from pathlib import Path

import pandas as pd

from bench.fileio import write_table_atomic

from .paper import load_paper_table

IMAGE_SIDE = 336


def image_b64(k: int, side: int = IMAGE_SIDE) -> str:
    """A PNG of `k + 3` dots on a grid, base64 (VLMEvalKit's `image` cell)."""
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (side, side), "white")
    draw = ImageDraw.Draw(image)
    for i in range(k + 3):
        x, y = 40 + (i % 4) * 70, 40 + (i // 4) * 70
        draw.ellipse((x, y, x + 40, y + 40), fill=("red", "blue", "green")[i % 3])
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


def _mathvista(k: int) -> dict:
    if k % 2 == 0:
        return {"question": "How many dots are in the image?", "answer": str(k + 3), "question_type": "free_form",
                "answer_type": "integer", "choices": None, "answer_option": None, "precision": None,
                "skills": "['arithmetic reasoning']", "task": "figure question answering"}
    return {"question": "How many dots are in the image?\nChoices:\n(A) 2\n(B) 4\n(C) 6", "answer": "4",
            "question_type": "multi_choice", "answer_type": "text", "choices": "['2', '4', '6']", "answer_option": "B",
            "precision": None, "skills": "['arithmetic reasoning', 'numeric commonsense']",
            "task": "math word problem"}


def _columns_mcq(k: int) -> dict:
    return {"question": "How many dots are in the image?", "A": str(k + 2), "B": str(k + 3), "C": str(k + 4),
            "D": str(k + 5), "answer": "B"}


def _mmstar(k: int) -> dict:
    return {**_columns_mcq(k), "category": "math", "l2-category": "numeric commonsense"}


def _ai2d(k: int) -> dict:
    return {**_columns_mcq(k), "category": "counting"}


def _mmmu(k: int) -> dict:
    return {**_columns_mcq(k), "question": "<image 1> How many dots are there?", "split": ("validation", "dev")[k % 2],
            "category": "Math", "question_type": "multiple-choice"}


def _mathverse(k: int) -> dict:
    return {"question": "How many dots are there?\nChoices:\nA:2\nB:4\nC:6", "answer": "B",
            "question_for_eval": "How many dots are there?\nChoices:\nA:2\nB:4\nC:6", "question_type": "multi-choice",
            "problem_version": ("Vision Only", "Text Lite")[k % 2], "metadata": "{'subject': 'Counting'}"}


def _mathvision(k: int) -> dict:
    if k % 2 == 0:
        return {"question": "How many dots are in the image?", "answer": str(k + 3), "choices": "[]",
                "category": "counting", "level": 1}
    return {"question": "How many dots are in the image?", "answer": "B", "choices": "['2', '4', '6', '8', '10']",
            "category": "counting", "level": 2}


LAYOUTS: dict[str, Callable[[int], dict]] = {
    "MathVista_MINI": _mathvista, "MMStar": _mmstar, "MMMU_DEV_VAL": _mmmu, "MathVerse_MINI": _mathverse,
    "MathVision": _mathvision, "AI2D_TEST": _ai2d,
}


def table1_datasets() -> list[str]:
    return list(load_paper_table()["vlmeval_datasets"].values())


def write_fixtures(out: Path, items: int = 2, datasets: list[str] | None = None) -> dict[str, Path]:
    """`items` rows of each dataset (default: Table 1's six) as `out/{dataset}.tsv`; returns the paths."""
    datasets = datasets or table1_datasets()
    unknown = [d for d in datasets if d not in LAYOUTS]
    if unknown:
        raise ValueError(f"no fixture layout for {', '.join(unknown)} (known: {', '.join(LAYOUTS)})")
    paths = {}
    for dataset in datasets:
        rows = [{"index": k, "image": image_b64(k), **LAYOUTS[dataset](k)} for k in range(items)]
        paths[dataset] = write_table_atomic(pd.DataFrame(rows), out / f"{dataset}.tsv")
    return paths
