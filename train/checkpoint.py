"""Checkpoints: model, optimizer and scheduler (DeepSpeed), data position and step.

Layout: `{output_dir}/checkpoints/step_{N}/` with `ds/` (DeepSpeed), `trainer_state.json` and
`config.yaml`; `{output_dir}/checkpoints/latest` names the newest one. A checkpoint is written
under `step_{N}.tmp` and renamed only when complete, and `latest` is replaced atomically after
that, so a killed save never leaves a corrupt "latest". A save that fails (a full disk) removes
its `.tmp` folder and says why.

No RNG state is stored: every step reseeds its generators from (trainer.seed, step, rank), so a
resumed run draws exactly what an uninterrupted one would (`test_resume_is_exact`). DeepSpeed's
`ds/*.pt` files are pickles that it loads with `torch.load(weights_only=False)`
(deepspeed/runtime/checkpoint_engine/torch_checkpoint_engine.py:37 and
deepspeed/utils/zero_to_fp32.py:146/153/204 in DeepSpeed 0.19.8); resume and `train.export` load
them inside `weights_only_loading()`, which makes every `torch.load` a weights-only one with the
four DeepSpeed classes its state holds allowed (`DEEPSPEED_SAFE_GLOBALS`), so a checkpoint holding
anything else is refused, not run.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import pickle
import re
import shutil
import sys
from pathlib import Path

import torch
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
    """Complete checkpoints under `root` (none if it is missing); `step_N.tmp` never counts, nor a
    link (it may point out of the run)."""
    return [p for p in root.glob("step_*") if p.name[5:].isdigit() and not p.is_symlink() and is_complete(p)]


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
        # only a step_N folder of this run: an absolute path, `..` or a link out of checkpoints/ in a
        # tampered `latest` would make DeepSpeed unpickle a file from anywhere
        name = latest.read_text(encoding="utf-8", errors="replace").strip()
        named = root / name
        inside = re.fullmatch(r"step_\d+", name) and named.resolve().parent == root.resolve()
        if not inside:
            print(f"{latest}: names {name[:80]!r}, not a step_N folder of {root}; passed over", file=sys.stderr)
        elif is_complete(named):
            return named
    done = completed(root)
    newest = max(done, key=_step_of) if done else None
    incomplete = [p for p in root.glob("step_*") if p.is_dir() and not p.name.endswith(".tmp") and not is_complete(p)
                  and (newest is None or not p.name[5:].isdigit() or _step_of(p) > _step_of(newest))]
    for path in sorted(incomplete):
        print(f"{path}: incomplete checkpoint (no trainer_state.json or {DS_TAG}/), passed over; resuming from "
              f"{newest.name if newest else 'the start'}", file=sys.stderr)
    return newest


def deepspeed_safe_globals() -> list[type]:
    """The classes DeepSpeed's checkpoint state holds besides tensors and plain containers (found
    with `torch.serialization.get_unsafe_globals_in_checkpoint` on ZeRO-1/2/3 checkpoints)."""
    from deepspeed.runtime.fp16.loss_scaler import DynamicLossScaler, LossScaler
    from deepspeed.runtime.zero.config import ZeroStageEnum
    from deepspeed.utils.tensor_fragment import fragment_address

    return [LossScaler, DynamicLossScaler, ZeroStageEnum, fragment_address]


@contextlib.contextmanager
def weights_only_loading(checkpoint: Path):
    """Within: every `torch.load` (DeepSpeed's own calls included) is weights-only, with
    `deepspeed_safe_globals` allowed; a file that needs anything else is a UsageError naming
    `checkpoint`, and nothing in it runs."""
    original = torch.load

    def load(*args, weights_only=None, **kwargs):  # noqa: ARG001 - DeepSpeed passes False
        return original(*args, weights_only=True, **kwargs)

    torch.load = load
    try:
        with torch.serialization.safe_globals(deepspeed_safe_globals()):
            yield
    except pickle.UnpicklingError as exc:
        text = str(exc)  # torch's message: advice, then "WeightsUnpickler error: Unsupported global: ..."
        reason = " ".join(text.split("WeightsUnpickler error:")[-1].split(". Please use")[0].split())[:160]
        raise UsageError(f"{checkpoint}: its DeepSpeed state holds more than tensors and DeepSpeed's own state, so it "
                         f"is not loaded ({reason})") from None
    finally:
        torch.load = original


def load_checkpoint(engine, path: Path, world: int = 1) -> dict:
    """Restore the engine's state; returns the trainer state (step, data position), checked first."""
    state = read_state(path / "trainer_state.json", world)
    with weights_only_loading(path):
        engine.load_checkpoint(str(path), tag=DS_TAG, load_optimizer_states=True, load_lr_scheduler_states=True)
    return state


def read_state(file: Path, world: int) -> dict:
    """trainer_state.json, refused with one line naming the file and field unless `step` is a whole
    number >= 0 and `data_position` holds one whole number >= 0 per rank."""
    try:
        state = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UsageError(f"{file}: not a readable trainer state ({exc})") from None
    if not isinstance(state, dict):
        raise UsageError(f"{file}: not a JSON object")
    step, positions = state.get("step"), state.get("data_position")
    if type(step) is not int or step < 0:
        raise UsageError(f"{file}: step={step!r} must be a whole number >= 0")
    if (not isinstance(positions, list) or len(positions) != world
            or not all(type(p) is int and p >= 0 for p in positions)):
        raise UsageError(f"{file}: data_position={positions!r} must be {world} whole number(s) >= 0, one per rank")
    return state
