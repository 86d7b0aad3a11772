"""`python -m reproduce {table1,submit,run,ablations,pool} ...`: the paper's Table 1, the leaderboard
submission, the pipelines that make them, and the miniature's conclusions pooled over runs."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from bench.errors import json_argument


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m reproduce")
    commands = parser.add_subparsers(dest="command", required=True)
    t = commands.add_parser("table1", help="Table 1 from scored VLMEvalKit work dirs")
    t.add_argument("--work-dir", type=Path, nargs="+", required=True)
    t.add_argument("--out", type=Path, default=Path("results/paper_scale/table1"), help="path without extension")
    t.add_argument("--allow-partial", action="store_true")
    t.add_argument("--allow-unverified", action="store_true",
                   help="use scores of predictions bench.run did not record (their rows are labelled unverified)")
    t.add_argument("--columns", nargs="+", help="dataset names as columns instead of the paper's six (no paper values)")
    s = commands.add_parser("submit", help="the OpenVLM leaderboard record and the supported_VLM entry")
    s.add_argument("--work-dir", type=Path, required=True)
    s.add_argument("--model", required=True)
    s.add_argument("--out", required=True, help="path without extension, or a folder (then named after --model)")
    s.add_argument("--meta", type=json_argument, default=None, help='JSON object of META fields, e.g. \'{"Parameters": "8.3B"}\'')
    s.add_argument("--model-path", help="hub id of the evaluated weights (default: what bench.run loaded)")
    s.add_argument("--mmbench-scores", type=json_argument, default=None,
                   help='the official MMBench server\'s per-category result file of each split, e.g. '
                        '\'{"MMBench_TEST_EN_V11": "en.xlsx", "MMBench_TEST_CN_V11": "cn.xlsx"}\' (the record needs them)')
    r = commands.add_parser("run", help="the whole Table 1 pipeline at a scale (what make reproduce-table1 runs)")
    r.add_argument("--scale", required=True, help="mini (CPU, default of make) or paper (GPU)")
    r.add_argument("--ckpt", nargs="*", default=[], help="SCALE=paper: trained checkpoints to add as rows")
    r.add_argument("--judge", help="SCALE=paper: a judge model for VLMEvalKit's own scores")
    r.add_argument("--benchmarks", default="all", help="SCALE=paper: table1, openvlm, reasoning or all (default)")
    r.add_argument("--work-dir", type=Path, default=Path("runs/paper_eval"))
    r.add_argument("--out", type=Path, default=Path("results/paper_scale/table1"))
    r.add_argument("--force", action="store_true", help="redo finished stages (mini)")
    r.add_argument("--regime", default="main", help="SCALE=mini: main, or sparse (RL from an earlier warm start on "
                   "the tasks it fails; results/mini/sparse/)")
    r.add_argument("--curves", action="store_true", help="SCALE=mini: evaluate both methods at steps 50, 100, 150 "
                   "and 300 (default 150 and 300)")
    r.add_argument("--seeds", type=int, help="SCALE=mini: RL seeds per method (default 3): more power, and about 4 minutes "
                   "more per seed on 2 cores")
    r.add_argument("--bench-seed", type=int, help="SCALE=mini: also score the checkpoints on a fresh benchmark "
                   "drawn with this seed (no training image in it), into results/mini/bench_seed_N/")
    a = commands.add_parser("ablations", help="the paper's ablation tables at the CPU scale")
    a.add_argument("--force", action="store_true")
    o = commands.add_parser("pool", help="SCALE=mini: each run's verdicts, whether they agree, and the estimates "
                            "pooled over independent runs (other numerics or machines)")
    o.add_argument("folders", type=Path, nargs="+", help="results folders of make reproduce-table1 (each with run.json)")
    o.add_argument("--out", type=Path, help="also write the markdown here")
    args = parser.parse_args(argv)
    if args.command == "ablations" or (args.command == "run" and args.scale == "mini"):
        from .numerics import pin

        pin(sys.argv[1:] if argv is None else argv)  # one instruction set and thread layout (reproduce/numerics.py)
    if args.command in ("run", "ablations"):
        from .children import end_children_on_exit

        end_children_on_exit()
    from bench.errors import exit_on_usage_error

    if args.command == "run":
        return exit_on_usage_error(lambda: run_scale(args))
    if args.command == "pool":
        from .mini.pooled import main as pool

        return exit_on_usage_error(lambda: pool(args.folders, args.out))
    if args.command == "ablations":
        from .ablations import run_ablations

        return exit_on_usage_error(lambda: run_ablations(force=args.force))
    return exit_on_usage_error(lambda: tables(args))


def tables(args) -> int:
    """`table1` and `submit`: their errors name the file; an unwritable --out is an OS error."""
    from .submit import SubmissionError, submit
    from .table1 import TableError, build_dataset_table, build_paper_table1

    try:
        if args.command == "table1":
            if args.columns:
                paths = build_dataset_table(args.work_dir, args.out, args.columns, args.allow_partial,
                                            allow_unverified=args.allow_unverified)
            else:
                paths = build_paper_table1(args.work_dir, args.out, args.allow_partial, args.allow_unverified)
            print(paths[0].read_text())
        else:
            paths = submit(args.work_dir, args.model, args.out, args.meta, args.model_path, args.mmbench_scores)
    except (TableError, SubmissionError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for p in paths:
        print(f"wrote {p}")
    return 0


SCALES = ("mini", "paper")


def run_scale(args) -> int:
    if args.scale not in SCALES:
        print(f"error: SCALE={args.scale!r} is not a scale; valid: {', '.join(SCALES)}", file=sys.stderr)
        return 2
    if args.scale == "paper":
        from .paper_scale import run_paper_scale

        return run_paper_scale(args.ckpt, args.judge, args.work_dir, args.out, args.benchmarks)
    from dataclasses import replace

    from .mini import FULL_CURVE, REGIMES, run_mini
    from .mini.spec import REPO

    if args.seeds is not None and args.seeds < 1:
        print(f"error: SEEDS={args.seeds}: must be >= 1", file=sys.stderr)
        return 2
    if args.regime not in REGIMES:
        print(f"error: REGIME={args.regime!r}: choose from {', '.join(REGIMES)}", file=sys.stderr)
        return 2
    spec, runs, out = REGIMES[args.regime]
    if args.seeds:
        spec = replace(spec, seeds=tuple(range(1, args.seeds + 1)))
    if args.curves:
        spec = replace(spec, curve_steps=FULL_CURVE)
    return run_mini(force=args.force, spec=spec, runs=REPO / "runs" / runs, out=REPO / "results" / out,
                    bench_seed=args.bench_seed)


if __name__ == "__main__":
    sys.exit(main())
