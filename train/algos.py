"""Share-GRPO as pure functions: tensors and numbers in, tensors out; no config objects, no `.item()`.

Notation (after R1-ShareVL, arXiv 2505.16673): B questions, each expanded into Q variants, n
responses sampled per variant.
`rewards[i, b, k]` is the reward of response k generated from variant b of question i. Training
rows are indexed `[i, a, b, k]`: response (i, b, k) trained under the prompt of variant a.

Variants live in registries (`ADVANTAGE_ESTIMATORS`, `LOSS_AGGREGATIONS`, `LOSS_NORMALIZATIONS`,
`KL_ESTIMATORS`, `GLOBAL_STD_OVER`, `ADVANTAGE_TERMS`), each name written once; the config validates against them
and an unknown name fails with the list of valid ones. Every advantage estimator has one
signature: rewards (B, Q, n) -> advantages (B, Q, Q, n).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from bench.registry import Registry

EPS = 1e-6

AdvantageEstimator = Callable[..., Tensor]
ADVANTAGE_ESTIMATORS: Registry[AdvantageEstimator] = Registry("advantage estimator")
"""rewards (B, Q, n) -> advantages (B, Q, Q, n) indexed [i, a, b, k], called as
fn(rewards, eps=, global_std_over=, terms=). Info: `variants` is "many" or "one" (needs Q = 1)."""
GLOBAL_STD_OVER: Registry[Callable[[Tensor, int], Tensor]] = Registry("global_std_over")
LOSS_AGGREGATIONS: Registry[Callable[..., Tensor]] = Registry("loss aggregation")
"""(x, mask (R, T), norm_len) -> scalar. Info: `unit` ("tokens" or "rows"), what a micro-batch's
share of an update is counted in when gradients are accumulated."""
LOSS_NORMALIZATIONS: Registry[Callable[[Tensor], Tensor]] = Registry("loss normalization")
"""shares (M,) -> weights (M,): how the M micro-batch losses of one update are weighted when their
gradients are accumulated; `shares` is each micro-batch's part of the update, in the aggregation's
unit (tokens or rows)."""
KL_ESTIMATORS: Registry[Callable[[Tensor, Tensor], Tensor]] = Registry("KL estimator")
ADVANTAGE_TERMS: Registry[tuple[bool, bool]] = Registry("advantage terms")
"""Which Share-GRPO terms are kept: (global, local)."""
ADVANTAGE_TERMS.add("both", (True, True))
ADVANTAGE_TERMS.add("global", (True, False))
ADVANTAGE_TERMS.add("local", (False, True))


# ---------------------------------------------------------------- group statistics
def _uniform(x: Tensor) -> Tensor:
    """(..., G) -> (...) bool: every value of the group is the same (exactly)."""
    return (x == x[..., :1]).all(dim=-1)


def _standardize(x: Tensor, eps: float, std: Tensor | None = None) -> Tensor:
    """(x - mean) / (std + eps) over the last dim; zero for groups of one or uniform groups."""
    if x.shape[-1] < 2:
        return torch.zeros_like(x)
    centred = x - x.mean(dim=-1, keepdim=True)
    std = x.std(dim=-1, keepdim=True) if std is None else std
    return torch.where(_uniform(x).unsqueeze(-1), torch.zeros_like(x), centred / (std + eps))


# ---------------------------------------------------------------- advantages
def grpo_advantages(rewards: Tensor, eps: float = EPS) -> Tensor:
    """GRPO. rewards: (B, G) -> (B, G) = (r - mean) / (unbiased std + eps) per row.
    A group of one or a uniform group gets zeros."""
    return _standardize(rewards, eps)


def dr_grpo_advantages(rewards: Tensor, eps: float = EPS) -> Tensor:
    """Dr. GRPO. rewards: (B, G) -> (B, G) = r - mean (no std division). `eps` is unused."""
    return rewards - rewards.mean(dim=-1, keepdim=True)


@GLOBAL_STD_OVER.register("responses")
def _std_over_responses(flat: Tensor, q: int) -> Tensor:
    return flat.std(dim=-1, keepdim=True)


@GLOBAL_STD_OVER.register("rows")
def _std_over_rows(flat: Tensor, q: int) -> Tensor:
    """Unbiased std of the Q*Q*n training rows (each response repeated Q times), as the released
    code computes it: sqrt(Q * sum (r - mean)^2 / (Q^2 n - 1)); smaller than the std over
    responses by the factor sqrt(Q (Qn - 1) / (Q^2 n - 1)) (0.978 for Q = 2, n = 6): each
    response's squared deviation is counted Q times (the loop reference in tests/test_algos.py)."""
    m = flat.shape[-1]  # Q * n
    ss = ((flat - flat.mean(dim=-1, keepdim=True)) ** 2).sum(dim=-1, keepdim=True)
    return torch.sqrt(q * ss / (q * m - 1))


