"""`make reproduce-table1` (SCALE=mini): the paper's experiment in miniature, on two CPU cores.

Stages (each reused when its inputs are unchanged, redone with FORCE=1; an interrupted run picks up
at the last finished stage, and RL runs resume from their last checkpoint):
1. data: synthetic benchmarks (VLMEvalKit TSVs, `bench.data`) and a training split with no
   benchmark image; text variants come from paraphrase templates stored as `new_questions`.
   The tasks are `bench.data.MINIATURE_TASKS`: one the warm start solves and two it mostly fails,
   which a pilot showed RL can learn at this size (`bench.data.Task.in_miniature` says why the
   others are not used).
2. warm start: a tiny Qwen2.5-VL (`train.tiny`, size "mini"); its vision tower pretrained without
   answer labels; a supervised warm-up on think/boxed traces, stopped when the mean sampled
   accuracy of the last two evaluations on held-out training questions reaches a target (the
   "Base" row).
3. RL from the warm start, same steps and the same 8 generated responses per question:
   GRPO (n = 8 samples of the original) and Share-GRPO (Q = 2 variants x n = 4), several seeds
   (SEEDS=N), one learning rate for both (reproduce/configs/mini_base.yaml), checkpoints kept at
   the curve steps. A Share-GRPO step trains twice the rows, so its checkpoint at half the steps
   is the comparison at about equal cost (generated + trained tokens, which replay exactly).
4. evaluation of Base and every kept checkpoint through `bench.run` (VLMEvalKit) and
   `bench.score`, two evaluation processes at a time.
5. results/mini/: table1.md/.csv/.tex (mean ± standard error), the training statistics (training
   accuracy at equal steps, equal cost and equal wall-clock; uniform question groups, all wrong or
   all right; variants rescued by sharing), the held-out accuracy of both methods at the same
   steps with the area under each curve, the power of the design, closing sentences that follow
   from the numbers, curves.png, heldout_curves.png, the configs, versions and commit.

`python -m reproduce run --scale mini --bench-seed N` scores the same checkpoints on a fresh
benchmark drawn with seed N (no training image in it) and writes results/mini/bench_seed_N/.

Every task's answer (a count, a digit sum or difference, the tallest bar's height) survives the
expansion's rotations, flips and noise, so image transforms are on for every task.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from bench.data import MINIATURE_TASKS
from bench.fileio import write_json_atomic
from bench.provenance import weights_digest
from bench.score import checked_scores, run_record, unlike_record

from .children import run as run_child
from .children import spawn
from .machine import describe
from .numerics import recorded

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "reproduce" / "configs"
DATA_GENERATOR = REPO / "bench" / "data.py"
WARMUP_CODE = REPO / "train" / "warmup.py"
_REWARD_CODE = (*sorted((REPO / "bench" / "verify").glob("*.py")), REPO / "bench" / "prompts.py")
STAGE_CODE = {  # code whose every change redoes a stage: the trainer and its reward; the evaluation path
    "rl": (*sorted((REPO / "train").glob("*.py")), *_REWARD_CODE, REPO / "bench" / "processing.py"),
    "eval": (*_REWARD_CODE, *(REPO / "bench" / f for f in ("adapter.py", "run.py", "score.py", "vlmeval_compat.py"))),
}
TASKS = MINIATURE_TASKS  # bench.data.TASKS says which tasks the miniature uses, and why
METHODS = {"GRPO": "mini_grpo.yaml", "Share-GRPO": "mini_sharegrpo.yaml"}
EQUAL_COST = "Share-GRPO, half the steps"
"""The row of Share-GRPO's checkpoint at half its steps: about GRPO's cost (a Share-GRPO step trains
twice the rows)."""


@dataclass(frozen=True)
class MiniSpec:
    seeds: tuple[int, ...] = (1, 2, 3)
    tasks: tuple[str, ...] = TASKS
    bench_items: int = 200  # per benchmark task: a standard error of at most 3.5 points
    train_rows: int = 3000
    warm_eval_items: int = 256  # held-out training questions that choose the warm start
    side: int = 84
    model_size: str = "mini"
    vision_steps: int = 400
    warmup_steps: int = 125
    """Supervised warm-up steps, fixed. Chosen once from the warm-ups the earlier stop rule ran
    (results/mini/run.json before the pin: sampled held-out accuracy 48% at step 125, 52% at 150,
    64% at 175, where that rule stopped and left RL +1.8 points): a Base that leaves RL room."""
    warmup_eval_every: int = 25
    rl_steps: int = 300
    rl_save_freq: int = 50
    curve_steps: tuple[int, ...] = (150, 300)
    """Steps at which both methods' checkpoints are evaluated (held-out learning curves); half of
    rl_steps among them is Share-GRPO's equal-cost row. Each is a multiple of rl_save_freq.
    `make reproduce-table1 CURVES=1` evaluates FULL_CURVE (15 more models, about 6 minutes more)."""
    parallel: int = 2
    eval_max_new_tokens: int = 32
    extra_overrides: tuple[str, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        """curve_steps always holds rl_steps and its half, and only steps a checkpoint is saved at."""
        if (self.rl_steps // 2) % self.rl_save_freq:
            raise ValueError(f"rl_save_freq={self.rl_save_freq} must divide half of rl_steps={self.rl_steps} "
                             "(Share-GRPO's equal-cost checkpoint)")
        kept = {x for x in self.curve_steps if x % self.rl_save_freq == 0 and 0 < x <= self.rl_steps}
        object.__setattr__(self, "curve_steps", tuple(sorted(kept | {self.rl_steps, self.rl_steps // 2})))

    def digest(self, stage: str, *parts: str) -> str:
        """What a stage's outputs depend on: its own fields and those of the stages before it
        (so the ablations, with other RL settings, reuse the data and warm start), the code of
        the data generator, which every stage depends on (a changed task never reuses old data),
        and the code each stage runs (`STAGE_CODE`: a changed trainer or scorer never reuses old
        results)."""
        fields = {"data": ("tasks", "bench_items", "train_rows", "warm_eval_items", "side")}
        fields["warm"] = (*fields["data"], "model_size", "vision_steps", "warmup_steps", "warmup_eval_every")
        fields["rl"] = (*fields["warm"], "rl_steps", "rl_save_freq", "extra_overrides")
        fields["eval"] = (*fields["data"], "eval_max_new_tokens", "curve_steps")
        spec = asdict(self)
        text = json.dumps([stage, {k: spec[k] for k in fields[stage]}, *parts], sort_keys=True)
        text += DATA_GENERATOR.read_text(encoding="utf-8")
        if stage in ("warm", "rl"):
            text += WARMUP_CODE.read_text(encoding="utf-8")
        if stage == "rl":
            text += "".join(p.read_text() for p in sorted(CONFIGS.glob("mini_*.yaml")))
        text += "".join(p.read_text(encoding="utf-8") for p in STAGE_CODE.get(stage, ()))
        return hashlib.sha256(text.encode()).hexdigest()[:16]


FULL_CURVE = (50, 100, 150, 300)
"""CURVES=1: the held-out curve's steps (results/mini/ was made with them)."""

