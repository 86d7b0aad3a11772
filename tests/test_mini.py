"""Smoke run of the CPU-scale reproduction (`make reproduce-table1`'s pipeline at tiny sizes):
every stage runs for real, every output file exists and is well formed, and a rerun reuses."""

import json

import pandas as pd
from PIL import Image

from reproduce.mini import SMOKE, TASKS, run_mini


def test_mini_pipeline_smoke(tmp_path, capsys):
    runs, out = tmp_path / "runs", tmp_path / "results"
    assert run_mini(spec=SMOKE, runs=runs, out=out) == 0
    table = pd.read_csv(out / "table1.csv")
    assert set(table["model"]) == {"Base (warm start)", "GRPO", "Share-GRPO"}
    assert set(table["column"]) == {*TASKS, "Average"}
    assert table["measured_mean"].between(0, 100).all()
    md = (out / "table1.md").read_text()
    assert "SCALE=mini" in md and "NOT the paper's" in md and "at equal wall-clock" in md
    with Image.open(out / "curves.png") as im:
        assert im.size[0] > 500 and im.size[1] > 400
    meta = json.loads((out / "run.json").read_text())
    assert meta["scale"] == "mini" and meta["versions"]["ms-vlmeval"] == "0.0.20" and meta["commit"]
    assert sorted(p.name for p in (out / "configs").iterdir()) == ["mini_base.yaml", "mini_grpo.yaml",
                                                                   "mini_sharegrpo.yaml"]
    for method in ("GRPO", "Share-GRPO"):
        rows = [json.loads(line) for line in (runs / "rl" / f"{method}-s1" / "metrics.jsonl").read_text().splitlines()]
        assert len(rows) == SMOKE.rl_steps
        assert rows[0]["train/rows_per_question"] == (8 if method == "GRPO" else 16)

    # a second run reuses every finished stage
    capsys.readouterr()
    assert run_mini(spec=SMOKE, runs=runs, out=out) == 0
    said = capsys.readouterr().out
    assert "data: reusing" in said and "warm start: reusing" in said and "RL: reusing" in said
    assert "evaluation: reusing" in said


def test_ablations_smoke(tmp_path):
    from dataclasses import replace

    from reproduce.ablations import run_ablations

    plan = tmp_path / "plan.yaml"
    plan.write_text(
        "steps: 2\nseed: 1\ntables:\n"
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
    rows = [json.loads(line) for line in
            (tmp_path / "runs" / "rl" / "abl-variants-Q-2-image-only" / "metrics.jsonl").read_text().splitlines()]
    assert rows[0]["train/rows_per_question"] == 2 * 2 * 2


def test_stage_digests_cover_only_their_inputs():
    from dataclasses import replace

    other_rl = replace(SMOKE, rl_steps=SMOKE.rl_steps + 5, seeds=(7,))
    assert other_rl.digest("data") == SMOKE.digest("data") and other_rl.digest("warm") == SMOKE.digest("warm")
    assert other_rl.digest("rl", "x") != SMOKE.digest("rl", "x")
    other_warm = replace(SMOKE, vision_steps=SMOKE.vision_steps + 1)
    assert other_warm.digest("data") == SMOKE.digest("data") and other_warm.digest("warm") != SMOKE.digest("warm")


def test_stage_digests_cover_the_data_generator(tmp_path, monkeypatch):
    import reproduce.mini as mini

    before = {stage: SMOKE.digest(stage) for stage in ("data", "warm", "rl", "eval")}
    changed = tmp_path / "data.py"
    changed.write_text(mini.DATA_GENERATOR.read_text() + "\n# a changed task\n")
    monkeypatch.setattr(mini, "DATA_GENERATOR", changed)
    assert all(SMOKE.digest(stage) != digest for stage, digest in before.items())
