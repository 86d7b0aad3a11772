"""Smoke run of the CPU-scale reproduction (`make reproduce-table1`'s pipeline at tiny sizes):
every stage runs for real, every output file exists and is well formed, and a rerun reuses."""

import json

import pandas as pd
import pytest
from PIL import Image

from reproduce.mini import EQUAL_COST, SMOKE, TASKS, run_mini


def test_mini_pipeline_smoke(tmp_path, capsys):
    runs, out = tmp_path / "runs", tmp_path / "results"
    assert run_mini(spec=SMOKE, runs=runs, out=out) == 0
    table = pd.read_csv(out / "table1.csv")
    assert set(table["model"]) == {"Base (warm start)", "GRPO", "Share-GRPO", EQUAL_COST}
    assert set(table["column"]) == {*TASKS, "Average"}
    assert table["measured_mean"].between(0, 100).all() and (table["measured_se"] >= 0).all()
    md = (out / "table1.md").read_text()
    assert "SCALE=mini" in md and "NOT the paper's" in md and "at equal cost" in md and "at equal wall-clock" in md
    assert "uniform groups, first 10 steps" in md and "**Conclusion.** RL" in md  # its verdict: tests/test_wrong_numbers.py
    assert "At equal generated responses per question" in md and "At about equal cost" in md
    assert "Power: with 1 seed and" in md and "SEEDS=N" in md and "rescued variants" in md and "all wrong" in md
    for png in ("curves.png", "heldout_curves.png"):
        with Image.open(out / png) as im:
            assert im.size[0] > 500 and im.size[1] > 400
    # both methods evaluated at the same steps: held-out curves and their areas
    assert "Held-out accuracy at the same steps" in md and "| step 0 | step 1 | step 2 |" in md
    assert "Learning speed (area under the held-out curve over 2 steps" in md
    meta = json.loads((out / "run.json").read_text())
    assert meta["scale"] == "mini" and meta["versions"]["ms-vlmeval"] == "0.0.20" and meta["commit"]
    assert set(meta["numerics"]["env"]) >= {"ATEN_CPU_CAPABILITY", "MKL_CBWR", "ONEDNN_MAX_CPU_ISA"}
    assert len(meta["warm_start"]["weights_sha256"]) == 64 and meta["warm_start"]["warmup"][-1]["step"] == SMOKE.warmup_steps
    assert set(meta["held_out"]) >= {"grpo_vs_base", "equal_responses", "equal_cost", "grpo_runs_above_base", "power"}
    for method in ("GRPO", "Share-GRPO"):
        assert len(meta["training"][method]["uniform_groups_start"]) == len(SMOKE.seeds)
        curve = meta["learning_curves"][method]
        assert len(curve["accuracy"][0]) == 3 and curve["cost"][0][0] == 0 < curve["cost"][0][1] < curve["cost"][0][2]
    assert meta["learning_curves"]["steps"] == [0, 1, 2]
    # the equal-cost row is Share-GRPO's half-way checkpoint
    checkpoint, digest = (runs / "models" / "Share-GRPO-s1-step1" / "exported_from.txt").read_text().rsplit(" ", 1)
    assert checkpoint.endswith(f"step_{SMOKE.rl_steps // 2}")
    assert digest == json.loads((runs / "rl" / "Share-GRPO-s1" / "done.json").read_text())["digest"]
    assert sorted(p.name for p in (out / "configs").iterdir()) == ["mini_base.yaml", "mini_grpo.yaml",
                                                                   "mini_sharegrpo.yaml"]
    for method in ("GRPO", "Share-GRPO"):
        rows = [json.loads(line) for line in (runs / "rl" / f"{method}-s1" / "metrics.jsonl").read_text().splitlines()]
        assert len(rows) == SMOKE.rl_steps
        assert rows[0]["train/rows_per_question"] == (8 if method == "GRPO" else 16)

    # a second run reuses every finished stage, and scores the checkpoints on a fresh benchmark
    capsys.readouterr()
    assert run_mini(spec=SMOKE, runs=runs, out=out, bench_seed=5) == 0
    said = capsys.readouterr().out
    assert "data: reusing" in said and "warm start: reusing" in said and "RL: reusing" in said
    assert "evaluation: reusing" in said and "fresh benchmark: " in said
    fresh = pd.read_csv(out / "bench_seed_5" / "table1.csv")
    assert set(fresh["model"]) == set(table["model"])
    from bench.data import image_hashes

    train_images = image_hashes(pd.read_parquet(runs / "data" / "train.parquet"))
    for task in TASKS:
        fresh_items = pd.read_csv(runs / "bench_seed_5" / f"{task}.tsv", sep="\t")
        shipped = pd.read_csv(runs / "data" / f"{task}.tsv", sep="\t")
        assert not image_hashes(fresh_items) & train_images and not fresh_items["image"].equals(shipped["image"])


