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
import datetime
import hashlib
import logging
import os
import re
import shutil
import sys
import time
from pathlib import Path

from .adapter import DEFAULT_PLACEMENT, PROMPT_PLACEMENTS, model_name_for
from .errors import UsageError, exit_on_usage_error
from .fileio import regular_file, write_json_atomic
from .lock import hold_folder_lock
from .preflight import check_model_folder, check_tsv, finished_predictions
from .provenance import prediction_entry, weights_digest


def main(argv: list[str] | None = None) -> int:
    args = arguments().parse_args(argv)
    # VLMEvalKit logs to a file under the work dir: a handler that cannot write (a full disk) must not
    # print its own traceback; the write that fails next is reported as one line
    logging.raiseExceptions = False
    return exit_on_usage_error(lambda: run(args), output=args.work_dir)


def arguments() -> argparse.ArgumentParser:
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
    parser.add_argument("--batch-size", type=int, default=1,
                        help="items generated together (bench.batching.LookAhead; the transformers path); "
                             "1: VLMEvalKit's one at a time")
    parser.add_argument("--reuse", action="store_true", help="reuse finished predictions in --work-dir")
    parser.add_argument("--prompt-placement", choices=list(PROMPT_PLACEMENTS), default=DEFAULT_PLACEMENT,
                        help="where the R1 prompt goes: after every text item (the released patch) or the last")
    parser.add_argument("--trust-local-tsv", action="store_true",
                        help="evaluate $LMUData TSVs whose md5 is not VLMEvalKit's (fixtures, an edited copy) as they are")
    parser.add_argument("--attn-implementation", choices=("flash_attention_2", "sdpa", "eager"),
                        help="GPU models' attention (VLMEvalKit asks for flash_attention_2, which needs flash-attn)")
    return parser


def run(args: argparse.Namespace) -> int:
    """bench.run's stages: check everything before any work, claim and prepare each model's work
    folder, let VLMEvalKit infer (and judge), then record what each finished prediction file is."""
    lmu, tsvs = check_arguments(args)
    os.environ.setdefault("SPLIT_THINK", "1")
    expected, tsv_md5 = preflight(args, tsvs)
    names = work_folder_names(args.model)
    rank0 = int(os.environ.get("RANK", "0")) == 0
    # rank 0 alone records the run: the weights' digest reads every weight file once, not once per rank
    settings = {name: run_settings(args, source) for name, source in zip(names, args.model, strict=True)} if rank0 else {}
    locks = []
    if rank0:  # one run per model folder: parallel runs over disjoint models may share a work dir
        locks = [hold_folder_lock(args.work_dir / name, "--work-dir", f"bench.run of {name}") for name in names]
    register_models(args, names, locks, tsvs, tsv_md5)
    recorded: dict[str, dict] = {}
    if rank0:
        for name, source in zip(names, args.model, strict=True):
            prepare_model_dir(args.work_dir / name, name, args.data, args.reuse, settings[name])
            recorded[name] = start_record(args.work_dir / name, name, source, args.data, settings[name])
    vl_argv = vlmeval_argv(args, names)

    import vlmeval.run

    kept = saved_records(args.work_dir, names, args.data)
    since = datetime.datetime.now().astimezone().isoformat()
    sys.argv = vl_argv
    vlmeval.run.main()
    if not rank0:
        return 0
    restore_records(kept)
    failures = []
    for name in names:
        failures += finish_record(args, name, recorded[name], expected, tsv_md5, since, lmu, vl_argv)
    for line in failures:
        print(f"error: {line}", file=sys.stderr)
    if failures:
        print(f"bench.run: {len(failures)} of {len(names) * len(args.data)} (model, dataset) pairs failed; "
              "the others are kept", file=sys.stderr)
    del locks
    return 1 if failures else 0


