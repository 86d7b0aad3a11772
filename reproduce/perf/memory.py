"""Memory of long responses: `python -m reproduce.perf.memory` finds, for our trainer and TRL's
GRPOTrainer, with and without gradient checkpointing, the longest response each can train at
n=16 (2 prompts, 32 responses, one micro-batch) on the `small` model within 8 GB, and writes
results/perf/memory.{md,json}.

What fills memory at these lengths is the training forward and backward over all 32 responses,
not sampling (the KV cache of 32 x 2,048 tokens on this model is under 0.2 GB). So each probe
replaces generation by a fixed response of exactly the probed length (ordinary text tokens, no
end-of-turn), in both trainers alike, and runs one full training step on it: reward, log-probs,
update. Sampling 2,048 tokens 32 times on two CPU cores would take minutes a probe and change no
peak.

Per trainer and setting: peak RSS at two short lengths, then secant steps (the length where the
line through the two longest probes within the limit meets it, in multiples of 64; three quarters
of the way up the bracket when the line leaves it) until a length within the limit and one over it are at most 10% apart.
A watchdog ends any probe whose resident memory passes the limit.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.fileio import write_json_atomic, write_text_atomic
from reproduce.perf.compare import child_env, point_key
from reproduce.perf.workload import Workload, prepare

REPO = Path(__file__).resolve().parents[2]
LIMIT_MB = 8 * 1024
FILLER = "the answer is 7 and 3 "
"""Text whose tokens make up every probe's response."""