def test_ablations_smoke(tmp_path):
    from dataclasses import replace

    from reproduce.ablations import run_ablations

    plan = tmp_path / "plan.yaml"
    plan.write_text(
        "steps: 2\nseeds: [1, 2, 3]\ntables:\n"
        "  variants:\n"
        "    - {name: 'Q = 1', configs: [mini_grpo.yaml], overrides: [worker.rollout.n=4]}\n"
        "    - {name: 'Q = 2, image only', configs: [mini_sharegrpo.yaml],"
        " overrides: [worker.rollout.n=2, algorithm.text_variants=false]}\n"
    )
    spec = replace(SMOKE, rl_steps=2)
    assert run_ablations(spec=spec, runs=tmp_path / "runs", out=tmp_path / "out", plan_file=plan) == 0
    table = pd.read_csv(tmp_path / "out" / "ablations.csv")
    assert set(table["model"]) == {"Q = 1", "Q = 2, image only"}
    md = (tmp_path / "out" / "ablations.md").read_text()
    assert "Ablation 'variants'" in md and "NOT the paper's scale" in md
    assert (table["runs"] == 3).all() and table["measured_se"].notna().all()  # every row over its 3 seeds, with an SE
    rows = [json.loads(line) for line in
            (tmp_path / "runs" / "rl" / "abl-variants-Q-2-image-only-s2" / "metrics.jsonl").read_text().splitlines()]
    assert rows[0]["train/rows_per_question"] == 2 * 2 * 2
    plan.write_text(plan.read_text().replace("seeds: [1, 2, 3]", "seeds: [1, 2]"))
    with pytest.raises(ValueError, match="at least 3"):
        run_ablations(spec=spec, runs=tmp_path / "runs", out=tmp_path / "out", plan_file=plan)


def test_stage_digests_cover_only_their_inputs():
    from dataclasses import replace

    other_rl = replace(SMOKE, rl_steps=SMOKE.rl_steps + 5, seeds=(7,))
    assert other_rl.digest("data") == SMOKE.digest("data") and other_rl.digest("warm") == SMOKE.digest("warm")
    assert other_rl.digest("rl", "x") != SMOKE.digest("rl", "x")
    other_warm = replace(SMOKE, vision_steps=SMOKE.vision_steps + 1)
    assert other_warm.digest("data") == SMOKE.digest("data") and other_warm.digest("warm") != SMOKE.digest("warm")


def test_stage_digests_cover_the_data_generator(tmp_path, monkeypatch):
    import reproduce.mini.spec as mini

    before = {stage: SMOKE.digest(stage) for stage in ("data", "warm", "rl", "eval")}
    changed = tmp_path / "data.py"
    changed.write_text(mini.DATA_GENERATOR.read_text() + "\n# a changed task\n")
    monkeypatch.setattr(mini, "DATA_GENERATOR", changed)
    assert all(SMOKE.digest(stage) != digest for stage, digest in before.items())


def test_stage_digests_cover_the_code_each_stage_runs(tmp_path, monkeypatch):
    import reproduce.mini.spec as mini

    before = {stage: SMOKE.digest(stage) for stage in ("data", "warm", "rl", "eval")}
    trainer = tmp_path / "trainer.py"
    trainer.write_text((mini.REPO / "train" / "trainer.py").read_text() + "\n# a changed trainer\n")
    monkeypatch.setitem(mini.STAGE_CODE, "rl", (*mini.STAGE_CODE["rl"], trainer))
    after = {stage: SMOKE.digest(stage) for stage in before}
    assert [s for s in before if before[s] != after[s]] == ["rl"]
    assert any(p.name == "trainer.py" for p in mini.STAGE_CODE["rl"])
    assert any(p.name == "score.py" for p in mini.STAGE_CODE["eval"])


def test_a_run_made_by_other_inputs_is_never_resumed(tmp_path):
    """RL runs resume from their checkpoints only when the same inputs started them: a run whose
    config or code changed starts over (its folder is cleared), an interrupted one resumes."""
    from reproduce.mini import Stage

    first = Stage(tmp_path, "digest-1", force=False)
    first.start()
    assert first.resumable() and not first.done()  # interrupted: resume
    first.finish()
    assert Stage(tmp_path, "digest-1", force=False).done()
    changed = Stage(tmp_path, "digest-2", force=False)
    assert not changed.done() and not changed.resumable()  # cleared and started over
    assert not Stage(tmp_path, "digest-1", force=True).resumable()


def test_curve_steps_always_hold_the_end_and_its_half_and_seeds_must_be_positive():
    from dataclasses import replace

    from reproduce.mini import FULL_CURVE, MiniSpec

    assert MiniSpec().curve_steps == (150, 300)
    assert replace(MiniSpec(), curve_steps=FULL_CURVE).curve_steps == (50, 100, 150, 300)
    assert replace(MiniSpec(), curve_steps=(30, 50), rl_steps=200, rl_save_freq=50).curve_steps == (50, 100, 200)
    with pytest.raises(ValueError, match="must divide half of rl_steps"):
        replace(MiniSpec(), rl_save_freq=40)
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "reproduce", "run", "--scale", "mini", "--seeds", "0"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and "SEEDS=0: must be >= 1" in out.stderr
    out = subprocess.run([sys.executable, "-m", "reproduce", "run", "--scale", "mini", "--regime", "dense"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and "REGIME='dense': choose from main, sparse" in out.stderr


def test_the_sparse_regime_starts_earlier_on_the_tasks_the_warm_start_fails():
    """Its own data, warm start and runs (a shorter warm-up on SynthCount and SynthChart),
    written beside the main results; the main regime's stages are untouched by it."""
    from reproduce.mini import REGIMES

    (main, main_runs, main_out), (sparse, runs, out) = REGIMES["main"], REGIMES["sparse"]
    assert sparse.tasks == ("SynthCount", "SynthChart") and sparse.warmup_steps < main.warmup_steps
    assert sparse.seeds == main.seeds and sparse.rl_steps == main.rl_steps
    assert (runs, out) == ("mini_sparse", "mini/sparse") and (main_runs, main_out) == ("mini", "mini")
    assert all(sparse.digest(stage) != main.digest(stage) for stage in ("data", "warm", "rl"))
