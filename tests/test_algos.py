"""Pure algorithm functions against slow loop references, hand-worked cases and properties."""

from __future__ import annotations

import math
import statistics

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from train.algos import (
    advantage_vanishing,
    aggregate,
    dr_grpo_advantages,
    dynamic_sampling_filter,
    grpo_advantages,
    kl_penalty,
    ppo_policy_loss,
    share_grpo_advantages,
    share_layout,
    token_entropy,
)

EPS = 1e-6


# ---------------------------------------------------------------- slow references
def ref_standardize(values: list[float]) -> list[float]:
    if len(values) < 2 or len(set(values)) == 1:
        return [0.0] * len(values)
    mu, sd = statistics.fmean(values), statistics.stdev(values)
    return [(v - mu) / (sd + EPS) for v in values]


def ref_share(rewards: torch.Tensor, std_over: str = "responses") -> torch.Tensor:
    B, Q, n = rewards.shape
    out = torch.zeros(B, Q, Q, n, dtype=torch.float64)
    for i in range(B):
        responses = [rewards[i, b, k].item() for b in range(Q) for k in range(n)]
        mu = statistics.fmean(responses)
        if std_over == "rows":  # every response once per prompt variant
            pool = [r for r in responses for _ in range(Q)]
        else:
            pool = responses
        sd = statistics.stdev(pool) if len(pool) > 1 else 0.0
        uniform = len(set(responses)) == 1
        for a in range(Q):
            for b in range(Q):
                local = ref_standardize([rewards[i, b, k].item() for k in range(n)])
                for k in range(n):
                    g = 0.0 if uniform or len(responses) < 2 else (rewards[i, b, k].item() - mu) / (sd + EPS)
                    out[i, a, b, k] = g + (local[k] if a == b and Q > 1 else 0.0)
    return out


def random_rewards(gen: torch.Generator, *shape: int) -> torch.Tensor:
    kind = torch.randint(0, 3, (1,), generator=gen).item()
    if kind == 0:  # the released reward: 0.9 acc + 0.1 format
        acc = torch.randint(0, 2, shape, generator=gen).double()
        fmt = torch.randint(0, 2, shape, generator=gen).double()
        return 0.9 * acc + 0.1 * fmt
    if kind == 1:
        return torch.randint(0, 2, shape, generator=gen).double()
    return torch.randn(shape, generator=gen, dtype=torch.float64)


# ---------------------------------------------------------------- advantages
def test_grpo_matches_loop_reference():
    gen = torch.Generator().manual_seed(0)
    for _ in range(50):
        B, G = torch.randint(1, 6, (2,), generator=gen).tolist()
        r = random_rewards(gen, B, G)
        expected = torch.tensor([ref_standardize(row.tolist()) for row in r], dtype=torch.float64)
        torch.testing.assert_close(grpo_advantages(r), expected.reshape(B, G))


def test_grpo_hand_worked():
    r = torch.tensor([[1.0, 0.0, 0.0, 0.0], [1.0, 1.0, 1.0, 1.0], [0.9, 0.1, 0.9, 0.1]])
    # row 0: mean 0.25, unbiased std 0.5; row 1: uniform; row 2: mean 0.5, std 0.4*sqrt(4/3)
    sd2 = 0.4 * math.sqrt(4 / 3)
    expected = torch.tensor(
        [
            [0.75 / (0.5 + EPS), -0.25 / (0.5 + EPS), -0.25 / (0.5 + EPS), -0.25 / (0.5 + EPS)],
            [0.0, 0.0, 0.0, 0.0],
            [0.4 / (sd2 + EPS), -0.4 / (sd2 + EPS), 0.4 / (sd2 + EPS), -0.4 / (sd2 + EPS)],
        ]
    )
    torch.testing.assert_close(grpo_advantages(r), expected)


def test_dr_grpo():
    r = torch.tensor([[1.0, 0.0, 0.0, 1.0], [2.0, 2.0, 2.0, 2.0]])
    torch.testing.assert_close(dr_grpo_advantages(r), torch.tensor([[0.5, -0.5, -0.5, 0.5], [0.0] * 4]))


