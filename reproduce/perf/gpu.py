"""`make bench-gpu` (`python -m reproduce.perf.gpu`): the GPU benchmark as one command that fits in
7 minutes of one GPU, model build included. It writes results/perf/gpu.{json,md} after every stage,
so a run cut short still reports what it measured, the most useful figures first:

1. the machine: device, memory, driver and package versions;
2. the chip's copy bandwidth and bf16 matrix rate (`floors.py`), from which each workload's floor;
3. two workloads at the Qwen2.5-VL-3B shape (random weights, built on the GPU in bf16), exactly 512
   new tokens, in this order: 2 prompts x 8 rows by ours (GRPO, then one more step under the
   profiler), TRL's GRPOTrainer and ours (Share-GRPO); then 32 x 8 rows by the same three. One fresh
   process each, bf16, activation checkpointing and micro-batches of 8 rows in both trainers (each
   run's `settings` say so), no checkpoint written.

The `gpu` tests are a separate command (`make test-gpu`), or `--with-tests` here.

Targets (issue #22): a step within 3x its floor, tokens/s >= 1.5x TRL's, Share-GRPO's step <= 1.4x
GRPO's, peak GPU memory <= TRL's. Figures are printed and recorded, never asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from dataclasses import asdict
from importlib import metadata
from pathlib import Path

from bench.fileio import write_json_atomic, write_text_atomic
from reproduce.machine import describe
from reproduce.perf.compare import REPO, RUNS, child_env, pair_ratios, run_once, summarize, target_text
from reproduce.perf.floors import ChipRates, StepShape, measure_rates, step_floor
from reproduce.perf.workload import Workload, prepare
from train.plan import count_parameters

MODEL = "Qwen/Qwen2.5-VL-3B-Instruct"
WORKLOADS = {"16_rows": (2, 8), "256_rows": (32, 8)}  # name -> (prompts, completions)
GPU_TESTS = ["tests/test_rollout.py", "tests/test_trainer.py", "tests/test_vllm_rollout.py"]
"""The `gpu` tests of the suite (the perf harness's own GPU test repeats this benchmark, and the
evaluation's need vlmeval, which a GPU machine may not have). Those of the vllm engine run only
where vLLM is installed."""
PACKAGES = ("torch", "transformers", "deepspeed", "accelerate", "trl", "vllm", "flash-attn")
FLOOR_FACTOR = 3.0


def versions() -> dict[str, str | None]:
    found = {}
    for name in PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = None
    return found


def device_info() -> dict:
    return describe() | {"versions": versions()}


def workload_report(name: str, w: Workload, runs: dict[str, dict], rates: ChipRates | None, config) -> dict:
    """Summaries, the floor of this workload's step and the ratios against their targets."""
    done = {k: r for k, r in runs.items() if r.get("step_time")}
    out = {"workload": asdict(w), "runs": runs, "trainers": {k: summarize([r], w) for k, r in done.items()}}
    if rates and "ours_grpo" in done:
        r = done["ours_grpo"]
        rows = w.prompts * w.completions
        text = config.text_config
        counts = count_parameters(config)
        shape = StepShape(parameters=counts.total, vision_parameters=counts.vision, layers=text.num_hidden_layers,
                          kv_heads=text.num_key_value_heads, head_dim=text.hidden_size // text.num_attention_heads,
                          rows=rows, prompt_tokens=round(r["prompt_tokens"][0] / rows), new_tokens=w.new_tokens)
        out["floor"] = step_floor(shape, rates)
        for s in out["trainers"].values():
            s["step_over_floor"] = s["step_time_s"] / out["floor"]["step_s"]
    # one run of each trainer: the median of one alternation is that run's ratio
    ratios = {k: v["median"] for k, v in pair_ratios({k: [r] for k, r in done.items()}).items()}
    out["ratios"] = ratios
    return out


def markdown(result: dict) -> str:
    d = result["device"]
    lines = ["Produced by `make bench-gpu` (python -m reproduce.perf.gpu).", "",
             f"Device: {d.get('gpu') or 'no GPU'}"
             + (f" ({d['gpu_memory_mb']:,.0f} MiB, driver {d.get('driver')}, CUDA {d.get('cuda')})" if d.get("gpu") else "")
             + f"; Python {d['python']}; " + ", ".join(f"{k} {v}" for k, v in d["versions"].items() if v) + ".", ""]
    if "rates" in result:
        r = result["rates"]
        lines += [f"Measured here: copy bandwidth {r['copy_bytes_per_s'] / 1e12:.2f} TB/s (read + write), bf16 matrix "
                  f"rate {r['matmul_flop_per_s'] / 1e12:.0f} TFLOP/s.", ""]
    if "tests" in result:
        t = result["tests"]
        lines += [f"`gpu` tests: {t['summary']} ({t['seconds']:.0f} s).", ""]
    for name, wr in result.get("workloads", {}).items():
        w = wr["workload"]
        lines += [f"### {name.replace('_', ' ')}: {w['prompts']} prompts x {w['completions']} completions, "
                  f"{w['new_tokens']} new tokens, {w['dtype']}", ""]
        if "floor" in wr:
            f = wr["floor"]
            lines += [f"Floor of a step: decode {f['decode_s']:.2f} s + update {f['update_s']:.2f} s = {f['step_s']:.2f} s "
                      f"({f['tokens_per_s']:,.0f} generated tokens/s); target: within {FLOOR_FACTOR:g}x.", ""]
        lines += ["| trainer | step (s) | x floor | tokens/s | peak GPU (MB) | generate | reward | log-prob | update | other |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        for s in wr["trainers"].values():
            sp = s["split_s"]
            lines.append(f"| {s['trainer']} | {s['step_time_s']:.2f} | {s.get('step_over_floor', float('nan')):.1f} | "
                         f"{s['tokens_per_s']:,.0f} | {s['peak_gpu_mb'] or 0:,.0f} | "
                         + " | ".join(f"{sp[k]:.2f}" for k in ("generate", "reward", "log_prob", "update", "other")) + " |")
        for key, r in wr["runs"].items():
            if r.get("error") or r.get("cut_short"):
                why = (r.get("error") or r.get("cut_short")).strip().splitlines() or ["failed"]
                lines.append(f"| {key} | {why[-1].replace('|', '/')} |")
        if "profile" in wr["runs"].get("ours_grpo", {}):
            prof = wr["runs"]["ours_grpo"]["profile"]
            lines += ["", f"Ours (GRPO), one more step under torch's profiler ({prof['file']}, top kernels): "
                      + prof["head"].replace("\n", " ")]
        if wr["ratios"]:
            lines += ["", "| ratio | value | target |", "|---|---|---|"]
            lines += [f"| {k} | {v:.2f} | {target_text(k)} |" for k, v in wr["ratios"].items()]
        lines.append("")
    if result.get("stopped"):
        lines += [f"Stopped early: {result['stopped']}", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """The suite in its budget: the device, the chip's rates, optionally the `gpu` tests, then each
    workload's runs, most useful first; the report is rewritten after every stage."""
    args = arguments(argv)
    deadline = time.monotonic() + args.budget_s
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    import torch

    result: dict = {"device": device_info(), "budget_s": args.budget_s}

    def save() -> None:
        write_json_atomic(args.out.with_suffix(".json"), result)
        write_text_atomic(args.out.with_suffix(".md"), markdown(result))

    save()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    small = device == "cpu"  # a CPU run is a smoke of this script, at sizes that fit there
    result["rates"] = asdict(measure_rates(device, copy_mib=16 if small else 2048, matmul_n=256 if small else 8192))
    save()
    if args.with_tests:
        result["tests"] = gpu_tests(bool(result["device"]["versions"]["vllm"]), deadline)
        save()
    result["workloads"] = {}
    first_model: Path | None = None  # one model build serves every workload
    for i, name in enumerate(args.workloads):
        w = Workload(model=args.model, dtype="bfloat16", prompts=WORKLOADS[name][0], completions=WORKLOADS[name][1],
                     new_tokens=args.new_tokens, warmup_steps=1, measured_steps=args.steps,
                     micro_batch=min(WORKLOADS[name][0] * WORKLOADS[name][1], 8), gradient_checkpointing=not small)
        work = args.work_dir / f"{Path(args.model).name}_{name}"
        prepare(work, w, model_dir=first_model)
        first_model = first_model or work / "model"

        def record(workload: dict, name: str = name) -> None:
            result["workloads"][name] = workload
            save()

        stopped = run_workload(args, name, w, work, ChipRates(**result["rates"]), deadline,
                               later=len(args.workloads) - i - 1, report=record)
        if stopped:
            result["stopped"] = stopped
    save()
    print(markdown(result))
    return 0


def arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m reproduce.perf.gpu", description=__doc__.split("\n\n")[0])
    parser.add_argument("--budget-s", type=float, default=420, help="the whole benchmark's wall-clock budget")
    parser.add_argument("--out", type=Path, default=REPO / "results" / "perf" / "gpu",
                        help="path without extension of the .json and .md")
    parser.add_argument("--work-dir", type=Path, default=REPO / "runs" / "perf_gpu")
    parser.add_argument("--peer-python", default=sys.executable, help="python with TRL ('' skips the peer)")
    parser.add_argument("--new-tokens", type=int, default=512)
    parser.add_argument("--steps", type=int, default=2, help="measured steps per run, after one warm-up")
    parser.add_argument("--model", default=MODEL)
    parser.add_argument("--workloads", nargs="+", choices=sorted(WORKLOADS), default=list(WORKLOADS))
    parser.add_argument("--with-tests", action="store_true", help="run the `gpu` tests first (make test-gpu)")
    return parser.parse_args(argv)


def gpu_tests(has_vllm: bool, deadline: float) -> dict:
    """The `gpu` tests (the vLLM ones where vLLM is installed), within 180 s of the budget."""
    start = time.monotonic()
    cmd = [sys.executable, "-m", "pytest", "-q", "-m", "gpu", "-p", "no:cacheprovider", *GPU_TESTS,
           *([] if has_vllm else ["-k", "not vllm"])]
    try:
        proc = subprocess.run(cmd, cwd=REPO, env=child_env(), capture_output=True, text=True,
                              timeout=min(180, max(deadline - time.monotonic(), 1)))
        summary = (proc.stdout.strip().splitlines() or ["no output"])[-1]
        tail = proc.stdout[-4000:]
    except subprocess.TimeoutExpired as exc:
        summary, tail = "cut short at 180 s", (exc.stdout or b"")[-4000:].decode(errors="replace")
    return {"summary": summary, "seconds": time.monotonic() - start, "tail": tail}


def run_workload(args: argparse.Namespace, name: str, w: Workload, work: Path, rates: ChipRates, deadline: float,
                 later: int, report) -> str | None:
    """One workload's runs (ours GRPO, TRL unless skipped, ours Share-GRPO), each given an equal share
    of the budget left (`later`: workloads still to run after this one); `report` gets the
    workload's report after every run. Returns why it stopped early, or None."""
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(work / "model")
    peer = [n for n in RUNS if n != "trl" or args.peer_python]
    runs: dict[str, dict] = {}
    for j, key in enumerate(peer):
        left = deadline - time.monotonic()
        share = left / (len(peer) - j + len(peer) * later)
        if left < 20:
            return f"the {args.budget_s:.0f} s budget ran out before {name} {key}"
        python = args.peer_python if key == "trl" else sys.executable
        # ours (GRPO) at the first workload only: one more step, profiled (the large one's profile
        # would hold millions of events: each token's graph replay records every kernel)
        profile = args.out.parent / f"{args.out.name}_profile_{name}.txt"
        profiled = key == "ours_grpo" and name == args.workloads[0]
        runs[key] = run_once(key, python, work, share, ("--profile", str(profile)) if profiled else ())
        if key == "ours_grpo" and profile.exists():
            runs[key]["profile"] = {"file": profile.name, "head": profile.read_text().split("\n\n")[0]}
        workload = workload_report(name, w, runs, rates, config)
        report(workload)
        print(f"{name} {key}: " + json.dumps(workload["trainers"].get(key, runs[key]))[:300], flush=True)
    return None


if __name__ == "__main__":
    from bench.errors import exit_on_usage_error

    raise SystemExit(exit_on_usage_error(main))