@ADVANTAGE_ESTIMATORS.register("share_grpo", variants="many")
def share_grpo_advantages(
    rewards: Tensor, eps: float = EPS, global_std_over: str = "responses", terms: str = "both"
) -> Tensor:
    """Hierarchical Share-GRPO advantages.

    rewards: (B, Q, n) -> (B, Q, Q, n) indexed [i, a, b, k]:
        A = (r[i,b,k] - mu_g[i]) / (sigma_g[i] + eps)                    (global, every row)
          + 1[a == b] * (r[i,b,k] - mu_l[i,b]) / (sigma_l[i,b] + eps)   (local, on-policy rows)
    mu_g, sigma_g: mean and unbiased std over the Q*n responses of question i (or over the Q*Q*n
    rows with global_std_over="rows", as the released code does); mu_l, sigma_l: over the n
    responses of variant b. Groups of one and uniform groups contribute 0.
    `terms` keeps "both" (the method), or only the "global" or "local" term (ablations).
    With Q = 1 the two groups coincide and the term is counted once, so Q = 1 is exactly GRPO.
    """
    use_global, use_local = ADVANTAGE_TERMS[terms]
    B, Q, n = rewards.shape
    flat = rewards.reshape(B, Q * n)
    std_g = GLOBAL_STD_OVER[global_std_over](flat, Q) if Q * n > 1 else None
    use_local = use_local and (Q > 1 or not use_global)  # Q = 1: one group, counted once
    global_term = _standardize(flat, eps, std_g).reshape(B, Q, n) if use_global else torch.zeros_like(rewards)
    local_term = _standardize(rewards, eps) if use_local else torch.zeros_like(rewards)
    on_policy = torch.eye(Q, dtype=rewards.dtype, device=rewards.device)[None, :, :, None]
    return global_term.unsqueeze(1) + on_policy * local_term.unsqueeze(1)


def _one_group(group_fn: Callable[[Tensor, float], Tensor], rewards: Tensor, eps: float = EPS,
               global_std_over: str = "responses", terms: str = "both") -> Tensor:
    """A per-question group estimator (B, G) -> (B, G) in the registry's signature: rewards
    (B, 1, n) -> (B, 1, 1, n). The Share-GRPO options (global_std_over, terms) do not apply to one
    group. (Bound per estimator with functools.partial, so that this body runs at call time.)"""
    B, Q, n = rewards.shape
    if Q != 1:
        raise ValueError(f"this advantage estimator takes one variant per question, got Q = {Q}")
    return group_fn(rewards.reshape(B, n), eps).reshape(B, 1, 1, n)


ADVANTAGE_ESTIMATORS.add("grpo", functools.partial(_one_group, grpo_advantages), variants="one")
ADVANTAGE_ESTIMATORS.add("dr_grpo", functools.partial(_one_group, dr_grpo_advantages), variants="one")


# ---------------------------------------------------------------- sharing layout
@dataclass(frozen=True)
class ShareLayout:
    """Index tensors, each (B*Q*Q*n,), for training rows in [i, a, b, k] order (the order of
    `share_grpo_advantages(...).reshape(-1)`).
    prompt_index: i*Q + a, into the B*Q variant prompts ([i, a] order).
    response_index: (i*Q + b)*n + k, into the B*Q*n generated responses ([i, b, k] order).
    question_index: i. on_policy: a == b."""

    prompt_index: Tensor
    response_index: Tensor
    question_index: Tensor
    on_policy: Tensor