@pytest.mark.parametrize("std_over", ["responses", "rows"])
def test_share_grpo_matches_loop_reference(std_over):
    gen = torch.Generator().manual_seed(1)
    for _ in range(40):
        B, Q, n = (torch.randint(1, 4, (1,), generator=gen).item(), torch.randint(1, 4, (1,), generator=gen).item(),
                   torch.randint(1, 5, (1,), generator=gen).item())
        r = random_rewards(gen, B, Q, n)
        torch.testing.assert_close(share_grpo_advantages(r, global_std_over=std_over), ref_share(r, std_over))


def test_share_grpo_hand_worked():
    # One question, Q = 2 variants, n = 2: variant 0 got [1, 0], variant 1 got [0, 0].
    r = torch.tensor([[[1.0, 0.0], [0.0, 0.0]]])
    sd_g = statistics.stdev([1, 0, 0, 0])  # 0.5
    g = torch.tensor([0.75, -0.25, -0.25, -0.25]) / (sd_g + EPS)
    local0 = torch.tensor([0.5, -0.5]) / (statistics.stdev([1, 0]) + EPS)
    A = share_grpo_advantages(r)
    assert A.shape == (1, 2, 2, 2)
    torch.testing.assert_close(A[0, 0, 0], g[:2] + local0)  # on-policy, variant 0
    torch.testing.assert_close(A[0, 1, 0], g[:2])  # variant 0's responses under prompt 1: global only
    torch.testing.assert_close(A[0, 1, 1], g[2:])  # variant 1 uniform locally: no local term
    torch.testing.assert_close(A[0, 0, 1], g[2:])
    # The variant that is uniform under plain GRPO still gets a (negative) signal from sharing.
    assert (A[0, :, 1] < 0).all()


def test_rows_std_is_smaller_by_the_stated_factor():
    r = torch.tensor([[[1.0, 0.0, 0.0], [1.0, 1.0, 0.0]]])
    Q, n = 2, 3
    a_resp = share_grpo_advantages(r, terms="global")
    a_rows = share_grpo_advantages(r, global_std_over="rows", terms="global")
    # Each response counted Q times: var_rows = Q * SS / (Q^2 n - 1) against SS / (Qn - 1).
    factor = math.sqrt(Q * (Q * n - 1) / (Q * Q * n - 1))
    torch.testing.assert_close(a_resp * (1 / factor), a_rows, rtol=1e-5, atol=1e-5)


def test_terms_ablation_and_unknown_names():
    r = torch.tensor([[[1.0, 0.0], [1.0, 1.0]]])
    both, glob, loc = (share_grpo_advantages(r, terms=t) for t in ("both", "global", "local"))
    torch.testing.assert_close(both, glob + loc)
    assert (loc[0, 0, 1] == 0).all() and (loc[0, 1, 0] == 0).all()  # local only on a == b
    with pytest.raises(ValueError, match="valid names: both, global, local"):
        share_grpo_advantages(r, terms="all")
    with pytest.raises(ValueError, match="valid names: responses, rows"):
        share_grpo_advantages(r, global_std_over="tokens")


def test_no_nan_for_groups_of_one_and_uniform():
    for shape in [(3, 1, 1), (2, 1, 4), (2, 3, 1), (1, 2, 2)]:
        for r in (torch.zeros(shape), torch.ones(shape), torch.full(shape, 0.1)):
            A = share_grpo_advantages(r)
            assert torch.isfinite(A).all() and (A == 0).all()
    assert (grpo_advantages(torch.full((2, 5), 0.7)) == 0).all()
    assert (grpo_advantages(torch.tensor([[3.0]])) == 0).all()


rewards_strategy = st.tuples(st.integers(1, 3), st.integers(1, 3), st.integers(1, 4), st.integers(0, 10_000))


@settings(max_examples=60, deadline=None)
@given(rewards_strategy, st.floats(-5, 5), st.floats(0.1, 10))
def test_shift_and_scale_invariance(spec, shift, scale):
    B, Q, n, seed = spec
    r = random_rewards(torch.Generator().manual_seed(seed), B, Q, n)
    base = share_grpo_advantages(r, eps=0.0)
    moved = share_grpo_advantages(r * scale + shift, eps=0.0)
    torch.testing.assert_close(moved, base, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(grpo_advantages(r.reshape(B, -1) * scale + shift, eps=0.0),
                               grpo_advantages(r.reshape(B, -1), eps=0.0), rtol=1e-6, atol=1e-6)


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 4), st.integers(1, 8), st.integers(0, 10_000))
def test_q1_is_grpo(B, n, seed):
    r = random_rewards(torch.Generator().manual_seed(seed), B, 1, n)
    torch.testing.assert_close(share_grpo_advantages(r).reshape(B, n), grpo_advantages(r.reshape(B, n)))


