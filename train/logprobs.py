"""The training forward pass: log-probs (and entropies) of response tokens under the training
model, for the loss, the old policy and the reference model. The sampler never supplies them.

Forward modes (`FORWARD_MODES`): `shared_prefix` runs each distinct prompt of a micro-batch once
and its rows' responses on its KV cache (Share-GRPO trains Q*n rows per prompt); `rows` runs whole
rows under plain causal attention with the vision tower once per distinct prompt; `auto` takes
whichever of the two `forward_flops` estimates cheaper for the micro-batch; `plain` runs whole
rows through the model's own forward (the reference the others are tested against).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from bench.registry import Registry

from .algos import token_entropy
from .encoding import Prompts, left_padded, model_device, prompt_embeds


def _response_positions(batch: dict[str, Tensor], width: int) -> Tensor:
    """(R, Lr) positions of whole rows whose outputs predict response tokens j = 0..Lr-1."""
    Lr = batch["response_ids"].shape[1]
    at = batch["prompt_lengths"][:, None] - 1 + torch.arange(Lr, device=batch["prompt_lengths"].device)
    return at.clamp(max=width - 1)


def _logits_plain(model, prompts: Prompts, batch: dict[str, Tensor]) -> Tensor:
    """The reference: whole rows, each with its own pixels, through the model's own forward with
    the padding mask; logits (R, L, V) then the response positions picked out."""
    index = batch["prompt_index"].tolist()
    common = {"attention_mask": batch["attention_mask"], "use_cache": False}
    if "image_grid_thw" not in batch:
        out = model(input_ids=batch["input_ids"], **common).logits
    else:
        pixels = torch.cat([prompts.pixel_values[p] for p in index]).to(batch["input_ids"].device)
        out = model(input_ids=batch["input_ids"], pixel_values=pixels, image_grid_thw=batch["image_grid_thw"],
                    mm_token_type_ids=batch["mm_token_type_ids"], **common).logits
    at = _response_positions(batch, out.shape[1])
    return out.gather(1, at.unsqueeze(-1).expand(-1, -1, out.shape[-1]))


def _logits_rows(model, prompts: Prompts, batch: dict[str, Tensor]) -> Tensor:
    """Whole rows with the vision tower once per distinct prompt, under plain causal attention:
    rows are right-padded, so no real token sees a pad and no mask is needed (none is built, and
    the kernel skips the blocks above the diagonal). The output head runs on the response
    positions only, so no (R, L, V) logits of prompt positions are ever made."""
    module = getattr(model, "module", model)  # a DeepSpeed engine or the model itself
    inner, ids = module.model, batch["input_ids"]
    if "image_grid_thw" not in batch:
        hidden = inner(input_ids=ids, use_cache=False).last_hidden_state
    else:
        embeds, grid = prompt_embeds(inner, prompts, ids, batch["prompt_index"].tolist())
        position_ids, _ = inner.get_rope_index(ids, batch["mm_token_type_ids"], image_grid_thw=grid,
                                               attention_mask=batch["attention_mask"])
        hidden = inner(inputs_embeds=embeds, position_ids=position_ids, use_cache=False).last_hidden_state
    at = _response_positions(batch, hidden.shape[1])
    return module.lm_head(hidden.gather(1, at.unsqueeze(-1).expand(-1, -1, hidden.shape[-1])))


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
    ids, attn = left_padded(prompts, unique, 0, dev)  # padding is masked out; any text id does
    embeds, grid = prompt_embeds(inner, prompts, ids, unique)
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


def _logits_auto(model, prompts: Prompts, batch: dict[str, Tensor]) -> Tensor:
    """`shared_prefix` or `rows`, whichever `forward_flops` estimates cheaper for this micro-batch:
    sharing pays when prompts are long next to responses and shared by many rows; long
    responses favour whole causal rows."""
    text = getattr(model, "module", model).config.text_config
    kv_hidden = text.hidden_size * text.num_key_value_heads // text.num_attention_heads
    flops = forward_flops(batch["prompt_lengths"], batch["response_mask"].sum(1), batch["prompt_index"],
                          text.hidden_size, text.intermediate_size, kv_hidden)
    return FORWARD_MODES[min(("shared_prefix", "rows"), key=flops.__getitem__)](model, prompts, batch)


FORWARD_MODES: Registry[Callable[..., Tensor]] = Registry("forward mode")
"""(model, prompts, batch) -> logits (R, Lr, V) whose position j predicts response token j."""
FORWARD_MODES.add("shared_prefix", _logits_shared_prefix)
FORWARD_MODES.add("rows", _logits_rows)
FORWARD_MODES.add("auto", _logits_auto)
FORWARD_MODES.add("plain", _logits_plain)


def response_logits(model, prompts: Prompts, batch: dict[str, Tensor], mode: str = "shared_prefix") -> Tensor:
    """Logits (R, Lr, V) whose position j predicts response token j of each row, by `mode` (see
    the module docstring; shared_prefix needs the KV cache, which gradient checkpointing turns off)."""
    return FORWARD_MODES[mode](model, prompts, batch)


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
