"""Question-space expansion: Q variants of each question (R1-ShareVL, arXiv 2505.16673).

Text variants are made offline (`new_questions`, rewrites that keep meaning and answer; see
`python -m train.expand rewrite`) and drawn here per step. Image variants are made online: with
probability `p` one of nine transforms is applied to every image of the row, after the pixel-
budget resize, and the released sentence that says what was done goes before the question's text.

Everything random comes from the `random.Random` the caller passes, so a run can be replayed.
Where we differ from the released code: its instructions name the two 90-degree rotations the
wrong way round; ours say what was actually done (tests check the pixels against the words).
Everything else is the released wording.
"""

from __future__ import annotations

import ast
import json
import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image

from bench.registry import Registry

# ---------------------------------------------------------------- text variants
SHORT_POLICIES: Registry[str] = Registry("short_variants policy")
"""What to do with a row that has fewer than Q distinct text variants."""
SHORT_POLICIES.add("repeat", "fill the rest by drawing again from the candidates")
SHORT_POLICIES.add("skip", "skip the row when the data are loaded (counted as short_variants)")


def parse_new_questions(value: object, where: str | None = None) -> list[str]:
    """`new_questions` as a list of strings. Accepts a list, or a string holding a JSON or Python
    list literal (parsed, never executed). None/NaN/empty -> []. Anything else raises ValueError
    (its message starts with `where`, when given)."""
    prefix = f"{where}: " if where else ""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return []
    if isinstance(value, str):
        text = value.strip()
        if not text:
            return []
        try:
            value = json.loads(text)
        except (json.JSONDecodeError, RecursionError):
            try:
                value = ast.literal_eval(text)
            except (ValueError, SyntaxError, MemoryError, RecursionError):
                raise ValueError(f"{prefix}new_questions is not a JSON or Python list: {text[:80]!r}") from None
    if hasattr(value, "tolist"):  # numpy arrays from parquet
        value = value.tolist()
    if not isinstance(value, (list, tuple)) or not all(isinstance(q, str) for q in value):
        raise ValueError(f"{prefix}new_questions must be a list of strings, got {type(value).__name__}")
    return [q.strip() for q in value if q.strip()]


def draw_text_variants(
    question: str,
    rewrites: Sequence[str],
    q: int,
    rng: random.Random,
    keep_original: bool = False,
    on_short: str = "repeat",
) -> list[str] | None:
    """Q questions drawn without replacement from [original] + rewrites (duplicates removed).

    keep_original: the original is always variant 0. When there are fewer than Q distinct
    candidates, on_short="repeat" fills the rest by drawing again from the candidates, and
    on_short="skip" returns None (the caller counts and skips the row)."""
    SHORT_POLICIES[on_short]  # noqa: B018 - raises with the valid names
    candidates = list(dict.fromkeys([question, *rewrites]))
    head = [question] if keep_original else []
    rest = candidates[1:] if keep_original else candidates
    if len(candidates) >= q:
        return head + rng.sample(rest, q - len(head))
    if on_short == "skip":
        return None
    chosen = head + rng.sample(rest, len(rest))  # every candidate once, then random repeats
    while len(chosen) < q:
        chosen.append(rng.choice(candidates))
    return chosen


# ---------------------------------------------------------------- image variants
def resize_to_pixel_budget(image: Image.Image, min_pixels: int, max_pixels: int) -> Image.Image:
    """Scale (keeping aspect) so that width*height lies in [min_pixels, max_pixels], as the
    released data loader does before the processor's own resize; always returns RGB."""
    w, h = image.size
    if w * h > max_pixels:
        f = math.sqrt(max_pixels / (w * h))
        image = image.resize((max(1, int(w * f)), max(1, int(h * f))))
    elif w * h < min_pixels:
        f = math.sqrt(min_pixels / (w * h))
        image = image.resize((int(w * f) + 1, int(h * f) + 1))
    return image if image.mode == "RGB" else image.convert("RGB")


@dataclass(frozen=True)
class ImageTransform:
    name: str
    apply: Callable[[Image.Image, random.Random], Image.Image]
    instruction: str