# ---------------------------------------------------------------- layout
@settings(max_examples=30, deadline=None)
@given(st.integers(1, 4), st.integers(1, 4), st.integers(1, 4))
def test_layout_matches_loop_and_on_policy_mask(B, Q, n):
    layout = share_layout(B, Q, n)
    assert layout.prompt_index.shape == (B * Q * Q * n,)
    row = 0
    for i in range(B):
        for a in range(Q):
            for b in range(Q):
                for k in range(n):
                    assert layout.prompt_index[row] == i * Q + a
                    assert layout.response_index[row] == (i * Q + b) * n + k
                    assert layout.question_index[row] == i
                    assert layout.on_policy[row] == (a == b)
                    row += 1
    # every generated response is trained Q times, Q*n rows per question are on-policy
    assert torch.bincount(layout.response_index).eq(Q).all()
    assert layout.on_policy.sum() == B * Q * n
    # advantages flatten in the same order: the local term appears exactly on on-policy rows
    r = torch.arange(B * Q * n, dtype=torch.float64).reshape(B, Q, n) % 3
    local = (share_grpo_advantages(r) - share_grpo_advantages(r, terms="global")).reshape(-1)
    assert (local[~layout.on_policy] == 0).all()


# ---------------------------------------------------------------- policy loss
def ref_ppo(logp, old, adv, mask, lo, hi, dual):
    total, count = 0.0, 0.0
    for r in range(logp.shape[0]):
        for t in range(logp.shape[1]):
            if not mask[r, t]:
                continue
            ratio = math.exp(logp[r, t].item() - old[r, t].item())
            a = adv[r].item()
            loss = max(-a * ratio, -a * min(max(ratio, 1 - lo), 1 + hi))
            if a < 0:
                loss = min(loss, -a * dual)
            total += loss
            count += 1
    return total / count


def test_ppo_loss_matches_loop_reference():
    gen = torch.Generator().manual_seed(2)
    for _ in range(30):
        R, T = 5, 7
        logp = torch.randn(R, T, generator=gen, dtype=torch.float64) * 0.5 - 1
        old = logp + torch.randn(R, T, generator=gen, dtype=torch.float64) * 0.8
        adv = torch.randn(R, generator=gen, dtype=torch.float64)
        mask = torch.rand(R, T, generator=gen) > 0.3
        mask[:, 0] = True
        loss, metrics = ppo_policy_loss(logp, old, adv, mask, 0.2, 0.3, 3.0)
        assert loss.item() == pytest.approx(ref_ppo(logp, old, adv, mask, 0.2, 0.3, 3.0), rel=1e-9)
        assert 0 <= metrics["clip_frac"] <= 1 and 0 <= metrics["dual_clip_frac"] <= 1


def test_ppo_on_policy_gradient_is_advantage_weighted():
    logp = torch.zeros(2, 3, requires_grad=True)
    adv = torch.tensor([1.0, -2.0])
    loss, metrics = ppo_policy_loss(logp, logp.detach(), adv, torch.ones(2, 3))
    loss.backward()
    torch.testing.assert_close(logp.grad, -adv[:, None].expand(2, 3) / 6)
    assert metrics["clip_frac"] == 0 and metrics["approx_kl"] == 0


def test_ppo_clip_and_dual_clip_hand_worked():
    old = torch.zeros(1, 3)
    logp = torch.log(torch.tensor([[2.0, 0.5, 5.0]]))  # ratios 2, 0.5, 5
    pos, _ = ppo_policy_loss(logp, old, torch.tensor([1.0]), torch.ones(1, 3), dual_clip=None)
    # A>0: min(r, clip(r)) with clip [0.8, 1.3] -> 1.3, 0.5, 1.3
    assert pos.item() == pytest.approx(-(1.3 + 0.5 + 1.3) / 3)
    neg, m = ppo_policy_loss(logp, old, torch.tensor([-1.0]), torch.ones(1, 3), dual_clip=3.0)
    # A<0: max(r, clip(r)) -> 2, 0.8, 5; dual clip caps at 3 -> 2, 0.8, 3
    assert neg.item() == pytest.approx((2 + 0.8 + 3) / 3)
    assert m["dual_clip_frac"].item() == pytest.approx(1 / 3)


