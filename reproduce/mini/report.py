"""results/mini/: the table with its caption and computed conclusion, the training and held-out
tables, the two plots, the configs and run.json (spec, figures, timings, peak memory, numeric
settings, versions, machine, commit)."""

from __future__ import annotations

import json
import shutil
import statistics
import subprocess
from dataclasses import asdict
from importlib.metadata import version
from pathlib import Path

from bench.fileio import write_json_atomic
from bench.provenance import weights_digest
from bench.score import checked_scores

from ..machine import describe
from ..numerics import recorded
from .analysis import (
    compare,
    learning_curves,
    load_metrics,
    method_of,
    power,
    rl_gain,
    speed_verdict,
    training_summary,
    verdict,
)
from .spec import CONFIGS, EQUAL_COST, METHODS, REPO, MiniSpec, step_name


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
            series = [np.array([r[key] for r in rows]) for name, rows in runs.items() if method_of(name) == method]
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
    """results/mini/: the table with its caption and computed conclusion, the training and held-out
    tables, the two plots, the configs and run.json."""
    from reproduce.table1 import render, write_outputs

    scores, rows = held_out_rows(spec, work)
    metrics = {name: load_metrics(path) for name, path in rl.items()}
    summary = training_summary(metrics)
    curves = learning_curves(spec, scores, metrics)
    cost = cost_fractions(spec, summary, curves)
    result = compare(rows, spec.tasks, spec.bench_items)
    result["power"] = power(result["equal_responses"]["se"], len(spec.seeds))
    rendered = render(list(rows.values()), list(spec.tasks), caption(spec, cost, result["power"]), with_paper=False)
    sentences = conclusion(spec, result, cost, curves)
    rendered["md"] += training_table(summary) + heldout_table(curves) + "\n**Conclusion.** " + " ".join(sentences) + "\n"
    paths = write_outputs(rendered, out / "table1")
    plot_curves(metrics, out / "curves.png")
    plot_heldout_curves(curves, out / "heldout_curves.png")
    (out / "configs").mkdir(exist_ok=True)
    for name in ("mini_base.yaml", *METHODS.values()):
        shutil.copy(CONFIGS / name, out / "configs" / name)
    meta = {"scale": "mini", "spec": asdict(spec), "elapsed_s": elapsed, "peak_rss_mb": peak_rss(), "training": summary,
            "held_out": result, "share_step_time_ratio": cost["step_time_ratio"],
            "equal_time_fraction": cost["time"], "equal_cost_fraction": cost["tokens"], "learning_curves": curves,
            "conclusion": sentences, "warm_start": warm_start_record(runs), "numerics": recorded(),
            "versions": {p: version(p) for p in ("torch", "transformers", "deepspeed", "ms-vlmeval", "math-verify")},
            "machine": describe(), "commit": _commit()}
    write_json_atomic(out / "run.json", meta)
    return [*paths, out / "curves.png", out / "heldout_curves.png", out / "run.json"]