def _geometric(op: Callable[[Image.Image], Image.Image]) -> Callable[[Image.Image, random.Random], Image.Image]:
    return lambda image, rng: op(image)


def _noise(std: float) -> Callable[[Image.Image, random.Random], Image.Image]:
    def apply(image: Image.Image, rng: random.Random) -> Image.Image:
        pixels = np.asarray(image.convert("RGB"), dtype=np.float32)
        noise = np.random.default_rng(rng.getrandbits(64)).normal(0.0, std, pixels.shape)
        return Image.fromarray(np.clip(pixels + noise, 0, 255).round().astype(np.uint8))

    return apply


# The released instruction sentences, each ending in a newline and put before the question's text.
# Two are changed to be true: the release labels its clockwise rotation "counterclockwise" and the
# reverse, and its counter-clockwise sentence lacks the newline.
_BACK = "Please rotate it back and help me solve the question based on the corrected image.\n"
_FLIP_BACK = "Please flip it back to its original orientation and help me solve the question based on the corrected image.\n"
_NOISE = "This image has been corrupted with noise. Please solve the question based on this image.\n"

# PIL's rotate() turns counter-clockwise for positive angles.
IMAGE_TRANSFORMS: Registry[ImageTransform] = Registry("image transform")
for _t in [
    ImageTransform("rotate_90_clockwise", _geometric(lambda im: im.rotate(-90, expand=True)),
                   f"The image is rotated 90 degrees clockwise. {_BACK}"),
    ImageTransform("rotate_90_counterclockwise", _geometric(lambda im: im.rotate(90, expand=True)),
                   f"The image is rotated 90 degrees counterclockwise. {_BACK}"),
    ImageTransform("rotate_180", _geometric(lambda im: im.rotate(180, expand=True)),
                   f"The image is rotated 180 degrees counterclockwise. {_BACK}"),
    ImageTransform("noise_10", _noise(10), _NOISE),
    ImageTransform("noise_25", _noise(25), _NOISE),
    ImageTransform("noise_50", _noise(50), _NOISE),
    ImageTransform("flip_vertical", _geometric(lambda im: im.transpose(Image.Transpose.FLIP_TOP_BOTTOM)),
                   f"The image is vertically flipped. {_FLIP_BACK}"),
    ImageTransform("flip_horizontal", _geometric(lambda im: im.transpose(Image.Transpose.FLIP_LEFT_RIGHT)),
                   f"The image is horizontally flipped. {_FLIP_BACK}"),
    # The released list has a "transpose by 180 degrees" beside the 180-degree rotation; both
    # give the same pixels. Kept as its own entry so the draw probabilities match the release.
    ImageTransform("transpose_180", _geometric(lambda im: im.transpose(Image.Transpose.ROTATE_180)),
                   "The image is flipped both horizontally and vertically, which is equivalent to a 180-degree "
                   "rotation. Please restore it to its original orientation and help me solve the question based "
                   "on the corrected image.\n"),
]:
    IMAGE_TRANSFORMS.add(_t.name, _t)


@dataclass(frozen=True)
class ImageVariant:
    images: list[Image.Image]
    transform: str | None  # None: the images are unchanged
    instruction: str  # "" when unchanged


def draw_image_variant(
    images: Sequence[Image.Image], rng: random.Random, p: float = 0.3, allowed: Sequence[str] | None = None
) -> ImageVariant:
    """With probability p, one transform (uniform over `allowed`, default all nine) applied to
    every image of the row. Images should already be resized to the pixel budget."""
    names = list(allowed) if allowed is not None else list(IMAGE_TRANSFORMS)
    for name in names:
        IMAGE_TRANSFORMS[name]  # noqa: B018 - raises with the valid names
    if not images or not names or rng.random() >= p:
        return ImageVariant(list(images), None, "")
    t = IMAGE_TRANSFORMS[rng.choice(names)]
    return ImageVariant([t.apply(im, rng) for im in images], t.name, t.instruction)


def main(argv: list[str] | None = None) -> int:
    """`python -m train.expand rewrite ...`: the rewriter's command line (`train.rewrite.main`)."""
    from .rewrite import main as rewrite_main

    return rewrite_main(argv)


if __name__ == "__main__":
    raise SystemExit(main())
