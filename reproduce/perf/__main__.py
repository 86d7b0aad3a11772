"""`python -m reproduce.perf`: our trainer and TRL's GRPOTrainer on the same workload, alternating.

Each alternation runs ours (GRPO), the peer (TRL), ours (Share-GRPO) in fresh processes, one after
another, so slow drift of the machine hits all of them alike; ratios are taken within an
alternation and reported as median [min, max] across alternations."""

from __future__ import annotations

import argparse
from pathlib import Path

from bench.fileio import write_json_atomic, write_text_atomic
from reproduce.machine import describe
from reproduce.perf.compare import REPO, RUNS, measure, point_key, target_text
from reproduce.perf.workload import SPLIT, Workload


def report(summary: dict, ratios: dict, w: Workload) -> str:
    lines = [
        f"Workload: {w.model} Qwen2.5-VL (random weights), {w.prompts} prompts x {w.completions} completions per "
        f"step, exactly {w.new_tokens} new tokens, temperature {w.temperature}, no KL, {w.dtype}, fused AdamW; "
        f"{w.warmup_steps} warm-up + {w.measured_steps} measured steps per run, {summary['alternations']} alternations. "
        f"Machine: {summary['machine']['cores']} cores ({summary['machine']['cpu']})"
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
    for name, r in ratios.items():
        lines.append(f"| {name} | {r['median']:.2f} | {r['min']:.2f} | {r['max']:.2f} | {target_text(name)} |")
    return "\n".join(lines) + "\n"


def check_group_size(n: int, what: str) -> None:
    if n < 2 or n % 2:
        raise ValueError(f"{what}: must be even and >= 2 (Share-GRPO splits the responses over Q=2 variants)")


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
    parser.add_argument("--prompts", type=int, default=2, help="one point: questions per step")
    parser.add_argument("--micro-batch", type=int, help="one point: rows per forward/backward of the update in "
                        "both trainers (default: ours 64, TRL all rows at once)")
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
    try:
        check_group_size(args.completions, "--completions")
    except ValueError as exc:
        parser.error(str(exc))
    rows = args.prompts * args.completions
    if args.prompts < 1 or (args.micro_batch is not None and (args.micro_batch < 1 or rows % args.micro_batch)):
        parser.error(f"--prompts must be >= 1 and --micro-batch must divide the {rows} rows of a step")
    w = Workload(model=args.model, dtype=args.dtype, new_tokens=args.new_tokens, completions=args.completions,
                 prompts=args.prompts, micro_batch=args.micro_batch, measured_steps=steps)
    summary = {**measure(w, args.work_dir / f"{point_key(w.model, w.new_tokens, w.completions)}_{w.dtype}", alternations, args.peer_python), "machine": describe()}
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
        check_group_size(int(parts[2]), f"--points {spec!r}: N")
        points.append((parts[0], int(parts[1]), int(parts[2])))
    return points


if __name__ == "__main__":
    from bench.errors import exit_on_usage_error

    raise SystemExit(exit_on_usage_error(main))
