"""`make smoke-paper`: the paper-scale evaluation path once, small enough for one GPU call.

    python -m reproduce.paper_smoke --out DIR [--shape HUB_ID | tiny] [--items 2] [--max-new-tokens 64]

1. Fixtures: `--items` rows of each Table 1 benchmark in VLMEvalKit's TSV layout
   (`reproduce.paper_fixtures`), as `DIR/LMUData/{dataset}.tsv`.
2. A checkpoint: a randomly initialised model of a published shape (default
   Qwen/Qwen2.5-VL-3B-Instruct, built on the GPU in bf16 as `reproduce.perf` builds it), standing
   in for weights that cannot be downloaded there; `--shape tiny` is the tiny model, for a CPU.
3. The commands `make reproduce-table1 SCALE=paper CKPT=DIR/model BENCHMARKS=table1` runs
   (`paper_scale.evaluation_steps`: `bench.run` under torchrun on every GPU, `bench.score`,
   `reproduce table1`), with three differences: the paper's two checkpoints are left out (they
   cannot be downloaded there), `--max-new-tokens` bounds each response, and `--trust-local-tsv`
   lets VLMEvalKit take the fixtures, whose md5 is not its own.
4. `DIR/smoke.json` and `DIR/smoke.md`, rewritten after every step: each step's exit status,
   seconds and last lines of output (what broke); generation items/s and tokens/s, counted
   inside the model's `generate_inner` (loading excluded); the peak GPU memory; and what a full
   SCALE=paper run would take at that rate (`full_run_cost`).

A random model never stops early, so every response runs to --max-new-tokens: tokens/s is the
decode rate at VLMEvalKit's batch of one. Exit status: 0 when every step passed.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from bench.errors import UsageError, exit_on_usage_error
from bench.fileio import regular_file, write_json_atomic, write_text_atomic

from .children import child_env
from .machine import describe
from .paper_fixtures import table1_datasets, write_fixtures
from .paper_scale import evaluation_steps, preflight

REPO = Path(__file__).resolve().parents[1]
DEFAULT_SHAPE = "Qwen/Qwen2.5-VL-3B-Instruct"
PAPER_MAX_NEW_TOKENS = 2048
"""VLMEvalKit's Qwen2VLChat default generation budget, which the paper's evaluation keeps."""
FULL_ITEMS = {
    # Items VLMEvalKit infers for each Table 1 dataset, from each benchmark's publication: MathVista
    # testmini 1,000; MMStar 1,500; MMMU dev 150 + validation 900 (both are inferred, validation
    # is scored); MathVerse testmini 788 problems in 5 versions; MATH-Vision test 3,040; AI2D test
    # 3,088. A TSV under $LMUData overrides its count (`item_counts`).
    "MathVista_MINI": 1000, "MMStar": 1500, "MMMU_DEV_VAL": 1050, "MathVerse_MINI": 3940, "MathVision": 3040,
    "AI2D_TEST": 3088,
}
TAIL_LINES = 15


def item_counts(lmudata: Path | None) -> dict[str, tuple[int, str]]:
    """(items, source) per Table 1 dataset: rows of `$LMUData/{dataset}.tsv` where it exists, else the
    published count."""
    import pandas as pd

    counts = {}
    for dataset in table1_datasets():
        tsv = lmudata / f"{dataset}.tsv" if lmudata else None
        if tsv and tsv.is_file():
            try:
                counts[dataset] = (len(pd.read_csv(regular_file(tsv), sep="\t", usecols=["index"])), str(tsv))
            except (ValueError, UnicodeDecodeError, pd.errors.ParserError) as exc:  # no index column, not a TSV
                raise UsageError(f"{tsv}: cannot count its items ({' '.join(str(exc).split())[:120]})") from None
        else:
            counts[dataset] = (FULL_ITEMS[dataset], "published")
    return counts


def full_run_cost(tokens_per_s: float, counts: dict[str, tuple[int, str]], models: int = 2,
                  max_new_tokens: int = PAPER_MAX_NEW_TOKENS, gpus: int = 8) -> dict:
    """Hours of a full SCALE=paper BENCHMARKS=table1 run at a measured decode rate, an upper bound:
    items x max_new_tokens / tokens_per_s, every response running to the budget (a trained model
    stops earlier), for `models` checkpoints, on one GPU and data-parallel on `gpus` (VLMEvalKit
    splits the items evenly, so the time divides by the GPU count)."""
    items = sum(n for n, _ in counts.values())
    hours = models * items * max_new_tokens / tokens_per_s / 3600
    return {"items_per_model": items, "models": models, "max_new_tokens": max_new_tokens,
            "tokens_per_s_per_gpu": tokens_per_s, "hours_one_gpu": hours, f"hours_{gpus}_gpus": hours / gpus,
            "counts": {d: {"items": n, "source": src} for d, (n, src) in counts.items()}}


def run_step(cmd: list[str], env: dict[str, str], timeout_s: float) -> dict:
    start = time.monotonic()
    try:
        proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=max(timeout_s, 1))
        rc, output = proc.returncode, proc.stdout + proc.stderr
    except subprocess.TimeoutExpired as exc:
        rc = 124
        output = ((exc.stdout or b"").decode(errors="replace") + (exc.stderr or b"").decode(errors="replace")
                  + f"\ncut short after {timeout_s:.0f} s")
    tail = [line for line in output.splitlines() if line.strip()][-TAIL_LINES:]
    return {"cmd": cmd, "rc": rc, "seconds": round(time.monotonic() - start, 1), "tail": tail}


def build_model(out: Path, shape: str) -> Path:
    import torch

    from train.tiny import build_published, build_tiny

    if shape == "tiny":
        return build_tiny(out)
    cuda = torch.cuda.is_available()
    return build_published(out, shape, dtype=torch.bfloat16 if cuda else torch.float32, device="cuda" if cuda else "cpu")


def markdown(result: dict) -> str:
    d = result["machine"]
    lines = ["Produced by `make smoke-paper` (python -m reproduce.paper_smoke).", "",
             f"Machine: {d.get('gpu') or 'no GPU'} x{d.get('gpu_count') or 0}, {d['cores']} cores ({d['cpu']}). "
             f"Model: random weights of {result['shape']}'s shape; {result['items']} items of each Table 1 benchmark, "
             f"{result['max_new_tokens']} new tokens.", "", "| step | exit | seconds |", "|---|---|---|"]
    for step in result["steps"]:
        lines.append(f"| {step['name']} | {step['rc']} | {step['seconds']} |")
    gen = result.get("generation")
    if gen:
        lines += ["", f"Generation (inside `generate_inner`, model loading excluded): {gen['items']} items in "
                      f"{gen['seconds']} s, {gen['items_per_s']} items/s, {gen['tokens_per_s']} new tokens/s on one GPU (rank 0); "
                      f"peak GPU memory {result.get('cuda_max_memory_gib')} GiB."]
    cost = result.get("full_run_cost")
    if cost:
        lines += ["", f"A full SCALE=paper BENCHMARKS=table1 run at this rate (upper bound, every response running to "
                      f"{cost['max_new_tokens']} tokens): {cost['models']} models x {cost['items_per_model']:,} items "
                      f"= {cost['hours_one_gpu']:.1f} h on one GPU, {cost['hours_8_gpus']:.1f} h under torchrun on 8."]
    for step in result["steps"]:
        if step["rc"]:
            lines += ["", f"`{step['name']}` failed (exit {step['rc']}):", "```", *step["tail"], "```"]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m reproduce.paper_smoke", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--shape", default=DEFAULT_SHAPE, help="published model shape, or tiny (CPU)")
    parser.add_argument("--items", type=int, default=2, help="items of each Table 1 benchmark")
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--count-items-in", type=Path,
                        help="a folder of the real Table 1 TSVs: the cost estimate counts their rows (default: published counts)")
    parser.add_argument("--budget-s", type=float, default=230, help="time for the whole smoke, model build included")
    args = parser.parse_args(argv)
    return exit_on_usage_error(lambda: smoke(args))


def smoke(args: argparse.Namespace) -> int:
    for name in ("items", "max_new_tokens", "budget_s"):
        if not getattr(args, name) > 0:
            raise UsageError(f"--{name.replace('_', '-')} {getattr(args, name)}: must be > 0")
    if args.count_items_in and not args.count_items_in.is_dir():
        raise UsageError(f"--count-items-in {args.count_items_in}: no such folder")
    counts = item_counts(args.count_items_in)  # before any step: a TSV it cannot count stops the smoke now
    deadline = time.monotonic() + args.budget_s
    import torch

    out = args.out.resolve()
    result = {"machine": describe(), "shape": args.shape, "items": args.items, "max_new_tokens": args.max_new_tokens,
              "steps": []}

    def save() -> None:
        write_json_atomic(out / "smoke.json", result)
        write_text_atomic(out / "smoke.md", markdown(result))

    lmudata = out / "LMUData"
    write_fixtures(lmudata, args.items)
    start = time.monotonic()
    model = build_model(out / "model", args.shape)
    result["steps"].append({"name": "build model", "rc": 0, "seconds": round(time.monotonic() - start, 1), "tail": []})
    # what `make reproduce-table1 SCALE=paper` reads from the environment, for the preflight and the children
    os.environ.update({"LMUData": str(lmudata), "HF_HUB_OFFLINE": "1"})
    if importlib.util.find_spec("flash_attn") is None:
        os.environ.setdefault("ATTN_IMPLEMENTATION", "sdpa")
    env = child_env()
    problems = preflight([str(model)], None, benchmarks="table1", paper_models=False,
                         cuda=True if args.shape == "tiny" else None)  # the tiny model runs on a CPU
    if problems:
        result["steps"].append({"name": "preflight", "rc": 2, "seconds": 0, "tail": problems})
        save()
        return 2
    work = out / "work"
    steps = evaluation_steps([str(model)], table1_datasets(), work, out / "table1",
                             bench_args=("--max-new-tokens", str(args.max_new_tokens), "--trust-local-tsv"))
    for name, cmd in zip(("bench.run", "bench.score", "reproduce table1"), steps, strict=True):
        result["steps"].append({"name": name, **run_step(cmd, env, deadline - time.monotonic())})
        save()
    record = work / model.name / "bench_run.json"
    if record.exists():
        run = json.loads(record.read_text())
        result["generation"], result["cuda_max_memory_gib"] = run.get("generation"), run.get("cuda_max_memory_gib")
        if result["generation"] and result["generation"].get("tokens_per_s"):
            result["full_run_cost"] = full_run_cost(result["generation"]["tokens_per_s"], counts)
    result["torch"] = torch.__version__
    save()
    print(markdown(result))
    return 0 if all(step["rc"] == 0 for step in result["steps"]) else 1


if __name__ == "__main__":
    sys.exit(main())
