"""Build a tiny Qwen2.5-VL (random weights), its tokenizer and an image-only processor, offline.

    python -m train.tiny --out DIR [--seed S] [--size tiny|mini|small]

The result loads with the usual calls:

    Qwen2_5_VLForConditionalGeneration.from_pretrained(DIR)
    AutoTokenizer.from_pretrained(DIR); AutoImageProcessor.from_pretrained(DIR)   # PIL processor
    AutoProcessor.from_pretrained(DIR)          # where torchvision is installed
    bench.processing.load_processor(DIR)        # either way

The tokenizer is a byte-level BPE trained here with `tokenizers` on text the project generates;
digits are split into single tokens (a multi-digit answer is then always spelled the same way); it carries Qwen's special tokens, `<think>` and
`</think>`, and Qwen's chat template. The image processor is the PIL one (no torchvision).
Everything is deterministic for a seed.
"""

from __future__ import annotations

import argparse
import random
from dataclasses import dataclass
from pathlib import Path

import torch

from bench.prompts import R1_PROMPT

SPECIAL_TOKENS = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|image_pad|>",
    "<|video_pad|>",
]
THINK_TOKENS = ["<think>", "</think>"]

# Qwen2-VL's chat template, reduced to what this project sends (text and image items).
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for item in message['content'] %}"
    "{% if item['type'] == 'image' or 'image' in item %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif item['type'] == 'text' %}{{ item['text'] }}{% endif %}"
    "{% endfor %}{% endif %}<|im_end|>\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


@dataclass(frozen=True)
class TinySize:
    hidden: int
    layers: int
    heads: int
    kv_heads: int
    intermediate: int
    vision_hidden: int
    vision_depth: int
    vision_heads: int
    vocab: int
    image_side: int  # the processor resizes images to about this side (pixels)


SIZES = {
    # for tests: builds and steps in well under a second
    "tiny": TinySize(64, 2, 4, 2, 128, 32, 2, 2, 512, 56),
    # for the CPU reproduction: about 1.8M parameters, 84x84 images -> 9 image tokens
    "mini": TinySize(128, 4, 4, 2, 384, 96, 4, 4, 640, 84),
    # for the cost curves of `python -m reproduce.perf --grid`: about 27M parameters
    "small": TinySize(512, 8, 8, 2, 1536, 256, 4, 4, 1024, 84),
}


def tokenizer_corpus(seed: int) -> list[str]:
    """Text in the shape of what the model will read and write (questions, prompts, traces)."""
    rng = random.Random(seed)
    shapes = ["circle", "square", "triangle", "star", "bar", "line", "dot", "number"]
    colours = ["red", "green", "blue", "yellow", "black", "white"]
    lines = [R1_PROMPT, "You are a helpful assistant.", "system user assistant"]
    for _ in range(3000):
        s, c = rng.choice(shapes), rng.choice(colours)
        a, b = rng.randint(0, 99), rng.randint(0, 99)
        lines += [
            f"How many {c} {s}s are in the image? Which one is the largest, A, B, C or D?",
            f"<think>I count the {c} {s}s: {a} plus {b} is {a + b}.</think> The answer is \\boxed{{{a + b}}}.",
            f"What is the value of the tallest bar? Compare the lengths of the {s}s. Options: (A) {a} (B) {b}",
            "The image has been rotated 90 degrees clockwise; rotate it back and solve the question. "
            "Gaussian noise with standard deviation 25 has been added; flipped vertically horizontally.",
        ]
    return lines


def build_tokenizer(seed: int, vocab_size: int):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Digits(individual_digits=True), pre_tokenizers.ByteLevel(add_prefix_space=False)]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(tokenizer_corpus(seed), trainer=trainer)
    tok.add_tokens(THINK_TOKENS)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=None,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        unk_token=None,
        model_max_length=4096,
        padding_side="left",
    )
    fast.chat_template = CHAT_TEMPLATE
    return fast


