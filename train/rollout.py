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
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

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
    mask for the log-probs. Pixels stay with `prompts` (see `response_logits`)."""
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


def _left_padded(prompts: Prompts, order: Sequence[int], pad_id: int, device) -> tuple[Tensor, Tensor]:
    """(ids, attention mask) of prompts order[i], left-padded so that every prompt ends at the
    last column, on `device`."""
    width = max(len(prompts.input_ids[p]) for p in order)
    ids = torch.full((len(order), width), pad_id, dtype=torch.long)
    attn = torch.zeros_like(ids)
    for i, p in enumerate(order):
        ids[i, width - len(prompts.input_ids[p]) :], attn[i, width - len(prompts.input_ids[p]) :] = prompts.input_ids[p], 1
    return ids.to(device), attn.to(device)


def _image_embeds(inner, prompts: Prompts, input_ids: Tensor, order: Sequence[int]) -> tuple[Tensor, Tensor | None]:
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


def _logits_full_rows(model, prompts: Prompts, batch: dict[str, Tensor], share_images: bool) -> Tensor:
    """Logits (R, L, V) over whole prompt + response rows. share_images=False is the plain
    reference: each row carries its own pixels through the model's own forward."""
    module = getattr(model, "module", model)  # a DeepSpeed engine or the model itself
    index = batch["prompt_index"].tolist()
    common = {"attention_mask": batch["attention_mask"], "use_cache": False}
    if "image_grid_thw" not in batch:
        return model(input_ids=batch["input_ids"], **common).logits
    if not share_images:
        pixels = torch.cat([prompts.pixel_values[p] for p in index]).to(batch["input_ids"].device)
        return model(input_ids=batch["input_ids"], pixel_values=pixels,
                     image_grid_thw=batch["image_grid_thw"], mm_token_type_ids=batch["mm_token_type_ids"],
                     **common).logits
    inner = module.model
    embeds, grid = _image_embeds(inner, prompts, batch["input_ids"], index)
    position_ids, _ = inner.get_rope_index(batch["input_ids"], batch["mm_token_type_ids"], image_grid_thw=grid,
                                           attention_mask=batch["attention_mask"])
    return model(inputs_embeds=embeds, position_ids=position_ids, **common).logits


def _logits_shared_prefix(model, prompts: Prompts, batch: dict[str, Tensor]) -> Tensor:
    """Response logits (R, Lr, V), each distinct prompt of the micro-batch run once: its KV
    cache is repeated for its rows and their responses are run on top of it (Share-GRPO trains
    Q*n rows per prompt). Gradients from every row flow back through the shared prompt pass."""
    from transformers import DynamicCache

    module = getattr(model, "module", model)
    inner = module.model
    index = batch["prompt_index"].tolist()
    unique = list(dict.fromkeys(index))
    dev = batch["input_ids"].device
    slot = torch.tensor([unique.index(p) for p in index], device=dev)
    ids, attn = _left_padded(prompts, unique, 0, dev)  # padding is masked out; any text id does
    embeds, grid = _image_embeds(inner, prompts, ids, unique)
    if grid is not None:
        position_ids, _ = inner.get_rope_index(ids, prompts.mm_token_type_ids(ids), image_grid_thw=grid, attention_mask=attn)
    else:
        position_ids = (attn.cumsum(-1) - 1).clamp(min=0).unsqueeze(0).expand(3, -1, -1)
    cache = DynamicCache(config=module.config)
    first = model(inputs_embeds=embeds, attention_mask=attn, position_ids=position_ids, past_key_values=cache,
                  use_cache=True, logits_to_keep=1).logits  # (U, 1, V): predicts each response's first token
    cache.batch_select_indices(slot)
    response_ids, response_mask = batch["response_ids"], batch["response_mask"]
    start = position_ids.amax(dim=(0, 2))[slot] + 1  # text positions continue after the prompt's last one
    positions = (start[:, None] + torch.arange(response_ids.shape[1], device=dev)).unsqueeze(0).expand(3, -1, -1)
    rest = model(input_ids=response_ids, attention_mask=torch.cat([attn[slot], response_mask.long()], dim=1),
                 position_ids=positions, past_key_values=cache, use_cache=True).logits
    return torch.cat([first[slot], rest[:, :-1]], dim=1)


