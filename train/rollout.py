"""Prompts in, responses out: prompt encoding shared by generation and the log-prob passes, and the
generation engines behind one interface.

`hf` (default): a lean sampling loop over the transformers model (for a seed, the tokens of
`generate`), batched, temperature/top-p/top-k sampling, image tokens suppressed, stops at
end-of-turn. `vllm` (GPU only): imported lazily; see `VLLMRollout`.
Log-probs for the loss never come from the sampler: `response_log_probs` runs the training model.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from .algos import lookup, token_entropy


@dataclass
class Prompts:
    """Encoded prompts, one entry per prompt: unpadded token ids (L_j,), and the pixel rows
    (P_j, D) and grids (m_j, 3) of its images (P_j = 0 without images)."""

    input_ids: list[Tensor]
    pixel_values: list[Tensor]
    image_grid_thw: list[Tensor]
    image_token_id: int

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
    return Prompts(ids, pv, gr, image_token)


def collate(
    prompts: Prompts, prompt_index: Sequence[int], responses: Sequence[Tensor], pad_id: int
) -> dict[str, Tensor]:
    """Right-padded (prompt + response) rows for a forward pass, with the offsets needed to read
    the response log-probs back. Pixels stay with `prompts` (see `forward_logits`)."""
    seqs = [torch.cat([prompts.input_ids[p], r]) for p, r in zip(prompt_index, responses, strict=True)]
    width = max(len(s) for s in seqs)
    input_ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    attention = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, s in enumerate(seqs):
        input_ids[i, : len(s)], attention[i, : len(s)] = s, 1
    batch = {"input_ids": input_ids, "attention_mask": attention, "mm_token_type_ids": prompts.mm_token_type_ids(input_ids)}
    grids = [prompts.image_grid_thw[p] for p in prompt_index]
    if sum(len(g) for g in grids):
        batch["image_grid_thw"] = torch.cat(grids)
    batch["prompt_index"] = torch.tensor(list(prompt_index))
    batch["prompt_lengths"] = torch.tensor([len(prompts.input_ids[p]) for p in prompt_index])
    batch["response_lengths"] = torch.tensor([len(r) for r in responses])
    return batch


def forward_logits(model, prompts: Prompts, batch: dict[str, Tensor], share_images: bool = True) -> Tensor:
    """Logits (R, L, V) of the rows in `batch`.

    share_images=True runs the vision tower once per distinct prompt of the micro-batch and
    scatters its features into every row of that prompt (Share-GRPO trains Q*n rows per prompt;
    gradients from all of them flow into the one encoding). share_images=False is the plain
    reference: every row carries its own pixels through the model's own forward."""
    module = getattr(model, "module", model)  # a DeepSpeed engine or the model itself
    index = batch["prompt_index"].tolist()
    common = {"attention_mask": batch["attention_mask"], "use_cache": False}
    has_images = "image_grid_thw" in batch
    if not share_images:
        extra = {}
        if has_images:
            extra = {"pixel_values": torch.cat([prompts.pixel_values[p] for p in index]),
                     "image_grid_thw": batch["image_grid_thw"], "mm_token_type_ids": batch["mm_token_type_ids"]}
        return model(input_ids=batch["input_ids"], **common, **extra).logits
    inner = module.model
    embeds = inner.get_input_embeddings()(batch["input_ids"])
    if has_images:
        unique = sorted(set(index))
        with_pixels = [p for p in unique if len(prompts.pixel_values[p])]
        feats = inner.get_image_features(torch.cat([prompts.pixel_values[p] for p in with_pixels]),
                                         torch.cat([prompts.image_grid_thw[p] for p in with_pixels])).pooler_output
        per_prompt, i = {}, 0
        for p in with_pixels:
            k = len(prompts.image_grid_thw[p])
            per_prompt[p] = torch.cat(feats[i : i + k])
            i += k
        rows = torch.cat([per_prompt[p] for p in index if p in per_prompt])
        mask = (batch["input_ids"] == prompts.image_token_id).unsqueeze(-1).expand_as(embeds)
        embeds = embeds.masked_scatter(mask, rows.to(embeds.dtype))
        position_ids, _ = inner.get_rope_index(batch["input_ids"], batch["mm_token_type_ids"],
                                               image_grid_thw=batch["image_grid_thw"],
                                               attention_mask=batch["attention_mask"])
        common["position_ids"] = position_ids
    return model(inputs_embeds=embeds, **common).logits


