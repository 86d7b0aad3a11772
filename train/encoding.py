"""Prompts as the model sees them: chat-templated text and images encoded once per step, split per
prompt, and turned into model inputs (padded micro-batches of prompt + response rows, and token
embeddings with each prompt's image features). Shared by the sampler (`train.rollout`) and the
log-prob forward passes (`train.logprobs`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor


@dataclass
class Prompts:
    """Encoded prompts, one entry per prompt: unpadded token ids (L_j,), and the pixel rows
    (P_j, D) and grids (m_j, 3) of its images (P_j = 0 without images)."""

    input_ids: list[Tensor]
    pixel_values: list[Tensor]
    image_grid_thw: list[Tensor]
    image_token_id: int
    images: list[list] = field(default_factory=list)
    """The PIL images of each prompt (the vLLM engine processes images itself)."""

    def mm_token_type_ids(self, input_ids: Tensor) -> Tensor:
        """1 on image tokens: Qwen2.5-VL computes its 3D (M-RoPE) positions only when given this."""
        return (input_ids == self.image_token_id).int()


def encode_prompts(processor, texts: Sequence[str], images: Sequence[Sequence]) -> Prompts:
    """Run the processor once over all prompts (chat-templated `texts`, `images[j]` for prompt j)
    and split the result per prompt, so every image is processed once per variant."""
    flat = [im for ims in images for im in ims]
    enc = processor(text=list(texts), images=flat or None, return_tensors="pt", padding=True)
    ids = [row[mask.bool()] for row, mask in zip(enc["input_ids"], enc["attention_mask"], strict=True)]
    merge = processor.image_processor.merge_size**2
    grids = enc.get("image_grid_thw", torch.zeros(0, 3, dtype=torch.long))
    pixels = enc.get("pixel_values")
    dim = pixels.shape[-1] if pixels is not None else 0
    pv, gr, g0, p0 = [], [], 0, 0
    image_token = processor.image_token_id
    for j, ims in enumerate(images):
        grid = grids[g0 : g0 + len(ims)]
        rows = int(grid.prod(-1).sum()) if len(ims) else 0
        pv.append(pixels[p0 : p0 + rows] if rows else torch.zeros(0, dim))
        gr.append(grid)
        if int((ids[j] == image_token).sum()) != rows // merge:
            raise RuntimeError("image tokens and image patches disagree after encoding")
        g0, p0 = g0 + len(ims), p0 + rows
    return Prompts(ids, pv, gr, image_token, [list(ims) for ims in images])


def collate(
    prompts: Prompts, prompt_index: Sequence[int], responses: Sequence[Tensor], pad_id: int
) -> dict[str, Tensor]:
    """A micro-batch of rows (prompt `prompt_index[r]`, response `responses[r]`): right-padded
    prompt + response ids for the full-row forward, right-padded response ids (R, Lr) and their
    mask for the log-probs. Pixels stay with `prompts` (see `prompt_embeds`)."""
    seqs = [torch.cat([prompts.input_ids[p], r]) for p, r in zip(prompt_index, responses, strict=True)]
    input_ids = _right_pad(seqs, pad_id)
    attention = _right_pad([torch.ones_like(s) for s in seqs], 0)
    batch = {"input_ids": input_ids, "attention_mask": attention, "mm_token_type_ids": prompts.mm_token_type_ids(input_ids)}
    grids = [prompts.image_grid_thw[p] for p in prompt_index]
    if sum(len(g) for g in grids):
        batch["image_grid_thw"] = torch.cat(grids)
    batch["prompt_index"] = torch.tensor(list(prompt_index))
    batch["prompt_lengths"] = torch.tensor([len(prompts.input_ids[p]) for p in prompt_index])
    batch["response_ids"] = _right_pad(list(responses), pad_id)
    batch["response_mask"] = _right_pad([torch.ones_like(r, dtype=torch.bool) for r in responses], False)
    return batch


def model_device(model) -> torch.device:
    """Where the model's (first) parameters live: inputs built on the CPU are moved there."""
    return next(getattr(model, "module", model).parameters()).device


def _right_pad(rows: Sequence[Tensor], value) -> Tensor:
    out = torch.full((len(rows), max(len(r) for r in rows)), value, dtype=rows[0].dtype)
    for i, r in enumerate(rows):
        out[i, : len(r)] = r
    return out


def left_padded(prompts: Prompts, order: Sequence[int], pad_id: int, device) -> tuple[Tensor, Tensor]:
    """(ids, attention mask) of prompts order[i], left-padded so that every prompt ends at the
    last column, on `device`."""
    width = max(len(prompts.input_ids[p]) for p in order)
    ids = torch.full((len(order), width), pad_id, dtype=torch.long)
    attn = torch.zeros_like(ids)
    for i, p in enumerate(order):
        ids[i, width - len(prompts.input_ids[p]) :], attn[i, width - len(prompts.input_ids[p]) :] = prompts.input_ids[p], 1
    return ids.to(device), attn.to(device)


def prompt_embeds(inner, prompts: Prompts, input_ids: Tensor, order: Sequence[int]) -> tuple[Tensor, Tensor | None]:
    """Token embeddings of `input_ids` (one row per entry of `order`, prompt ids first) with the
    image features of prompt order[i] scattered into row i; the vision tower runs once per
    distinct prompt. Returns (embeds, image_grid_thw of the rows or None)."""
    embeds = inner.get_input_embeddings()(input_ids)
    unique = [p for p in dict.fromkeys(order) if len(prompts.pixel_values[p])]
    if not unique:
        return embeds, None
    dev = input_ids.device
    feats = inner.get_image_features(torch.cat([prompts.pixel_values[p] for p in unique]).to(dev),
                                     torch.cat([prompts.image_grid_thw[p] for p in unique]).to(dev)).pooler_output
    per_prompt, i = {}, 0
    for p in unique:
        k = len(prompts.image_grid_thw[p])
        per_prompt[p] = torch.cat(feats[i : i + k])
        i += k
    rows = torch.cat([per_prompt[p] for p in order if p in per_prompt])
    mask = (input_ids == prompts.image_token_id).unsqueeze(-1).expand_as(embeds)
    grid = torch.cat([prompts.image_grid_thw[p] for p in order]).to(dev)
    return embeds.masked_scatter(mask, rows.to(embeds.dtype)), grid
