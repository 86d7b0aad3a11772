"""The sync-free sampler (`train.sampling.race_sample`) against transformers' warpers, hand-worked
nuclei, and the sampling defaults pinned to the released configuration."""

from pathlib import Path

import pytest
import torch
from transformers import LogitsProcessorList, TopKLogitsWarper, TopPLogitsWarper

from train.config import load_config
from train.sampling import SamplingConfig, race_sample

ROOT = Path(__file__).resolve().parents[1]
DRAWS = 40_000


def _frequencies(scores: torch.Tensor, **kw) -> torch.Tensor:
    """Token frequencies of DRAWS samples of one row's distribution (rows drawn in one batch)."""
    torch.manual_seed(0)
    tokens = race_sample(scores.expand(DRAWS, -1).clone(), **kw)
    return torch.bincount(tokens, minlength=scores.shape[-1]).double() / DRAWS


def _assert_distribution(freq: torch.Tensor, probs: torch.Tensor) -> None:
    """Each frequency within 5 binomial standard errors of its probability; zero where it is zero."""
    probs = probs.double()
    bound = 5 * (probs * (1 - probs) / DRAWS).sqrt() + 1e-12
    assert ((freq - probs).abs() <= bound).all(), (freq, probs)
    assert (freq[probs == 0] == 0).all()


def test_hand_worked_nucleus():
    """p = (0.5, 0.3, 0.15, 0.05), top_p = 0.9: the ascending masses are 0.05, 0.20, 0.50, 1.0, so
    only the last token (0.05 <= 0.1) leaves; the rest are sampled as 0.5 : 0.3 : 0.15 of 0.95."""
    scores = torch.tensor([0.5, 0.3, 0.15, 0.05]).log()[None]
    _assert_distribution(_frequencies(scores, top_p=0.9), torch.tensor([0.5, 0.3, 0.15, 0.0]) / 0.95)
    # top_p = 0.6: 0.50 > 0.4 keeps the 0.3 token, 0.20 <= 0.4 drops the 0.15 one
    _assert_distribution(_frequencies(scores, top_p=0.6), torch.tensor([0.5, 0.3, 0.0, 0.0]) / 0.8)
    # top_p = 0.4: 0.50 <= 0.6 drops the 0.3 token too
    _assert_distribution(_frequencies(scores, top_p=0.4), torch.tensor([1.0, 0.0, 0.0, 0.0]))
    # top_p = 1: no nucleus, the plain race
    _assert_distribution(_frequencies(scores), torch.tensor([0.5, 0.3, 0.15, 0.05]))


@pytest.mark.parametrize("top_k,top_p,temperature", [(-1, 0.99, 1.0), (-1, 0.8, 0.7), (5, 0.9, 1.3), (3, 1.0, 1.0)])
def test_frequencies_follow_transformers_warped_distribution(top_k, top_p, temperature):
    """The same distribution as `generate`'s warpers (temperature, top-k, top-p) then multinomial."""
    torch.manual_seed(3)
    logits = torch.randn(1, 12) * 2
    logits[0, 4] = -float("inf")  # a suppressed token
    scores = logits / temperature
    warpers = LogitsProcessorList()
    if top_k > 0:
        warpers.append(TopKLogitsWarper(top_k))
    if top_p < 1:
        warpers.append(TopPLogitsWarper(top_p))
    expected = torch.softmax(warpers(None, scores.clone()), dim=-1)[0]
    assert (expected > 0).sum() >= 2  # a real choice
    _assert_distribution(_frequencies(scores, top_k=top_k, top_p=top_p), expected)


def test_when_no_checked_candidate_is_in_the_nucleus_the_likeliest_token_is_taken():
    """One candidate checked; the nucleus of (0.6, 0.1 x 4) at top_p = 0.5 is the first token alone:
    40% of races start outside it, and each of those takes the likeliest token, which is that one."""
    scores = torch.tensor([0.6, 0.1, 0.1, 0.1, 0.1]).log()[None]
    assert (_frequencies(scores, top_p=0.5, candidates=1) == torch.tensor([1.0, 0, 0, 0, 0], dtype=torch.float64)).all()
    # with every token a candidate, the same nucleus, reached by the race itself
    assert _frequencies(scores, top_p=0.5, candidates=5)[0] == 1.0


def test_rows_are_sampled_independently_and_the_shape_is_one_token_per_row():
    torch.manual_seed(1)
    scores = torch.randn(64, 100)
    tokens = race_sample(scores, top_p=0.99)
    assert tokens.shape == (64,) and tokens.dtype == torch.long
    assert len(set(tokens.tolist())) > 20


def test_sampling_defaults_are_the_released_settings():
    """temperature 1.0, top-p 0.99, no top-k: the released run's rollout settings (EasyR1's
    examples/config.yaml, which the released code keeps); both 7B configs say so explicitly."""
    d = SamplingConfig()
    assert (d.temperature, d.top_p, d.top_k, d.n, d.min_tokens) == (1.0, 0.99, -1, 6, 0)
    for name in ("qwen2_5_vl_7b_sharegrpo.yaml", "qwen2_5_vl_7b_grpo.yaml"):
        ro = load_config(ROOT / "reproduce" / "configs" / name, []).worker.rollout
        assert (ro.temperature, ro.top_p, ro.top_k) == (1.0, 0.99, -1), name