def check_arguments(args: argparse.Namespace) -> tuple[str | None, dict[str, Path]]:
    """The arguments that need no file read: $LMUData (set from --lmudata), the bounds of --limit,
    --batch-size and --max-new-tokens, each model folder's existence, and the local TSV of each
    dataset ({dataset: path}; offline, every dataset needs one)."""
    if args.lmudata:
        if not args.lmudata.is_dir():
            raise UsageError(f"--lmudata {args.lmudata}: no such folder")
        os.environ["LMUData"] = str(args.lmudata.resolve())
    lmu = os.environ.get("LMUData")
    if args.limit is not None and args.limit < 1:
        raise UsageError(f"--limit {args.limit}: must be >= 1")
    if args.batch_size < 1:
        raise UsageError(f"--batch-size {args.batch_size}: must be >= 1")
    if args.max_new_tokens is not None and args.max_new_tokens < 1:  # 0 would mean the class's default
        raise UsageError(f"--max-new-tokens {args.max_new_tokens}: must be >= 1")
    tsvs = {d: Path(lmu) / f"{d}.tsv" for d in args.data if lmu and "/" not in d and (Path(lmu) / f"{d}.tsv").exists()}
    missing = [d for d in args.data if d not in tsvs]
    if lmu and missing and os.environ.get("HF_HUB_OFFLINE") == "1":
        raise UsageError(f"offline and no TSV for {', '.join(missing)} under $LMUData={lmu}")
    for item in args.model:  # VLMEvalKit names have no slash: anything with one is a folder
        if ("/" in item or os.sep in item) and not Path(item).is_dir():
            raise UsageError(f"unknown model {item!r}: no such checkpoint folder")
    return lmu, tsvs


def work_folder_names(models: list[str]) -> list[str]:
    """Each model's work folder name (VLMEvalKit files results by it); two models may not share one."""
    names = [model_name_for(item) for item in models]
    clashes = {n: [m for m, k in zip(models, names, strict=True) if k == n] for n in names if names.count(n) > 1}
    if clashes:
        raise UsageError(*(f"--model {' and '.join(items)} would share the work folder {name} (VLMEvalKit files results "
                           "by folder name): give them distinct folder names" for name, items in clashes.items()))
    return names


def register_models(args: argparse.Namespace, names: list[str], locks: list, tsvs: dict[str, Path],
                    tsv_md5: dict[str, str]) -> None:
    """The checks that need VLMEvalKit imported (a TSV of a dataset it knows must be its own file),
    then each model registered in `vlmeval.config.supported_VLM`. Nothing is removed before they
    pass: on a problem, a work folder that holds nothing but this run's lock is removed again."""
    from .adapter import register
    from .vlmeval_compat import accept_local_tsv

    try:
        problems = official_tsv_problems(tsvs, tsv_md5, args.trust_local_tsv)
        if problems:
            raise UsageError(*problems)
        registered = register(args.model, use_vllm=args.use_vllm, max_new_tokens=args.max_new_tokens,
                              prompt_placement=args.prompt_placement, attn_implementation=args.attn_implementation,
                              batch_size=args.batch_size, limit=args.limit)
    except UsageError:  # leave no folder behind that holds nothing but this run's lock
        for name, lock in zip(names, locks, strict=False):
            if [p.name for p in (args.work_dir / name).iterdir()] == [".lock"]:
                lock.close()
                shutil.rmtree(args.work_dir / name)
        raise
    if args.trust_local_tsv:
        for dataset in tsvs:
            accept_local_tsv(dataset)
    assert registered == names, (registered, names)


def vlmeval_argv(args: argparse.Namespace, names: list[str]) -> list[str]:
    """VLMEvalKit's own command line for this run (`vlmeval.run.main` reads sys.argv)."""
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
    return vl_argv


def finish_record(args: argparse.Namespace, name: str, started: dict, expected: dict[str, list[str]],
                  tsv_md5: dict[str, str], since: str, lmu: str | None, vl_argv: list[str]) -> list[str]:
    """Check each dataset's predictions of model `name` and write its bench_run.json: the record
    `started` with every finished file's entry (`bench.provenance.prediction_entry`), the run's
    settings and status. Returns one line per failed (model, dataset) pair."""
    from .adapter import GENERATION

    # each prediction file read and parsed once: the bytes checked for coverage are the bytes recorded
    failed, done = {}, {}
    for dataset in args.data:
        path = _prediction_file(args.work_dir, name, dataset)
        data = _read_once(path)
        outcome = finished_predictions(args.work_dir / name, path, dataset, expected.get(dataset), since, data)
        if outcome.problem:
            failed[dataset] = outcome.problem
        else:
            done[dataset] = prediction_entry(path, outcome.keys, tsv_md5.get(dataset), data)
    write_json_atomic(args.work_dir / name / "bench_run.json", {
        **started, "lmudata": lmu,
        "split_think": os.environ["SPLIT_THINK"], "judge": args.judge, "argv": vl_argv,
        "prompt_placement": args.prompt_placement, "tsv_md5": tsv_md5,
        "generation": GENERATION.summary(name), "cuda_max_memory_gib": cuda_max_memory_gib(),
        "status": "failed" if failed else "finished", "failed": failed,
        "predictions": {**started["predictions"], **done},
        "ended": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "versions": versions(),
    })
    return [f"{name} x {d}: {why}" for d, why in failed.items()]


