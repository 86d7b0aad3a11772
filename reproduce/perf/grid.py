"""Cost curves: `python -m reproduce.perf --grid` measures our trainer (GRPO and Share-GRPO) and
TRL's GRPOTrainer side by side at each point of a grid of response length x group size x model,
alternating fresh processes at every point as the single-point benchmark does, and writes
results/perf/cpu_scaling.{md,json,png}.

Two prompts per step at every point; Share-GRPO uses Q=2 variants x n/2 responses, so all three
trainers generate and train on the same number of responses. Points too costly for the 2-core
budget (about 30 minutes for the whole grid) are left out and listed in the report, never
alternations.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

from bench.fileio import write_json_atomic, write_text_atomic
from reproduce.machine import describe
from reproduce.perf.compare import TARGETS, measure, point_key
from reproduce.perf.workload import SPLIT, Workload

GRID: tuple[tuple[str, int, int], ...] = (
    # (model, response length, n)
    ("tiny", 64, 4), ("tiny", 64, 16), ("tiny", 256, 4), ("tiny", 256, 16), ("tiny", 1024, 4), ("tiny", 1024, 16),
    ("small", 64, 4), ("small", 64, 16), ("small", 256, 4), ("small", 256, 16),
)
LEFT_OUT = {
    ("small", 1024, 4): "about 20 s a step for each trainer; with the other points it would take the grid past 30 minutes",
    ("small", 1024, 16): "about 80 s a step and over 8 GB for the whole batch in one micro-batch (see the memory limits)",
}
TRAINER_NAMES = {"ours_grpo": "ours GRPO", "trl": "TRL GRPOTrainer", "ours_share_grpo": "ours Share-GRPO"}


def verdicts(point: dict) -> dict[str, str]:
    """Each target that applies at this point: "met" or "missed" (by the median over alternations)."""
    out = {}
    for name, (bound, kind, lengths) in TARGETS.items():
        r = point["ratios"].get(name)
        if r is None or (lengths and point["workload"]["new_tokens"] not in lengths):
            continue
        ok = r["median"] >= bound if kind == "min" else r["median"] <= bound
        out[name] = "met" if ok else "missed"
    return out


def report(points: dict[str, dict], alternations: int, steps: int) -> str:
    lines = [
        "Produced by `python -m reproduce.perf --grid` (our trainer and TRL's GRPOTrainer, alternating fresh "
        f"processes at every point: {alternations} alternations, 1 warm-up + {steps} measured steps per run).",
        "",
        "Workload at every point: 2 prompts per step, n responses per prompt of exactly the given length, "
        "temperature 1.0, no KL, fp32, fused AdamW (TRL's default optimizer; ours too), the whole batch in one micro-batch, no gradient checkpointing. "
        "Models: `tiny` (the test model, 0.2M parameters) and `small` (a Qwen2.5-VL config of 29M "
        "parameters), both built offline by `train.tiny`. Times are medians in seconds per step; "
        "update = training forward + backward + optimizer step.",
        "",
        "| model | length | n | trainer | step (s) | generated tok/s | peak RSS (MB) | generate | reward | log-prob "
        "| update | other |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for p in points.values():
        w = p["workload"]
        for name, s in p["trainers"].items():
            sp = s["split_s"]
            lines.append(f"| {w['model']} | {w['new_tokens']} | {w['completions']} | {TRAINER_NAMES[name]} | "
                         f"{s['step_time_s']:.3f} | {s['tokens_per_s']:,.0f} | {s['peak_rss_mb']:,.0f} | "
                         + " | ".join(f"{sp[k]:.3f}" for k in (*SPLIT, "other")) + " |")
    names = list(TARGETS) + ["step time, ours GRPO / TRL"]
    lines += ["", "Ratios, median [min, max] over alternations; targets: tokens/s >= 1.5x TRL, peak RSS <= TRL, "
              "Share-GRPO step <= 1.4x our GRPO step at 1,024 tokens.", "",
              "| model | length | n | " + " | ".join(names) + " |", "|---|---|---|" + "---|" * len(names)]
    missed = []
    for p in points.values():
        w, v = p["workload"], verdicts(p)
        cells = []
        for name in names:
            r = p["ratios"].get(name)
            cell = "-" if r is None else f"{r['median']:.2f} [{r['min']:.2f}, {r['max']:.2f}]"
            if name in v:
                cell += f" {v[name]}"
                if v[name] == "missed":
                    missed.append(f"{name} at {w['model']} L={w['new_tokens']} n={w['completions']}")
            cells.append(cell)
        lines.append(f"| {w['model']} | {w['new_tokens']} | {w['completions']} | " + " | ".join(cells) + " |")
    lines += ["", "Targets missed: " + ("; ".join(missed) if missed else "none") + "."]
    if LEFT_OUT:
        lines += ["", "Points left out:"] + [f"- {m} L={length} n={n}: {why}" for (m, length, n), why in LEFT_OUT.items()]
    return "\n".join(lines) + "\n"


def plot(points: dict[str, dict], path: Path) -> Path:
    """Step time and peak RSS against response length, one line per trainer (and n), per model."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = sorted({p["workload"]["model"] for p in points.values()}, key=["tiny", "small"].index)
    fig, axes = plt.subplots(len(models), 2, figsize=(11, 4 * len(models)), squeeze=False)
    colors = {"ours_grpo": "tab:blue", "trl": "tab:red", "ours_share_grpo": "tab:green"}
    for row, model in enumerate(models):
        for n, style in ((4, "-"), (16, "--")):
            pts = sorted((p for p in points.values() if p["workload"]["model"] == model
                          and p["workload"]["completions"] == n), key=lambda p: p["workload"]["new_tokens"])
            if not pts:
                continue
            for name in pts[0]["trainers"]:
                lengths = [p["workload"]["new_tokens"] for p in pts]
                for col, field in enumerate(("step_time_s", "peak_rss_mb")):
                    axes[row][col].plot(lengths, [p["trainers"][name][field] for p in pts], style, marker="o",
                                        color=colors[name], label=f"{TRAINER_NAMES[name]}, n={n}")
        for col, ylabel in enumerate(("step time (s)", "peak RSS (MB)")):
            ax = axes[row][col]
            ax.set_xscale("log", base=2)
            ax.set_xlabel("response length (tokens)")
            ax.set_ylabel(ylabel)
            ax.set_title(f"{model} model: {ylabel.split(' (')[0]}")
            ax.grid(alpha=0.3)
        axes[row][0].set_yscale("log")
        axes[row][0].legend(fontsize=8)
    fig.tight_layout()
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(path)
    return path