def response_log_probs(
    model, prompts: Prompts, batch: dict[str, Tensor], width: int, with_entropy: bool = False,
    share_images: bool = True,
) -> tuple[Tensor, Tensor, Tensor | None]:
    """Log-probs of the response tokens under `model`.

    Returns (log_probs (R, width), mask (R, width), entropy (R, width) or None), response tokens
    left-aligned; width >= the longest response."""
    logits = forward_logits(model, prompts, batch, share_images)[:, :-1].float()
    targets = batch["input_ids"][:, 1:]
    token_lp = torch.log_softmax(logits, dim=-1).gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    R = token_lp.shape[0]
    out = token_lp.new_zeros(R, width)
    mask = torch.zeros(R, width, dtype=torch.bool)
    ent = token_lp.new_zeros(R, width) if with_entropy else None
    for r in range(R):
        start, n = int(batch["prompt_lengths"][r]) - 1, int(batch["response_lengths"][r])
        out[r, :n] = token_lp[r, start : start + n]
        mask[r, :n] = True
        if with_entropy:
            with torch.no_grad():
                ent[r, :n] = token_entropy(logits[r, start : start + n])
    return out, mask, ent


@dataclass
class SamplingParams:
    n: int
    max_new_tokens: int
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = -1
    min_tokens: int = 0