def build_config(tokenizer, size: TinySize):
    from transformers import Qwen2_5_VLConfig

    head_dim = size.hidden // size.heads
    third = head_dim // 2 // 3
    mrope = [head_dim // 2 - 2 * third, third, third]  # must sum to head_dim / 2
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS}
    return Qwen2_5_VLConfig(
        text_config={
            "vocab_size": len(tokenizer),
            "hidden_size": size.hidden,
            "intermediate_size": size.intermediate,
            "num_hidden_layers": size.layers,
            "num_attention_heads": size.heads,
            "num_key_value_heads": size.kv_heads,
            "max_position_embeddings": 4096,
            "max_window_layers": size.layers,
            "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0, "mrope_section": mrope},
            "bos_token_id": ids["<|endoftext|>"],
            "eos_token_id": ids["<|im_end|>"],
            "pad_token_id": ids["<|endoftext|>"],
            "tie_word_embeddings": False,
        },
        vision_config={
            "depth": size.vision_depth,
            "hidden_size": size.vision_hidden,
            "intermediate_size": 2 * size.vision_hidden,
            "num_heads": size.vision_heads,
            "out_hidden_size": size.hidden,
            "patch_size": 14,
            "spatial_merge_size": 2,
            "temporal_patch_size": 2,
            "window_size": 112,
            "fullatt_block_indexes": [size.vision_depth - 1],
        },
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=False,
    )


def build_processor(tokenizer, size: TinySize):
    from transformers import Qwen2VLImageProcessorPil

    from bench.processing import ImageOnlyQwen2_5_VLProcessor

    pixels = size.image_side * size.image_side
    image_processor = Qwen2VLImageProcessorPil(
        min_pixels=pixels // 2, max_pixels=pixels, size={"shortest_edge": pixels // 2, "longest_edge": pixels}
    )
    return ImageOnlyQwen2_5_VLProcessor(image_processor, tokenizer, chat_template=CHAT_TEMPLATE)


def build_tiny(out: str | Path, seed: int = 0, size: str = "tiny") -> Path:
    """Write model, tokenizer and processor into `out`; returns the path."""
    if size not in SIZES:
        raise ValueError(f"unknown tiny size {size!r}; valid names: {', '.join(SIZES)}")
    spec = SIZES[size]
    tokenizer = build_tokenizer(seed, spec.vocab)
    return _write(out, tokenizer, build_config(tokenizer, spec), spec, seed)


def _write(out: str | Path, tokenizer, config, spec: TinySize, seed: int, dtype: torch.dtype = torch.float32,
           device: str = "cpu") -> Path:
    """Initialise the model from `config` at random (seeded), in `dtype` on `device`, and save it
    with its processor."""
    from transformers import Qwen2_5_VLForConditionalGeneration

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    with torch.device(device):
        model = Qwen2_5_VLForConditionalGeneration._from_config(config, dtype=dtype)
    model.generation_config.eos_token_id = config.text_config.eos_token_id
    model.generation_config.pad_token_id = config.text_config.pad_token_id
    model.save_pretrained(out)
    build_processor(tokenizer, spec).save_pretrained(out)
    return out


def published_config_for(tokenizer, hub_id: str):
    """A published checkpoint's config (`train.plan.PUBLISHED_SHAPES`) wired to this tokenizer's
    special tokens. The vocabulary keeps the published size; the tokenizer uses its first ids."""
    from .plan import published_config

    config = published_config(hub_id)
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS}
    config.image_token_id, config.video_token_id = ids["<|image_pad|>"], ids["<|video_pad|>"]
    config.vision_start_token_id, config.vision_end_token_id = ids["<|vision_start|>"], ids["<|vision_end|>"]
    text = config.text_config
    text.bos_token_id, text.eos_token_id, text.pad_token_id = ids["<|endoftext|>"], ids["<|im_end|>"], ids["<|endoftext|>"]
    return config


def build_published(out: str | Path, hub_id: str, seed: int = 0, dtype: torch.dtype = torch.float32,
                    device: str = "cpu") -> Path:
    """A randomly initialised model of a published checkpoint's shape (e.g.
    Qwen/Qwen2.5-VL-3B-Instruct) with this module's tokenizer and processor, for benchmarks where
    nothing can be downloaded. On a GPU build it there, in bf16 (the 3B shape: 7.5 GB, where fp32
    on the CPU is 15 GB and minutes of initialisation)."""
    spec = SIZES["mini"]  # tokenizer and image size
    tokenizer = build_tokenizer(seed, spec.vocab)
    return _write(out, tokenizer, published_config_for(tokenizer, hub_id), spec, seed, dtype, device)


def main(argv: list[str] | None = None) -> int:
    from bench.errors import exit_on_usage_error

    parser = argparse.ArgumentParser(prog="python -m train.tiny", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--size", choices=sorted(SIZES), default="tiny")
    args = parser.parse_args(argv)

    def run() -> None:
        path = build_tiny(args.out, args.seed, args.size)
        print(f"tiny Qwen2.5-VL ({args.size}, seed {args.seed}) written to {path}")

    return exit_on_usage_error(run)


if __name__ == "__main__":
    raise SystemExit(main())
