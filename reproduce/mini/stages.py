"""The miniature's stages up to its checkpoints: data, warm start, RL and export. Each is reused
while its inputs are unchanged (`Stage`, keyed on `MiniSpec.digest`), redone with FORCE=1, and an
interrupted RL run resumes from its last checkpoint."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

from ..children import spawn
from .spec import CONFIGS, REPO, MiniSpec, RLRun, method_runs, step_name


def lock_runs(runs: Path):
    """One pipeline per runs folder (`reproduce run` and `reproduce ablations` share its stages)."""
    from bench.lock import hold_folder_lock

    return hold_folder_lock(runs, "runs folder", "reproduce run or ablations")


def say(message: str) -> None:
    print(f"[mini] {message}", flush=True)


class Stage:
    """A stage's outputs under `root`, valid while its done.json matches the inputs' digest."""

    def __init__(self, root: Path, digest: str, force: bool) -> None:
        self.root, self.digest, self.force = root, digest, force

    def done(self) -> bool:
        marker = self.root / "done.json"
        return not self.force and marker.exists() and json.loads(marker.read_text()).get("digest") == self.digest

    def resumable(self) -> bool:
        """An unfinished run of these same inputs was started here (it resumes from its checkpoints)."""
        marker = self.root / "started.json"
        return not self.force and marker.exists() and json.loads(marker.read_text()).get("digest") == self.digest

    def start(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = self.root / ".started.json.tmp"
        tmp.write_text(json.dumps({"digest": self.digest}))
        os.replace(tmp, self.root / "started.json")

    def finish(self, info: dict | None = None) -> None:
        tmp = self.root / ".done.json.tmp"
        tmp.write_text(json.dumps({"digest": self.digest, **(info or {})}, indent=2))
        os.replace(tmp, self.root / "done.json")


# ---------------------------------------------------------------- stages
def stage_data(spec: MiniSpec, runs: Path, force: bool) -> Path:
    import pandas as pd

    from bench.data import write

    out = runs / "data"
    stage = Stage(out, spec.digest("data"), force)
    if stage.done():
        say(f"data: reusing {out}")
        return out
    say("data: writing synthetic benchmarks and the training split")
    shutil.rmtree(out, ignore_errors=True)
    write(out, spec.bench_items, seed=0, side=spec.side, n_train=spec.train_rows + spec.warm_eval_items,
          tasks=list(spec.tasks))
    frame = pd.read_parquet(out / "train.parquet")
    frame.iloc[: spec.train_rows].to_parquet(out / "train_rl.parquet")
    frame.iloc[spec.train_rows :].to_parquet(out / "warm_eval.parquet")
    stage.finish({"train_rows": spec.train_rows})
    return out


def stage_fresh_benchmark(spec: MiniSpec, runs: Path, data: Path, seed: int, force: bool) -> Path:
    """The benchmarks drawn again with another seed, with no image of the training split."""
    import pandas as pd

    from bench.data import image_hashes, write

    out = runs / f"bench_seed_{seed}"
    stage = Stage(out, spec.digest("data", f"bench_seed={seed}"), force)
    if stage.done():
        say(f"fresh benchmark (seed {seed}): reusing {out}")
        return out
    shutil.rmtree(out, ignore_errors=True)
    say(f"fresh benchmark: {spec.bench_items} items per task drawn with seed {seed}")
    write(out, spec.bench_items, seed=seed, side=spec.side, tasks=list(spec.tasks),
          exclude=image_hashes(pd.read_parquet(data / "train.parquet")))
    stage.finish({"bench_seed": seed})
    return out


def _examples(path: Path):
    import pandas as pd
    from PIL import Image

    from train.warmup import Example

    frame = pd.read_parquet(path)
    return [Example(p.replace("<image>", ""), a, Image.open(io.BytesIO(bytes(ims[0]))).convert("RGB"))
            for p, a, ims in zip(frame["problem"], frame["answer"], frame["images"], strict=True)]


def stage_warm_start(spec: MiniSpec, runs: Path, data: Path, force: bool) -> Path:
    import torch
    from transformers import Qwen2_5_VLForConditionalGeneration

    from bench.processing import load_processor
    from train.tiny import build_tiny
    from train.warmup import pretrain_vision, sampled_accuracy, supervised_warmup

    out = runs / "models" / "Base"
    stage = Stage(out, spec.digest("warm"), force)
    if stage.done():
        say(f"warm start: reusing {out}")
        return out
    shutil.rmtree(out, ignore_errors=True)
    init = build_tiny(runs / "model_init", seed=0, size=spec.model_size)
    torch.manual_seed(0)
    processor = load_processor(init)
    model = Qwen2_5_VLForConditionalGeneration.from_pretrained(init, dtype=torch.float32)
    train, held_out = _examples(data / "train_rl.parquet"), _examples(data / "warm_eval.parquet")
    t0 = time.time()
    say(f"warm start: vision pretraining ({spec.vision_steps} steps, no answer labels)")
    losses = pretrain_vision(model, processor, [e.image for e in train[:1000]], spec.vision_steps, lr=2e-3, log=say)
    say(f"warm start: supervised warm-up, {spec.warmup_steps} steps (sampled accuracy on {len(held_out)} held-out "
        "questions logged)")
    history = supervised_warmup(model, processor, train, held_out, spec.warmup_steps, lr=1e-3,
                                eval_every=spec.warmup_eval_every, log=say)
    acc, fmt = sampled_accuracy(model, processor, held_out)
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    processor.save_pretrained(tmp)
    tmp.rename(out)
    stage.finish({"vision_loss_first_last": [losses[0], losses[-1]], "warmup": history,
                  "final_sampled_accuracy": acc, "final_format": fmt, "seconds": time.time() - t0})
    return out


def rl_overrides(spec: MiniSpec, base: Path, data: Path, out: Path, seed: int) -> list[str]:
    return [f"worker.actor.model.model_path={base}", f"data.train_files={data / 'train_rl.parquet'}",
            f"trainer.output_dir={out}", f"trainer.seed={seed}", f"trainer.max_steps={spec.rl_steps}",
            f"trainer.save_freq={spec.rl_save_freq}", f"trainer.save_limit={spec.rl_steps // spec.rl_save_freq + 1}",
            "trainer.resume=auto", "trainer.progress_bar=false",
            *spec.extra_overrides]


def stage_rl(spec: MiniSpec, runs: Path, base: Path, data: Path, force: bool,
             plan: list[RLRun] | None = None, on_idle: Callable[[dict[str, Path]], None] | None = None
             ) -> dict[str, Path]:
    """RL runs, `spec.parallel` at a time (one thread each); returns the run dir per run name. The
    first time a core is free with no run left to start, `on_idle` gets the finished runs' dirs."""
    jobs, outs = [], {}
    for run in plan or method_runs(spec):
        out = runs / "rl" / run.name
        outs[run.name] = out
        stage = Stage(out, spec.digest("rl", json.dumps(asdict(run))), force)
        if stage.done():
            continue
        if not stage.resumable():  # other inputs or code made what is there: never resume from it
            shutil.rmtree(out, ignore_errors=True)
        stage.start()
        cmd = [sys.executable, "-m", "train", *[a for c in run.configs for a in ("--config", str(CONFIGS / c))],
               *rl_overrides(spec, base, data, out, run.seed), *run.overrides]
        jobs.append((run, out, stage, cmd))
    if not jobs:
        say("RL: reusing every finished run")
        return outs
    say(f"RL: {len(jobs)} runs of {spec.rl_steps} steps, {spec.parallel} at a time")
    failed = _run_jobs(spec, jobs, outs, on_idle)
    if failed:
        raise RuntimeError("RL runs failed: " + "; ".join(failed))
    return outs