def share_layout(B: int, Q: int, n: int, device: torch.device | str | None = None) -> ShareLayout:
    """Which prompt and which response each of the B*Q*Q*n training rows combines."""
    i, a, b, k = torch.meshgrid(
        *(torch.arange(s, device=device) for s in (B, Q, Q, n)), indexing="ij"
    )
    return ShareLayout(
        prompt_index=(i * Q + a).reshape(-1),
        response_index=((i * Q + b) * n + k).reshape(-1),
        question_index=i.reshape(-1),
        on_policy=(a == b).reshape(-1),
    )


# ---------------------------------------------------------------- losses
@LOSS_AGGREGATIONS.register("token-mean", unit="tokens")
def _token_mean(x: Tensor, mask: Tensor, norm_len: int | None = None) -> Tensor:
    return (x * mask).sum() / mask.sum().clamp(min=1)


@LOSS_AGGREGATIONS.register("seq-mean-token-mean", unit="rows")
def _seq_mean_token_mean(x: Tensor, mask: Tensor, norm_len: int | None = None) -> Tensor:
    per_seq = (x * mask).sum(-1) / mask.sum(-1).clamp(min=1)
    return per_seq.mean()


@LOSS_AGGREGATIONS.register("seq-mean-token-sum-norm", unit="rows")
def _seq_mean_token_sum_norm(x: Tensor, mask: Tensor, norm_len: int | None = None) -> Tensor:
    """Dr. GRPO: token sums divided by a constant length (the max response length)."""
    return (x * mask).sum() / (x.shape[0] * (norm_len or x.shape[-1]))


@LOSS_NORMALIZATIONS.register("whole_update")
def _whole_update(shares: Tensor) -> Tensor:
    """Weight by share: the update's loss is the aggregation over all of its rows at once (a
    token-mean over every token of the update), whatever the micro-batch size."""
    return shares / shares.sum().clamp(min=1)


@LOSS_NORMALIZATIONS.register("per_micro_batch")
def _per_micro_batch(shares: Tensor) -> Tensor:
    """Equal weights 1/M: each micro-batch's own aggregate, divided by the number of accumulation
    steps (the released code's `loss / gradient_accumulation`). A token then weighs more in a
    micro-batch of short responses than in one of long responses."""
    return torch.full_like(shares, 1.0 / len(shares))


def aggregate(x: Tensor, mask: Tensor, mode: str = "token-mean", norm_len: int | None = None) -> Tensor:
    """x, mask: (R, T) -> scalar, by the named aggregation."""
    return LOSS_AGGREGATIONS[mode](x, mask.to(x.dtype), norm_len)


def ppo_policy_loss(
    log_probs: Tensor,
    old_log_probs: Tensor,
    advantages: Tensor,
    mask: Tensor,
    clip_low: float = 0.2,
    clip_high: float = 0.3,
    dual_clip: float | None = 3.0,
    agg: str = "token-mean",
    norm_len: int | None = None,
) -> tuple[Tensor, dict[str, Tensor]]:
    """PPO clipped surrogate with separate low/high clip and dual clip for negative advantages.

    log_probs, old_log_probs, mask: (R, T); advantages: (R,) or (R, T). Returns (scalar loss,
    metrics) with metrics `clip_frac`, `dual_clip_frac`, `approx_kl` (mean old - new log-prob),
    all detached scalars over the masked tokens."""
    if advantages.dim() == 1:
        advantages = advantages.unsqueeze(-1).expand_as(log_probs)
    mask = mask.to(log_probs.dtype)
    log_ratio = log_probs - old_log_probs
    ratio = torch.exp(log_ratio)
    unclipped = -advantages * ratio
    clipped = -advantages * torch.clamp(ratio, 1.0 - clip_low, 1.0 + clip_high)
    loss = torch.maximum(unclipped, clipped)
    dual = torch.zeros_like(loss, dtype=torch.bool)
    if dual_clip is not None:
        bound = -advantages * dual_clip
        dual = (advantages < 0) & (loss > bound)
        loss = torch.where(advantages < 0, torch.minimum(loss, bound), loss)
    with torch.no_grad():
        metrics = {
            "clip_frac": _token_mean((clipped > unclipped).to(mask.dtype), mask),
            "dual_clip_frac": _token_mean(dual.to(mask.dtype), mask),
            "approx_kl": _token_mean(-log_ratio, mask),
        }
    return aggregate(loss, mask, agg, norm_len), metrics


