"""Run VLMEvalKit's own runner with the R1 prompt models registered.

    python -m bench.run --model NAME_OR_PATH [...] --data DATASET [...] --work-dir DIR
                        [--use-vllm] [--judge MODEL [--judge-base-url URL]] [--lmudata DIR]
    torchrun --nproc-per-node 8 -m bench.run ...        # data parallel, as VLMEvalKit does

Models: `R1-ShareVL-7B`, `Qwen2.5-VL-7B-Instruct-R1` (the paper's base row), any VLMEvalKit model
name, or a local checkpoint folder. Datasets: VLMEvalKit names, or local TSVs `$LMUData/NAME.tsv`
(`--lmudata` sets $LMUData), which is how everything runs offline. Without `--judge` VLMEvalKit
only runs inference (its scorers for the math benchmarks need a judge endpoint); score the
predictions with `python -m bench.score --work-dir DIR`. SPLIT_THINK=1 is set, so VLMEvalKit's
own scorers see the text after </think>; the full responses stay in the predictions file.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from .adapter import DEFAULT_PLACEMENT, PROMPT_PLACEMENTS
from .errors import UsageError, exit_on_usage_error


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--model", nargs="+", required=True)
    parser.add_argument("--data", nargs="+", required=True)
    parser.add_argument("--work-dir", type=Path, required=True)
    parser.add_argument("--lmudata", type=Path, help="folder of local dataset TSVs (sets $LMUData)")
    parser.add_argument("--use-vllm", action="store_true", help="VLMEvalKit's vLLM path (GPU)")
    parser.add_argument("--judge", help="judge model name: run VLMEvalKit's own evaluation too")
    parser.add_argument("--judge-base-url", help="OpenAI-compatible endpoint for the judge")
    parser.add_argument("--max-new-tokens", type=int, help="generation budget (default: the model class's)")
    parser.add_argument("--limit", type=int, help="first N items of each dataset (smoke runs)")
    parser.add_argument("--reuse", action="store_true", help="reuse finished predictions in --work-dir")
    parser.add_argument("--prompt-placement", choices=list(PROMPT_PLACEMENTS), default=DEFAULT_PLACEMENT,
                        help="where the R1 prompt goes: after every text item (the released patch) or the last")
    parser.add_argument("--attn-implementation", choices=("flash_attention_2", "sdpa", "eager"),
                        help="GPU models' attention (VLMEvalKit asks for flash_attention_2, which needs flash-attn)")
    args = parser.parse_args(argv)
    return exit_on_usage_error(lambda: run(args))


def run(args: argparse.Namespace) -> int:
    if args.lmudata:
        if not args.lmudata.is_dir():
            raise UsageError(f"--lmudata {args.lmudata}: no such folder")
        os.environ["LMUData"] = str(args.lmudata.resolve())
    lmu = os.environ.get("LMUData")
    if lmu:
        missing = [d for d in args.data if "/" not in d and not (Path(lmu) / f"{d}.tsv").exists()]
        if missing and os.environ.get("HF_HUB_OFFLINE") == "1":
            raise UsageError(f"offline and no TSV for {', '.join(missing)} under $LMUData={lmu}")
    os.environ.setdefault("SPLIT_THINK", "1")
    for item in args.model:  # VLMEvalKit names have no slash: anything with one is a folder
        if ("/" in item or os.sep in item) and not Path(item).is_dir():
            raise UsageError(f"unknown model {item!r}: no such checkpoint folder")

    from .adapter import register

    names = register(args.model, use_vllm=args.use_vllm, max_new_tokens=args.max_new_tokens,
                     prompt_placement=args.prompt_placement, attn_implementation=args.attn_implementation)
    args.work_dir.mkdir(parents=True, exist_ok=True)
    vl_argv = ["vlmeval", "--data", *args.data, "--model", *names, "--work-dir", str(args.work_dir),
               "--mode", "all" if args.judge else "infer"]
    if args.judge:
        vl_argv += ["--judge", args.judge] + (["--judge-base-url", args.judge_base_url] if args.judge_base_url else [])
    if args.use_vllm:
        vl_argv.append("--use-vllm")
    if args.limit:
        vl_argv += ["--limit", str(args.limit)]
    if args.reuse:
        vl_argv.append("--reuse")

    import vlmeval.run

    kept = saved_records(args.work_dir, names, args.data)
    sys.argv = vl_argv
    vlmeval.run.main()
    if int(os.environ.get("RANK", "0")) == 0:
        restore_records(kept)
        from .fileio import write_json_atomic

        for name, source in zip(names, args.model, strict=True):
            write_json_atomic(args.work_dir / name / "bench_run.json", {
                "model": source, "vlmeval_name": name, "datasets": args.data, "lmudata": lmu,
                "split_think": os.environ["SPLIT_THINK"], "judge": args.judge, "argv": vl_argv,
                "prompt_placement": args.prompt_placement,
                "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "versions": versions(),
            })
    return 0


def _prediction_file(work_dir: Path, name: str, dataset: str) -> Path | None:
    found = [work_dir / name / f"{name}_{dataset}{suffix}" for suffix in (".xlsx", ".tsv", ".csv", ".json")]
    return next((p for p in found if p.exists()), None)


def saved_records(work_dir: Path, names: list[str], datasets: list[str]) -> dict[Path, dict]:
    """index -> extra_records of every finished prediction file. VLMEvalKit's --reuse keeps only the
    prediction column of a finished file and writes it back without extra_records, which hold our
    full responses (the thinking, and the format score with it)."""
    import pandas as pd

    from .score import ResultsError, read_predictions

    kept = {}
    for name in names:
        for dataset in datasets:
            path = _prediction_file(work_dir, name, dataset)
            if path is None:
                continue
            try:
                frame = read_predictions(path)
            except ResultsError:
                continue  # VLMEvalKit redoes what it cannot read
            if "extra_records" in frame.columns and "index" in frame.columns:
                kept[path.resolve()] = {i: r for i, r in zip(frame["index"], frame["extra_records"], strict=True)
                                        if not pd.isna(r)}
    return kept


def restore_records(kept: dict[Path, dict]) -> None:
    """Put back the extra_records (and the thinking column) a re-run dropped, row by row."""
    import pandas as pd

    from .fileio import write_table_atomic
    from .score import full_response, read_predictions

    for path, records in kept.items():
        if not path.exists() or not records:
            continue
        frame = read_predictions(path)
        missing = "extra_records" not in frame.columns or frame["extra_records"].isna().any()
        if not missing:
            continue
        if "extra_records" not in frame.columns:
            frame["extra_records"] = None
        frame["extra_records"] = frame["extra_records"].astype(object)
        for k, index in enumerate(frame["index"]):
            if pd.isna(frame.at[k, "extra_records"]) and index in records:
                frame.at[k, "extra_records"] = records[index]
        if "thinking" in frame.columns:
            frame["thinking"] = frame["thinking"].astype(object)
            for k in range(len(frame)):
                response = full_response(frame.iloc[k])
                if "</think>" in response and "<think>" in response:
                    frame.at[k, "thinking"] = response.split("</think>")[0].split("<think>", 1)[1].strip()
        write_table_atomic(frame, path)


def versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for pkg in ("r1-sharevl", "ms-vlmeval", "transformers", "torch", "math-verify"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = "not installed"
    return out


if __name__ == "__main__":
    sys.exit(main())