def _run_jobs(spec: MiniSpec, jobs: list, outs: dict[str, Path],
              on_idle: Callable[[dict[str, Path]], None] | None) -> list[str]:
    """Start the trainers `spec.parallel` at a time, a progress bar each, until all have ended;
    each that succeeds finishes its stage. Returns a line per failed run."""
    from tqdm import tqdm

    # no MASTER_PORT: each single-process trainer picks a free port of its own
    env = {**{k: v for k, v in os.environ.items() if k != "MASTER_PORT"}, "OMP_NUM_THREADS": "1",
           "MKL_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    bars = [tqdm(total=spec.rl_steps, desc=job[0].name, position=i, leave=True, dynamic_ncols=True)
            for i, job in enumerate(jobs)]
    pending = list(enumerate(jobs))
    running: list[tuple[int, subprocess.Popen, object]] = []
    failed = []
    while pending or running:
        while pending and len(running) < spec.parallel:
            i, (run, out, stage, cmd) = pending.pop(0)
            log = (out / "train.log").open("a")
            running.append((i, spawn(cmd, stdout=log, stderr=subprocess.STDOUT, env=env), log))
        time.sleep(1.0)
        for item in list(running):
            failed += _poll(item, jobs[item[0]], bars[item[0]], running)
        if on_idle is not None and not pending and running and len(running) < spec.parallel and not failed:
            busy = {jobs[i][0].name for i, _, _ in running}
            on_idle({name: out for name, out in outs.items() if name not in busy})
            on_idle = None
    for bar in bars:
        bar.close()
    return failed


def _poll(item: tuple, job: tuple, bar, running: list) -> list[str]:
    """One running trainer: its bar moved to the steps logged; once it has ended, it leaves `running`
    and its stage is finished, or it is returned as failed."""
    _, proc, log = item
    run, out, stage, _ = job
    metrics = out / "metrics.jsonl"
    bar.update((sum(1 for _ in metrics.open()) if metrics.exists() else 0) - bar.n)
    if proc.poll() is None:
        return []
    running.remove(item)
    log.close()
    if proc.returncode == 0:
        stage.finish({"run": asdict(run)})
        return []
    return [f"{run.name} (exit {proc.returncode}; see {out / 'train.log'})"]


def stage_export(runs: Path, rl: dict[str, Path], force: bool, steps: dict[str, list[int]] | None = None,
                 fresh: set[str] | None = None) -> dict[str, Path]:
    """Each run's last checkpoint as a Hugging Face folder, and for each run in `steps` also its
    checkpoints at those steps (as `{name}-step{N}`). Models named in `fresh` were exported earlier
    in this run (and may be in use): `force` does not redo them; the names exported are added."""
    from train.checkpoint import find_resume
    from train.export import export

    wanted = {name: find_resume(out, "auto") for name, out in rl.items()}
    for name, at in (steps or {}).items():
        for step in at:
            ckpt = rl[name] / "checkpoints" / f"step_{step}"
            if not (ckpt / "trainer_state.json").exists():
                raise RuntimeError(f"{ckpt}: missing (trainer.save_freq must divide {step}, and "
                                   "trainer.save_limit keep it)")
            wanted[step_name(name, step)] = ckpt
    models = {}
    for name, ckpt in wanted.items():
        target = runs / "models" / name
        marker = target / "exported_from.txt"
        done = ckpt.parent.parent / "done.json"  # the RL run's: its digest names what trained it
        source = f"{ckpt} {json.loads(done.read_text())['digest'] if done.exists() else 'unfinished'}"
        if (force and name not in (fresh or ())) or not marker.exists() or marker.read_text() != source:
            export(ckpt, target)
            marker.write_text(source)
        if fresh is not None:
            fresh.add(name)
        models[name] = target
    return models
