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
        f"Workload: {w.model} Qwen2.5-VL (random weights), {w.prompts} prompts x {w.completions} completions per "
        f"step, exactly {w.new_tokens} new tokens, temperature {w.temperature}, no KL, {w.dtype}, AdamW; "
        f"{w.warmup_steps} warm-up + {w.measured_steps} measured steps per run, {summary['alternations']} alternations. "
        f"Machine: {summary['machine']['cpus']} CPUs"
        + (f", GPU {summary['machine']['gpu']}." if summary["machine"].get("gpu") else ", no GPU."),
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


def measure(w: Workload, work_dir: Path, alternations: int, peer_python: str, label: str = "") -> dict:
    """Alternate the trainers on one workload; summary, ratios (within alternations) and raw runs."""
    prepare(work_dir, w)
    names = [n for n in RUNS if n != "trl" or peer_python]
    results: dict[str, list[dict]] = {n: [] for n in names}
    for i in range(alternations):
        for name in names:
            python = peer_python if name == "trl" else sys.executable
            r = run_once(name, python, work_dir)
            results[name].append(r)
            tps, step = per_run(r)
            print(f"{label}alternation {i + 1}/{alternations} {name:16s} step {step:.3f} s  {tps:,.0f} tok/s  "
                  f"peak RSS {r['peak_rss_mb']:,.0f} MB", flush=True)
    ratios = {}
    alt = range(alternations)
    if "trl" in results:
        ours, peer = results["ours_grpo"], results["trl"]
        ratios["tokens/s, ours GRPO / TRL"] = ratio([per_run(ours[i])[0] / per_run(peer[i])[0] for i in alt])
        ratios["step time, ours GRPO / TRL"] = ratio([per_run(ours[i])[1] / per_run(peer[i])[1] for i in alt])
        ratios["peak RSS, ours GRPO / TRL"] = ratio([ours[i]["peak_rss_mb"] / peer[i]["peak_rss_mb"] for i in alt])
    ratios["step time, ours Share-GRPO / ours GRPO"] = ratio(
        [per_run(results["ours_share_grpo"][i])[1] / per_run(results["ours_grpo"][i])[1] for i in alt])
    return {"workload": asdict(w), "alternations": alternations,
            "trainers": {n: summarize(rs, w) for n, rs in results.items()}, "ratios": ratios, "raw": results}


def machine() -> dict:
    """The machine, named: CPUs, platform, python, and the GPU where there is one."""
    import torch

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(), "gpu": gpu}


def point_name(w: Workload) -> str:
    return f"{w.model.split('/')[-1]}_L{w.new_tokens}_n{w.completions}_{w.dtype}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m reproduce.perf", description=__doc__)
    parser.add_argument("--alternations", type=int, default=None, help="default: 3 for one point, 2 for --grid")
    parser.add_argument("--steps", type=int, default=None, help="measured steps per run (after the warm-up); "
                        "default: 10 for one point, 2 for --grid")
    parser.add_argument("--model", default="tiny", help="one point: tiny, small, or a published shape "
                        "(Qwen/Qwen2.5-VL-3B-Instruct, randomly initialised; for GPUs)")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    parser.add_argument("--new-tokens", type=int, default=64, help="one point: the length of every response")
    parser.add_argument("--completions", type=int, default=4, help="one point: responses per prompt (n)")
    parser.add_argument("--grid", action="store_true", help="the cost curves (results/perf/cpu_scaling.*)")
    parser.add_argument("--points", nargs="+", metavar="MODEL:LENGTH:N", help="with --grid: only these points")
    parser.add_argument("--peer-python", default=str(REPO / ".venv-peer" / "bin" / "python"),
                        help="python of the environment with TRL (made by `make bench-perf`); '' skips the peer")
    parser.add_argument("--work-dir", type=Path, default=REPO / "runs" / "perf")
    parser.add_argument("--out", type=Path, help="path without extension (default results/perf/cpu, or "
                        "results/perf/cpu_scaling with --grid)")
    args = parser.parse_args(argv)
    alternations = args.alternations or (2 if args.grid else 3)
    steps = args.steps or (2 if args.grid else 10)
    if alternations < 1 or steps < 1:
        parser.error("--alternations and --steps must be >= 1")
    if args.points and not args.grid:
        parser.error("--points needs --grid")
    if args.grid:
        from reproduce.perf.grid import run_grid

        try:
            points = grid_points(args.points)
        except ValueError as exc:
            parser.error(str(exc))
        return run_grid(points, alternations, steps, args.peer_python, args.work_dir,
                        args.out or REPO / "results" / "perf" / "cpu_scaling")
    out = args.out or REPO / "results" / "perf" / "cpu"
    if args.completions < 2 or args.completions % 2:
        parser.error("--completions must be even and >= 2 (Share-GRPO splits them over Q=2 variants)")
    w = Workload(model=args.model, dtype=args.dtype, new_tokens=args.new_tokens, completions=args.completions,
                 measured_steps=steps)
    summary = {**measure(w, args.work_dir / point_name(w), alternations, args.peer_python), "machine": machine()}
    text = report(summary, summary["ratios"], w)
    print("\n" + text)
    write_json_atomic(out.with_suffix(".json"), summary)
    write_text_atomic(out.with_suffix(".md"), f"Produced by `make bench-perf` (python -m reproduce.perf).\n\n{text}")
    return 0


def grid_points(specs: list[str] | None) -> list[tuple[str, int, int]]:
    from reproduce.perf.grid import GRID

    if not specs:
        return list(GRID)
    points = []
    for spec in specs:
        parts = spec.split(":")
        if len(parts) != 3 or not parts[1].isdigit() or not parts[2].isdigit():
            raise ValueError(f"--points {spec!r}: expected MODEL:LENGTH:N, e.g. tiny:64:4")
        n = int(parts[2])
        if n < 2 or n % 2:
            raise ValueError(f"--points {spec!r}: N must be even and >= 2 (Share-GRPO splits it over Q=2 variants)")
        points.append((parts[0], int(parts[1]), n))
    return points


if __name__ == "__main__":
    raise SystemExit(main())
