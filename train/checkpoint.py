"""Checkpoints: model, optimizer and scheduler (DeepSpeed), data position and step.

Layout: `{output_dir}/checkpoints/step_{N}/` with `ds/` (DeepSpeed), `trainer_state.json` and
`config.yaml`; `{output_dir}/checkpoints/latest` names the newest one. A checkpoint is written
under `step_{N}.tmp` and renamed only when complete, and `latest` is replaced atomically after
that, so a killed save never leaves a corrupt "latest". A save that fails (a full disk) removes
its `.tmp` folder and says why.

No RNG state is stored: every step reseeds its generators from (trainer.seed, step, rank), so a
resumed run draws exactly what an uninterrupted one would (`test_resume_is_exact`), and nothing
has to be unpickled on resume.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import sys
from pathlib import Path

import torch.distributed as dist
import yaml

from bench.errors import UsageError
from bench.fileio import write_text_atomic

DS_TAG = "ds"
FULL_BELOW = 64 * 2**20
"""Free bytes under which a failed save is reported as a full disk (torch's writer hides ENOSPC)."""


class CheckpointError(UsageError):
    """A checkpoint that could not be written; the message says why and what was cleaned up."""


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
    try:
        if rank == 0:
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
        _barrier()
        engine.save_checkpoint(str(tmp), tag=DS_TAG)
        _barrier()
        if rank == 0:
            (tmp / "trainer_state.json").write_text(json.dumps({**state, "step": step}, indent=2))
            (tmp / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
            shutil.rmtree(final, ignore_errors=True)
            os.replace(tmp, final)
            write_text_atomic(root / "latest", final.name + "\n")
            for old in sorted(completed(root), key=_step_of)[:-save_limit]:
                shutil.rmtree(old, ignore_errors=True)
    except (OSError, RuntimeError) as exc:
        if rank == 0:
            shutil.rmtree(tmp, ignore_errors=True)
        raise CheckpointError(save_failure(root, step, exc)) from exc
    _barrier()
    return final


def save_failure(root: Path, step: int, exc: BaseException) -> str:
    """One line on a failed save, after its partial folder has been removed."""
    try:
        free = shutil.disk_usage(root if root.exists() else root.parent).free
    except OSError:
        free = -1
    full = getattr(exc, "errno", None) == errno.ENOSPC or "No space left" in str(exc) or 0 <= free < FULL_BELOW
    why = "No space left on device" if full else " ".join(str(exc).split())[:200] or type(exc).__name__
    return (f"checkpoint step_{step} could not be written under {root} ({why}; {max(free, 0) / 2**30:.2f} GiB free "
            f"there); its partial folder step_{step}.tmp was removed, earlier checkpoints are intact")


def _step_of(path: Path) -> int:
    return int(path.name.split("_")[1])


def is_complete(path: Path) -> bool:
    """A checkpoint folder with its trainer state and its DeepSpeed folder."""
    return (path / "trainer_state.json").is_file() and (path / DS_TAG).is_dir()


def completed(root: Path) -> list[Path]:
    """Complete checkpoints under `root` (none if it is missing); `step_N.tmp` never counts."""
    return [p for p in root.glob("step_*") if p.name[5:].isdigit() and is_complete(p)]


def find_resume(output_dir: str | Path, resume: str) -> Path | None:
    """The checkpoint to resume from: `auto` (the newest complete one, if any), `none`, or a folder.
    Under `auto`, an incomplete newest checkpoint is passed over with a message."""
    if resume == "none":
        return None
    if resume != "auto":
        path = Path(resume)
        if not is_complete(path):
            raise UsageError(f"trainer.resume={resume}: not a complete checkpoint folder (it needs "
                             f"trainer_state.json and {DS_TAG}/)")
        return path
    root = checkpoint_root(output_dir)
    latest = root / "latest"
    if latest.is_file():
        named = root / latest.read_text(encoding="utf-8", errors="replace").strip()
        if is_complete(named):
            return named
    done = completed(root)
    newest = max(done, key=_step_of) if done else None
    incomplete = [p for p in root.glob("step_*") if p.is_dir() and not p.name.endswith(".tmp") and not is_complete(p)
                  and (newest is None or not p.name[5:].isdigit() or _step_of(p) > _step_of(newest))]
    for path in sorted(incomplete):
        print(f"{path}: incomplete checkpoint (no trainer_state.json or {DS_TAG}/), passed over; resuming from "
              f"{newest.name if newest else 'the start'}", file=sys.stderr)
    return newest


def load_checkpoint(engine, path: Path) -> dict:
    """Restore the engine's state; returns the trainer state (step, data position)."""
    engine.load_checkpoint(str(path), tag=DS_TAG, load_optimizer_states=True, load_lr_scheduler_states=True)
    return json.loads((path / "trainer_state.json").read_text())