def preflight(args: argparse.Namespace, tsvs: dict[str, Path]) -> tuple[dict[str, list[str]], dict[str, str]]:
    """Check every local TSV and model folder before any work; returns each TSV's indices to answer
    and its md5."""
    problems, expected, md5s = [], {}, {}
    for dataset, path in tsvs.items():
        check = check_tsv(path, args.limit)
        problems += check.problems
        expected[dataset] = check.expected
        for note in check.notes:
            print(f"note: {note}", file=sys.stderr)
        if not check.problems:
            md5s[dataset] = file_md5(path)
    for item in args.model:
        if Path(item).is_dir():
            problems += check_model_folder(Path(item))
    if problems:
        raise UsageError(*problems)
    return expected, md5s


def official_tsv_problems(tsvs: dict[str, Path], md5s: dict[str, str], trusted: bool) -> list[str]:
    """A TSV of a dataset VLMEvalKit knows must be VLMEvalKit's own file (its md5): VLMEvalKit would
    otherwise download its file over it (`prepare_tsv`), unless --trust-local-tsv."""
    from .vlmeval_compat import official_md5

    problems = []
    for dataset, path in tsvs.items():
        official = None if trusted else official_md5(dataset)
        if official and md5s[dataset] != official:
            problems.append(f"{path}: md5 {md5s[dataset]} is not VLMEvalKit's {official} for {dataset}, so VLMEvalKit "
                            "would download its own file over this one (offline: fail); use VLMEvalKit's TSV, or "
                            "pass --trust-local-tsv to evaluate this file as it is")
    return problems


def file_md5(path: Path) -> str:
    """md5 hex of a file, as VLMEvalKit checks its TSVs (`DATASET_MD5`)."""
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, lambda: hashlib.md5(usedforsecurity=False)).hexdigest()


def cuda_max_memory_gib() -> float | None:
    """This process's peak allocated GPU memory (GiB), None without CUDA."""
    import torch

    return round(torch.cuda.max_memory_allocated() / 2**30, 2) if torch.cuda.is_available() else None


def run_settings(args: argparse.Namespace, source: str) -> dict:
    """What makes two runs' predictions comparable; --reuse refuses predictions made otherwise."""
    local = Path(source).exists()
    return {"model": str(Path(source).resolve()) if local else source,
            # the weights by content: the same folder retrained, or another checkpoint under its name
            **({"weights_sha256": weights_digest(Path(source))} if local else {}),
            "max_new_tokens": args.max_new_tokens, "prompt_placement": args.prompt_placement,
            "use_vllm": args.use_vllm, "attn_implementation": args.attn_implementation,
            # batched greedy decoding can differ from one at a time at a near-tie (another kernel's rounding)
            "batch_size": args.batch_size}