def test_aggregations():
    x = torch.tensor([[1.0, 2.0, 3.0], [4.0, 0.0, 0.0]])
    mask = torch.tensor([[1, 1, 1], [1, 0, 0]])
    assert aggregate(x, mask, "token-mean").item() == pytest.approx(10 / 4)
    assert aggregate(x, mask, "seq-mean-token-mean").item() == pytest.approx((2 + 4) / 2)
    assert aggregate(x, mask, "seq-mean-token-sum-norm").item() == pytest.approx(10 / (2 * 3))
    assert aggregate(x, mask, "seq-mean-token-sum-norm", norm_len=10).item() == pytest.approx(10 / 20)
    with pytest.raises(ValueError, match="valid names: token-mean, seq-mean-token-mean, seq-mean-token-sum-norm"):
        aggregate(x, mask, "sum")


def test_kl_estimators():
    logp = torch.log(torch.tensor([0.5, 0.2]))
    ref = torch.log(torch.tensor([0.25, 0.2]))
    d = math.log(0.5) - math.log(0.25)
    torch.testing.assert_close(kl_penalty(logp, ref, "k1"), torch.tensor([d, 0.0]))
    torch.testing.assert_close(kl_penalty(logp, ref, "k2"), torch.tensor([0.5 * d * d, 0.0]))
    torch.testing.assert_close(kl_penalty(logp, ref, "k3"), torch.tensor([math.exp(-d) + d - 1, 0.0]))
    assert kl_penalty(torch.tensor([0.0]), torch.tensor([50.0]), "k3").item() == 10.0  # clamped
    # k1 and k3 are unbiased for KL(p || ref) when samples come from p
    p = torch.tensor([0.7, 0.2, 0.1])
    q = torch.tensor([0.3, 0.3, 0.4])
    true_kl = (p * (p / q).log()).sum()
    for name in ("k1", "k3"):
        est = (p * kl_penalty(p.log(), q.log(), name)).sum()
        torch.testing.assert_close(est, true_kl)
    with pytest.raises(ValueError, match="valid names: k1, k2, k3, low_var_kl"):
        kl_penalty(logp, ref, "k4")


def test_token_entropy():
    logits = torch.tensor([[0.0, 0.0, 0.0, 0.0], [100.0, 0.0, 0.0, 0.0]])
    torch.testing.assert_close(token_entropy(logits), torch.tensor([math.log(4), 0.0]), atol=1e-6, rtol=0)


# ---------------------------------------------------------------- dynamic sampling, diagnostics
def test_dynamic_sampling_filter():
    r = torch.tensor([[1.0, 1.0, 1.0], [1.0, 0.0, 1.0], [0.0, 0.0, 0.0]])
    keep, dropped = dynamic_sampling_filter(r)
    assert keep.tolist() == [False, True, False] and dropped.item() == 2
    keep, dropped = dynamic_sampling_filter(torch.tensor([[[1.0, 1.0], [0.0, 0.0]]]))
    assert keep.tolist() == [True] and dropped.item() == 0  # uniform per variant, not per question


def test_advantage_vanishing_grpo_vs_share():
    # Variant 0 all wrong, variant 1 one right: GRPO on variant 0 alone vanishes; sharing does not.
    r = torch.tensor([[[0.0, 0.0, 0.0], [1.0, 0.0, 0.0]]])
    share = advantage_vanishing(r, share_grpo_advantages(r))
    assert share["zero_adv_frac"] == 0
    assert share["uniform_global_frac"] == 0 and share["uniform_local_frac"] == 0.5
    grpo_r = r[:, :1]  # the original question alone
    grpo = advantage_vanishing(grpo_r, grpo_advantages(grpo_r.reshape(1, -1)))
    assert grpo["zero_adv_frac"] == 1 and grpo["uniform_global_frac"] == 1


