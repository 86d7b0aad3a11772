"""Synthetic visual-reasoning items: small images of coloured shapes with counting questions.

Used for the trainer's tests and, through `python -m bench.data`, for the CPU-scale benchmarks.
Counts survive every image transform of the expansion (rotations, flips, noise)."""

from __future__ import annotations

import io
import random

from PIL import Image, ImageDraw

COLOURS = {"red": (220, 40, 40), "green": (40, 170, 60), "blue": (40, 80, 220)}
PARAPHRASES = [
    "How many {c} shapes are in the picture?",
    "Count the {c} shapes in the image. How many are there?",
    "What is the number of {c} shapes shown?",
]


def counting_image(count: int, colour: str, side: int, rng: random.Random) -> Image.Image:
    image = Image.new("RGB", (side, side), (255, 255, 255))
    draw = ImageDraw.Draw(image)
    cell = side // 3
    for slot in rng.sample(range(9), count):
        x, y = (slot % 3) * cell + cell // 4, (slot // 3) * cell + cell // 4
        draw.ellipse([x, y, x + cell // 2, y + cell // 2], fill=COLOURS[colour])
    return image


def png_bytes(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def counting_rows(n: int, seed: int = 0, side: int = 56, max_count: int = 6) -> list[dict]:
    """Rows in the released training format: problem (with one <image>), answer, images, new_questions."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        colour = rng.choice(sorted(COLOURS))
        count = rng.randint(1, max_count)
        questions = [p.format(c=colour) for p in PARAPHRASES]
        rows.append(
            {
                "problem": "<image>" + questions[0],
                "answer": str(count),
                "images": [png_bytes(counting_image(count, colour, side, rng))],
                "new_questions": questions[1:],
            }
        )
    return rows
