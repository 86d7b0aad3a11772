"""The loop's stages alone, without a model: which rows a step trains on and how updates split them."""

from __future__ import annotations

from collections import Counter

import torch

from train.trainer import Rollout, StageTimer, shared_rows, update_groups


def fake_rollout(B: int, Q: int, n: int) -> Rollout:
    # response (i, b, k) holds the token i*100 + b*10 + k, repeated k + 1 times
    responses = [torch.full((k + 1,), i * 100 + b * 10 + k) for i in range(B) for b in range(Q) for k in range(n)]
    return Rollout(questions=[], prompts=None, responses=responses, expand_counts=Counter())


def test_shared_rows_pair_every_response_with_every_variant_prompt_of_its_question():
    B, Q, n = 2, 2, 3
    adv = torch.arange(B * Q * Q * n, dtype=torch.float32).reshape(B, Q, Q, n)
    rows = shared_rows(fake_rollout(B, Q, n), adv, torch.tensor([True, True]))
    assert len(rows) == B * Q * Q * n and rows.width == n
    for r in range(len(rows)):
        i, a, b, k = torch.unravel_index(torch.tensor(r), (B, Q, Q, n))
        assert rows.prompt[r] == i * Q + a  # trained under the prompt of variant a
        assert int(rows.response[r][0]) == i * 100 + b * 10 + k  # the response generated from variant b
        assert int(rows.question[r]) == i and rows.advantage[r] == adv[i, a, b, k]


def test_dropped_questions_leave_no_rows_and_updates_keep_questions_whole():
    B, Q, n = 3, 2, 2
    rows = shared_rows(fake_rollout(B, Q, n), torch.ones(B, Q, Q, n), torch.tensor([True, False, True]))
    assert sorted(set(rows.question.tolist())) == [0, 2] and len(rows) == 2 * Q * Q * n
    groups = update_groups(rows, questions_per_update=1)
    assert [sorted({int(rows.question[r]) for r in g}) for g in groups] == [[0], [2]]
    assert sorted(r for g in groups for r in g) == list(range(len(rows)))
    assert update_groups(rows, questions_per_update=2) == [list(range(len(rows)))]


def test_stage_timer_adds_up_repeated_stages():
    timer = StageTimer()
    for _ in range(2):
        with timer("update"):
            pass
    with timer("generate"):
        pass
    assert set(timer.seconds) == {"update", "generate"} and all(v >= 0 for v in timer.seconds.values())


def test_reward_workers_default_to_the_ranks_share_of_the_cores():
    from train.setup import reward_workers

    assert reward_workers(3, cores=64, local_ranks=8) == 3  # configured wins
    assert reward_workers(None, cores=64, local_ranks=8) == 8
    assert reward_workers(None, cores=2, local_ranks=1) == 2
    assert reward_workers(None, cores=4, local_ranks=8) == 1  # at least one
    assert reward_workers(None, cores=192, local_ranks=1) == 16  # capped


def test_drawing_questions_shuffles_each_epoch_once(monkeypatch):
    """52K rows, as the released data: 512 questions a step used to reshuffle all of them for every
    question drawn (seconds a step); now an epoch's permutation is made once."""
    import random

    from train.setup import DataOrder

    shuffles = []
    real = random.Random.shuffle
    monkeypatch.setattr(random.Random, "shuffle", lambda self, x: (shuffles.append(len(x)), real(self, x))[1])
    order = DataOrder(52_000, seed=1, shuffle=True, rank=0, world=1)
    first = order.take(512) + order.take(512)
    assert shuffles == [52_000] and len(set(first)) == 1024
    order.position = 52_000 - 10  # across an epoch boundary: one more permutation
    order.take(20)
    assert shuffles == [52_000, 52_000]