REGIMES = {
    "main": (MiniSpec(), "mini", "mini"),
    # Share-GRPO targets sparse rewards: groups whose every response is wrong. This regime starts RL
    # from an earlier warm start on the two tasks the main warm start mostly fails, so more groups are
    # all wrong: 75 steps, where the earlier stop rule (20% sampled accuracy) stopped it (22%).
    "sparse": (MiniSpec(tasks=("SynthCount", "SynthChart"), warmup_steps=75), "mini_sparse", "mini/sparse"),
}
"""REGIME= of `make reproduce-table1`: name -> (spec, runs/ folder, results/ folder)."""

# The smoke version run by `make test`: tiny sizes, one seed, a couple of steps.
SMOKE = MiniSpec(seeds=(1,), bench_items=3, train_rows=32, warm_eval_items=4, side=56, model_size="tiny",
                 vision_steps=2, warmup_steps=2, warmup_eval_every=2, rl_steps=2, rl_save_freq=1, curve_steps=(1, 2),
                 parallel=2, eval_max_new_tokens=8,
                 extra_overrides=("data.min_pixels=3136", "data.max_pixels=3136", "data.max_response_length=8"))


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


@dataclass(frozen=True)
class RLRun:
    name: str  # also the model's name in the evaluation
    seed: int
    configs: tuple[str, ...]  # files under reproduce/configs/, layered in order
    overrides: tuple[str, ...] = ()


def method_runs(spec: MiniSpec) -> list[RLRun]:
    """Seed by seed, Share-GRPO before GRPO, so that a Share-GRPO run mostly shares the cores with a
    GRPO run. Two Share-GRPO runs side by side slow each other: 1.75 s a step against 1.30 beside
    GRPO (`REGIME=sparse`, 2 cores), while GRPO's 0.71 s hardly moves. A model of those step
    times puts this order at 1,054 s for the six runs, against 1,123 s for Share-GRPO runs first."""
    return [RLRun(f"{m}-s{seed}", seed, ("mini_base.yaml", cfg)) for seed in spec.seeds
            for m, cfg in reversed(METHODS.items())]


def stage_rl(spec: MiniSpec, runs: Path, base: Path, data: Path, force: bool,
             plan: list[RLRun] | None = None, on_idle: Callable[[dict[str, Path]], None] | None = None
             ) -> dict[str, Path]:
    """RL runs, `spec.parallel` at a time (one thread each); returns the run dir per run name. The
    first time a core is free with no run left to start, `on_idle` gets the finished runs' dirs."""
    from tqdm import tqdm

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
            i, proc, log = item
            run, out, stage, _ = jobs[i]
            metrics = out / "metrics.jsonl"
            steps = sum(1 for _ in metrics.open()) if metrics.exists() else 0
            bars[i].update(steps - bars[i].n)
            if proc.poll() is not None:
                running.remove(item)
                log.close()
                if proc.returncode == 0:
                    stage.finish({"run": asdict(run)})
                else:
                    failed.append(f"{run.name} (exit {proc.returncode}; see {out / 'train.log'})")
        if on_idle is not None and not pending and running and len(running) < spec.parallel and not failed:
            busy = {jobs[i][0].name for i, _, _ in running}
            on_idle({name: out for name, out in outs.items() if name not in busy})
            on_idle = None
    for bar in bars:
        bar.close()
    if failed:
        raise RuntimeError("RL runs failed: " + "; ".join(failed))
    return outs


