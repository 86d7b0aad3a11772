"""Checkpoints: model, optimizer and scheduler (DeepSpeed), RNG states, data position and step.

Layout: `{output_dir}/checkpoints/step_{N}/` with `ds/` (DeepSpeed), `trainer_state.json`,
`rng_rank{R}.pt` and `config.yaml`; `{output_dir}/checkpoints/latest` names the newest one.
A checkpoint is written under `step_{N}.tmp` and renamed only when complete, and `latest` is
replaced atomically after that, so a killed save never leaves a corrupt "latest".
"""

from __future__ import annotations

import json
import os
import random
import shutil
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import yaml

from bench.errors import UsageError
from bench.fileio import write_text_atomic

DS_TAG = "ds"


def _barrier() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def checkpoint_root(output_dir: str | Path) -> Path:
    return Path(output_dir) / "checkpoints"


def save_checkpoint(engine, output_dir: str | Path, step: int, state: dict, config: dict, save_limit: int) -> Path:
    """Collective: every rank calls it. Returns the final checkpoint folder."""
    root = checkpoint_root(output_dir)
    final, tmp = root / f"step_{step}", root / f"step_{step}.tmp"
    rank = dist.get_rank() if dist.is_initialized() else 0
    if rank == 0:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    _barrier()
    engine.save_checkpoint(str(tmp), tag=DS_TAG)
    torch.save(
        {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()},
        tmp / f"rng_rank{rank}.pt",
    )
    _barrier()
    if rank == 0:
        (tmp / "trainer_state.json").write_text(json.dumps({**state, "step": step}, indent=2))
        (tmp / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)
        write_text_atomic(root / "latest", final.name + "\n")
        for old in sorted(completed(root), key=_step_of)[:-save_limit]:
            shutil.rmtree(old, ignore_errors=True)
    _barrier()
    return final


def _step_of(path: Path) -> int:
    return int(path.name.split("_")[1])


def completed(root: Path) -> list[Path]:
    return [p for p in root.glob("step_*") if not p.name.endswith(".tmp") and (p / "trainer_state.json").exists()]


def find_resume(output_dir: str | Path, resume: str) -> Path | None:
    """The checkpoint to resume from: `auto` (latest complete one, if any), `none`, or a folder."""
    if resume == "none":
        return None
    if resume != "auto":
        path = Path(resume)
        if not (path / "trainer_state.json").exists():
            raise UsageError(f"trainer.resume={resume}: not a complete checkpoint folder")
        return path
    root = checkpoint_root(output_dir)
    latest = root / "latest"
    if latest.exists():
        path = root / latest.read_text().strip()
        if (path / "trainer_state.json").exists():
            return path
    done = completed(root) if root.exists() else []
    return max(done, key=_step_of) if done else None


def load_checkpoint(engine, path: Path) -> dict:
    """Restore engine state and RNG states; returns the trainer state (step, data position)."""
    engine.load_checkpoint(str(path), tag=DS_TAG, load_optimizer_states=True, load_lr_scheduler_states=True)
    rank = dist.get_rank() if dist.is_initialized() else 0
    rng_file = path / f"rng_rank{rank}.pt"
    if rng_file.exists():
        rng = torch.load(rng_file, weights_only=False)
        torch.set_rng_state(rng["torch"])
        np.random.set_state(rng["numpy"])
        random.setstate(rng["python"])
    return json.loads((path / "trainer_state.json").read_text())
