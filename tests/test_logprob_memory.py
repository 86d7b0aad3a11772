"""The loss pass never holds float32 logits for a whole micro-batch: log-probs and entropies come
from slices of the vocabulary's logits, equal to the plain pass, gradients included."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import torch

from train.algos import token_entropy
from train.logprobs import token_log_probs
from train.tiny import build_tiny

REPO = Path(__file__).resolve().parents[1]
VOCAB = 151_936  # Qwen2.5-VL's


def test_sliced_log_probs_equal_the_plain_pass_at_the_real_vocabulary():
    torch.manual_seed(0)
    head = torch.nn.Linear(16, VOCAB, bias=False)
    hidden = torch.randn(2, 20, 16, requires_grad=True)
    targets = torch.randint(0, VOCAB, (2, 20))
    weights = torch.rand(2, 20)
    lp, ent = token_log_probs(head, hidden, targets, with_entropy=True, chunk_bytes=7 * 8 * VOCAB)  # 7 tokens a slice
    (lp * weights).sum().backward()
    ours = (hidden.grad.clone(), head.weight.grad.clone())
    hidden.grad = head.weight.grad = None
    logits = head(hidden).float()
    plain = torch.log_softmax(logits, dim=-1).gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    (plain * weights).sum().backward()
    torch.testing.assert_close(lp, plain, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(ent, token_entropy(logits).detach(), atol=1e-4, rtol=1e-5)
    torch.testing.assert_close(ours[0], hidden.grad, atol=1e-6, rtol=1e-4)
    torch.testing.assert_close(ours[1], head.weight.grad, atol=1e-7, rtol=1e-4)
    with torch.no_grad():  # no graph: no checkpointing, same numbers
        torch.testing.assert_close(token_log_probs(head, hidden, targets, chunk_bytes=7 * 8 * VOCAB)[0], plain)


def test_the_loss_pass_peak_memory_is_bounded_by_the_slice_not_the_micro_batch(tmp_path):
    """2 rows of 1,024 response tokens at the real vocabulary: one float32 copy of their logits is
    1,187 MB. Sliced (64 MB slices) the whole forward and backward pass stays under half of one
    copy; unsliced it takes more than two."""
    model = build_tiny(tmp_path / "m", seed=0)

    def peak(chunk_bytes: int) -> dict:
        out = subprocess.run([sys.executable, str(REPO / "tests" / "helpers" / "logprob_memory.py"), str(model),
                              str(chunk_bytes)], capture_output=True, text=True, cwd=REPO, timeout=600,
                             # a fixed mmap threshold makes glibc return every large freed buffer at
                             # once, so the resident set tracks live tensors, not allocator caching
                             env={**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "2",
                                  "MALLOC_MMAP_THRESHOLD_": "131072"})
        assert out.returncode == 0, out.stderr[-3000:]
        return json.loads(out.stdout.strip().splitlines()[-1])

    sliced, whole = peak(64 * 2**20), peak(2**40)
    print(f"loss pass peak: sliced {sliced['peak_mb']:.0f} MB, whole {whole['peak_mb']:.0f} MB, "
          f"one copy of the logits {sliced['logits_mb']:.0f} MB")
    assert sliced["peak_mb"] < 0.5 * sliced["logits_mb"]
    assert whole["peak_mb"] > 2 * whole["logits_mb"]