FORWARD_MODES = ("shared_prefix", "rows", "plain")


def response_logits(model, prompts: Prompts, batch: dict[str, Tensor], mode: str = "shared_prefix") -> Tensor:
    """Logits (R, Lr, V) whose position j predicts response token j of each row.

    shared_prefix: each distinct prompt once, responses on its KV cache (not under gradient
    checkpointing, which turns the cache off). rows: whole rows, the vision tower once per distinct
    prompt. plain: whole rows through the model's own forward (the reference)."""
    if mode == "shared_prefix":
        return _logits_shared_prefix(model, prompts, batch)
    if mode not in FORWARD_MODES:
        raise ValueError(f"forward mode {mode!r}: valid names: {', '.join(FORWARD_MODES)}")
    logits = _logits_full_rows(model, prompts, batch, share_images=mode == "rows")
    Lr = batch["response_ids"].shape[1]
    at = (batch["prompt_lengths"][:, None] - 1 + torch.arange(Lr, device=logits.device)).clamp(max=logits.shape[1] - 1)
    return logits.gather(1, at.unsqueeze(-1).expand(-1, -1, logits.shape[-1]))


def response_log_probs(
    model, prompts: Prompts, batch: dict[str, Tensor], width: int, with_entropy: bool = False,
    mode: str = "shared_prefix",
) -> tuple[Tensor, Tensor, Tensor | None]:
    """Log-probs of the response tokens under `model`: (log_probs (R, width), mask (R, width),
    entropy (R, width) or None), response tokens left-aligned; width >= the longest response.
    Logits are computed for response positions only; the results are on the model's device."""
    batch = {k: v.to(model_device(model)) for k, v in batch.items()}
    logits = response_logits(model, prompts, batch, mode).float()
    targets, mask = batch["response_ids"], batch["response_mask"]
    token_lp = torch.log_softmax(logits, dim=-1).gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    pad = width - token_lp.shape[1]
    out = torch.nn.functional.pad(token_lp * mask, (0, pad))
    mask = torch.nn.functional.pad(mask, (0, pad))
    ent = None
    if with_entropy:
        with torch.no_grad():
            ent = torch.nn.functional.pad(token_entropy(logits) * batch["response_mask"], (0, pad))
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
    """Sampling on the training model itself (ZeRO-3 parameters are gathered first)."""

    def __init__(self, processor, micro_batch_size: int = 64, zero3: bool = False) -> None:
        self.pad_id = processor.tokenizer.pad_token_id
        self.eos_id, self.suppress = stop_and_suppressed_ids(processor.tokenizer)
        self.micro_batch_size = micro_batch_size
        self.zero3 = zero3

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
        dev = model_device(model)
        ids, attn = _left_padded(prompts, idx, self.pad_id, dev)
        embeds, grid = _image_embeds(inner, prompts, ids, idx)
        position_ids = next_position = None
        if grid is not None:
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
        unfinished = torch.ones(rows, dtype=torch.bool, device=dev)
        out = torch.empty(rows, 0, dtype=torch.long, device=dev)
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
        for seq in out.cpu():
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
    """vLLM on the training GPU (colocated, GPU only, imported lazily). Before every generation
    the training model's current weights are copied into the engine (ZeRO-3 shards are gathered
    first), so rollouts are always on-policy; the engine runs in bf16 with its own KV cache.
    Prompts go in as the same token ids (image placeholders already expanded) plus their images."""

    def __init__(self, processor, cfg) -> None:
        try:
            import vllm
        except ImportError as e:
            raise ImportError("worker.rollout.name=vllm needs vLLM on a CUDA machine: pip install -e '.[vllm]' "
                              "(or use worker.rollout.name=hf)") from e
        if not torch.cuda.is_available():
            raise RuntimeError("worker.rollout.name=vllm needs a CUDA GPU; use worker.rollout.name=hf on CPU")
        ro, d = cfg.worker.rollout, cfg.data
        self.eos_id, self.suppress = stop_and_suppressed_ids(processor.tokenizer)
        self.zero3 = cfg.worker.actor.zero_stage == 3
        self.llm = vllm.LLM(
            model=cfg.worker.actor.model.model_path, dtype="bfloat16", seed=cfg.trainer.seed + int(os.environ.get("RANK", 0)),
            gpu_memory_utilization=ro.gpu_memory_utilization, max_model_len=d.max_prompt_length + d.max_response_length,
            enable_prefix_caching=True, distributed_executor_backend="external_launcher",
        )
        self._vllm = vllm

    def refresh_weights(self, model) -> None:
        """Copy the training model's parameters into the engine (Hugging Face names; vLLM's
        Qwen2.5-VL loader maps them) and drop the engine's prefix cache, which holds old keys."""
        module = getattr(model, "module", model)
        runner = self.llm.llm_engine.model_executor.driver_worker.model_runner.model
        gather = contextlib.nullcontext()
        if self.zero3:
            import deepspeed

            gather = deepspeed.zero.GatheredParameters(list(module.parameters()))
        with gather, torch.no_grad():
            runner.load_weights((name, p.detach()) for name, p in module.named_parameters())
        self.llm.reset_prefix_cache()

    def generate(self, model, prompts: Prompts, params: SamplingParams) -> list[Tensor]:
        """Same contract as HFRollout.generate: n responses per prompt, prompt-major, each cut after
        its first end-of-turn token (kept) or at max_new_tokens."""
        self.refresh_weights(model)
        outputs = self.llm.generate(vllm_inputs(prompts), self._vllm.SamplingParams(**vllm_sampling_kwargs(
            params, self.eos_id, self.suppress)), use_tqdm=False)
        responses = []
        for out in outputs:
            for completion in out.outputs:
                ids = list(completion.token_ids)
                if completion.finish_reason == "stop" and (not ids or ids[-1] != self.eos_id):
                    ids.append(self.eos_id)
                responses.append(torch.tensor(ids, dtype=torch.long))
        return responses


