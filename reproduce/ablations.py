"""`make reproduce-ablations`: the paper's ablation tables in miniature (reproduce/configs/ablations.yaml):
variant components and advantage terms, the number of variants at equal generated responses, and
dynamic sampling. Every row is run with each of the plan's seeds (at least 3: a row is only printed
with its standard error, items and seeds combined); rows with the same configuration share their
runs. Reuses the data and warm start of `make reproduce-table1` (building them if needed); writes
results/mini/ablations.md and .csv with the same caption rules."""

from __future__ import annotations

import re
import time
from dataclasses import replace
from pathlib import Path

import yaml

from .mini.evaluation import EvalHead, stage_eval
from .mini.spec import CONFIGS, REPO, MiniSpec, RLRun
from .mini.stages import lock_runs, say, stage_data, stage_export, stage_rl, stage_warm_start

MIN_SEEDS = 3


def slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", name).strip("-")


def run_ablations(force: bool = False, spec: MiniSpec | None = None, runs: Path | None = None,
                  out: Path | None = None, plan_file: Path = CONFIGS / "ablations.yaml") -> int:
    from reproduce.table1 import Row, render, write_outputs

    plan = yaml.safe_load(plan_file.read_text())
    seeds = tuple(plan["seeds"])
    if len(seeds) < MIN_SEEDS:
        raise ValueError(f"{plan_file}: seeds {list(seeds)}: at least {MIN_SEEDS}, so that every row has a standard "
                         "error over seeds")
    spec = spec or replace(MiniSpec(), rl_steps=plan["steps"], rl_save_freq=plan["steps"] // 2)
    spec = replace(spec, seeds=seeds)
    runs, out = runs or REPO / "runs" / "mini", out or REPO / "results" / "mini"
    lock = lock_runs(runs)  # noqa: F841 - held until the function returns
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    say("SCALE=mini ablations (CPU miniature, not the paper's scale)")
    data = stage_data(spec, runs, force)
    base = stage_warm_start(spec, runs, data, force)
    rl_plan, labels, runs_of = [], {}, {}
    for table, rows in plan["tables"].items():
        for row in rows:
            setting = (("mini_base.yaml", *row["configs"]), tuple(row.get("overrides", [])))
            if setting not in runs_of:  # the same configuration in two tables: one set of runs
                stem = f"abl-{slug(table)}-{slug(row['name'])}"
                runs_of[setting] = [f"{stem}-s{seed}" for seed in seeds]
                rl_plan += [RLRun(name, seed, *setting) for name, seed in zip(runs_of[setting], seeds, strict=True)]
            labels[(table, row["name"])] = runs_of[setting]
    head = EvalHead(spec, runs, data, "eval_ablations", len(rl_plan))
    exported: set[str] = set()
    rl = stage_rl(spec, runs, base, data, force, rl_plan,
                  on_idle=lambda done: head.start(list(stage_export(runs, done, force, fresh=exported).values())))
    models = stage_export(runs, rl, force, fresh=exported)
    work = stage_eval(spec, runs, data, list(models.values()), force, name="eval_ablations", head=head)
    from bench.score import checked_scores

    scores = {p.parent.name: checked_scores(p.parent)[0] for p in work.glob("*/r1_scores.json")}
    texts, csvs = [], []
    for table in plan["tables"]:
        rows = [Row(label, {t: [scores[name][t]["accuracy"] for name in names] for t in spec.tasks},
                    items=spec.bench_items) for (tab, label), names in labels.items() if tab == table]
        caption = (f"Ablation '{table}', SCALE=mini (CPU miniature, NOT the paper's scale): accuracy 0-100 on the "
                   f"held-out synthetic benchmarks, {spec.rl_steps} RL steps, seeds {list(seeds)}, same warm start, "
                   "data and learning rate for every row; mean ± standard error (the items and the seeds), so a "
                   "difference between two rows counts only beyond twice their combined error.")
        rendered = render(rows, list(spec.tasks), caption, with_paper=False)
        texts.append(rendered["md"])
        csvs.append(rendered["csv"] if not csvs else rendered["csv"].split("\n", 1)[1])
    paths = write_outputs({"md": "\n".join(texts), "csv": "".join(csvs)}, out / "ablations")
    say(f"ablations done in {time.time() - t0:.0f} s: " + ", ".join(map(str, paths)))
    return 0
