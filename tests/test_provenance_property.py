"""The provenance property, with real `bench.run` processes: over random sequences of runs, runs
killed with SIGKILL at a random moment, re-runs, --reuse, weights changed in place and scoring,
every score `bench.score` writes equals the score of a clean run of the weights its record names on
the same data (its figures, item count included, and the predictions they come from), or the
command refuses. Which moment a kill lands on does not matter: the property
must hold at every one."""

from __future__ import annotations

import json
import random
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from bench.data import write
from bench.provenance import weights_digest
from bench.score import ResultsError, checked_scores, score_work_dir
from tests.test_bench_run_reliability import bench_run
from train.tiny import build_tiny

DATASETS = ("SynthCount", "SynthColour")
ARGS = ("--max-new-tokens", "4")


def scores(work: Path) -> dict[str, tuple]:
    """{dataset: (its figures, the predictions they were computed from)}, as table1 and submit read them."""
    from bench.score import read_predictions

    out = {}
    for dataset, metrics in checked_scores(work / "model")[0].items():
        frame = read_predictions(work / "model" / metrics["predictions"]["file"], text=True)
        out[dataset] = ({k: metrics[k] for k in ("n", "accuracy", "format", "no_box", "empty_gold")},
                        dict(zip(frame["index"], frame["prediction"], strict=True)))
    return out


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Data, two sets of weights, and each one's clean scores: {weights sha256: {dataset: accuracy}}."""
    root = tmp_path_factory.mktemp("property")
    write(root / "lmu", n=3, seed=0, side=28, tasks=list(DATASETS))
    clean = {}
    for seed in (0, 1):
        build_tiny(root / f"weights{seed}", seed=seed)
        # a folder named `model`, as in the sequences, so every run files its results the same way
        shutil.copytree(root / f"weights{seed}", root / "clean" / str(seed) / "model")
        work = root / "clean" / str(seed) / "work"
        result = bench_run(root, work, "--data", *DATASETS, *ARGS, model=root / "clean" / str(seed) / "model")
        assert result.returncode == 0, result.stderr[-3000:]
        score_work_dir(work)
        clean[weights_digest(root / f"weights{seed}")] = scores(work)
    assert len(clean) == 2
    one, other = clean.values()
    assert all(one[d][1] != other[d][1] for d in DATASETS)  # the two weights' predictions can be told apart
    return root, clean


def killed_run(root: Path, work: Path, model: Path, rng: random.Random, *args: str) -> None:
    """bench.run started and killed with SIGKILL after a random delay (before, during or after its work)."""
    import os
    import sys

    cmd = [sys.executable, "-m", "bench.run", "--model", str(model), "--work-dir", str(work), "--lmudata",
           str(root / "lmu"), *args]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=Path(__file__).parents[1],
                            env={**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(Path(__file__).parents[1])})
    time.sleep(rng.uniform(0.5, 12.0))
    proc.send_signal(signal.SIGKILL)
    proc.wait()


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1])
def test_every_printed_score_is_a_clean_runs_score_or_a_refusal(world, tmp_path, seed):
    root, clean = world
    rng = random.Random(seed)
    model, work = tmp_path / "model", tmp_path / "work"
    shutil.copytree(root / "weights0", model)
    for _ in range(6):
        op = rng.choice(["run", "reuse", "kill", "weights", "score", "score"])
        datasets = rng.choice([DATASETS, DATASETS[:1], DATASETS[1:]])
        if op == "run":
            bench_run(root, work, "--data", *datasets, *ARGS, model=model)
        elif op == "reuse":
            bench_run(root, work, "--data", *datasets, *ARGS, "--reuse", model=model)
        elif op == "kill":
            killed_run(root, work, model, rng, "--data", *datasets, *ARGS)
        elif op == "weights":
            shutil.rmtree(model)
            shutil.copytree(root / f"weights{rng.choice([0, 1])}", model)
        if not (work / "model").is_dir():
            continue
        try:
            score_work_dir(work)
            got = scores(work)
        except ResultsError:
            continue  # refused: allowed
        made_by = json.loads((work / "model" / "bench_run.json").read_text())["settings"]["weights_sha256"]
        assert made_by in clean
        for dataset, scored in got.items():
            assert scored == clean[made_by][dataset], (op, dataset)
    # the property leans on a clean run's scores being reproducible: the same weights, afresh
    fresh = tmp_path / "fresh"
    assert bench_run(root, fresh, "--data", *DATASETS, *ARGS, model=model).returncode == 0
    score_work_dir(fresh)
    assert scores(fresh) == clean[weights_digest(model)]