def step_name(name: str, step: int) -> str:
    """The model name of run `name`'s checkpoint at `step` (its last one is the run's own name)."""
    return f"{name}-step{step}"


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


EVALUATED = "evaluated.json"
"""Written in a model's folder of an evaluation work dir once its predictions are complete: the
`eval_key` they were made for."""


def _model_source(model: Path) -> str:
    """A model folder, the sha256 of its config and weights (a warm start retrained with other
    settings keeps its folder, not its weights) and, for an exported one, the checkpoint and RL
    digest it came from."""
    exported = model / "exported_from.txt"
    return str(model) + weights_digest(model) + (exported.read_text() if exported.exists() else "")


def _eval_env() -> dict[str, str]:
    """The evaluation children's environment: the repository importable, one thread each (runners run
    side by side, one per core)."""
    return {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def eval_key(spec: MiniSpec, data: Path, model: Path) -> str:
    """What one model's predictions depend on: the benchmark, the evaluation's settings and code,
    and the checkpoint the model was exported from (the evaluation stage's digest is over all)."""
    return spec.digest("eval", str(data), _model_source(model))


@dataclass
class Runner:
    """One `bench.run` process over some of an evaluation's models; runners share the work dir
    (bench.run locks each model's folder), each with its own copy of the TSVs, since VLMEvalKit
    unpacks images next to them."""

    tag: str
    models: list[Path]
    keys: dict[str, str]
    proc: subprocess.Popen
    log: io.TextIOWrapper

    @classmethod
    def start(cls, spec: MiniSpec, work: Path, data: Path, models: list[Path], tag: str) -> Runner:
        lmu = work / f".lmudata_{tag}"
        shutil.rmtree(lmu, ignore_errors=True)
        lmu.mkdir(parents=True)
        for task in spec.tasks:
            shutil.copy(data / f"{task}.tsv", lmu / f"{task}.tsv")
        for model in models:
            (work / model.name / EVALUATED).unlink(missing_ok=True)
        cmd = [sys.executable, "-m", "bench.run", "--model", *map(str, models), "--data", *spec.tasks,
               "--work-dir", str(work), "--lmudata", str(lmu), "--max-new-tokens", str(spec.eval_max_new_tokens)]
        log = (work / f"runner_{tag}.log").open("w")
        proc = spawn(cmd, env=_eval_env(), stdout=log, stderr=subprocess.STDOUT)
        return cls(tag, models, {m.name: eval_key(spec, data, m) for m in models}, proc, log)

    def wait(self, work: Path) -> str | None:
        """None once every model's predictions are complete (each folder then holds its key), else
        what failed."""
        self.proc.wait()
        self.log.close()
        if self.proc.returncode:
            return f"runner {self.tag} exit {self.proc.returncode} (see {work / f'runner_{self.tag}.log'})"
        for model in self.models:
            write_json_atomic(work / model.name / EVALUATED, {"key": self.keys[model.name]})
        return None


def _evaluated(model_dir: Path) -> str | None:
    """The key of a model's complete predictions, or None: none recorded, or a predictions file no
    longer the one bench.run recorded (truncated, rewritten, or its record gone)."""
    try:
        key = json.loads((model_dir / EVALUATED).read_text())["key"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    recorded = run_record(model_dir).get("predictions")
    if not isinstance(recorded, dict) or not recorded:
        return None
    for entry in recorded.values():
        path = model_dir / str(entry.get("file", "")) if isinstance(entry, dict) else None
        if path is None or not path.is_file() or unlike_record(path, entry):
            return None
    return key


def _clear_work(work: Path) -> None:
    """Empty an evaluation work dir but for models' complete predictions (kept only while their key
    still matches: `stage_eval` decides)."""
    work.mkdir(parents=True, exist_ok=True)
    for path in work.iterdir():
        if not (path.is_dir() and _evaluated(path)):
            shutil.rmtree(path) if path.is_dir() else path.unlink()


class EvalHead:
    """Evaluation begun while the RL stage's last runs finish: the core that no RL run is left to
    take evaluates the warm start and the finished runs' checkpoints. It takes at most a
    (parallel + 1)-th of all models, so that its runner ends about when the others do;
    `stage_eval` evaluates the rest and waits for it."""

    def __init__(self, spec: MiniSpec, runs: Path, data: Path, name: str, total: int) -> None:
        self.spec, self.work, self.data = spec, runs / name, data
        self.most = max(1, total // (spec.parallel + 1))
        self.runner: Runner | None = None

    def start(self, models: list[Path]) -> None:
        if not models:
            return
        _clear_work(self.work)
        chunk = models[: self.most]
        say(f"evaluation: {len(chunk)} models begun while RL finishes")
        self.runner = Runner.start(self.spec, self.work, self.data, chunk, "head")


def stage_eval(spec: MiniSpec, runs: Path, data: Path, models: list[Path], force: bool, name: str = "eval",
               head: EvalHead | None = None) -> Path:
    """Every model on every task through VLMEvalKit (`bench.run`, greedy), `spec.parallel` runner
    processes at a time over disjoint sets of models, then `bench.score` over the work dir. A
    model's complete predictions are kept while its `eval_key` matches (and without `force`, or
    when `head` made them in this run)."""
    work = runs / name
    digest = spec.digest("eval", str(data), *map(_model_source, models))
    stage = Stage(work, digest, force)
    early = [head.runner] if head is not None and head.runner is not None else []
    complete = all(_evaluated(work / m.name) == eval_key(spec, data, m) for m in models)
    if stage.done() and not early and complete:  # the predictions still the ones bench.run recorded
        say(f"evaluation: reusing {work}")
        return work
    if not early:
        _clear_work(work)
    begun = {m.name for runner in early for m in runner.models}
    kept = {m.name for m in models
            if m.name in begun or (not force and _evaluated(work / m.name) == eval_key(spec, data, m))}
    for path in work.iterdir():  # complete predictions of other models or inputs
        if path.is_dir() and _evaluated(path) and path.name not in kept:
            shutil.rmtree(path)
    todo = [m for m in models if m.name not in kept]
    say(f"evaluation: {len(todo)} models x {len(spec.tasks)} benchmarks x {spec.bench_items} items through "
        f"VLMEvalKit" + (f" ({len(kept)} more begun or done before)" if kept else ""))
    runners = early + [Runner.start(spec, work, data, todo[k :: spec.parallel], str(k))
                       for k in range(min(spec.parallel, len(todo)))]
    failed = [why for runner in runners if (why := runner.wait(work))]
    if failed:
        raise RuntimeError("evaluation failed: " + "; ".join(failed))
    run_child([sys.executable, "-m", "bench.score", "--work-dir", str(work)], env=_eval_env())
    stage.finish()
    return work


# ---------------------------------------------------------------- results
def load_metrics(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line]


def _method_of(name: str) -> str:
    return name.rsplit("-s", 1)[0]


def _mean(rows: list[dict], key: str) -> float:
    return statistics.fmean(r[key] for r in rows)


def step_cost(row: dict) -> float:
    """A step's cost as a count the trainer reproduces exactly: tokens generated plus tokens trained
    (prompt and response of every training row), from its metrics."""
    return row["perf/generated_tokens"] + row["perf/trained_tokens"]


def _last_fifth(rows: list[dict]) -> list[dict]:
    return rows[-max(1, len(rows) // 5):]


def _within(rows: list[dict], budget: float, cost) -> list[dict]:
    """The first steps of a run whose cumulative cost stays within `budget`."""
    spent, out = 0.0, []
    for r in rows:
        spent += cost(r)
        if spent > budget:
            break
        out.append(r)
    return out or rows[:1]


TRAINING_FIELDS = (
    "train_acc_start", "train_acc_equal_steps", "train_acc_equal_cost", "train_acc_equal_time",
    "uniform_groups_start", "uniform_groups_all", "uniform_groups_end", "all_wrong_groups", "all_correct_groups",
    "rescued_variants", "zero_adv_frac", "seconds_per_step", "tokens_per_step")


def training_summary(runs: dict[str, list[dict]], start_steps: int = 10) -> dict:
    """Per method, one value per seed: training accuracy (sampled, the rollouts' own) over the
    first `start_steps` steps and over the last 20% of the steps run, at equal steps, at equal cost
    (generated + trained tokens, `step_cost`: the cheapest run's total) and at equal wall-clock (the
    shortest run's total step time; machine-dependent), each window the last 20% of the steps that
    fit the budget; question groups whose 8 rewards are all equal (nothing to learn from) at the
    start, over the run and at the end, split into all wrong and all right; variants rescued by
    sharing (uniform on their own, not in their question's pool); zero-advantage rows; seconds and
    tokens per step. `runs`: each RL run's metrics rows (`load_metrics`), by run name."""
    time_of = {key: sum(r["perf/step_time"] for r in rows) for key, rows in runs.items()}
    cost_of = {key: sum(map(step_cost, rows)) for key, rows in runs.items()}
    out: dict = {"equal_wall_clock_s": min(time_of.values()), "equal_cost_tokens": min(cost_of.values())}
    for method in METHODS:
        m: dict[str, list[float]] = {name: [] for name in TRAINING_FIELDS}
        for k in (k for k in runs if _method_of(k) == method):
            rows = runs[k]
            tail = _last_fifth(rows)
            by_cost = _last_fifth(_within(rows, out["equal_cost_tokens"], step_cost))
            by_time = _last_fifth(_within(rows, out["equal_wall_clock_s"], lambda r: r["perf/step_time"]))
            m["train_acc_start"].append(_mean(rows[:start_steps], "reward/accuracy"))
            m["train_acc_equal_steps"].append(_mean(tail, "reward/accuracy"))
            m["train_acc_equal_cost"].append(_mean(by_cost, "reward/accuracy"))
            m["train_acc_equal_time"].append(_mean(by_time, "reward/accuracy"))
            m["uniform_groups_start"].append(_mean(rows[:start_steps], "adv/uniform_global_frac"))
            m["uniform_groups_all"].append(_mean(rows, "adv/uniform_global_frac"))
            m["uniform_groups_end"].append(_mean(tail, "adv/uniform_global_frac"))
            m["all_wrong_groups"].append(_mean(rows, "adv/all_wrong_frac"))
            m["all_correct_groups"].append(_mean(rows, "adv/all_correct_frac"))
            m["rescued_variants"].append(_mean(rows, "adv/rescued_frac"))
            m["zero_adv_frac"].append(_mean(rows, "adv/zero_frac"))
            m["seconds_per_step"].append(time_of[k] / len(rows))
            m["tokens_per_step"].append(cost_of[k] / len(rows))
        out[method] = m
    return out


def power(se_diff: float, seeds: int, gap: float = 3.0) -> dict:
    """What this design can detect, from the standard error of a difference of two methods'
    averages measured with `seeds` seeds each. Under the table's standard error (binomial item
    error and seed-to-seed error, both falling as 1/sqrt(seeds)) the error at k seeds is
    se_diff * sqrt(seeds / k). A difference shows at 2 SE; a true gap is found 80% of the time
    (two-sided 5%) when it is 2.8 SE."""
    return {
        "se_diff": se_diff, "seeds": seeds, "detectable": 2 * se_diff, "detected_80pct": 2.8 * se_diff, "gap": gap,
        "seeds_to_show_gap": max(1, math.ceil(seeds * (2 * se_diff / gap) ** 2)),
        "seeds_to_detect_gap_80pct": max(1, math.ceil(seeds * (2.8 * se_diff / gap) ** 2)),
    }


def plot_curves(runs: dict[str, list[dict]], path: Path, window: int = 10) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    panels = [("reward/accuracy", "training accuracy"), ("reward/mean", "reward"),
              ("adv/zero_frac", "zero-advantage rows"), ("adv/uniform_global_frac", "uniform question groups")]
    fig, axes = plt.subplots(2, 2, figsize=(10, 7))
    for ax, (key, title) in zip(axes.flat, panels, strict=True):
        for method, colour in zip(METHODS, ("tab:blue", "tab:red"), strict=True):
            series = [np.array([r[key] for r in rows]) for name, rows in runs.items() if _method_of(name) == method]
            n = min(len(s) for s in series)
            kernel = np.ones(window) / window
            smooth = np.array([np.convolve(s[:n], kernel, mode="valid") for s in series])
            x = np.arange(smooth.shape[1]) + window
            ax.plot(x, smooth.mean(0), color=colour, label=f"{method} ({len(series)} seeds)")
            ax.fill_between(x, smooth.min(0), smooth.max(0), color=colour, alpha=0.2)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("RL step")
        ax.legend(fontsize=8)
    fig.suptitle("CPU-scale miniature (not the paper's scale): GRPO vs Share-GRPO, same responses per question\n"
                 f"moving average of {window} steps; bands: min-max over seeds", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def verdict(a: str, b: str, diff: float, se: float) -> str:
    """One plain sentence from a difference of averages and its standard error."""
    if abs(diff) <= 2 * se:
        return f"no difference between {a} and {b} is detectable at this size ({diff:+.1f} ± {se:.1f} points)"
    ahead, behind = (a, b) if diff > 0 else (b, a)
    return f"{ahead} is ahead of {behind} by {abs(diff):.1f} ± {se:.1f} points"


def rl_gain(diff: float, se: float, above: int, seeds: int) -> str:
    """The sentence on RL's gain over the warm start (GRPO - Base, with its standard error), by the
    2-SE rule of every other verdict: no gain is claimed unless the difference exceeds 2 SE."""
    runs = f"{above} of {seeds} seed{'s' * (seeds != 1)} above it"
    if diff > 2 * se:
        return f"RL learns: GRPO is {diff:+.1f} ± {se:.1f} points above the warm start on average ({runs})."
    if diff < -2 * se:
        return f"RL loses ground: GRPO is {diff:+.1f} ± {se:.1f} points below the warm start on average ({runs})."
    return (f"RL: no gain over the warm start is detectable at this size (GRPO {diff:+.1f} ± {se:.1f} points; "
            f"{runs}).")


def speed_verdict(diff: float, se: float) -> str:
    """Which method learns faster, from the difference of the areas under the held-out curves
    (Share-GRPO - GRPO) and its standard error, by the 2-SE rule."""
    if diff > 2 * se:
        return "Share-GRPO learns faster"
    if diff < -2 * se:
        return "GRPO learns faster"
    return "neither learns detectably faster"


def compare(rows: dict, tasks: tuple[str, ...], items: int) -> dict:
    """Held-out averages (mean over tasks, per run) of every row with their standard errors, and
    the differences that the conclusions rest on."""
    from reproduce.table1 import average, standard_error

    avg = {label: average(row, list(tasks)) for label, row in rows.items()}
    mean = {label: statistics.fmean(v) for label, v in avg.items()}
    se = {label: standard_error(v, items, len(tasks)) for label, v in avg.items()}

    def diff(a: str, b: str) -> dict:
        return {"diff": mean[a] - mean[b], "se": math.hypot(se[a], se[b])}

    base = "Base (warm start)"
    return {
        "average": mean, "average_se": se, "per_run_average": avg,
        "grpo_vs_base": diff("GRPO", base), "grpo_runs_above_base": sum(v > mean[base] for v in avg["GRPO"]),
        "share_vs_base": diff("Share-GRPO", base),
        "equal_responses": diff("Share-GRPO", "GRPO"), "equal_cost": diff(EQUAL_COST, "GRPO"),
    }


def learning_curves(spec: MiniSpec, scores: dict, runs: dict[str, list[dict]]) -> dict:
    """Held-out average accuracy of each method's checkpoints at the same steps (step 0: the warm
    start), per seed, with each point's cost (cumulative generated + trained tokens), and the area
    under the accuracy-by-step curve over the whole run (trapezoids, divided by the run's length:
    the mean held-out accuracy over training), with its standard error (the answers behind it and
    the seeds, as the table's) and the difference Share-GRPO - GRPO."""
    from reproduce.table1 import standard_error

    tasks = list(spec.tasks)
    steps = [0, *sorted(spec.curve_steps)]

    def accuracy(model: str) -> float:
        return statistics.fmean(scores[model][t]["accuracy"] for t in tasks)

    out: dict = {"steps": steps}
    for method in METHODS:
        acc, cost, auc = [], [], []
        for seed in spec.seeds:
            name = f"{method}-s{seed}"
            rows = runs[name]
            points = [accuracy("Base")] + [accuracy(name if step == spec.rl_steps else step_name(name, step))
                                           for step in steps[1:]]
            acc.append(points)
            cost.append([sum(map(step_cost, rows[:step])) for step in steps])
            area = sum((b - a) * (y + z) / 2 for a, b, y, z in zip(steps, steps[1:], points, points[1:], strict=False))
            auc.append(area / spec.rl_steps)
        out[method] = {"accuracy": acc, "cost": cost, "auc": auc,
                       "auc_se": standard_error(auc, spec.bench_items * len(steps), len(tasks))}
    share, grpo = out["Share-GRPO"], out["GRPO"]
    out["auc_diff"] = {"diff": statistics.fmean(share["auc"]) - statistics.fmean(grpo["auc"]),
                       "se": math.hypot(share["auc_se"], grpo["auc_se"])}
    return out


def plot_heldout_curves(curves: dict, path: Path) -> None:
    """Held-out accuracy against steps and against cost, mean over seeds with a min-max band."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for method, colour in zip(METHODS, ("tab:blue", "tab:red"), strict=True):
        acc, cost = np.array(curves[method]["accuracy"]), np.array(curves[method]["cost"])
        for ax, x in ((axes[0], np.array(curves["steps"])), (axes[1], cost.mean(0))):
            ax.plot(x, acc.mean(0), "o-", color=colour, label=f"{method} ({len(acc)} seeds)")
            ax.fill_between(x, acc.min(0), acc.max(0), color=colour, alpha=0.2)
    axes[0].set_xlabel("RL step")
    axes[1].set_xlabel("cost: generated + trained tokens (mean over seeds)")
    for ax in axes:
        ax.set_ylabel("held-out accuracy, average over tasks")
        ax.legend(fontsize=8)
    fig.suptitle("CPU-scale miniature: held-out accuracy of checkpoints at the same steps (step 0: the warm start); "
                 "bands: min-max over seeds", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_results(spec: MiniSpec, runs: Path, work: Path, rl: dict, out: Path, elapsed: float) -> list[Path]:
    from reproduce.table1 import Row, render, write_outputs

    tasks = list(spec.tasks)
    scores = {p.parent.name: checked_scores(p.parent)[0] for p in work.glob("*/r1_scores.json")}
    names = {"Base (warm start)": ["Base"], **{m: [f"{m}-s{s}" for s in spec.seeds] for m in METHODS},
             EQUAL_COST: [step_name(f"Share-GRPO-s{s}", spec.rl_steps // 2) for s in spec.seeds]}
    rows = {label: Row(label, {t: [scores[n][t]["accuracy"] for n in ns] for t in tasks}, items=spec.bench_items)
            for label, ns in names.items()}
    metrics = {name: load_metrics(path) for name, path in rl.items()}
    summary = training_summary(metrics)
    curves = learning_curves(spec, scores, metrics)
    ratio = statistics.fmean(summary["Share-GRPO"]["seconds_per_step"]) / statistics.fmean(
        summary["GRPO"]["seconds_per_step"])
    half = spec.rl_steps // 2
    half_time = ratio * half / spec.rl_steps  # the half-way checkpoint's share of GRPO's wall-clock

    def cost_at(method: str, step: int) -> float:  # mean over seeds of the tokens spent up to `step`
        return statistics.fmean(seed[curves["steps"].index(step)] for seed in curves[method]["cost"])

    half_cost = cost_at("Share-GRPO", half) / cost_at("GRPO", spec.rl_steps)  # ... of GRPO's tokens
    result = compare(rows, spec.tasks, spec.bench_items)
    result["power"] = power(result["equal_responses"]["se"], len(spec.seeds))
    base_cfg = (CONFIGS / "mini_base.yaml").read_text()
    lr = next(line.split(":")[1].strip() for line in base_cfg.splitlines() if line.strip().startswith("lr:"))
    pw = result["power"]
    caption = (f"SCALE=mini (CPU miniature, NOT the paper's benchmarks or scale). Accuracy 0-100 on held-out synthetic "
               f"benchmarks ({spec.bench_items} items each), mean ± standard error (items and seeds "
               f"{list(spec.seeds)}); {spec.rl_steps} RL steps from one warm start, 8 questions per step and 8 "
               f"generated responses per question for both methods (GRPO n = 8; Share-GRPO Q = 2 x n = 4); one "
               f"learning rate for both, lr = {lr}, chosen on a GRPO-only pilot; '{EQUAL_COST}' is Share-GRPO's "
               f"checkpoint at step {half}, the comparison at about equal cost: it had {half_cost:.2f}x GRPO's "
               f"generated + trained tokens (and {half_time:.2f}x its wall-clock on this machine). With "
               f"{len(spec.seeds)} seed{'s' * (len(spec.seeds) != 1)} a difference between two methods' averages shows at 2 SE only above "
               f"{pw['detectable']:.1f} points. Greedy decoding through VLMEvalKit, scored by bench.score.")
    rendered = render(list(rows.values()), tasks, caption, with_paper=False)
    g, e, c = result["grpo_vs_base"], result["equal_responses"], result["equal_cost"]
    sentences = [
        rl_gain(g["diff"], g["se"], result["grpo_runs_above_base"], len(spec.seeds)),
        f"At equal generated responses per question, {verdict('Share-GRPO', 'GRPO', e['diff'], e['se'])}.",
        f"At about equal cost ({half_cost:.2f}x GRPO's tokens), {verdict(EQUAL_COST, 'GRPO', c['diff'], c['se'])}.",
        f"Power: with {len(spec.seeds)} seed{'s' * (len(spec.seeds) != 1)} and {spec.bench_items} items per task "
        f"this design shows a difference "
        f"of {pw['detectable']:.1f} points at 2 SE (a true gap of {pw['detected_80pct']:.1f} is found 80% of the "
        f"time); showing a {pw['gap']:.0f}-point gap at 2 SE takes {pw['seeds_to_show_gap']} seeds per method "
        f"({pw['seeds_to_detect_gap_80pct']} to find it 80% of the time): make reproduce-table1 SEEDS=N.",
    ]
    pct = lambda values: f"{100 * statistics.fmean(values):.1f}"  # noqa: E731
    lines = ["\n**Training (sampled rollouts), mean over seeds.** Uniform groups: questions whose 8 rewards are all "
             "equal, so their advantages vanish; all wrong / all right: the uniform groups whose responses are all "
             "wrong (the sparse-reward case Share-GRPO targets) or all right; rescued: variants whose own 4 rewards "
             "are uniform while their question's 8 are not (GRPO would lose their advantage). Cost: generated + "
             "trained tokens, which replay exactly; wall-clock depends on the machine.\n\n",
             "| method | train acc, first 10 steps | train acc, last 20% | same, at equal cost "
             f"({summary['equal_cost_tokens']:,.0f} tokens) | same, at equal wall-clock ({summary['equal_wall_clock_s']:.0f} s) "
             "| uniform groups, first 10 steps | uniform groups, all steps | uniform groups, last 20% | all wrong | "
             "all right | rescued variants | zero-advantage rows | s / step | tokens / step |\n" + "|---" * 14 + "|\n"]
    for method in METHODS:
        m = summary[method]
        lines.append(f"| {method} | {pct(m['train_acc_start'])} | {pct(m['train_acc_equal_steps'])} | "
                     f"{pct(m['train_acc_equal_cost'])} | {pct(m['train_acc_equal_time'])} | "
                     f"{pct(m['uniform_groups_start'])}% | {pct(m['uniform_groups_all'])}% | "
                     f"{pct(m['uniform_groups_end'])}% | {pct(m['all_wrong_groups'])}% | {pct(m['all_correct_groups'])}% | "
                     f"{pct(m['rescued_variants'])}% | {statistics.fmean(m['zero_adv_frac']):.2f} | "
                     f"{statistics.fmean(m['seconds_per_step']):.2f} | {statistics.fmean(m['tokens_per_step']):,.0f} |\n")
    a = curves["auc_diff"]
    sentences.append(f"Learning speed (area under the held-out curve over {spec.rl_steps} steps, the mean held-out "
                     f"accuracy over training): Share-GRPO {statistics.fmean(curves['Share-GRPO']['auc']):.1f} ± "
                     f"{curves['Share-GRPO']['auc_se']:.1f}, GRPO {statistics.fmean(curves['GRPO']['auc']):.1f} ± "
                     f"{curves['GRPO']['auc_se']:.1f}; {speed_verdict(a['diff'], a['se'])} "
                     f"({a['diff']:+.1f} ± {a['se']:.1f} points).")
    lines.append("\n**Held-out accuracy at the same steps** (average over tasks, mean over seeds; step 0 is the warm "
                 "start; `heldout_curves.png` plots it against steps and against cost).\n\n"
                 "| method | " + " | ".join(f"step {x}" for x in curves["steps"]) + " | area under the curve |\n"
                 + "|---" * (len(curves["steps"]) + 2) + "|\n")
    for method in METHODS:
        c = curves[method]
        cells = [f"{statistics.fmean(col):.1f}" for col in zip(*c["accuracy"], strict=True)]
        lines.append(f"| {method} | " + " | ".join(cells) + f" | {statistics.fmean(c['auc']):.1f} ± {c['auc_se']:.1f} |\n")
    lines.append("\n**Conclusion.** " + " ".join(sentences) + "\n")
    rendered["md"] += "".join(lines)
    paths = write_outputs(rendered, out / "table1")
    plot_curves(metrics, out / "curves.png")
    plot_heldout_curves(curves, out / "heldout_curves.png")
    (out / "configs").mkdir(exist_ok=True)
    for name in ("mini_base.yaml", *METHODS.values()):
        shutil.copy(CONFIGS / name, out / "configs" / name)
    import resource
    from importlib.metadata import version

    peak = {"this_process": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "largest_child_process": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024}
    meta = {"scale": "mini", "spec": asdict(spec), "elapsed_s": elapsed, "peak_rss_mb": peak, "training": summary,
            "held_out": result, "share_step_time_ratio": ratio, "equal_time_fraction": half_time,
            "equal_cost_fraction": half_cost, "learning_curves": curves,
            "conclusion": sentences,
            "warm_start": {**json.loads((runs / "models" / "Base" / "done.json").read_text()),
                           "weights_sha256": weights_digest(runs / "models" / "Base")},
            "numerics": recorded(),
            "versions": {p: version(p) for p in ("torch", "transformers", "deepspeed", "ms-vlmeval", "math-verify")},
            "machine": describe(),
            "commit": _commit()}
    write_json_atomic(out / "run.json", meta)
    return [*paths, out / "curves.png", out / "heldout_curves.png", out / "run.json"]


def _commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=REPO,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def run_mini(force: bool = False, spec: MiniSpec | None = None, runs: Path | None = None,
             out: Path | None = None, bench_seed: int | None = None) -> int:
    """The whole miniature; with `bench_seed`, the same checkpoints are also scored on a fresh
    benchmark drawn with that seed, into `out/bench_seed_{N}/`."""
    spec = spec or MiniSpec()
    runs = runs or REPO / "runs" / "mini"
    out = out or REPO / "results" / "mini"
    lock = lock_runs(runs)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    say(f"SCALE=mini: a CPU miniature of Table 1 (not the paper's scale); work in {runs}")
    data = stage_data(spec, runs, force)
    base = stage_warm_start(spec, runs, data, force)
    early = [step for step in spec.curve_steps if step != spec.rl_steps]
    head = EvalHead(spec, runs, data, "eval", 1 + len(method_runs(spec)) * len(spec.curve_steps))
    exported: set[str] = set()
    rl = stage_rl(spec, runs, base, data, force, on_idle=lambda done: head.start(
        [base, *stage_export(runs, done, force, {name: early for name in done}, exported).values()]))
    models = [base, *stage_export(runs, rl, force, {name: early for name in rl}, exported).values()]
    targets = [(data, "eval", out)]
    if bench_seed is not None:
        fresh = stage_fresh_benchmark(spec, runs, data, bench_seed, force)
        targets.append((fresh, f"eval_bench_seed_{bench_seed}", out / f"bench_seed_{bench_seed}"))
    paths = []
    for bench, name, target in targets:
        work = stage_eval(spec, runs, bench, models, force, name=name, head=head if name == "eval" else None)
        target.mkdir(parents=True, exist_ok=True)
        paths += write_results(spec, runs, work, rl, target, time.time() - t0)
    say(f"done in {time.time() - t0:.0f} s. SCALE=mini outputs:")
    for p in paths:
        say(f"  {p}")
    for _, _, target in targets:
        print((target / "table1.md").read_text())
    lock.close()
    return 0