def prepare_model_dir(model_dir: Path, name: str, datasets: list[str], reuse: bool, settings: dict) -> None:
    """Without --reuse a run starts afresh: VLMEvalKit would otherwise silently reuse an earlier
    prediction file of the same model and dataset (made with other settings, maybe) and its
    intermediate files (vlmeval/inference.py `infer_data`), so both are removed. With --reuse the
    earlier run's settings must match. Either way, no pickle is left for VLMEvalKit to load: its
    intermediates are JSON (`bench.no_pickle`), and any other .pkl in the folder is removed."""
    from .no_pickle import remove_foreign
    from .score import run_record

    remove_foreign(model_dir)  # VLMEvalKit would unpickle them (its resume state), with or without --reuse
    before = run_record(model_dir).get("settings")
    # Predictions of other weights in the folder (another model of the same folder name, or this
    # folder retrained): those of datasets not run now would be scored as this model's.
    if isinstance(before, dict) and before.get("model") != settings["model"]:
        raise UsageError(f"--work-dir: {model_dir} holds the predictions of {before.get('model')}, another model "
                         f"filed under the name {name}; use another --work-dir, or give the checkpoint folder a distinct name")
    if isinstance(before, dict) and not reuse and before.get("weights_sha256") != settings.get("weights_sha256"):
        raise UsageError(f"--work-dir: {model_dir} holds predictions of other weights (sha256 "
                         f"{str(before.get('weights_sha256'))[:12]} then, {str(settings.get('weights_sha256'))[:12]} now); "
                         "remove that folder or use another --work-dir")
    if reuse:
        if isinstance(before, dict):
            changed = [f"{k}={before.get(k)!r} then, {v!r} now" for k, v in settings.items() if before.get(k) != v]
            if changed:
                raise UsageError(f"--reuse: the predictions in {model_dir} were made with other settings "
                                 f"({'; '.join(changed)}); drop --reuse to redo them, or use another --work-dir")
        elif any(_prediction_file(model_dir.parent, name, d) for d in datasets):
            raise UsageError(f"--reuse: {model_dir} holds predictions but no readable bench_run.json settings, so "
                             "what made them is unknown; drop --reuse to redo them, or use another --work-dir")
        return
    for dataset in datasets:
        stale = [model_dir / f"{name}_{dataset}{suffix}" for suffix in (".xlsx", ".tsv", ".csv", ".json", "_PREV.pkl",
                                                                         "_checkpoint.pkl")]
        stale += [p for p in model_dir.glob(f"*_{dataset}.pkl") if re.fullmatch(rf"\d+_{re.escape(dataset)}\.pkl", p.name)]
        for path in stale:
            path.unlink(missing_ok=True)


def _read_once(path: Path | None) -> bytes | None:
    """A prediction file's bytes (None where there is none, or it is not a regular file: the
    coverage check then reads it and says why)."""
    try:
        return regular_file(path).read_bytes() if path is not None else None
    except OSError:
        return None


def start_record(model_dir: Path, name: str, source: str, datasets: list[str], settings: dict) -> dict:
    """bench_run.json as the run begins: status "running" (a run killed before its end leaves it so,
    and bench.score refuses the folder), the earlier scores removed (they are about to be stale),
    and the recorded predictions of datasets this run does not redo, where their files are
    unchanged. Returns the record."""
    from .score import run_record, unlike_record

    earlier = run_record(model_dir).get("predictions")
    kept = {d: e for d, e in (earlier.items() if isinstance(earlier, dict) else ()) if d not in datasets
            and (path := _prediction_file(model_dir.parent, name, d)) is not None and unlike_record(path, e) is None}
    for stale in [model_dir / "r1_scores.json", *model_dir.glob(f"{name}_*_r1_score.csv")]:
        stale.unlink(missing_ok=True)
    record = {"model": source, "vlmeval_name": name, "datasets": datasets, "settings": settings, "status": "running",
              "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "predictions": kept}
    write_json_atomic(model_dir / "bench_run.json", record)
    return record


def _prediction_file(work_dir: Path, name: str, dataset: str) -> Path | None:
    from .score import PRED_SUFFIXES

    found = [work_dir / name / f"{name}_{dataset}{suffix}" for suffix in PRED_SUFFIXES]
    return next((p for p in found if p.exists()), None)


def _empty(cell) -> bool:
    """An empty cell as `read_predictions` gives it without `text`: "" from a spreadsheet, TSV or
    CSV, a null (`score.is_null`) from JSON."""
    from .score import is_null

    return (isinstance(cell, str) and not cell) or is_null(cell)


def saved_records(work_dir: Path, names: list[str], datasets: list[str]) -> dict[Path, dict]:
    """index -> extra_records of every finished prediction file. VLMEvalKit's --reuse keeps only the
    prediction column of a finished file and writes it back without extra_records, which hold our
    full responses (the thinking, and the format score with it)."""

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
                                        if not _empty(r)}
    return kept


def restore_records(kept: dict[Path, dict]) -> None:
    """Put back the extra_records (and the thinking column) a re-run dropped, row by row."""

    from .fileio import write_table_atomic
    from .score import full_response, read_predictions

    for path, records in kept.items():
        if not path.exists() or not records:
            continue
        frame = read_predictions(path)
        missing = "extra_records" not in frame.columns or any(_empty(r) for r in frame["extra_records"])
        if not missing:
            continue
        if "extra_records" not in frame.columns:
            frame["extra_records"] = None
        frame["extra_records"] = frame["extra_records"].astype(object)
        for k, index in enumerate(frame["index"]):
            if _empty(frame.at[k, "extra_records"]) and index in records:
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