# ---------------------------------------------------------------- defaults and edges the mutation pass found untested
def test_defaults_are_the_released_ones():
    """ppo_policy_loss's dual clip is 3 (released), aggregate's mode token-mean, kl_penalty's k3."""
    old = torch.zeros(1, 1)
    logp = torch.log(torch.tensor([[5.0]]))
    loss, m = ppo_policy_loss(logp, old, torch.tensor([-1.0]), torch.ones(1, 1))
    assert loss.item() == pytest.approx(3.0) and m["dual_clip_frac"].item() == 1.0
    x, mask = torch.tensor([[1.0, 2.0, 3.0], [4.0, 0.0, 0.0]]), torch.tensor([[1, 1, 1], [1, 0, 0]])
    assert aggregate(x, mask).item() == aggregate(x, mask, "token-mean").item() == pytest.approx(10 / 4)
    logp, ref = torch.log(torch.tensor([0.5, 0.2])), torch.log(torch.tensor([0.25, 0.4]))
    torch.testing.assert_close(kl_penalty(logp, ref), kl_penalty(logp, ref, "k3"))
    assert not torch.allclose(kl_penalty(logp, ref, "k3"), kl_penalty(logp, ref, "k1"))


def test_ppo_metrics_hand_worked():
    """approx_kl is the mean of old - new log-probs over masked tokens; a positive advantage is
    never dual-clipped; clip_frac counts tokens where the clipped term wins; norm_len reaches the
    aggregation."""
    old = torch.log(torch.tensor([[0.5, 0.5, 0.5]]))
    new = torch.log(torch.tensor([[1.0, 0.25, 0.5]]))  # ratios 2, 0.5, 1 (the last token masked out)
    mask = torch.tensor([[1, 1, 0]])
    loss, m = ppo_policy_loss(new, old, torch.tensor([0.5]), mask)
    assert m["approx_kl"].item() == pytest.approx(((math.log(0.5) - 0.0) + (math.log(0.5) - math.log(0.25))) / 2)
    assert m["dual_clip_frac"].item() == 0.0  # a positive advantage: the dual clip never applies
    assert m["clip_frac"].item() == pytest.approx(1 / 2)  # ratio 2 clipped at 1.3; ratio 0.5 not
    assert loss.item() == pytest.approx(-0.5 * (1.3 + 0.5) / 2)
    loss_norm, _ = ppo_policy_loss(new, old, torch.tensor([0.5]), mask, agg="seq-mean-token-sum-norm", norm_len=9)
    assert loss_norm.item() == pytest.approx(-0.5 * (1.3 + 0.5) / 9)


def test_grpo_estimators_take_one_variant_and_keep_the_group_layout():
    from train.algos import ADVANTAGE_ESTIMATORS

    r = torch.tensor([[[1.0, 0.0, 0.0, 1.0]], [[0.0, 0.0, 1.0, 1.0]]])  # (B=2, Q=1, n=4)
    for name, fn in (("grpo", grpo_advantages), ("dr_grpo", dr_grpo_advantages)):
        adv = ADVANTAGE_ESTIMATORS[name](r)
        assert adv.shape == (2, 1, 1, 4)
        torch.testing.assert_close(adv.reshape(2, 4), fn(r.reshape(2, 4), EPS))
        with pytest.raises(ValueError, match="one variant per question, got Q = 2"):
            ADVANTAGE_ESTIMATORS[name](torch.zeros(2, 2, 2))
    torch.testing.assert_close(ADVANTAGE_ESTIMATORS["grpo"](r, eps=1.0).reshape(2, 4),
                               grpo_advantages(r.reshape(2, 4), 1.0))


def test_uniform_global_fraction_is_per_question():
    """One question uniform, one not: half of the questions, not a verdict on the whole batch."""
    r = torch.tensor([[[1.0, 1.0], [1.0, 1.0]], [[1.0, 0.0], [0.0, 0.0]]])
    v = advantage_vanishing(r, share_grpo_advantages(r))
    assert v["uniform_global_frac"].item() == 0.5 and v["uniform_local_frac"].item() == 0.75
    # question 2's second variant is uniform on its own but its pool is not: 1 of 4 variants rescued
    assert v["rescued_frac"].item() == 0.25
    assert advantage_vanishing(r[:, :1], grpo_advantages(r[:, 0]))["rescued_frac"].item() == 0.0  # Q = 1


def test_uniform_outcomes_split_all_wrong_from_all_right():
    from train.algos import uniform_outcomes

    acc = torch.tensor([[[0.0, 0.0], [0.0, 0.0]], [[1.0, 1.0], [1.0, 1.0]], [[1.0, 0.0], [0.0, 0.0]],
                        [[0.0, 0.0], [0.0, 0.0]]])
    out = uniform_outcomes(acc)
    assert out["all_wrong_frac"].item() == 0.5 and out["all_correct_frac"].item() == 0.25
