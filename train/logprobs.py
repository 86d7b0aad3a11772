"""The training forward pass: log-probs (and entropies) of response tokens under the training
model, for the loss, the old policy and the reference model. The sampler never supplies them.

Forward modes (`FORWARD_MODES`): `shared_prefix` runs each distinct prompt of a micro-batch once
and its rows' responses on its KV cache (Share-GRPO trains Q*n rows per prompt); `rows` runs whole
rows with the vision tower once per distinct prompt; `plain` runs whole rows through the model's
own forward (the reference the other two are tested against).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from bench.registry import Registry

from .algos import token_entropy
from .encoding import Prompts, left_padded, model_device, prompt_embeds


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
    embeds, grid = prompt_embeds(inner, prompts, batch["input_ids"], index)
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


def _logits_at_responses(full_rows: Callable) -> Callable:
    """Whole-row logits (R, L, V) -> the positions that predict response tokens (R, Lr, V)."""

    def logits(model, prompts: Prompts, batch: dict[str, Tensor]) -> Tensor:
        out = full_rows(model, prompts, batch)
        Lr = batch["response_ids"].shape[1]
        at = (batch["prompt_lengths"][:, None] - 1 + torch.arange(Lr, device=out.device)).clamp(max=out.shape[1] - 1)
        return out.gather(1, at.unsqueeze(-1).expand(-1, -1, out.shape[-1]))

    return logits


FORWARD_MODES: Registry[Callable[..., Tensor]] = Registry("forward mode")
"""(model, prompts, batch) -> logits (R, Lr, V) whose position j predicts response token j."""
FORWARD_MODES.add("shared_prefix", _logits_shared_prefix)
FORWARD_MODES.add("rows", _logits_at_responses(lambda m, p, b: _logits_full_rows(m, p, b, share_images=True)))
FORWARD_MODES.add("plain", _logits_at_responses(lambda m, p, b: _logits_full_rows(m, p, b, share_images=False)))


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