def run_grid(points: list[tuple[str, int, int]], alternations: int, steps: int, peer_python: str,
             work_dir: Path, out: Path) -> int:
    done: dict[str, dict] = {}
    partial = out.with_suffix(".partial.json")  # a stopped grid resumes from here
    if partial.exists():
        done = json.loads(partial.read_text())
    for i, (model, length, n) in enumerate(points):
        key = point_key(model, length, n)
        w = Workload(model=model, completions=n, new_tokens=length, warmup_steps=1, measured_steps=steps)
        if key in done and done[key]["workload"] == asdict(w) \
                and done[key]["alternations"] == alternations and (("trl" in done[key]["trainers"]) == bool(peer_python)):
            continue
        done[key] = measure(w, work_dir / key, alternations, peer_python, label=f"[{i + 1}/{len(points)} {key}] ")
        write_json_atomic(partial, done)
    done = {point_key(*pt): done[point_key(*pt)] for pt in points}
    text = report(done, alternations, steps)
    print("\n" + text)
    write_json_atomic(out.with_suffix(".json"), {"machine": describe(), "points": done, "left_out": {
        point_key(*k): why for k, why in LEFT_OUT.items()}})
    write_text_atomic(out.with_suffix(".md"), text)
    plot(done, out.with_suffix(".png"))
    partial.unlink()
    return 0
