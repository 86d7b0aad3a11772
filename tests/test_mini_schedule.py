"""How the miniature fills its cores: a core the RL stage leaves free begins the evaluation
(`on_idle`, `EvalHead`), and the evaluation keeps a model's complete predictions while what they
depend on is unchanged. Processes are stood in for, and gated by files, never by timing."""

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from reproduce import mini
from reproduce.mini import SMOKE, EvalHead, RLRun, eval_key, evaluation, stage_eval, stage_rl, stages


def test_method_runs_put_share_grpo_beside_grpo_seed_by_seed():
    names = [run.name for run in mini.method_runs(replace(SMOKE, seeds=(1, 2, 3)))]
    assert names == ["Share-GRPO-s1", "GRPO-s1", "Share-GRPO-s2", "GRPO-s2", "Share-GRPO-s3", "GRPO-s3"]


def test_a_free_core_with_no_run_left_is_handed_over_once(tmp_path, monkeypatch):
    """`slow` runs until the callback has run, so the callback must come while it still runs, and
    only after `fast2` (pending until `fast` ends) has finished too."""
    gate = tmp_path / "gate"
    waits = f"import os, time\nwhile not os.path.exists({str(gate)!r}): time.sleep(0.02)"

    def fake_spawn(cmd, **kwargs):
        name = Path(kwargs["stdout"].name).parent.name  # the run's train.log
        return subprocess.Popen([sys.executable, "-c", waits] if name == "slow" else ["true"])

    monkeypatch.setattr(stages, "spawn", fake_spawn)
    calls = []

    def on_idle(done):
        calls.append((dict(done), (tmp_path / "rl" / "slow" / "done.json").exists()))
        gate.touch()

    plan = [RLRun(name, seed, ("mini_base.yaml",)) for seed, name in enumerate(("slow", "fast", "fast2"))]
    outs = stage_rl(replace(SMOKE, parallel=2), tmp_path, tmp_path / "base", tmp_path / "data", False, plan,
                    on_idle=on_idle)
    assert calls == [({"fast": tmp_path / "rl" / "fast", "fast2": tmp_path / "rl" / "fast2"}, False)]
    assert set(outs) == {"slow", "fast", "fast2"}
    assert all((out / "done.json").exists() for out in outs.values())


class FakeRunners:
    """Stands in for `Runner.start`: records each runner's models; its process exits at once with
    `exit_code`, after making the model folders as bench.run does."""

    def __init__(self):
        self.started: list[tuple[str, list[str]]] = []
        self.exit_code = 0

    def __call__(self, spec, work, data, models, tag):
        self.started.append((tag, [m.name for m in models]))
        import pandas as pd

        from tests.helpers.scores import record_predictions

        for model in models:  # a predictions file and its record, as bench.run leaves them
            (work / model.name).mkdir(parents=True, exist_ok=True)
            predictions = work / model.name / f"{model.name}_SynthCount.csv"
            pd.DataFrame({"index": range(3), "answer": "1", "prediction": "1"}).to_csv(predictions, index=False)
            record_predictions(work / model.name, {"SynthCount": predictions})
        log = open(work / f"runner_{tag}.log", "w")  # noqa: SIM115 - the runner closes it
        proc = subprocess.Popen([sys.executable, "-c", f"raise SystemExit({self.exit_code})"])
        return mini.Runner(tag, models, {m.name: eval_key(spec, data, m) for m in models}, proc, log)


@pytest.fixture
def fake_eval(tmp_path, monkeypatch):
    runners, scored = FakeRunners(), []
    monkeypatch.setattr(mini.Runner, "start", runners)
    monkeypatch.setattr(evaluation, "run_child", lambda cmd, **kwargs: scored.append(cmd))
    models = []
    for name in ("Base", "A", "B"):
        (tmp_path / "models" / name).mkdir(parents=True)
        (tmp_path / "models" / name / "exported_from.txt").write_text(f"{name} digest-1")
        models.append(tmp_path / "models" / name)
    return runners, scored, models


def test_the_head_s_models_are_not_evaluated_again(tmp_path, fake_eval):
    runners, scored, models = fake_eval
    spec, data = replace(SMOKE, parallel=2), tmp_path / "data"
    work = tmp_path / "runs" / "eval"
    (work / "stale-unfinished").mkdir(parents=True)  # an earlier run's leftovers
    (work / "done.json").write_text("{}")
    head = EvalHead(spec, tmp_path / "runs", data, "eval", total=3)
    head.start(models[:2])  # at most a (parallel + 1)-th of the 3 models: Base only
    assert runners.started == [("head", ["Base"])]
    assert not (work / "stale-unfinished").exists() and not (work / "done.json").exists()
    stage_eval(spec, tmp_path / "runs", data, models, False, head=head)
    assert runners.started == [("head", ["Base"]), ("0", ["A"]), ("1", ["B"])]
    assert len(scored) == 1 and json.loads((work / "done.json").read_text())["digest"]
    for model in models:
        assert json.loads((work / model.name / mini.EVALUATED).read_text())["key"] == eval_key(spec, data, model)


def test_complete_predictions_are_kept_while_their_inputs_are_unchanged(tmp_path, fake_eval):
    runners, scored, models = fake_eval
    spec, data, runs = replace(SMOKE, parallel=2), tmp_path / "data", tmp_path / "runs"
    stage_eval(spec, runs, data, models, False)
    assert sorted(m for _, ms in runners.started for m in ms) == ["A", "B", "Base"]

    runners.started.clear()
    stage_eval(spec, runs, data, models, False)  # all done: reused, not even scored again
    assert runners.started == [] and len(scored) == 1

    (models[1] / "exported_from.txt").write_text("A digest-2")  # A retrained
    stage_eval(spec, runs, data, models, False)
    assert runners.started == [("0", ["A"])] and len(scored) == 2

    runners.started.clear()  # the warm start retrained with other settings: same folder, no export
    (models[0] / "model.safetensors").write_bytes(b"other weights")  # in the same folder
    stage_eval(spec, runs, data, models, False)
    assert runners.started == [("0", ["Base"])] and len(scored) == 3

    runners.started.clear()  # a kept predictions file truncated since: it is not complete any more
    (runs / "eval" / "B" / "B_SynthCount.csv").write_text("index,answer,prediction\n0,1,1\n")
    stage_eval(spec, runs, data, models, False)
    assert runners.started == [("0", ["B"])] and len(scored) == 4

    runners.started.clear()
    stage_eval(spec, runs, data, models[1:], False)  # Base no longer wanted: its predictions go
    assert runners.started == [] and not (runs / "eval" / "Base").exists() and len(scored) == 5

    stage_eval(spec, runs, data, models, True)  # force: everything again
    assert sorted(m for _, ms in runners.started for m in ms) == ["A", "B", "Base"]


def test_a_failed_runner_fails_the_stage_and_marks_nothing(tmp_path, fake_eval):
    runners, scored, models = fake_eval
    runners.exit_code = 1
    runs = tmp_path / "runs"
    with pytest.raises(RuntimeError, match=r"evaluation failed: runner 0 exit 1 .*runner_0\.log"):
        stage_eval(replace(SMOKE, parallel=2), runs, tmp_path / "data", models, False)
    assert not list(runs.glob(f"eval/*/{mini.EVALUATED}")) and not scored
    assert not (runs / "eval" / "done.json").exists()
