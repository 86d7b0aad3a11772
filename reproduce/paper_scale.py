"""`make reproduce-table1 SCALE=paper`: evaluate the paper's checkpoints on the six benchmarks with
VLMEvalKit (R1 prompt), score them, and build Table 1 beside the paper's numbers. It also evaluates
what the leaderboard records need beyond them (BENCHMARKS=all, the default: the OpenVLM record's
benchmarks with MMBench v1.1, and the reasoning leaderboard's six), so that `python -m reproduce
submit` runs on the same work dir; BENCHMARKS=table1, openvlm or reasoning runs one set.

Before any work it checks everything it needs (a GPU, each checkpoint, each dataset, the judge
when one is asked for) and lists every missing piece in one message.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

from bench.adapter import PAPER_MODELS

from .children import spawn
from .paper import load_paper_table
from .submit import MMBENCH_SERVER, OPENVLM, VLMEVAL_SCORED

REASONING = ("MathVista_MINI", "MathVision", "MathVerse_MINI_Vision_Only", "DynaMath", "WeMath", "LogicVista")
"""The Open LMM Reasoning leaderboard's six benchmarks (MathVerse on its vision-only testmini
subset), evaluated and scored here; no record of them is written (`reproduce.submit`)."""


def benchmark_sets() -> dict[str, list[str]]:
    """BENCHMARKS= choices: Table 1's six datasets, the OpenVLM record's (the app's eight default
    benchmarks: MMBench v1.1's predictions go to the official server, OCRBench, HallusionBench and
    MMVet are scored by VLMEvalKit), the reasoning leaderboard's six, or all of them."""
    sets = {"table1": list(load_paper_table()["vlmeval_datasets"].values()),
            "openvlm": [*OPENVLM, *VLMEVAL_SCORED, *MMBENCH_SERVER], "reasoning": list(REASONING)}
    sets["all"] = list(dict.fromkeys(d for names in sets.values() for d in names))
    return sets


def paper_scale_datasets(benchmarks: str = "all") -> list[str]:
    """The VLMEvalKit datasets of a BENCHMARKS= choice (`benchmark_sets`)."""
    sets = benchmark_sets()
    if benchmarks not in sets:
        raise ValueError(f"BENCHMARKS={benchmarks!r}: choose from {', '.join(sets)}")
    return sets[benchmarks]


def _hub_available(repo_id: str) -> bool:
    """Is the checkpoint usable here: in the local cache, or downloadable (online)?"""
    if os.environ.get("HF_HUB_OFFLINE") != "1":
        return True  # VLMEvalKit / transformers download it on first use
    try:
        from huggingface_hub import snapshot_download

        snapshot_download(repo_id, local_files_only=True)
        return True
    except Exception:  # noqa: BLE001 - any failure means "not in the cache"
        return False


