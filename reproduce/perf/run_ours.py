"""One benchmark run of our trainer: `python -m reproduce.perf.run_ours WORK_DIR --mode grpo|share_grpo --out F`.

Writes per-step wall times (between consecutive step ends, so nothing of a step is left out), the
trainer's own time split, generated tokens and the process's peak RSS as JSON, after every step
(a run cut short still reports). The trainer writes no checkpoint (`trainer.save_freq=-1`)."""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from bench.fileio import write_json_atomic, write_text_atomic
from reproduce.perf.workload import SPLIT, Workload, load, peak_gpu_mb, peak_rss_mb

REPO = Path(__file__).resolve().parents[2]
VARIANTS = {"grpo": 1, "share_grpo": 2}  # Q; the same generated responses per question either way
METRIC = {"generate": "perf/generate_time", "reward": "perf/reward_time",  # the trainer's timer for each part
          "log_prob": "perf/old_log_prob_time", "update": "perf/update_time"}


def overrides(work_dir: Path, w: Workload, mode: str, out_dir: Path) -> list[str]:
    return [
        f"worker.actor.model.model_path={work_dir / 'model'}", f"data.train_files={work_dir / 'train.parquet'}",
        f"trainer.output_dir={out_dir}", f"trainer.max_steps={w.steps}", "trainer.save_freq=-1",
        "trainer.progress_bar=false", "trainer.logger=[]", f"trainer.seed={w.seed}",
        f"data.rollout_batch_size={w.prompts}", f"worker.actor.global_batch_size={w.prompts * VARIANTS[mode]}",  # one update
        f"data.max_response_length={w.new_tokens}", f"worker.rollout.min_tokens={w.new_tokens}",
        f"worker.rollout.temperature={w.temperature}", "worker.rollout.top_p=1.0", "worker.rollout.top_k=-1",
        "algorithm.disable_kl=true", "worker.actor.ppo_epochs=1", f"worker.actor.bf16={str(w.dtype == 'bfloat16').lower()}",
        f"worker.actor.model.enable_gradient_checkpointing={str(w.gradient_checkpointing).lower()}",
        "worker.actor.zero_stage=0",
        f"worker.actor.optim.lr={w.lr}", "worker.actor.optim.lr_warmup_steps=0",
        f"worker.actor.micro_batch_size_per_device_for_update={w.micro_batch or 64}",
        f"worker.actor.micro_batch_size_per_device_for_experience={w.micro_batch or 64}",
        f"worker.reward.workers={w.reward_workers}", f"algorithm.adv_estimator={mode}",
        f"algorithm.num_variants={VARIANTS[mode]}", f"worker.rollout.n={w.completions // VARIANTS[mode]}",
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m reproduce.perf.run_ours")
    parser.add_argument("work_dir", type=Path)
    parser.add_argument("--mode", choices=sorted(VARIANTS), default="grpo")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--profile", type=Path, help="also run one more step under torch's profiler (not "
                        "counted in the figures) and write its top kernels and the GPU's idle share here")
    parser.add_argument("extra", nargs="*", help="further config overrides")
    args = parser.parse_intermixed_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    w = load(args.work_dir)

    from train import metric_log, trainer
    from train.config import load_config

    ends: list[float] = []
    steps: list[dict] = []
    log = metric_log.MetricLogger.log
    start = 0.0  # set as training starts

    def report() -> dict:
        # step k's wall time: from the end of step k-1 (or the loop's start) to the end of step k
        walls = [b - a for a, b in zip([start, *ends[:-1]], ends, strict=True)][w.warmup_steps : w.steps]
        measured = steps[w.warmup_steps : w.steps]
        return {
            "trainer": f"ours ({args.mode})",
            "steps_done": len(steps),
            "step_time": walls,
            "tokens": [m["response/length_mean"] * w.prompts * w.completions for m in measured],
            "prompt_tokens": [m["prompt/length_mean"] * w.prompts * w.completions for m in measured],
            "split": {k: [m[METRIC[k]] for m in measured] for k in SPLIT},
            "peak_rss_mb": peak_rss_mb(),
            "peak_gpu_mb": peak_gpu_mb(),
            "loss": [m["actor/pg_loss"] for m in measured],
            "settings": {"weights": "bf16, float32 master weights and Adam states (DeepSpeed bf16, ZeRO-0)"
                         if w.dtype == "bfloat16" else "float32", "gradient_checkpointing": w.gradient_checkpointing,
                         "micro_batch": w.micro_batch or 64},
        }

    profiler = None

    def timed_log(self, step, metrics):
        nonlocal profiler
        ends.append(time.perf_counter())
        steps.append(dict(metrics))
        log(self, step, metrics)
        write_json_atomic(args.out, report())  # after every step: a run cut short still reports
        if args.profile and len(steps) == w.steps:  # the extra step, profiled, with fewer new tokens
            cfg.data.max_response_length = cfg.worker.rollout.min_tokens = min(w.new_tokens, PROFILED_NEW_TOKENS)
            profiler = start_profiler()
        elif profiler is not None:
            write_text_atomic(args.profile, profile_table(profiler, ends[-1] - ends[-2], cfg.data.max_response_length))

    metric_log.MetricLogger.log = timed_log
    extra = [f"trainer.max_steps={w.steps + 1}"] if args.profile else []
    with tempfile.TemporaryDirectory() as tmp:
        cfg = load_config([str(REPO / "reproduce/configs/tiny_cpu.yaml")],
                          overrides(args.work_dir, w, args.mode, Path(tmp) / "run") + extra + args.extra)
        start = time.perf_counter()
        trainer.train(cfg)
    result = report()
    write_json_atomic(args.out, result)
    return 0


