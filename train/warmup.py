"""The warm start of the CPU-scale reproduction, standing in for Qwen's pretraining.

1. `pretrain_vision`: from random weights a language model cannot pull a signal through an
   untrained vision tower, so the tower is first trained without answer labels: every merged
   image token predicts the mean colour of each of its four patches (a linear head on top).
2. `supervised_warmup`: next-token training on `<think>...</think> ... \\boxed{answer}` traces for a
   fixed number of steps, evaluated every few steps by sampling on held-out questions (logged, never
   used to stop: a stop on a sampled accuracy moved by a whole evaluation interval when the CPU's
   rounding changed, and Base with it by up to 15 points).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from PIL import Image

from bench.verify import grade_many

from .data import build_messages


@dataclass
class Example:
    question: str
    answer: str
    image: Image.Image


def trace(answer: str) -> str:
    """The supervised target: the released format with a short, generic reasoning."""
    return f"<think>I count them.</think> The answer is \\boxed{{{answer}}}."


def _image_batch(processor, images: Sequence[Image.Image]) -> dict[str, torch.Tensor]:
    return processor.image_processor(images=list(images), return_tensors="pt")


def pretrain_vision(model, processor, images: Sequence[Image.Image], steps: int, lr: float = 1e-3,
                    batch_size: int = 16, seed: int = 0, log: Callable[[str], None] = print) -> list[float]:
    """Train the vision tower (with a throw-away head) to reconstruct per-patch mean colours."""
    visual = model.model.visual
    merge = visual.spatial_merge_size**2
    head = torch.nn.Linear(model.config.text_config.hidden_size, merge * 3)
    params = [*visual.parameters(), *head.parameters()]
    opt = torch.optim.AdamW(params, lr=lr, betas=(0.9, 0.95), weight_decay=0.0)
    rng = random.Random(seed)
    losses = []
    visual.train()
    for step in range(steps):
        batch = _image_batch(processor, rng.sample(list(images), min(batch_size, len(images))))
        pixels, grid = batch["pixel_values"], batch["image_grid_thw"]
        tokens = visual(pixels, grid_thw=grid).pooler_output  # (N / merge, hidden)
        # pixel rows come in merge-window order: merge consecutive patches form one token
        patches = pixels.reshape(tokens.shape[0], merge, 3, -1)  # (tokens, merge, channels, t*h*w)
        target = patches.mean(-1).reshape(tokens.shape[0], merge * 3)
        loss = torch.nn.functional.mse_loss(head(tokens), target)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        losses.append(loss.item())
        if step % max(1, steps // 5) == 0 or step == steps - 1:
            log(f"vision pretraining step {step}: reconstruction loss {loss.item():.4f}")
    return losses


def _encode_sft(processor, examples: Sequence[Example]) -> dict[str, torch.Tensor]:
    """Prompt + trace per example; labels only on the trace (and its end-of-turn token)."""
    prompts = [processor.apply_chat_template(build_messages(e.question, 1), add_generation_prompt=True, tokenize=False)
               for e in examples]
    full = [p + trace(e.answer) + "<|im_end|>" for p, e in zip(prompts, examples, strict=True)]
    tok = processor.tokenizer
    side = tok.padding_side
    tok.padding_side = "right"
    try:
        enc = processor(text=full, images=[e.image for e in examples], return_tensors="pt", padding=True)
        prompt_enc = processor(text=prompts, images=[e.image for e in examples], return_tensors="pt", padding=True)
    finally:
        tok.padding_side = side
    labels = enc["input_ids"].clone()
    labels[enc["attention_mask"] == 0] = -100
    for i, n in enumerate(prompt_enc["attention_mask"].sum(-1).tolist()):
        labels[i, :n] = -100
    enc["labels"] = labels
    return enc


@torch.no_grad()
def sampled_accuracy(model, processor, examples: Sequence[Example], max_new_tokens: int = 32,
                     temperature: float = 1.0, batch_size: int = 32) -> tuple[float, float]:
    """(accuracy, format rate) of one sampled response per example."""
    tok = processor.tokenizer
    model.eval()
    responses = []
    for s in range(0, len(examples), batch_size):
        chunk = examples[s : s + batch_size]
        prompts = [processor.apply_chat_template(build_messages(e.question, 1), add_generation_prompt=True,
                                                 tokenize=False) for e in chunk]
        enc = processor(text=prompts, images=[e.image for e in chunk], return_tensors="pt", padding=True)
        out = model.generate(**enc, do_sample=temperature > 0, temperature=temperature if temperature > 0 else None,
                             top_p=1.0, max_new_tokens=max_new_tokens, eos_token_id=tok.convert_tokens_to_ids("<|im_end|>"),
                             pad_token_id=tok.pad_token_id)
        responses += tok.batch_decode(out[:, enc["input_ids"].shape[1]:], skip_special_tokens=True)
    model.train()
    grades = grade_many(responses, [e.answer for e in examples])
    return sum(g.accuracy for g in grades) / len(grades), sum(g.format for g in grades) / len(grades)


def supervised_warmup(model, processor, train: Sequence[Example], held_out: Sequence[Example], steps: int,
                      lr: float = 1e-3, batch_size: int = 16, eval_every: int = 25, seed: int = 0,
                      log: Callable[[str], None] = print) -> list[dict]:
    """Train for `steps` steps; returns the evaluation history (sampled accuracy on `held_out` every
    `eval_every` steps and at the end). The model is left at the last step."""
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr, betas=(0.9, 0.95),
                            weight_decay=0.0)
    rng = random.Random(seed)
    torch.manual_seed(seed)
    history = []
    model.train()
    for step in range(1, steps + 1):
        batch = _encode_sft(processor, rng.sample(list(train), min(batch_size, len(train))))
        loss = model(**batch, use_cache=False).loss
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if step % eval_every == 0 or step == steps:
            acc, fmt = sampled_accuracy(model, processor, held_out)
            history.append({"step": step, "loss": loss.item(), "accuracy": acc, "format": fmt})
            log(f"warm-up step {step}: loss {loss.item():.3f}, sampled accuracy {acc:.3f}, format {fmt:.3f}")
    return history
