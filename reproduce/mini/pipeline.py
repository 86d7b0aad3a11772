"""`run_mini`: the stages in order, for one regime (`reproduce run --scale mini`)."""

from __future__ import annotations

import time
from pathlib import Path

from .evaluation import EvalHead, stage_eval
from .report import write_results
from .spec import REPO, MiniSpec, method_runs
from .stages import (
    lock_runs,
    say,
    stage_data,
    stage_export,
    stage_fresh_benchmark,
    stage_rl,
    stage_warm_start,
)


def run_mini(force: bool = False, spec: MiniSpec | None = None, runs: Path | None = None,
             out: Path | None = None, bench_seed: int | None = None) -> int:
    """The whole miniature; with `bench_seed`, the same checkpoints are also scored on a fresh
    benchmark drawn with that seed, into `out/bench_seed_{N}/`."""
    spec = spec or MiniSpec()
    runs = runs or REPO / "runs" / "mini"
    out = out or REPO / "results" / "mini"
    lock = lock_runs(runs)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    say(f"SCALE=mini: a CPU miniature of Table 1 (not the paper's scale); work in {runs}")
    data = stage_data(spec, runs, force)
    base = stage_warm_start(spec, runs, data, force)
    early = [step for step in spec.curve_steps if step != spec.rl_steps]
    head = EvalHead(spec, runs, data, "eval", 1 + len(method_runs(spec)) * len(spec.curve_steps))
    exported: set[str] = set()
    rl = stage_rl(spec, runs, base, data, force, on_idle=lambda done: head.start(
        [base, *stage_export(runs, done, force, {name: early for name in done}, exported).values()]))
    models = [base, *stage_export(runs, rl, force, {name: early for name in rl}, exported).values()]
    targets = [(data, "eval", out)]
    if bench_seed is not None:
        fresh = stage_fresh_benchmark(spec, runs, data, bench_seed, force)
        targets.append((fresh, f"eval_bench_seed_{bench_seed}", out / f"bench_seed_{bench_seed}"))
    paths = []
    for bench, name, target in targets:
        work = stage_eval(spec, runs, bench, models, force, name=name, head=head if name == "eval" else None)
        target.mkdir(parents=True, exist_ok=True)
        paths += write_results(spec, runs, work, rl, target, time.time() - t0)
    say(f"done in {time.time() - t0:.0f} s. SCALE=mini outputs:")
    for p in paths:
        say(f"  {p}")
    for _, _, target in targets:
        print((target / "table1.md").read_text())
    lock.close()
    return 0
