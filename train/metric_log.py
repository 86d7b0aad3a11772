"""The trainer's metric logger: JSONL always (rank 0), plus console, TensorBoard and W&B when
configured; a resumed run drops the lines of the steps it redoes."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
import torch.distributed as dist

from bench.errors import UsageError
from bench.fileio import write_text_atomic

from .config import Config, config_to_dict


def all_reduce_mean(metrics: dict[str, float], world: int) -> dict[str, float]:
    if world == 1:
        return metrics
    keys = sorted(metrics)
    t = torch.tensor([float(metrics[k]) for k in keys], dtype=torch.float64)
    dist.all_reduce(t)
    return {k: float(v) / world for k, v in zip(keys, t, strict=True)}


def read_metric_lines(path: Path) -> list[str]:
    """The complete lines of a metrics.jsonl. A cut-off last line (a kill or a full disk during a
    write) is dropped with a message; a broken line anywhere else stops with its line number."""
    lines = [line for line in path.read_text(encoding="utf-8", errors="replace").split("\n") if line.strip()]
    good = []
    for n, line in enumerate(lines, 1):
        try:
            if not isinstance(json.loads(line).get("step"), int):
                raise ValueError
        except (ValueError, AttributeError):
            if n == len(lines):
                print(f"{path}: dropped a cut-off last line ({len(line)} characters)", file=sys.stderr)
                break
            raise UsageError(f"{path} line {n}: not a metrics record; move the file away to start afresh") from None
        good.append(line)
    return good


class MetricLogger:
    """JSONL always (rank 0), plus console, TensorBoard and W&B when configured."""

    def __init__(self, cfg: Config, rank: int, start_step: int) -> None:
        self.rank, self.cfg = rank, cfg
        self.path = Path(cfg.trainer.output_dir) / "metrics.jsonl"
        self.tb = self.wandb = None
        if rank != 0:
            return
        if self.path.exists():  # a resumed run drops the lines of steps it will redo
            kept = [line for line in read_metric_lines(self.path) if json.loads(line)["step"] <= start_step]
            write_text_atomic(self.path, "".join(line + "\n" for line in kept))
        if "tensorboard" in cfg.trainer.logger:
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(str(Path(cfg.trainer.output_dir) / "tensorboard"))
        if "wandb" in cfg.trainer.logger:
            import wandb

            self.wandb = wandb.init(project=cfg.trainer.project_name, name=cfg.trainer.experiment_name,
                                    config=config_to_dict(cfg))

    def log(self, step: int, metrics: dict[str, float]) -> None:
        if self.rank != 0:
            return
        with self.path.open("a", encoding="utf-8") as f:
            f.write(json.dumps({"step": step, **metrics}) + "\n")
        if self.tb:
            for k, v in metrics.items():
                self.tb.add_scalar(k, v, step)
        if self.wandb:
            self.wandb.log(metrics, step=step)
        if "console" in self.cfg.trainer.logger and not self.cfg.trainer.progress_bar:
            keys = ("reward/mean", "reward/accuracy", "adv/zero_frac", "actor/pg_loss", "perf/step_time")
            print(f"step {step}: " + " ".join(f"{k}={metrics[k]:.4g}" for k in keys if k in metrics), flush=True)
