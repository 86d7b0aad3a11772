"""`make reproduce-ablations`: the paper's ablation tables in miniature (reproduce/configs/ablations.yaml):
variant components and advantage terms, the number of variants at equal generated responses, and
dynamic sampling. Reuses the data and warm start of `make reproduce-table1` (building them if
needed); writes results/mini/ablations.md and .csv with the same caption rules."""

from __future__ import annotations

import re
import time
from dataclasses import replace
from pathlib import Path

import yaml

from .mini import (
    CONFIGS,
    REPO,
    MiniSpec,
    RLRun,
    lock_runs,
    say,
    stage_data,
    stage_eval,
    stage_export,
    stage_rl,
    stage_warm_start,
)


def slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", name).strip("-")


def run_ablations(force: bool = False, spec: MiniSpec | None = None, runs: Path | None = None,
                  out: Path | None = None, plan_file: Path = CONFIGS / "ablations.yaml") -> int:
    from reproduce.table1 import Row, render, write_outputs

    plan = yaml.safe_load(plan_file.read_text())
    spec = spec or replace(MiniSpec(), rl_steps=plan["steps"], seeds=(plan["seed"],), rl_save_freq=plan["steps"] // 2)
    runs, out = runs or REPO / "runs" / "mini", out or REPO / "results" / "mini"
    lock = lock_runs(runs)  # noqa: F841 - held until the function returns
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    say("SCALE=mini ablations (CPU miniature, not the paper's scale)")
    data = stage_data(spec, runs, force)
    base = stage_warm_start(spec, runs, data, force)
    rl_plan, labels = [], {}
    for table, rows in plan["tables"].items():
        for row in rows:
            name = f"abl-{slug(table)}-{slug(row['name'])}"
            labels[name] = (table, row["name"])
            rl_plan.append(RLRun(name, spec.seeds[0], ("mini_base.yaml", *row["configs"]), tuple(row.get("overrides", []))))
    rl = stage_rl(spec, runs, base, data, force, rl_plan)
    models = stage_export(runs, rl, force)
    work = stage_eval(spec, runs, data, list(models.values()), force, name="eval_ablations")
    import json

    scores = {p.parent.name: json.loads(p.read_text())["datasets"] for p in work.glob("*/r1_scores.json")}
    texts, csvs = [], []
    for table in plan["tables"]:
        rows = [Row(label, {t: [scores[name][t]["accuracy"]] for t in spec.tasks}, items=spec.bench_items)
                for name, (tab, label) in labels.items() if tab == table]
        caption = (f"Ablation '{table}', SCALE=mini (CPU miniature, NOT the paper's scale): accuracy 0-100 on the "
                   f"held-out synthetic benchmarks, {spec.rl_steps} RL steps, seed {spec.seeds[0]}, same warm start, "
                   "data and learning rate for every row; one seed; ± is the standard error over the items, so "
                   "differences under about three of them are noise.")
        rendered = render(rows, list(spec.tasks), caption, with_paper=False)
        texts.append(rendered["md"])
        csvs.append(rendered["csv"] if not csvs else rendered["csv"].split("\n", 1)[1])
    paths = write_outputs({"md": "\n".join(texts), "csv": "".join(csvs)}, out / "ablations")
    say(f"ablations done in {time.time() - t0:.0f} s: " + ", ".join(map(str, paths)))
    return 0
