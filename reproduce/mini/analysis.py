"""The numbers behind the table's sentences: training statistics from the trainers' metrics, the
held-out comparisons with their standard errors, the design's power, the learning curves and
their areas, and the verdicts, each by the 2-SE rule (a difference counts when it exceeds twice
its standard error). Pure functions of the scores and metrics."""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path

from .spec import EQUAL_COST, METHODS, MiniSpec, step_name


# ---------------------------------------------------------------- results
def load_metrics(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line]


def method_of(name: str) -> str:
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
        for k in (k for k in runs if method_of(k) == method):
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


def two_se_rule(diff: float, se: float, above: str, below: str, within: str) -> str:
    """The 2-SE rule of every verdict of the miniature: `above` when the difference exceeds twice its
    standard error, `below` when it is under minus twice, `within` otherwise (a NaN falls within)."""
    return above if diff > 2 * se else below if diff < -2 * se else within


def verdict(a: str, b: str, diff: float, se: float) -> str:
    """One plain sentence from a difference of averages (a - b) and its standard error."""
    return two_se_rule(diff, se, f"{a} is ahead of {b} by {abs(diff):.1f} ± {se:.1f} points",
                       f"{b} is ahead of {a} by {abs(diff):.1f} ± {se:.1f} points",
                       f"no difference between {a} and {b} is detectable at this size ({diff:+.1f} ± {se:.1f} points)")


def rl_gain(diff: float, se: float, above: int, seeds: int) -> str:
    """The sentence on RL's gain over the warm start (GRPO - Base, with its standard error), by the
    2-SE rule of every other verdict: no gain is claimed unless the difference exceeds 2 SE."""
    runs = f"{above} of {seeds} seed{'s' * (seeds != 1)} above it"
    return two_se_rule(
        diff, se,
        f"RL learns: GRPO is {diff:+.1f} ± {se:.1f} points above the warm start on average ({runs}).",
        f"RL loses ground: GRPO is {diff:+.1f} ± {se:.1f} points below the warm start on average ({runs}).",
        f"RL: no gain over the warm start is detectable at this size (GRPO {diff:+.1f} ± {se:.1f} points; {runs}).")


def speed_verdict(diff: float, se: float) -> str:
    """Which method learns faster, from the difference of the areas under the held-out curves
    (Share-GRPO - GRPO) and its standard error, by the 2-SE rule."""
    return two_se_rule(diff, se, "Share-GRPO learns faster", "GRPO learns faster", "neither learns detectably faster")


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
