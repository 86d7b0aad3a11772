"""The sampling settings, defined once: worker.rollout's sampling keys (`train.config.RolloutConfig`
extends them) and what a rollout engine samples with (`train.rollout.SamplingParams` adds the
response length)."""

from __future__ import annotations

from dataclasses import dataclass


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
