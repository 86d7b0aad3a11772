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
from reproduce.perf.workload import SPLIT, Workload, load, peak_gpu_mb, peak_rss_mb


def main(argv: list[str] | None = None) -> int:
    """One run: the same data and reward as ours, TRL's GRPOTrainer configured as the workload says,
    its steps timed by `StepClock`, the report written after every step and at the end."""
    parser = argparse.ArgumentParser(prog="python -m reproduce.perf.run_trl")
    parser.add_argument("work_dir", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--gradient-checkpointing", action="store_true")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    w = load(args.work_dir)

    import torch
    from transformers import Qwen2_5_VLForConditionalGeneration
    from trl import GRPOTrainer

    from bench.processing import load_processor

    torch.manual_seed(w.seed)
    processor = load_processor(args.work_dir / "model")
    dataset = trl_dataset(args.work_dir, processor)
    bf16 = w.dtype == "bfloat16"
    # On a GPU, bf16 weights as TRL's users load a model (`model_init_kwargs={"dtype": "bfloat16"}`):
    # float32 weights, gradients and Adam states of a 3B model do not fit an 80 GB card beside its
    # activations. On a CPU, float32 weights with bf16 autocast, as before.
    weights = torch.bfloat16 if bf16 and torch.cuda.is_available() else torch.float32
    checkpointing = args.gradient_checkpointing or w.gradient_checkpointing
    micro = w.micro_batch or w.prompts * w.completions  # one generation of all rows, trained in rows // micro passes
    model = Qwen2_5_VLForConditionalGeneration.from_pretrained(args.work_dir / "model", dtype=weights)
    with tempfile.TemporaryDirectory() as tmp:
        trainer = GRPOTrainer(model=model, reward_funcs=reward_function(w), args=grpo_config(tmp, w, micro, checkpointing),
                              train_dataset=dataset, processing_class=processor)
        settings = {"weights": f"{str(weights).removeprefix('torch.')}" + (", bf16 autocast" if bf16 else ""),
                    "gradient_checkpointing": checkpointing, "micro_batch": micro}
        clock = StepClock(trainer, w, settings, args.out)
        trainer.train()
        write_json_atomic(args.out, clock.report())
    return 0


def trl_dataset(work_dir: Path, processor):
    """The workload's questions as TRL takes them: a user turn with the R1 prompt, the image, the answer.
    TRL puts the image before the text of the user turn: the same prompt as build_messages."""
    from datasets import Dataset

    from bench.prompts import with_r1_prompt
    from train.config import DataConfig
    from train.data import load_rows

    data_cfg = DataConfig(train_files=str(work_dir / "train.parquet"), min_pixels=3136, max_pixels=3136)
    rows, _ = load_rows(data_cfg, processor, log=lambda *a, **k: None)
    return Dataset.from_list([
        {"prompt": [{"role": "user", "content": with_r1_prompt(r.question)}],
         "image": r.load_images(data_cfg.min_pixels, data_cfg.max_pixels)[0], "answer": r.answer}
        for r in rows
    ])


def reward_function(w: Workload):
    """Our reward (`bench.verify.grade_many`) in TRL's reward-function form."""
    from bench.verify import grade_many

    def reward(completions, answer, **_):
        texts = [c[-1]["content"] if isinstance(c, list) else c for c in completions]
        return [g.overall for g in grade_many(texts, list(answer), workers=w.reward_workers)]

    return reward


def grpo_config(output_dir: str, w: Workload, micro: int, checkpointing: bool):
    """GRPOConfig for the workload: exactly w.new_tokens per completion, no KL, one update per
    rollout, a constant learning rate, nothing saved or reported."""
    import torch
    from trl import GRPOConfig

    rows = w.prompts * w.completions
    return GRPOConfig(
        output_dir=output_dir, max_steps=w.steps, per_device_train_batch_size=micro,
        gradient_accumulation_steps=rows // micro, num_generations=w.completions, num_iterations=1,
        max_completion_length=w.new_tokens, generation_kwargs={"min_new_tokens": w.new_tokens},
        temperature=w.temperature, top_p=1.0, top_k=0, beta=0.0, learning_rate=w.lr,
        lr_scheduler_type="constant", warmup_steps=0, bf16=w.dtype == "bfloat16", fp16=False,
        use_cpu=not torch.cuda.is_available(), gradient_checkpointing=checkpointing, logging_steps=1, save_strategy="no",
        report_to=[], seed=w.seed, disable_tqdm=True, dataloader_num_workers=0, log_completions=False,
    )


class StepClock:
    """Times a GRPOTrainer's steps from outside: its private generate, reward and log-prob methods
    wrapped (the wrappers only measure), the update as the time from the step's first prepared
    input to its end, and a callback at each step end that writes the report (a run cut short
    still reports)."""

    def __init__(self, trainer, w: Workload, settings: dict, out: Path) -> None:
        from transformers import TrainerCallback

        self.trainer, self.w, self.settings = trainer, w, settings
        self.timers: dict[str, list[float]] = defaultdict(list)  # per step, summed within a step
        self.current: dict[str, float] = defaultdict(float)
        self.marks: dict[str, float] = {}
        self.tokens: list[int] = []
        self.prompt_tokens: list[int] = []
        self.ends: list[float] = []
        trainer._generate_single_turn = self._timed("generate", trainer._generate_single_turn, self._count)
        trainer._calculate_rewards = self._timed("reward", trainer._calculate_rewards)
        trainer._get_per_token_logps_and_entropies = self._timed("log_prob", trainer._get_per_token_logps_and_entropies)
        prepare = trainer._prepare_inputs

        def prepare_and_mark(*a, **k):
            out = prepare(*a, **k)
            self.marks.setdefault("prepared", time.perf_counter())  # the step's first pass: after its generation
            return out

        trainer._prepare_inputs = prepare_and_mark
        clock = self

        class Callback(TrainerCallback):
            def on_train_begin(self, *_, **__):
                clock.ends.append(time.perf_counter())

            def on_step_end(self, *_, **__):
                now = time.perf_counter()
                clock.current["update"] += now - clock.marks.pop("prepared")
                for k in SPLIT:
                    clock.timers[k].append(clock.current.pop(k, 0.0))
                clock.ends.append(now)

            def on_log(self, *_, **__):  # after the step's loss is logged: a run cut short still reports
                write_json_atomic(out, clock.report())

        trainer.add_callback(Callback())

    def _timed(self, name: str, fn, on_result=None):
        import torch

        def wrapper(*a, **k):
            t = time.perf_counter()
            out = fn(*a, **k)
            if name != "log_prob" or not torch.is_grad_enabled():  # with grad: the update's own forward
                self.current[name] += time.perf_counter() - t
            if on_result:
                on_result(a, out)
            return out
        return wrapper

    def _count(self, a, out) -> None:  # every completion's and (repeated per completion) every prompt's tokens
        self.tokens.append(sum(len(c) for c in out[0]))
        self.prompt_tokens.append(sum(len(p) for p in a[0]))

    def report(self) -> dict:
        import trl

        w, done = self.w, len(self.ends) - 1
        return {
            "trainer": "TRL GRPOTrainer",
            "steps_done": done,
            "step_time": [b - a for a, b in zip(self.ends[:-1], self.ends[1:], strict=True)][w.warmup_steps :],
            "tokens": self.tokens[w.warmup_steps : done],
            "prompt_tokens": self.prompt_tokens[w.warmup_steps : done],
            "split": {k: self.timers[k][w.warmup_steps :] for k in SPLIT},
            "peak_rss_mb": peak_rss_mb(),
            "peak_gpu_mb": peak_gpu_mb(),
            "settings": self.settings,
            "loss": [h["loss"] for h in self.trainer.state.log_history if "loss" in h][w.warmup_steps :],
            "versions": {"trl": trl.__version__},
        }

if __name__ == "__main__":
    raise SystemExit(main())
