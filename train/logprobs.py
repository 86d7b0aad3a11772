"""The training forward pass: log-probs (and entropies) of response tokens under the training
model, for the loss, the old policy and the reference model. The sampler never supplies them.

Forward modes (`FORWARD_MODES`) give the final hidden states at the response positions:
`shared_prefix` runs each distinct prompt of a micro-batch once and its rows' responses on its KV
cache (Share-GRPO trains Q*n rows per prompt); `rows` runs whole rows under plain causal attention
with the vision tower once per distinct prompt; `auto` takes whichever of the two `forward_flops`
estimates cheaper for the micro-batch; `plain` runs whole rows through the model's own forward
(the reference the others are tested against).

`token_log_probs` then applies the output head over slices of the response tokens, so float32
logits over the vocabulary exist for at most `LOGIT_CHUNK_BYTES` at a time, in the forward pass
and, recomputed, in the backward pass: a micro-batch of 8 rows of 2,048 tokens at Qwen2.5-VL's
151,936-token vocabulary would otherwise hold 10 GB of them per copy.

Every mode goes through the root module's forward (`_final_hidden`, the head on one position):
under ZeRO-3, calling the inner model directly skipped DeepSpeed's root-module hooks and left the
first update's gradients at zero.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor
from torch.utils.checkpoint import checkpoint

from bench.registry import Registry

from .encoding import Prompts, left_padded, model_device, prompt_embeds


def _response_positions(batch: dict[str, Tensor], width: int) -> Tensor:
    """(R, Lr) positions of whole rows whose outputs predict response tokens j = 0..Lr-1."""
    Lr = batch["response_ids"].shape[1]
    at = batch["prompt_lengths"][:, None] - 1 + torch.arange(Lr, device=batch["prompt_lengths"].device)
    return at.clamp(max=width - 1)


def _final_hidden(model, **inputs) -> Tensor:
    """The last (normed) hidden states of a forward through the root module, its head run on one
    position only. Going through the root keeps DeepSpeed ZeRO-3's root-module hooks: calling the
    inner model directly left the first update's gradients at zero under ZeRO-3. The final norm's
    output is taken by a forward hook: `output_hidden_states=True` would keep every layer's hidden
    states until the backward pass (29 of them at 7B, 12.7 GiB at 16 x 4,096 tokens)."""
    norm = getattr(model, "module", model).model.language_model.norm
    seen: list[Tensor] = []
    handle = norm.register_forward_hook(lambda module, args, output: seen.append(output))
    try:
        model(**inputs, logits_to_keep=1)
    finally:
        handle.remove()
    return seen[-1]


def _hidden_plain(model, prompts: Prompts, batch: dict[str, Tensor]) -> Tensor:
    """The reference: whole rows, each with its own pixels, through the model's own forward (which
    computes the image embeddings and 3-axis positions itself) with the padding mask; the final
    hidden states at the response positions."""
    index = batch["prompt_index"].tolist()
    common = {"attention_mask": batch["attention_mask"], "use_cache": False}
    if "image_grid_thw" not in batch:
        out = _final_hidden(model, input_ids=batch["input_ids"], **common)
    else:
        pixels = torch.cat([prompts.pixel_values[p] for p in index]).to(batch["input_ids"].device)
        out = _final_hidden(model, input_ids=batch["input_ids"], pixel_values=pixels,
                            image_grid_thw=batch["image_grid_thw"], mm_token_type_ids=batch["mm_token_type_ids"], **common)
    at = _response_positions(batch, out.shape[1])
    return out.gather(1, at.unsqueeze(-1).expand(-1, -1, out.shape[-1]))


def _hidden_rows(model, prompts: Prompts, batch: dict[str, Tensor]) -> Tensor:
    """Whole rows with the vision tower once per distinct prompt, under plain causal attention:
    rows are right-padded, so no real token sees a pad and no mask is needed (none is built, and
    the kernel skips the blocks above the diagonal). Only the response positions are kept."""
    module = getattr(model, "module", model)  # a DeepSpeed engine or the model itself
    inner, ids = module.model, batch["input_ids"]
    if "image_grid_thw" not in batch:
        hidden = _final_hidden(model, input_ids=ids, use_cache=False)
    else:
        embeds, grid = prompt_embeds(inner, prompts, ids, batch["prompt_index"].tolist())
        position_ids, _ = inner.get_rope_index(ids, batch["mm_token_type_ids"], image_grid_thw=grid,
                                               attention_mask=batch["attention_mask"])
        hidden = _final_hidden(model, inputs_embeds=embeds, position_ids=position_ids, use_cache=False)
    at = _response_positions(batch, hidden.shape[1])
    return hidden.gather(1, at.unsqueeze(-1).expand(-1, -1, hidden.shape[-1]))


def _hidden_shared_prefix(model, prompts: Prompts, batch: dict[str, Tensor]) -> Tensor:
    """Response hidden states (R, Lr, H), each distinct prompt of the micro-batch run once: its KV
    cache is repeated for its rows and their responses are run on top of it (Share-GRPO trains
    Q*n rows per prompt). Gradients from every row flow back through the shared prompt pass."""
    from transformers import DynamicCache

    module = getattr(model, "module", model)
    inner = module.model
    index = batch["prompt_index"].tolist()
    unique = list(dict.fromkeys(index))
    dev = batch["input_ids"].device
    slot = torch.tensor([unique.index(p) for p in index], device=dev)
    ids, attn = left_padded(prompts, unique, 0, dev)  # padding is masked out; any text id does
    embeds, grid = prompt_embeds(inner, prompts, ids, unique)
    if grid is not None:
        position_ids, _ = inner.get_rope_index(ids, prompts.mm_token_type_ids(ids), image_grid_thw=grid, attention_mask=attn)
    else:
        position_ids = (attn.cumsum(-1) - 1).clamp(min=0).unsqueeze(0).expand(3, -1, -1)
    cache = DynamicCache(config=module.config)
    first = _final_hidden(model, inputs_embeds=embeds, attention_mask=attn, position_ids=position_ids,
                          past_key_values=cache, use_cache=True)[:, -1:]  # (U, 1, H): predicts each first token
    cache.batch_select_indices(slot)
    response_ids, response_mask = batch["response_ids"], batch["response_mask"]
    start = position_ids.amax(dim=(0, 2))[slot] + 1  # text positions continue after the prompt's last one
    positions = (start[:, None] + torch.arange(response_ids.shape[1], device=dev)).unsqueeze(0).expand(3, -1, -1)
    rest = _final_hidden(model, input_ids=response_ids, attention_mask=torch.cat([attn[slot], response_mask.long()], dim=1),
                         position_ids=positions, past_key_values=cache, use_cache=True)
    return torch.cat([first[slot], rest[:, :-1]], dim=1)


def forward_flops(prompt_lengths: Tensor, response_lengths: Tensor, prompt_index: Tensor, hidden: int,
                  intermediate: int, kv_hidden: int) -> dict[str, float]:
    """Estimated FLOPs per language-model layer of one micro-batch's forward in each mode.

    prompt_lengths, response_lengths, prompt_index: (R,) per row. A token costs its projections and
    MLP, 2 (2h^2 + 2h*kv_hidden + 3h*I); a (query, key) pair costs 4h. `shared_prefix` runs the
    U distinct prompts once (padded to the longest) and every response (padded) against the whole
    prompt width and its own tokens through an explicit mask, so densely; `rows` runs each whole
    row (padded) under plain causal attention, half the pairs."""
    per_token = 2 * (2 * hidden * hidden + 2 * hidden * kv_hidden + 3 * hidden * intermediate)
    per_pair = 4 * hidden
    rows = len(prompt_lengths)
    units = len(torch.unique(prompt_index))
    p, r = float(prompt_lengths.max()), float(response_lengths.max())
    width = float((prompt_lengths + response_lengths).max())
    shared = (units * p + rows * r) * per_token + (units * p * p + rows * r * (p + r)) * per_pair
    whole = rows * width * per_token + rows * width * width / 2 * per_pair
    return {"shared_prefix": shared, "rows": whole}


def cheaper_mode(model, batch: dict[str, Tensor]) -> str:
    """`shared_prefix` or `rows`, whichever `forward_flops` estimates cheaper for this micro-batch
    (read on the host: `response_log_probs` asks before the batch goes to the device): sharing pays
    when prompts are long next to responses and shared by many rows; long responses favour whole
    causal rows."""
    text = getattr(model, "module", model).config.text_config
    kv_hidden = text.hidden_size * text.num_key_value_heads // text.num_attention_heads
    flops = forward_flops(batch["prompt_lengths"], batch["response_mask"].sum(1), batch["prompt_index"],
                          text.hidden_size, text.intermediate_size, kv_hidden)
    return min(("shared_prefix", "rows"), key=flops.__getitem__)


FORWARD_MODES: Registry[Callable[..., Tensor]] = Registry("forward mode")
"""(model, prompts, batch) -> final hidden states (R, Lr, H) whose position j predicts response
token j (shared_prefix needs the KV cache, which gradient checkpointing turns off)."""
FORWARD_MODES.add("shared_prefix", _hidden_shared_prefix)
FORWARD_MODES.add("rows", _hidden_rows)
FORWARD_MODES.add("auto", lambda model, prompts, batch: FORWARD_MODES[cheaper_mode(model, batch)](model, prompts, batch))
FORWARD_MODES.add("plain", _hidden_plain)

LOGIT_CHUNK_BYTES = 512 * 2**20
"""Float32 logits held at once by `token_log_probs` (3,500 tokens at a 151,936-token vocabulary,
counting the log-softmax beside the logits)."""


def _chunk_log_probs(head: torch.nn.Module, hidden: Tensor, targets: Tensor, with_entropy: bool) -> tuple[Tensor, Tensor]:
    """hidden (C, H), targets (C,) -> (log-probs (C,), entropies (C,), detached; zeros when not asked)."""
    logits = head(hidden).float()
    lse = torch.logsumexp(logits, dim=-1)
    log_probs = logits.gather(-1, targets.unsqueeze(-1)).squeeze(-1) - lse
    with torch.no_grad():
        entropy = lse - (torch.softmax(logits, dim=-1) * logits).sum(-1) if with_entropy else torch.zeros_like(lse)
    return log_probs, entropy


def token_log_probs(head: torch.nn.Module, hidden: Tensor, targets: Tensor, with_entropy: bool = False,
                    chunk_bytes: int = LOGIT_CHUNK_BYTES) -> tuple[Tensor, Tensor | None]:
    """Log-probs (float32) of `targets` under softmax(head(hidden)), and their entropies.

    hidden (R, L, H), targets (R, L) -> (log_probs (R, L), entropy (R, L) or None). The R*L
    tokens go through the head in slices whose float32 logits (and their log-softmax) take at most
    `chunk_bytes`; each slice is checkpointed, so the backward pass recomputes one slice's logits
    at a time instead of keeping them all. Equal to log_softmax(head(hidden).float()) gathered."""
    R, L, H = hidden.shape
    vocab = head.out_features  # not weight.shape: ZeRO-3 partitions the weight
    size = max(1, chunk_bytes // (2 * 4 * vocab))
    flat_h, flat_t = hidden.reshape(R * L, H), targets.reshape(R * L)
    grad = torch.is_grad_enabled() and hidden.requires_grad
    parts = []
    for s in range(0, R * L, size):
        args = (head, flat_h[s : s + size], flat_t[s : s + size], with_entropy)
        parts.append(checkpoint(_chunk_log_probs, *args, use_reentrant=False) if grad
                     else _chunk_log_probs(*args))
    log_probs = torch.cat([p[0] for p in parts]).reshape(R, L)
    return log_probs, torch.cat([p[1] for p in parts]).reshape(R, L) if with_entropy else None


def response_log_probs(
    model, prompts: Prompts, batch: dict[str, Tensor], width: int, with_entropy: bool = False,
    mode: str = "shared_prefix",
) -> tuple[Tensor, Tensor, Tensor | None]:
    """Log-probs of the response tokens under `model`: (log_probs (R, width), mask (R, width),
    entropy (R, width) or None), response tokens left-aligned; width >= the longest response.
    Logits are computed for response positions only, a slice at a time (`token_log_probs`); the
    results are on the model's device."""
    if mode == "auto":
        mode = cheaper_mode(model, batch)
    # Everything to the device but the prompt index, which the forward reads as a list: asked of a
    # device tensor, each read would wait for the device (a host synchronisation per micro-batch).
    dev = model_device(model)
    batch = {k: v if k == "prompt_index" else v.to(dev) for k, v in batch.items()}
    hidden = FORWARD_MODES[mode](model, prompts, batch)
    targets, mask = batch["response_ids"], batch["response_mask"]
    token_lp, entropy = token_log_probs(getattr(model, "module", model).lm_head, hidden, targets, with_entropy,
                                        LOGIT_CHUNK_BYTES)
    pad = width - token_lp.shape[1]
    out = torch.nn.functional.pad(token_lp * mask, (0, pad))
    ent = None if entropy is None else torch.nn.functional.pad(entropy * mask, (0, pad))
    return out, torch.nn.functional.pad(mask, (0, pad)), ent
