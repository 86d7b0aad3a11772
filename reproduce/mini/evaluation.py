"""Evaluation of the warm start and every kept checkpoint through `bench.run` (VLMEvalKit) and
`bench.score`, two runner processes at a time. It starts while RL finishes (`EvalHead`), and a
model's complete predictions are kept while its checkpoint, the benchmark and the evaluation code
are unchanged (`eval_key`)."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from bench.fileio import write_json_atomic
from bench.provenance import weights_digest
from bench.score import run_record, unlike_record

from ..children import run as run_child
from ..children import spawn
from .spec import REPO, MiniSpec
from .stages import Stage, say

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
