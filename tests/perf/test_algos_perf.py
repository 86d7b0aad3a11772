"""Advantages plus sharing layout at the released rollout size (B = 512, Q = 2, n = 6)."""

import torch

from train.algos import share_grpo_advantages, share_layout


def test_share_advantages_and_layout_512x2x6(benchmark):
    gen = torch.Generator().manual_seed(0)
    rewards = 0.9 * torch.randint(0, 2, (512, 2, 6), generator=gen).float() + 0.1

    def step():
        adv = share_grpo_advantages(rewards).reshape(-1)
        layout = share_layout(512, 2, 6)
        return adv, layout

    adv, layout = benchmark(step)
    assert adv.shape == layout.response_index.shape == (512 * 2 * 2 * 6,)
    if benchmark.stats:
        print(f"\nshare advantages + layout, B=512 Q=2 n=6: {benchmark.stats.stats.median * 1e3:.2f} ms (median)")