class HFRollout:
    """transformers `generate` on the training model (ZeRO-3 parameters are gathered first)."""

    def __init__(self, processor, micro_batch_size: int = 64, zero3: bool = False) -> None:
        tok = processor.tokenizer
        self.pad_id = tok.pad_token_id
        self.eos_id = tok.convert_tokens_to_ids("<|im_end|>")
        self.micro_batch_size = micro_batch_size
        self.zero3 = zero3
        self.suppress = [
            tok.convert_tokens_to_ids(t) for t in ("<|image_pad|>", "<|video_pad|>", "<|vision_start|>", "<|vision_end|>")
        ]

    @torch.no_grad()
    def generate(self, model, prompts: Prompts, params: SamplingParams) -> list[Tensor]:
        """n responses per prompt, prompt-major ([j, k] order), each cut after its first
        end-of-turn token (kept) or at max_new_tokens."""
        responses: list[Tensor] = []
        gather = contextlib.nullcontext()
        if self.zero3:
            import deepspeed

            gather = deepspeed.zero.GatheredParameters(list(model.parameters()))
        was_training = model.training
        model.eval()
        with gather:
            for start in range(0, len(prompts.input_ids), self.micro_batch_size):
                idx = list(range(start, min(start + self.micro_batch_size, len(prompts.input_ids))))
                responses += self._generate_chunk(model, prompts, idx, params)
        model.train(was_training)
        return responses

    def _generate_chunk(self, model, prompts: Prompts, idx: list[int], params: SamplingParams) -> list[Tensor]:
        """A lean sampling loop over the model's own modules. Why not `generate`: on small models
        its per-token bookkeeping (logits processors, stopping criteria, input preparation) costs as
        much as the forward itself. Same distribution and same tokens for a seed as `generate`
        with these settings (tests/test_rollout.py checks token equality): the prefill runs once
        per prompt and its cache and logits are repeated n times; positions follow Qwen2.5-VL's
        3D rope (text-only prompts: plain positions over the padded width, as in `generate`)."""
        from transformers import DynamicCache

        inner = model.model
        width = max(len(prompts.input_ids[j]) for j in idx)
        ids = torch.full((len(idx), width), self.pad_id, dtype=torch.long)
        attn = torch.zeros_like(ids)
        for row, j in enumerate(idx):  # left padding for generation
            L = len(prompts.input_ids[j])
            ids[row, width - L :], attn[row, width - L :] = prompts.input_ids[j], 1
        embeds = inner.get_input_embeddings()(ids)
        position_ids = next_position = None
        with_pixels = [j for j in idx if len(prompts.pixel_values[j])]
        if with_pixels:
            grid = torch.cat([prompts.image_grid_thw[j] for j in idx])
            feats = inner.get_image_features(torch.cat([prompts.pixel_values[j] for j in with_pixels]), grid).pooler_output
            mask = (ids == prompts.image_token_id).unsqueeze(-1).expand_as(embeds)
            embeds = embeds.masked_scatter(mask, torch.cat(feats).to(embeds.dtype))
            position_ids, _ = inner.get_rope_index(ids, prompts.mm_token_type_ids(ids), image_grid_thw=grid,
                                                   attention_mask=attn)
            next_position = position_ids.amax(dim=(0, 2)).repeat_interleave(params.n) + 1  # (rows,)
        cache = DynamicCache(config=model.config)
        hidden = inner.language_model(inputs_embeds=embeds, attention_mask=attn, position_ids=position_ids,
                                      past_key_values=cache, use_cache=True).last_hidden_state
        logits = model.lm_head(hidden[:, -1:]).repeat_interleave(params.n, dim=0)
        cache.batch_repeat_interleave(params.n)
        attn = attn.repeat_interleave(params.n, dim=0)
        rows = attn.shape[0]
        warp = self._warpers(params)
        unfinished = torch.ones(rows, dtype=torch.bool)
        out = torch.empty(rows, 0, dtype=torch.long)
        for t in range(params.max_new_tokens):
            scores = logits[:, -1].to(dtype=torch.float32, copy=True)
            scores[:, self.suppress] = -math.inf
            if t < params.min_tokens:
                scores[:, self.eos_id] = -math.inf
            scores = warp(out, scores)
            token = torch.multinomial(torch.softmax(scores, dim=-1), num_samples=1).squeeze(1)
            token = torch.where(unfinished, token, self.pad_id)
            out = torch.cat([out, token[:, None]], dim=1)
            unfinished &= token != self.eos_id
            if not unfinished.any() or t + 1 == params.max_new_tokens:
                break
            attn = torch.cat([attn, attn.new_ones(rows, 1)], dim=1)
            pos = None if next_position is None else (next_position + t).view(1, rows, 1).expand(3, rows, 1)
            hidden = inner.language_model(inputs_embeds=inner.get_input_embeddings()(token[:, None]),
                                          attention_mask=attn, position_ids=pos, past_key_values=cache,
                                          use_cache=True).last_hidden_state
            logits = model.lm_head(hidden)
        result = []
        for seq in out:
            ends = (seq == self.eos_id).nonzero()
            result.append(seq[: int(ends[0]) + 1] if len(ends) else seq)
        return result

    @staticmethod
    def _warpers(params: SamplingParams):
        """transformers' own temperature / top-k / top-p warpers, in `generate`'s order."""
        from transformers import (
            LogitsProcessorList,
            TemperatureLogitsWarper,
            TopKLogitsWarper,
            TopPLogitsWarper,
        )

        warpers = LogitsProcessorList()
        if params.temperature != 1.0:
            warpers.append(TemperatureLogitsWarper(params.temperature))
        if params.top_k > 0:
            warpers.append(TopKLogitsWarper(params.top_k))
        if params.top_p < 1.0:
            warpers.append(TopPLogitsWarper(params.top_p))
        return warpers


class VLLMRollout:
    """vLLM engine (GPU only). Not available in this release: it is imported lazily and refuses to
    start with a clear message rather than failing inside a step."""

    def __init__(self, *args, **kwargs) -> None:
        raise NotImplementedError(
            "worker.rollout.name=vllm is not implemented yet; use worker.rollout.name=hf (see README, Status)"
        )


ROLLOUT_ENGINES: dict[str, Callable] = {"hf": HFRollout, "vllm": VLLMRollout}


def make_rollout(name: str, *args, **kwargs):
    return lookup(ROLLOUT_ENGINES, name, "rollout engine")(*args, **kwargs)
