"""The sampling settings, defined once: worker.rollout's sampling keys (`train.config.RolloutConfig`
extends them) and what a rollout engine samples with (`train.rollout.SamplingParams` adds the
response length); and `race_sample`, the hf engine's sampler on a GPU (no sort, no host
synchronisation)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass
class SamplingConfig:
    """How responses are sampled: the one definition of these settings (worker.rollout's sampling
    keys; `train.rollout.SamplingParams` adds the response length)."""

    n: int = 6
    """Responses per variant prompt. GRPO baselines use n*Q for the same budget."""
    temperature: float = 1.0
    top_p: float = 0.99
    top_k: int = -1
    """-1: off."""
    min_tokens: int = 0
    """Responses are at least this long (end-of-turn suppressed until then); benchmarks set it
    equal to data.max_response_length for a fixed amount of work per step (vLLM's name)."""


RACE_CANDIDATES = 4
"""Candidates the race sampler checks for nucleus membership (see `race_sample`)."""


def race_sample(scores: Tensor, top_k: int = -1, top_p: float = 1.0, candidates: int = RACE_CANDIDATES) -> Tensor:
    """One token per row from softmax(scores) restricted to its top-k and top-p nucleus, without a
    sort of the vocabulary and without a host synchronisation (`torch.multinomial` waits for the
    device inside ATen on every call; a sort costs several passes over R x V).

    scores: (R, V) float, already divided by the temperature; -inf where a token is suppressed.
    Returns (R,) long.

    The exponential race: with E_j ~ Exp(1) independent, argmax_j p_j / E_j is distributed as p,
    and the order of p_j / E_j is the order of sampling without replacement. So the first token of
    that order that lies in the nucleus is distributed as p restricted to the nucleus and
    renormalised, which is what transformers' `TopPLogitsWarper` then `multinomial` sample. Only the
    first `candidates` of the order are checked; a token c is in the nucleus when the mass of the
    tokens no likelier than it, c included, exceeds 1 - top_p (the warper's rule, which removes a
    token when the ascending cumulative mass up to it is at most 1 - top_p; with tied probabilities
    at the boundary, all the tied tokens are kept). The nucleus holds at least 1 - (1 - top_p) of
    the mass, so each candidate lies outside it with probability at most 1 - top_p; when all
    `candidates` do (about (1 - top_p)^candidates, 1e-8 at top_p = 0.99), the likeliest token, which
    is always in the nucleus, is taken. tests/test_sampling.py checks the nucleus against the warper
    and the frequencies against the warped distribution."""
    if top_k > 0:
        kth = scores.topk(min(top_k, scores.shape[-1]), dim=-1).values[:, -1:]
        scores = scores.masked_fill(scores < kth, -math.inf)
    probs = torch.softmax(scores, dim=-1)
    race = torch.empty_like(probs).exponential_().clamp_(min=torch.finfo(probs.dtype).tiny)
    keys = probs / race
    if top_p >= 1.0:
        return keys.argmax(dim=-1)
    order = keys.topk(min(candidates, probs.shape[-1]), dim=-1).indices  # (R, C), in the race's order
    chosen = probs.gather(1, order)
    below = torch.stack([(probs * (probs <= chosen[:, c : c + 1])).sum(-1) for c in range(order.shape[1])], dim=1)
    kept = below > 1.0 - top_p  # (R, C)
    first = kept.to(torch.uint8).argmax(dim=-1, keepdim=True)  # the first kept candidate (0 when none)
    return torch.where(kept.any(dim=-1), order.gather(1, first).squeeze(1), probs.argmax(dim=-1))