PROFILED_NEW_TOKENS = 64
"""New tokens of the profiled step: on a GPU each token's graph replay records every kernel (about
900 at the 3B shape), so 512 tokens made about 460,000 profiler events; 64 make a few tens of
thousands. Its figures are that step's own (its wall time, its kernels)."""


def start_profiler():
    import torch
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if torch.cuda.is_available() else [])
    profiler = profile(activities=activities)
    profiler.__enter__()
    return profiler


def device_busy_s(events) -> float:
    """Seconds in which at least one kernel or device copy ran: the union of the device events'
    intervals (microseconds in, seconds out). Device events only, as torch's own table totals them
    (torch/autograd/profiler_util.py:1393-1404): a CPU operator's `self_device_time_total` is the
    time of the kernels it launched, which appear again as events of their own. The union also
    counts once the time of kernels that overlap on two streams."""
    from torch.autograd import DeviceType

    spans = sorted((e.time_range.start, e.time_range.end) for e in events
                   if e.device_type != DeviceType.CPU and not getattr(e, "is_user_annotation", False))
    busy, end = 0.0, float("-inf")
    for a, b in spans:
        if b > end:
            busy += b - max(a, end)
            end = b
    return busy / 1e6


def profile_table(profiler, step_s: float, new_tokens: int, rows: int = 25) -> str:
    """The profiled step's top operators and kernels by time on the device (by host time on a CPU),
    and the share of the step's wall time in which no kernel ran (host gaps: Python, launches,
    synchronisation)."""
    import torch

    profiler.__exit__(None, None, None)
    events = profiler.key_averages()
    gpu = torch.cuda.is_available()
    lines = [f"Profiled step: {step_s:.3f} s wall, {new_tokens} new tokens per response, "
             f"{len(profiler.events()):,} events."]
    if gpu:
        busy = device_busy_s(profiler.events())
        lines.append(f"Kernels ran {busy:.3f} s of it: the GPU idled {max(step_s - busy, 0) / step_s:.0%} of the step "
                     "(host gaps: Python, kernel launches, synchronisation).")
    sort = "self_device_time_total" if gpu else "self_cpu_time_total"
    return "\n".join(lines) + "\n\n" + events.table(sort_by=sort, row_limit=rows) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
