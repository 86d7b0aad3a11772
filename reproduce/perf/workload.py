"""The benchmark's workload, shared by both runners: one definition, written next to the model."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

SPLIT = ("generate", "reward", "log_prob", "update")
"""Where a step's time goes, as both runners report it (update: forward + backward + optimizer)."""


@dataclass(frozen=True)
class Workload:
    model: str = "tiny"
    """The randomly initialised Qwen2.5-VL: a `train.tiny` size ("tiny"; "small", about 29M
    parameters) or a published checkpoint's shape ("Qwen/Qwen2.5-VL-3B-Instruct"; for GPUs)."""
    dtype: str = "float32"
    """"float32", or "bfloat16" (mixed precision in both trainers; for GPUs)."""
    prompts: int = 2
    """Questions per step."""
    completions: int = 4
    """Generated responses per question (GRPO: n; Share-GRPO: Q=2 variants x n/2, the same count)."""
    new_tokens: int = 64
    """Every completion is exactly this long (min = max new tokens)."""
    temperature: float = 1.0
    lr: float = 1e-6
    warmup_steps: int = 2
    measured_steps: int = 10
    rows: int = 64
    """Questions in the generated training file."""
    seed: int = 0
    reward_workers: int = 1
    micro_batch: int | None = None
    """Rows per forward/backward of the update, in both trainers (None: ours 64, TRL all of a
    step's rows at once; a 3B model's 256 rows need a few)."""
    gradient_checkpointing: bool = False
    """Activation checkpointing in both trainers (the GPU suite's 3B shape needs it on an 80 GB card:
    without it, 8 rows of about 4,200 tokens hold about 19 GiB of activations)."""

    @property
    def steps(self) -> int:
        return self.warmup_steps + self.measured_steps


def prepare(work_dir: Path, workload: Workload, model_dir: Path | None = None) -> Path:
    """Build the model and the training file into work_dir (once) and write workload.json.
    `model_dir`: a model already built for this workload's model, dtype and seed, linked instead
    of building another (the GPU suite's second workload)."""
    import pandas as pd

    from bench.data import training_rows
    from train.plan import PUBLISHED_SHAPES
    from train.tiny import build_published, build_tiny

    work_dir.mkdir(parents=True, exist_ok=True)
    spec = work_dir / "workload.json"
    if spec.exists() and json.loads(spec.read_text()) == asdict(workload):
        return work_dir
    if model_dir is not None:
        (work_dir / "model").unlink(missing_ok=True)
        (work_dir / "model").symlink_to(model_dir.resolve(), target_is_directory=True)
    elif workload.model in PUBLISHED_SHAPES:
        import torch

        gpu = torch.cuda.is_available()  # there: built in place, in the workload's dtype
        build_published(work_dir / "model", workload.model, seed=workload.seed, device="cuda" if gpu else "cpu",
                        dtype=torch.bfloat16 if gpu and workload.dtype == "bfloat16" else torch.float32)
    else:
        build_tiny(work_dir / "model", seed=workload.seed, size=workload.model)
    pd.DataFrame(training_rows(workload.rows, seed=workload.seed, tasks=["SynthCount"])).to_parquet(work_dir / "train.parquet")
    spec.write_text(json.dumps(asdict(workload), indent=2))
    return work_dir


def load(work_dir: Path) -> Workload:
    return Workload(**json.loads((work_dir / "workload.json").read_text()))


def peak_rss_mb() -> float:
    """This process's peak resident set size so far."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def peak_gpu_mb() -> float | None:
    """Peak CUDA memory allocated by this process's tensors, where there is a GPU."""
    import torch

    return torch.cuda.max_memory_allocated() / 2**20 if torch.cuda.is_available() else None
