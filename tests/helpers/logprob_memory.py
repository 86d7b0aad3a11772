"""Peak memory of one loss pass (forward and backward of `response_log_probs`) on a narrow model
with Qwen2.5-VL's real vocabulary: `python tests/helpers/logprob_memory.py MODEL_DIR CHUNK_BYTES`
prints {"peak_mb": ..., "logits_mb": ...} as JSON. The peak is the resident-set high-water mark
after /proc/self/clear_refs resets it, so only the pass itself counts."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import torch
from transformers import AutoConfig, Qwen2_5_VLForConditionalGeneration

from bench.processing import load_processor
from train import logprobs
from train.data import build_messages
from train.encoding import collate, encode_prompts

VOCAB, ROWS, LENGTH = 151_936, 2, 1024


def peak_kb() -> int:
    return int(re.search(r"VmHWM:\s+(\d+) kB", Path("/proc/self/status").read_text()).group(1))


def main(model_dir: str, chunk_bytes: int) -> None:
    torch.manual_seed(0)
    config = AutoConfig.from_pretrained(model_dir)
    config.text_config.vocab_size = config.vocab_size = VOCAB
    model = Qwen2_5_VLForConditionalGeneration(config)
    proc = load_processor(model_dir)
    text = proc.apply_chat_template(build_messages("Count.", 0), add_generation_prompt=True, tokenize=False)
    prompts = encode_prompts(proc, [text], [[]])
    responses = [torch.randint(0, 500, (LENGTH,)) for _ in range(ROWS)]
    batch = collate(prompts, [0] * ROWS, responses, proc.tokenizer.pad_token_id)
    logprobs.LOGIT_CHUNK_BYTES = chunk_bytes
    Path("/proc/self/clear_refs").write_text("5")  # the high-water mark restarts from here
    before = peak_kb()
    lp, mask, ent = logprobs.response_log_probs(model, prompts, batch, LENGTH, with_entropy=True, mode="rows")
    (lp * mask).sum().backward()
    print(json.dumps({"peak_mb": (peak_kb() - before) / 1024, "logits_mb": ROWS * LENGTH * VOCAB * 4 / 2**20}))


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
