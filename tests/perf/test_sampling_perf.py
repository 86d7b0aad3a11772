"""The sampler at the released vocabulary (152,064) with top-p 0.99: the race (`race_sample`, no
sort) against transformers' top-p warper and multinomial (a sort of every row), side by side on
the same scores. `make bench-perf` prints both medians and their ratio; on a GPU the race also
avoids multinomial's host synchronisation, which this CPU figure cannot show."""

import time

import torch
from transformers import TopPLogitsWarper

from train.sampling import race_sample

ROWS, VOCAB = 32, 152_064


def _median_s(fn, repeats: int = 7) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return sorted(times)[repeats // 2]


def test_race_against_the_sorting_top_p_warper(benchmark):
    gen = torch.Generator().manual_seed(0)
    scores = torch.randn(ROWS, VOCAB, generator=gen) * 3
    warper = TopPLogitsWarper(0.99)

    def sorting():
        return torch.multinomial(torch.softmax(warper(None, scores.clone()), dim=-1), 1).squeeze(1)

    tokens = benchmark(lambda: race_sample(scores, top_p=0.99))
    assert tokens.shape == (ROWS,) and sorting().shape == (ROWS,)
    if benchmark.stats:
        race, sort = _median_s(lambda: race_sample(scores, top_p=0.99)), _median_s(sorting)
        print(f"\ntop-p 0.99 sampling, {ROWS} rows x {VOCAB:,}: race {race * 1e3:.1f} ms, sort + multinomial "
              f"{sort * 1e3:.1f} ms ({sort / race:.2f}x)")