def preflight(ckpts: list[str], judge: str | None, cuda: bool | None = None, benchmarks: str = "all",
              paper_models: bool = True) -> list[str]:
    """Everything missing for the paper-scale run, as readable lines (empty: ready).
    `paper_models=False`: only the CKPT folders are evaluated (the smoke, `reproduce.paper_smoke`)."""
    import torch

    problems = []
    cuda = torch.cuda.is_available() if cuda is None else cuda
    if not cuda:
        problems.append("no CUDA GPU: the 7B evaluation needs one (SCALE=mini runs on CPU)")
    for name, model in PAPER_MODELS.items() if paper_models else ():
        if not _hub_available(model.hub_id):
            problems.append(f"checkpoint {model.hub_id} ({name}) is not in the Hugging Face cache and HF_HUB_OFFLINE=1")
    for ckpt in ckpts:
        if not Path(ckpt).is_dir():
            problems.append(f"CKPT={ckpt}: no such checkpoint folder")
        elif not (Path(ckpt) / "config.json").exists():
            problems.append(f"CKPT={ckpt}: not a Hugging Face checkpoint (no config.json; use python -m train.export)")
    lmu = os.environ.get("LMUData", str(Path.home() / "LMUData"))
    datasets = paper_scale_datasets(benchmarks)
    if os.environ.get("HF_HUB_OFFLINE") == "1":
        missing = [d for d in datasets if not (Path(lmu) / f"{d}.tsv").exists()]
        if missing:
            problems.append(f"offline and no TSV under $LMUData={lmu} for: {', '.join(missing)}")
    if cuda and not os.environ.get("ATTN_IMPLEMENTATION") and importlib.util.find_spec("flash_attn") is None:
        problems.append("flash-attn is not installed, and VLMEvalKit's Qwen2VLChat loads Qwen2.5-VL with "
                        "attn_implementation='flash_attention_2': install it (pip install flash-attn "
                        "--no-build-isolation), or run with ATTN_IMPLEMENTATION=sdpa (PyTorch's attention, slower)")
    if "MMVet" in datasets and not judge:
        problems.append(f"BENCHMARKS={benchmarks} includes MMVet, which VLMEvalKit scores with a judge model only: pass "
                        "JUDGE= (the leaderboard used gpt-4-turbo), with OPENAI_API_KEY or JUDGE_BASE_URL set")
    if judge and not (os.environ.get("OPENAI_API_KEY") or os.environ.get("JUDGE_BASE_URL")):
        problems.append(f"judge {judge} asked for, but neither OPENAI_API_KEY nor JUDGE_BASE_URL is set")
    return problems


def evaluation_steps(models: list[str], datasets: list[str], work_dir: Path, out: Path, judge: str | None = None,
                     bench_args: tuple[str, ...] = ()) -> list[list[str]]:
    """The commands of a paper-scale evaluation: `bench.run` data-parallel over every GPU (torchrun),
    `bench.score`, and Table 1 when its six datasets are among `datasets`. `bench_args` go to
    `bench.run` (the smoke's --max-new-tokens and --trust-local-tsv)."""
    import torch

    launcher = [sys.executable, "-m", "torch.distributed.run", f"--nproc-per-node={max(1, torch.cuda.device_count())}"]
    cmd = [*launcher, "-m", "bench.run", "--model", *models, "--data", *datasets, "--work-dir", str(work_dir), "--reuse",
           *bench_args]
    if os.environ.get("ATTN_IMPLEMENTATION"):
        cmd += ["--attn-implementation", os.environ["ATTN_IMPLEMENTATION"]]
    if os.environ.get("EVAL_BATCH_SIZE"):  # items generated together (bench.batching), e.g. 8
        cmd += ["--batch-size", os.environ["EVAL_BATCH_SIZE"]]
    if judge:
        cmd += ["--judge", judge] + (["--judge-base-url", os.environ["JUDGE_BASE_URL"]] if os.environ.get("JUDGE_BASE_URL") else [])
    steps = [cmd, [sys.executable, "-m", "bench.score", "--work-dir", str(work_dir)]]
    if set(paper_scale_datasets("table1")) <= set(datasets):
        steps.append([sys.executable, "-m", "reproduce", "table1", "--work-dir", str(work_dir), "--out", str(out)])
    return steps


def run_paper_scale(ckpts: list[str], judge: str | None, work_dir: Path, out: Path, benchmarks: str = "all") -> int:
    try:
        datasets = paper_scale_datasets(benchmarks)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    problems = preflight(ckpts, judge, benchmarks=benchmarks)
    if problems:
        print("make reproduce-table1 SCALE=paper cannot start; missing:\n  - " + "\n  - ".join(problems), file=sys.stderr)
        return 2
    steps = evaluation_steps([*PAPER_MODELS, *ckpts], datasets, work_dir, out, judge)
    for step in steps:
        print("+", " ".join(step), flush=True)
        rc = spawn(step).wait()
        if rc:
            return rc
    print(f"SCALE=paper BENCHMARKS={benchmarks}: scores in {work_dir}"
          + (f"; Table 1 written to {out}.md / .csv / .tex" if len(steps) == 3 else ""))
    return 0