def fixed_response_ids(tokenizer, length: int) -> list[int]:
    ids = tokenizer.encode(FILLER, add_special_tokens=False)
    return (ids * (length // len(ids) + 1))[:length]


def child(argv: list[str]) -> int:
    """One probe, in a fresh process: patch generation, then run the usual benchmark runner."""
    parser = argparse.ArgumentParser(prog="python -m reproduce.perf.memory child")
    parser.add_argument("trainer", choices=["ours", "trl"])
    parser.add_argument("work_dir", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--gradient-checkpointing", action="store_true")
    args = parser.parse_args(argv)
    w = json.loads((args.work_dir / "workload.json").read_text())
    from bench.processing import load_processor

    ids = fixed_response_ids(load_processor(args.work_dir / "model").tokenizer, w["new_tokens"])
    import torch

    if args.trainer == "ours":
        from reproduce.perf import run_ours
        from train.rollout import HFRollout

        def fixed(self, model, prompts, params):
            return [torch.tensor(ids) for _ in range(len(prompts.input_ids) * params.n)]

        HFRollout.generate = fixed
        gc = "true" if args.gradient_checkpointing else "false"
        return run_ours.main([str(args.work_dir), "--out", str(args.out), "--mode", "grpo",
                              f"worker.actor.model.enable_gradient_checkpointing={gc}"])
    from trl import GRPOTrainer

    from reproduce.perf import run_trl

    def fixed_trl(self, prompt_ids, *a, **k):
        return [list(ids) for _ in prompt_ids], None

    GRPOTrainer._generate_single_turn = fixed_trl
    return run_trl.main([str(args.work_dir), "--out", str(args.out)]
                        + (["--gradient-checkpointing"] if args.gradient_checkpointing else []))


def probe(trainer: str, length: int, gc: bool, work_root: Path, python: str, limit_mb: float,
          model: str = "small") -> dict:
    """One training step at `length` in a fresh process: {"length", "peak_rss_mb", "ok", "step_s",
    "tokens"} (ok False: stopped when its resident memory passed the limit)."""
    import psutil

    w = Workload(model=model, completions=16, new_tokens=length, warmup_steps=0, measured_steps=1)
    work_dir = work_root / point_key(model, length, 16)
    prepare(work_dir, w)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "result.json"
        cmd = [python, "-m", "reproduce.perf.memory", "child", trainer, str(work_dir), "--out", str(out)]
        cmd += ["--gradient-checkpointing"] if gc else []
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=REPO, env=child_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        watched, over = psutil.Process(proc.pid), 0.0
        while proc.poll() is None:
            try:
                rss = sum(p.memory_info().rss for p in [watched, *watched.children(recursive=True)]) / 2**20
            except psutil.NoSuchProcess:
                rss = 0.0
            if rss > limit_mb:
                over = rss
                proc.kill()
                break
            time.sleep(0.05)
        _, err = proc.communicate()
        elapsed = time.perf_counter() - start
        if over:
            return {"length": length, "peak_rss_mb": over, "ok": False, "step_s": None, "tokens": None}
        if proc.returncode != 0:
            raise SystemExit(f"probe {trainer} L={length} gc={gc} failed:\n{err[-3000:]}")
        r = json.loads(out.read_text())
    return {"length": length, "peak_rss_mb": r["peak_rss_mb"], "ok": r["peak_rss_mb"] <= limit_mb,
            "step_s": r["step_time"][0], "tokens": r["tokens"][0], "process_s": elapsed}


def next_length(probes: list[dict], limit_mb: float) -> int | None:
    """Where to probe next, in multiples of 64: the secant through the two longest probes within
    the limit, kept strictly between the longest within and the shortest over (a probe stopped
    over the limit gives no true peak, so it only bounds); three quarters of the way from the one to
    the other when the secant leaves that range. None once they are at most 10% apart."""
    ok = sorted((p for p in probes if p["ok"]), key=lambda p: p["length"])
    within = ok[-1]["length"] if ok else 0
    over = min((p["length"] for p in probes if not p["ok"]), default=None)
    if over is not None and over <= max(within * 1.1, within + 64):
        return None
    guess = None
    if len(ok) >= 2:
        a, b = ok[-2], ok[-1]
        rise = (b["peak_rss_mb"] - a["peak_rss_mb"]) / (b["length"] - a["length"])
        guess = b["length"] + (limit_mb - b["peak_rss_mb"]) / rise if rise > 0 else 2 * b["length"]
    high = over if over is not None else float("inf")
    if guess is None or not within < guess < high:  # past the bracket: three quarters of the way up it
        guess = within + 0.75 * (high - within) if over is not None else 2 * max(within, 64)
    length = int(guess) // 64 * 64
    length = min(max(length, within + 64), (over - 64) if over is not None else length)
    return length if length > within and length not in {p["length"] for p in probes} else None


def search(trainer: str, gc: bool, short: tuple[int, int], work_root: Path, python: str, limit_mb: float,
           tries: int = 4, known: list[dict] | None = None) -> dict:
    """Peak RSS at two short lengths (or the probes `known` from an earlier search), then up to
    `tries` probes chosen by `next_length`."""
    probes = list(known or [probe(trainer, L, gc, work_root, python, limit_mb) for L in short])
    for _ in range(tries):
        length = next_length(probes, limit_mb)
        if length is None:
            break
        probes.append(probe(trainer, length, gc, work_root, python, limit_mb))
    ok = sorted((p for p in probes if p["ok"]), key=lambda p: p["length"])
    within = ok[-1]["length"] if ok else None
    over = min((p["length"] for p in probes if not p["ok"]), default=None)
    slope = (ok[-1]["peak_rss_mb"] - ok[-2]["peak_rss_mb"]) / (ok[-1]["length"] - ok[-2]["length"]) if len(ok) > 1 else None
    print(f"{trainer:4s} gradient checkpointing {'on ' if gc else 'off'}: " + ", ".join(
        f"{p['length']}: {p['peak_rss_mb']:,.0f} MB" for p in probes) + f" -> within {within}, over {over}", flush=True)
    return {"trainer": trainer, "gradient_checkpointing": gc, "probes": probes, "mb_per_token": slope,
            "longest_within": within, "shortest_over": over}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["child"]:
        return child(argv[1:])
    parser = argparse.ArgumentParser(prog="python -m reproduce.perf.memory", description=__doc__.split("\n\n")[0])
    parser.add_argument("--peer-python", default=str(REPO / ".venv-peer" / "bin" / "python"))
    parser.add_argument("--limit-mb", type=float, default=LIMIT_MB)
    parser.add_argument("--short", type=int, nargs=2, default=[128, 256], help="the two lengths the line goes through")
    parser.add_argument("--only", nargs="+", metavar="TRAINER:on|off", help="re-run these settings (e.g. ours:on) "
                        "and keep the others from the existing results file")
    parser.add_argument("--work-dir", type=Path, default=REPO / "runs" / "perf_memory")
    parser.add_argument("--out", type=Path, default=REPO / "results" / "perf" / "memory")
    args = parser.parse_args(argv)
    previous = {}
    if args.only and args.out.with_suffix(".json").exists():
        previous = {(r["trainer"], r["gradient_checkpointing"]): r
                    for r in json.loads(args.out.with_suffix(".json").read_text())["rows"]}
    wanted = {(t, g == "on") for t, _, g in (o.partition(":") for o in args.only or [])}
    rows = []
    for trainer in ("ours", "trl"):
        python = sys.executable if trainer == "ours" else args.peer_python
        for gc in (False, True):
            old = previous.get((trainer, gc))
            if args.only and (trainer, gc) not in wanted and old:
                rows.append(old)
            else:  # a re-run goes on from the earlier probes
                rows.append(search(trainer, gc, tuple(args.short), args.work_dir, python, args.limit_mb,
                                   known=old["probes"] if old else None))
    lines = [
        "Produced by `python -m reproduce.perf.memory`: the longest response each trainer trains at n=16 "
        f"(2 prompts x 16 responses, one micro-batch, fp32, AdamW) on the `small` model (29M parameters) "
        f"within {args.limit_mb / 1024:.0f} GB peak RSS. Generation is replaced by a fixed response of the probed "
        "length in both trainers (see the module docstring); each probe is one training step in a fresh process.",
        "",
        "| trainer | gradient checkpointing | peak RSS at the probes (length: MB) | MB per token of response length | "
        "longest response within the limit |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        probes = ", ".join(f"{p['length']}: {p['peak_rss_mb']:,.0f}{'' if p['ok'] else ' (over, stopped)'}"
                           for p in r["probes"])
        longest = (f"{r['longest_within']:,}" if r["longest_within"] else "none probed") + (
            f" (over at {r['shortest_over']:,})" if r["shortest_over"] else " (no probed length went over)")
        lines.append(f"| {'ours' if r['trainer'] == 'ours' else 'TRL GRPOTrainer'} | "
                     f"{'on' if r['gradient_checkpointing'] else 'off'} | {probes} | {r['mb_per_token'] or float('nan'):.2f} | {longest} |")
    text = "\n".join(lines) + "\n"
    print("\n" + text)
    write_json_atomic(args.out.with_suffix(".json"), {"limit_mb": args.limit_mb, "rows": rows})
    write_text_atomic(args.out.with_suffix(".md"), text)
    return 0


if __name__ == "__main__":
    from bench.errors import exit_on_usage_error

    raise SystemExit(exit_on_usage_error(main))