SUPPRESSED_TOKENS = ("<|image_pad|>", "<|video_pad|>", "<|vision_start|>", "<|vision_end|>")


def stop_and_suppressed_ids(tokenizer) -> tuple[int, list[int]]:
    """The end-of-turn id every response stops at, and the vision ids no response may contain."""
    return tokenizer.convert_tokens_to_ids("<|im_end|>"), [tokenizer.convert_tokens_to_ids(t) for t in SUPPRESSED_TOKENS]


def vllm_inputs(prompts: Prompts) -> list[dict]:
    """One vLLM prompt per entry: the encoded token ids and, where there are any, the images."""
    inputs = []
    for j, ids in enumerate(prompts.input_ids):
        item: dict = {"prompt_token_ids": ids.tolist()}
        images = prompts.images[j] if prompts.images else []
        if images:
            item["multi_modal_data"] = {"image": images if len(images) > 1 else images[0]}
        inputs.append(item)
    return inputs


def vllm_sampling_kwargs(params: SamplingParams, eos_id: int, suppress: Sequence[int]) -> dict:
    """Keyword arguments of vllm.SamplingParams for the same sampling as HFRollout."""
    return {
        "n": params.n, "temperature": params.temperature, "top_p": params.top_p,
        "top_k": params.top_k if params.top_k > 0 else 0, "max_tokens": params.max_new_tokens,
        "min_tokens": params.min_tokens, "stop_token_ids": [eos_id], "ignore_eos": False,
        "logit_bias": {t: -100.0 for t in suppress}, "detokenize": False,
    }


ROLLOUT_ENGINES: dict[str, Callable] = {
    "hf": lambda processor, cfg: HFRollout(processor, cfg.worker.rollout.micro_batch_size,
                                           cfg.worker.actor.zero_stage == 3),
    "vllm": VLLMRollout,
}


def make_rollout(name: str, processor, cfg):
    """The rollout engine `name` (worker.rollout.name) for this config."""
    return lookup(ROLLOUT_ENGINES, name, "rollout engine")(processor, cfg)
