"""One benchmark run of TRL's GRPOTrainer, inside the peer environment (.venv-peer):
`python -m reproduce.perf.run_trl WORK_DIR --out F`.

The same model, processor, questions, images, prompt text and reward (`bench.verify.grade_many`)
as `run_ours.py`; TRL's own defaults elsewhere (DAPO token-mean loss, group-std scaling). TRL has
no public hook inside a step, so besides a callback at step ends, private methods of the pinned
release's GRPOTrainer (generate, reward, log-prob, input preparation) are wrapped to time them;
the wrappers only measure. The result is written after every step (a run cut short still reports)."""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections import defaultdict
from pathlib import Path

from bench.fileio import write_json_atomic
from reproduce.perf.workload import SPLIT, load, peak_gpu_mb, peak_rss_mb


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m reproduce.perf.run_trl")
    parser.add_argument("work_dir", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--gradient-checkpointing", action="store_true")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    w = load(args.work_dir)

    import torch
    import trl
    from datasets import Dataset
    from transformers import Qwen2_5_VLForConditionalGeneration, TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    from bench.processing import load_processor
    from bench.prompts import with_r1_prompt
    from bench.verify import grade_many
    from train.config import DataConfig
    from train.data import load_rows

    torch.manual_seed(w.seed)
    model_dir = args.work_dir / "model"
    processor = load_processor(model_dir)
    data_cfg = DataConfig(train_files=str(args.work_dir / "train.parquet"), min_pixels=3136, max_pixels=3136)
    rows, _ = load_rows(data_cfg, processor, log=lambda *a, **k: None)
    # TRL puts the image before the text of the user turn: the same prompt as build_messages
    dataset = Dataset.from_list([
        {"prompt": [{"role": "user", "content": with_r1_prompt(r.question)}],
         "image": r.load_images(data_cfg.min_pixels, data_cfg.max_pixels)[0], "answer": r.answer}
        for r in rows
    ])

    def reward(completions, answer, **_):
        texts = [c[-1]["content"] if isinstance(c, list) else c for c in completions]
        return [g.overall for g in grade_many(texts, list(answer), workers=w.reward_workers)]

    rows = w.prompts * w.completions
    micro = w.micro_batch or rows  # one generation of all rows, trained in rows // micro passes
    bf16 = w.dtype == "bfloat16"
    # On a GPU, bf16 weights as TRL's users load a model (`model_init_kwargs={"dtype": "bfloat16"}`):
    # float32 weights, gradients and Adam states of a 3B model do not fit an 80 GB card beside its
    # activations. On a CPU, float32 weights with bf16 autocast, as before.
    weights = torch.bfloat16 if bf16 and torch.cuda.is_available() else torch.float32
    checkpointing = args.gradient_checkpointing or w.gradient_checkpointing
    model = Qwen2_5_VLForConditionalGeneration.from_pretrained(model_dir, dtype=weights)
    with tempfile.TemporaryDirectory() as tmp:
        config = GRPOConfig(
            output_dir=tmp, max_steps=w.steps, per_device_train_batch_size=micro,
            gradient_accumulation_steps=rows // micro, num_generations=w.completions, num_iterations=1,
            max_completion_length=w.new_tokens, generation_kwargs={"min_new_tokens": w.new_tokens},
            temperature=w.temperature, top_p=1.0, top_k=0, beta=0.0, learning_rate=w.lr,
            lr_scheduler_type="constant", warmup_steps=0, bf16=bf16, fp16=False,
            use_cpu=not torch.cuda.is_available(), gradient_checkpointing=checkpointing, logging_steps=1, save_strategy="no", report_to=[],
            seed=w.seed, disable_tqdm=True, dataloader_num_workers=0, log_completions=False,
        )
        trainer = GRPOTrainer(model=model, reward_funcs=reward, args=config, train_dataset=dataset,
                              processing_class=processor)
        timers: dict[str, list[float]] = defaultdict(list)  # per step, summed within a step
        current: dict[str, float] = defaultdict(float)
        marks: dict[str, float] = {}
        tokens: list[int] = []
        prompt_tokens: list[int] = []

        def timed(name, fn, on_result=None):
            def wrapper(*a, **k):
                t = time.perf_counter()
                out = fn(*a, **k)
                if name != "log_prob" or not torch.is_grad_enabled():  # with grad: the update's own forward
                    current[name] += time.perf_counter() - t
                if on_result:
                    on_result(a, out)
                return out
            return wrapper

        def count(a, out):  # every completion's and (repeated per completion) every prompt's tokens
            tokens.append(sum(len(c) for c in out[0]))
            prompt_tokens.append(sum(len(p) for p in a[0]))

        trainer._generate_single_turn = timed("generate", trainer._generate_single_turn, count)
        trainer._calculate_rewards = timed("reward", trainer._calculate_rewards)
        trainer._get_per_token_logps_and_entropies = timed("log_prob", trainer._get_per_token_logps_and_entropies)
        prepare = trainer._prepare_inputs

        def prepare_and_mark(*a, **k):
            out = prepare(*a, **k)
            marks.setdefault("prepared", time.perf_counter())  # the step's first pass: after its generation
            return out

        trainer._prepare_inputs = prepare_and_mark
        ends: list[float] = []

        def report() -> dict:
            done = len(ends) - 1
            return {
                "trainer": "TRL GRPOTrainer",
                "steps_done": done,
                "step_time": [b - a for a, b in zip(ends[:-1], ends[1:], strict=True)][w.warmup_steps :],
                "tokens": tokens[w.warmup_steps : done],
                "prompt_tokens": prompt_tokens[w.warmup_steps : done],
                "split": {k: timers[k][w.warmup_steps :] for k in SPLIT},
                "peak_rss_mb": peak_rss_mb(),
                "peak_gpu_mb": peak_gpu_mb(),
                "settings": {"weights": f"{str(weights).removeprefix('torch.')}" + (", bf16 autocast" if bf16 else ""),
                             "gradient_checkpointing": checkpointing, "micro_batch": micro},
                "loss": [h["loss"] for h in trainer.state.log_history if "loss" in h][w.warmup_steps :],
                "versions": {"trl": trl.__version__},
            }

        class StepClock(TrainerCallback):
            def on_train_begin(self, *_, **__):
                ends.append(time.perf_counter())

            def on_step_end(self, *_, **__):
                now = time.perf_counter()
                current["update"] += now - marks.pop("prepared")
                for k in SPLIT:
                    timers[k].append(current.pop(k, 0.0))
                ends.append(now)

            def on_log(self, *_, **__):  # after the step's loss is logged: a run cut short still reports
                write_json_atomic(args.out, report())

        trainer.add_callback(StepClock())
        trainer.train()
        write_json_atomic(args.out, report())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