@KL_ESTIMATORS.register("k1")
def _kl_k1(log_probs: Tensor, ref_log_probs: Tensor) -> Tensor:
    return log_probs - ref_log_probs


@KL_ESTIMATORS.register("k2")
def _kl_k2(log_probs: Tensor, ref_log_probs: Tensor) -> Tensor:
    return 0.5 * (log_probs - ref_log_probs) ** 2


@KL_ESTIMATORS.register("low_var_kl")  # decorators apply bottom-up: k3 is registered first
@KL_ESTIMATORS.register("k3")
def _kl_k3(log_probs: Tensor, ref_log_probs: Tensor) -> Tensor:
    """Low-variance estimator exp(ref - logp) - (ref - logp) - 1, clamped to [-10, 10]."""
    delta = ref_log_probs - log_probs
    return torch.clamp(torch.exp(delta) - delta - 1.0, min=-10.0, max=10.0)


def kl_penalty(log_probs: Tensor, ref_log_probs: Tensor, estimator: str = "k3") -> Tensor:
    """Per-token KL estimate of policy vs reference. (R, T) -> (R, T)."""
    return KL_ESTIMATORS[estimator](log_probs, ref_log_probs)


def token_entropy(logits: Tensor) -> Tensor:
    """Entropy of the softmax over the last dim. logits: (..., V) -> (...)."""
    log_p = torch.log_softmax(logits.float(), dim=-1)
    return -(log_p.exp() * log_p).sum(dim=-1)


# ---------------------------------------------------------------- dynamic sampling, diagnostics
def dynamic_sampling_filter(rewards: Tensor) -> tuple[Tensor, Tensor]:
    """Drop question groups whose rewards have zero variance (all equal).

    rewards: (B, G) or (B, Q, n) -> (keep (B,) bool, dropped () long)."""
    keep = ~_uniform(rewards.reshape(rewards.shape[0], -1))
    return keep, (~keep).sum()


def advantage_vanishing(rewards: Tensor, advantages: Tensor) -> dict[str, Tensor]:
    """The numbers the paper's argument rests on.

    rewards: (B, Q, n) (GRPO: Q = 1); advantages: any shape (the training rows).
    Returns `zero_adv_frac` (rows whose advantage is exactly 0), `uniform_global_frac` (questions
    whose Q*n rewards are all equal), `uniform_local_frac` (variants whose n rewards are) and
    `rescued_frac` (variants whose own n rewards are uniform while their question's Q*n pool is
    not: groups whose advantage GRPO would lose and sharing keeps; 0 when Q = 1)."""
    B = rewards.shape[0]
    local, pooled = _uniform(rewards), _uniform(rewards.reshape(B, -1))
    return {
        "zero_adv_frac": (advantages == 0).float().mean(),
        "uniform_global_frac": pooled.float().mean(),
        "uniform_local_frac": local.float().mean(),
        "rescued_frac": (local & ~pooled.unsqueeze(-1)).float().mean(),
    }


def uniform_outcomes(accuracy: Tensor) -> dict[str, Tensor]:
    """Which uniform question groups there are: accuracy (B, Q, n) of 0/1 -> `all_wrong_frac` and
    `all_correct_frac`, the fractions of questions whose Q*n responses are all wrong / all right
    (the sparse-reward case Share-GRPO targets is the first)."""
    flat = accuracy.reshape(accuracy.shape[0], -1)
    return {"all_wrong_frac": (flat == 0).all(-1).float().mean(), "all_correct_frac": (flat == 1).all(-1).float().mean()}