def held_out_rows(spec: MiniSpec, work: Path) -> tuple[dict, dict]:
    """Every evaluated model's checked scores, and the table's rows: Base, each method over its
    seeds, and Share-GRPO's equal-cost checkpoint."""
    from reproduce.table1 import Row

    scores = {p.parent.name: checked_scores(p.parent)[0] for p in work.glob("*/r1_scores.json")}
    names = {"Base (warm start)": ["Base"], **{m: [f"{m}-s{s}" for s in spec.seeds] for m in METHODS},
             EQUAL_COST: [step_name(f"Share-GRPO-s{s}", spec.rl_steps // 2) for s in spec.seeds]}
    rows = {label: Row(label, {t: [scores[n][t]["accuracy"] for n in ns] for t in spec.tasks}, items=spec.bench_items)
            for label, ns in names.items()}
    return scores, rows


def cost_fractions(spec: MiniSpec, summary: dict, curves: dict) -> dict[str, float]:
    """What Share-GRPO's half-way checkpoint cost against GRPO's last: its share of the tokens
    (`tokens`: generated + trained, mean over seeds) and of the wall-clock (`time`), from the ratio
    of their seconds per step (`step_time_ratio`)."""
    ratio = statistics.fmean(summary["Share-GRPO"]["seconds_per_step"]) / statistics.fmean(
        summary["GRPO"]["seconds_per_step"])
    half = spec.rl_steps // 2

    def cost_at(method: str, step: int) -> float:  # mean over seeds of the tokens spent up to `step`
        return statistics.fmean(seed[curves["steps"].index(step)] for seed in curves[method]["cost"])

    return {"step_time_ratio": ratio, "time": ratio * half / spec.rl_steps,
            "tokens": cost_at("Share-GRPO", half) / cost_at("GRPO", spec.rl_steps)}


def caption(spec: MiniSpec, cost: dict[str, float], pw: dict) -> str:
    base_cfg = (CONFIGS / "mini_base.yaml").read_text()
    lr = next(line.split(":")[1].strip() for line in base_cfg.splitlines() if line.strip().startswith("lr:"))
    return (f"SCALE=mini (CPU miniature, NOT the paper's benchmarks or scale). Accuracy 0-100 on held-out synthetic "
            f"benchmarks ({spec.bench_items} items each), mean ± standard error (items and seeds "
            f"{list(spec.seeds)}); {spec.rl_steps} RL steps from one warm start, 8 questions per step and 8 "
            f"generated responses per question for both methods (GRPO n = 8; Share-GRPO Q = 2 x n = 4); one "
            f"learning rate for both, lr = {lr}, chosen on a GRPO-only pilot; '{EQUAL_COST}' is Share-GRPO's "
            f"checkpoint at step {spec.rl_steps // 2}, the comparison at about equal cost: it had {cost['tokens']:.2f}x GRPO's "
            f"generated + trained tokens (and {cost['time']:.2f}x its wall-clock on this machine). With "
            f"{len(spec.seeds)} seed{'s' * (len(spec.seeds) != 1)} a difference between two methods' averages shows at 2 SE only above "
            f"{pw['detectable']:.1f} points. Greedy decoding through VLMEvalKit, scored by bench.score.")


def conclusion(spec: MiniSpec, result: dict, cost: dict[str, float], curves: dict) -> list[str]:
    """The closing sentences, each computed from the numbers with the 2-SE rule: RL's gain, the
    two comparisons, the design's power and the learning speed."""
    g, e, c, pw = result["grpo_vs_base"], result["equal_responses"], result["equal_cost"], result["power"]
    a = curves["auc_diff"]
    seeds = f"{len(spec.seeds)} seed{'s' * (len(spec.seeds) != 1)}"
    return [
        rl_gain(g["diff"], g["se"], result["grpo_runs_above_base"], len(spec.seeds)),
        f"At equal generated responses per question, {verdict('Share-GRPO', 'GRPO', e['diff'], e['se'])}.",
        f"At about equal cost ({cost['tokens']:.2f}x GRPO's tokens), {verdict(EQUAL_COST, 'GRPO', c['diff'], c['se'])}.",
        f"Power: with {seeds} and {spec.bench_items} items per task "
        f"this design shows a difference "
        f"of {pw['detectable']:.1f} points at 2 SE (a true gap of {pw['detected_80pct']:.1f} is found 80% of the "
        f"time); showing a {pw['gap']:.0f}-point gap at 2 SE takes {pw['seeds_to_show_gap']} seeds per method "
        f"({pw['seeds_to_detect_gap_80pct']} to find it 80% of the time): make reproduce-table1 SEEDS=N.",
        f"Learning speed (area under the held-out curve over {spec.rl_steps} steps, the mean held-out "
        f"accuracy over training): Share-GRPO {statistics.fmean(curves['Share-GRPO']['auc']):.1f} ± "
        f"{curves['Share-GRPO']['auc_se']:.1f}, GRPO {statistics.fmean(curves['GRPO']['auc']):.1f} ± "
        f"{curves['GRPO']['auc_se']:.1f}; {speed_verdict(a['diff'], a['se'])} "
        f"({a['diff']:+.1f} ± {a['se']:.1f} points).",
    ]


def training_table(summary: dict) -> str:
    """The training statistics of both methods (sampled rollouts, mean over seeds), as markdown."""
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
    return "".join(lines)


def heldout_table(curves: dict) -> str:
    """Held-out accuracy of both methods at the same steps, with the area under each curve, as markdown."""
    lines = ["\n**Held-out accuracy at the same steps** (average over tasks, mean over seeds; step 0 is the warm "
             "start; `heldout_curves.png` plots it against steps and against cost).\n\n"
             "| method | " + " | ".join(f"step {x}" for x in curves["steps"]) + " | area under the curve |\n"
             + "|---" * (len(curves["steps"]) + 2) + "|\n"]
    for method in METHODS:
        c = curves[method]
        cells = [f"{statistics.fmean(col):.1f}" for col in zip(*c["accuracy"], strict=True)]
        lines.append(f"| {method} | " + " | ".join(cells) + f" | {statistics.fmean(c['auc']):.1f} ± {c['auc_se']:.1f} |\n")
    return "".join(lines)


def peak_rss() -> dict[str, float]:
    """Peak resident memory in MB: this process's, and its largest finished child's."""
    import resource

    return {"this_process": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "largest_child_process": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024}


def warm_start_record(runs: Path) -> dict:
    """The warm start's done.json with the sha256 of its weights."""
    return {**json.loads((runs / "models" / "Base" / "done.json").read_text()),
            "weights_sha256": weights_digest(runs / "models" / "Base")}


def _commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=REPO,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
