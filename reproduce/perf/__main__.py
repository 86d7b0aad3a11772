"""`python -m reproduce.perf`: our trainer and TRL's GRPOTrainer on the same workload, alternating.

Each alternation runs ours (GRPO), the peer (TRL), ours (Share-GRPO) in fresh processes, one after
another, so slow drift of the machine hits all of them alike; ratios are taken within an
alternation and reported as median [min, max] across alternations."""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
from dataclasses import asdict
from pathlib import Path

from bench.fileio import write_json_atomic, write_text_atomic
from reproduce.perf.workload import SPLIT, Workload, prepare

REPO = Path(__file__).resolve().parents[2]
RUNS = {  # name -> (module, mode)
    "ours_grpo": ("reproduce.perf.run_ours", "grpo"),
    "trl": ("reproduce.perf.run_trl", None),
    "ours_share_grpo": ("reproduce.perf.run_ours", "share_grpo"),
}


def run_once(name: str, python: str, work_dir: Path) -> dict:
    module, mode = RUNS[name]
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "result.json"
        cmd = [python, "-m", module, str(work_dir), "--out", str(out), *(["--mode", mode] if mode else [])]
        env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
               "MASTER_PORT": str(29300 + os.getpid() % 100)}
        proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
        if proc.returncode != 0:
            raise SystemExit(f"{name} failed ({' '.join(cmd)}):\n{proc.stderr[-3000:]}")
        return json.loads(out.read_text())


def summarize(runs: list[dict], w: Workload) -> dict:
    """Pooled over the measured steps of every run of one trainer."""
    steps = [t for r in runs for t in r["step_time"]]
    tokens = [t for r in runs for t in r["tokens"]]
    med = statistics.median(steps)
    split = {k: statistics.median([t for r in runs for t in r["split"][k]]) for k in SPLIT}
    return {
        "trainer": runs[0]["trainer"], "runs": len(runs), "steps": len(steps),
        "step_time_s": med, "tokens_per_step": statistics.median(tokens),
        "tokens_per_s": statistics.median(tokens) / med,
        "peak_rss_mb": max(r["peak_rss_mb"] for r in runs),
        "peak_gpu_mb": max((r.get("peak_gpu_mb") or 0.0) for r in runs) or None,
        "split_s": {**split, "other": med - sum(split.values())},
        # the verifier on this run's own responses (every completion graded each step)
        "grades_per_s": w.prompts * w.completions / split["reward"] if split["reward"] > 0 else float("inf"),
    }


def per_run(r: dict) -> tuple[float, float]:
    med = statistics.median(r["step_time"])
    return statistics.median(r["tokens"]) / med, med


def ratio(values: list[float]) -> dict:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def report(summary: dict, ratios: dict, w: Workload) -> str:
    lines = [
        f"Workload: tiny Qwen2.5-VL, {w.prompts} prompts x {w.completions} completions per step, exactly "
        f"{w.new_tokens} new tokens, temperature {w.temperature}, no KL, fp32, AdamW; {w.warmup_steps} warm-up + "
        f"{w.measured_steps} measured steps per run, {summary['alternations']} alternations.",
        "",
        "Time split in seconds per step (medians); update = training forward + backward + optimizer step.",
        "",
        "| trainer | step (s, median) | generated tok/s | peak RSS (MB) | generate | reward | log-prob | update | other |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for key in RUNS:
        if key not in summary["trainers"]:
            continue
        s = summary["trainers"][key]
        sp = s["split_s"]
        lines.append(f"| {s['trainer']} | {s['step_time_s']:.3f} | {s['tokens_per_s']:,.0f} | {s['peak_rss_mb']:,.0f} | "
                     + " | ".join(f"{sp[k]:.3f}" for k in (*SPLIT, "other")) + " |")
    gpu = {s["trainer"]: s["peak_gpu_mb"] for s in summary["trainers"].values() if s["peak_gpu_mb"]}
    if gpu:
        lines += ["", "Peak GPU memory (MB): " + ", ".join(f"{k} {v:,.0f}" for k, v in gpu.items())]
    grades = summary["trainers"]["ours_grpo"]["grades_per_s"]
    lines += ["", f"Verifier (`grade_many`) on the trainer's own responses: {grades:,.0f} grades/s (target 1,000).",
              "", "| ratio | median | min | max | target |", "|---|---|---|---|---|"]
    targets = {"tokens/s, ours GRPO / TRL": ">= 1.5", "peak RSS, ours GRPO / TRL": "<= 1.0",
               "step time, ours Share-GRPO / ours GRPO": "<= 1.3", "step time, ours GRPO / TRL": ""}
    for name, r in ratios.items():
        lines.append(f"| {name} | {r['median']:.2f} | {r['min']:.2f} | {r['max']:.2f} | {targets.get(name, '')} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m reproduce.perf", description=__doc__)
    parser.add_argument("--alternations", type=int, default=3)
    parser.add_argument("--steps", type=int, default=10, help="measured steps per run (after 2 warm-up steps)")
    parser.add_argument("--peer-python", default=str(REPO / ".venv-peer" / "bin" / "python"),
                        help="python of the environment with TRL (made by `make bench-perf`); '' skips the peer")
    parser.add_argument("--work-dir", type=Path, default=REPO / "runs" / "perf")
    parser.add_argument("--out", type=Path, default=REPO / "results" / "perf" / "cpu")
    args = parser.parse_args(argv)
    if args.alternations < 1 or args.steps < 1:
        parser.error("--alternations and --steps must be >= 1")
    w = Workload(measured_steps=args.steps)
    prepare(args.work_dir, w)
    names = [n for n in RUNS if n != "trl" or args.peer_python]
    results: dict[str, list[dict]] = {n: [] for n in names}
    for i in range(args.alternations):
        for name in names:
            python = args.peer_python if name == "trl" else sys.executable
            r = run_once(name, python, args.work_dir)
            results[name].append(r)
            tps, step = per_run(r)
            print(f"alternation {i + 1}/{args.alternations} {name:16s} step {step:.3f} s  {tps:,.0f} tok/s  "
                  f"peak RSS {r['peak_rss_mb']:,.0f} MB", flush=True)
    summary = {"workload": asdict(w), "alternations": args.alternations,
               "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
               "trainers": {n: summarize(rs, w) for n, rs in results.items()}}
    ratios = {}
    alt = range(args.alternations)
    if "trl" in results:
        ours, peer = results["ours_grpo"], results["trl"]
        ratios["tokens/s, ours GRPO / TRL"] = ratio([per_run(ours[i])[0] / per_run(peer[i])[0] for i in alt])
        ratios["step time, ours GRPO / TRL"] = ratio([per_run(ours[i])[1] / per_run(peer[i])[1] for i in alt])
        ratios["peak RSS, ours GRPO / TRL"] = ratio([ours[i]["peak_rss_mb"] / peer[i]["peak_rss_mb"] for i in alt])
    ratios["step time, ours Share-GRPO / ours GRPO"] = ratio(
        [per_run(results["ours_share_grpo"][i])[1] / per_run(results["ours_grpo"][i])[1] for i in alt])
    summary["ratios"] = ratios
    summary["raw"] = results
    text = report(summary, ratios, w)
    print("\n" + text)
    write_json_atomic(args.out.with_suffix(".json"), summary)
    write_text_atomic(args.out.with_suffix(".md"), f"Produced by `make bench-perf` (python -m reproduce.perf).\n\n{text}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
