"""Alternating side-by-side runs of our trainer (GRPO, Share-GRPO) and TRL's GRPOTrainer on one
workload, each a fresh process, and their summaries: what the one-point benchmark (`__main__`)
and the grid (`grid.py`) both measure with."""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
from dataclasses import asdict
from pathlib import Path

from reproduce.children import child_env as _child_env
from reproduce.perf.workload import SPLIT, Workload, prepare

REPO = Path(__file__).resolve().parents[2]
RUNS = {  # name -> (module, mode)
    "ours_grpo": ("reproduce.perf.run_ours", "grpo"),
    "trl": ("reproduce.perf.run_trl", None),
    "ours_share_grpo": ("reproduce.perf.run_ours", "share_grpo"),
}

TARGETS = {  # ratio name -> (bound, "min" or "max", the response lengths it applies at; None: all)
    "tokens/s, ours GRPO / TRL": (1.5, "min", None),
    "peak RSS, ours GRPO / TRL": (1.0, "max", None),
    "peak GPU memory, ours GRPO / TRL": (1.0, "max", None),
    "step time, ours Share-GRPO / ours GRPO": (1.4, "max", {512, 1024}),
}
"""The side-by-side targets (issue #22), in one place for every report."""


def target_text(name: str) -> str:
    """'>= 1.5' or '<= 1.4' for a ratio with a target, '' for one without."""
    if name not in TARGETS:
        return ""
    bound, kind, _ = TARGETS[name]
    return f"{'>=' if kind == 'min' else '<='} {bound}"


def point_key(model: str, length: int, n: int) -> str:
    """A workload's folder and result key, e.g. tiny_L64_n4 (a hub id keeps its last part)."""
    return f"{model.split('/')[-1]}_L{length}_n{n}"


def child_env() -> dict[str, str]:
    """The environment of every benchmark child process: this checkout on the path, offline."""
    return _child_env(HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")


def run_once(name: str, python: str, work_dir: Path, timeout_s: float | None = None, extra: tuple[str, ...] = ()) -> dict:
    """One trainer's run (RUNS[name]). A run that fails or passes `timeout_s` returns what it wrote so
    far (each trainer writes its result after every step), marked `cut_short`, or {"error": ...} if
    it wrote nothing."""
    module, mode = RUNS[name]
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "result.json"
        cmd = [python, "-m", module, str(work_dir), "--out", str(out), *(["--mode", mode] if mode else []), *extra]
        # no MASTER_PORT: our trainer picks a free port of its own (train.launcher.free_port)
        env = {k: v for k, v in child_env().items() if k != "MASTER_PORT"}
        try:
            proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True,
                                  timeout=None if timeout_s is None else max(timeout_s, 1))
            error = None if proc.returncode == 0 else f"{' '.join(cmd)} failed:\n{proc.stderr[-3000:]}"
        except subprocess.TimeoutExpired:
            error = f"cut short at its {timeout_s:.0f} s share of the budget"
        result = json.loads(out.read_text()) if out.exists() else None
    if result is None:
        return {"error": error or "wrote no result"}
    return result | ({"cut_short": error} if error else {})


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


def pair_ratios(results: dict[str, list[dict]]) -> dict[str, dict]:
    """The side-by-side ratios of the trainers present, each taken within an alternation (run i of
    one trainer against run i of the other), as median, min and max over the alternations."""
    alt = range(min((len(rs) for rs in results.values()), default=0))
    ratios = {}
    if {"ours_grpo", "trl"} <= results.keys():
        ours, peer = results["ours_grpo"], results["trl"]
        ratios["tokens/s, ours GRPO / TRL"] = ratio([per_run(ours[i])[0] / per_run(peer[i])[0] for i in alt])
        ratios["step time, ours GRPO / TRL"] = ratio([per_run(ours[i])[1] / per_run(peer[i])[1] for i in alt])
        ratios["peak RSS, ours GRPO / TRL"] = ratio([ours[i]["peak_rss_mb"] / peer[i]["peak_rss_mb"] for i in alt])
        if all(r.get("peak_gpu_mb") for r in ours + peer):
            ratios["peak GPU memory, ours GRPO / TRL"] = ratio([ours[i]["peak_gpu_mb"] / peer[i]["peak_gpu_mb"] for i in alt])
    if {"ours_grpo", "ours_share_grpo"} <= results.keys():
        ratios["step time, ours Share-GRPO / ours GRPO"] = ratio(
            [per_run(results["ours_share_grpo"][i])[1] / per_run(results["ours_grpo"][i])[1] for i in alt])
    return ratios


def measure(w: Workload, work_dir: Path, alternations: int, peer_python: str, label: str = "") -> dict:
    """Alternate the trainers on one workload; summary, ratios (within alternations) and raw runs."""
    prepare(work_dir, w)
    names = [n for n in RUNS if n != "trl" or peer_python]
    results: dict[str, list[dict]] = {n: [] for n in names}
    for i in range(alternations):
        for name in names:
            python = peer_python if name == "trl" else sys.executable
            r = run_once(name, python, work_dir)
            if "error" in r or "cut_short" in r:
                raise SystemExit(f"{name} failed: {r.get('error') or r['cut_short']}")
            results[name].append(r)
            tps, step = per_run(r)
            print(f"{label}alternation {i + 1}/{alternations} {name:16s} step {step:.3f} s  {tps:,.0f} tok/s  "
                  f"peak RSS {r['peak_rss_mb']:,.0f} MB", flush=True)
    ratios = pair_ratios(results)
    return {"workload": asdict(w), "alternations": alternations,
            "trainers": {n: summarize(rs, w) for n, rs in results.items()}, "ratios": ratios, "raw": results}
