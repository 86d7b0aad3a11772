"""Run under torch.distributed.run: the tiny model under DeepSpeed ZeRO-3, then the hf engine's
fixed-shape decoding (the GPU's step, eager here) with a fixed seed; each rank writes its tokens
and how many module calls the decoding steps made. Usage: zero3_decode.py MODEL_DIR OUT_DIR"""

import json
import sys
from pathlib import Path

import deepspeed
import torch
from transformers import Qwen2_5_VLForConditionalGeneration
from transformers.integrations import HfDeepSpeedConfig

from bench.processing import load_processor
from tests.helpers.decode_case import prompts_and_params
from train.rollout import FixedShapeDecoder, HFRollout
from train.setup import init_distributed


def main() -> None:
    model_dir, out_dir = Path(sys.argv[1]), Path(sys.argv[2])
    rank, world = init_distributed()
    config = {"train_micro_batch_size_per_gpu": 1, "train_batch_size": world, "zero_optimization": {"stage": 3},
              "steps_per_print": 10**9}
    keep = HfDeepSpeedConfig(config)  # the model is built partitioned, as the trainer builds it
    model = Qwen2_5_VLForConditionalGeneration.from_pretrained(model_dir, dtype=torch.float32)
    engine, *_ = deepspeed.initialize(model=model, config=config)
    del keep
    assert all(p.ds_tensor is not None and p.numel() == 0 for p in engine.module.parameters())  # partitioned
    proc = load_processor(model_dir)
    prompts, params = prompts_and_params(proc)
    calls = []
    hook = torch.nn.modules.module.register_module_forward_pre_hook(lambda m, a: calls.append(type(m).__name__))
    forward = FixedShapeDecoder._forward
    FixedShapeDecoder._forward = lambda self: calls.append("step") or forward(self)
    torch.manual_seed(11)
    tokens = HFRollout(proc, zero3=True, fixed_shape=True).generate(engine.module, prompts, params)
    hook.remove()
    steps = calls.count("step")
    in_steps = len(calls[calls.index("step"):]) - steps if steps else -1
    (out_dir / f"rank{rank}.json").write_text(json.dumps({"tokens": [t.tolist() for t in tokens], "steps": steps,
                                                          "module_calls_in_steps": in_steps}))


if __name__ == "__main__":
    main()
