"""One instruction set and one thread layout for every numeric library of the CPU miniature, so that
its table replays to the digit on any x86-64 CPU with AVX2, not only on the kind that made it.

Without a pin, ATen dispatches its AVX2 or AVX-512 kernels by what the CPU has, and MKL and oneDNN
pick their own code paths: the rounding differs, and the miniature's warm start (which stops on a
sampled accuracy) amplifies it. `PINNED` fixes each: ATen's kernels (`ATEN_CPU_CAPABILITY`), MKL's
conditional numerical reproducibility in its strict AVX2 mode (`MKL_CBWR`), oneDNN's highest ISA
(`ONEDNN_MAX_CPU_ISA`), and the thread counts (a reduction split over another number of threads
adds in another order; the trainers and evaluators the pipeline starts use one thread each).

These are read when the libraries load, so they must be set before torch is imported:
`python -m reproduce run --scale mini` and `ablations` call `pin()` first, which re-executes the
command with them when the environment lacks them (`NUMERICS=native` keeps the machine's own).
`recorded()` is what run.json says about it.
"""

from __future__ import annotations

import os
import sys

PINNED = {
    "ATEN_CPU_CAPABILITY": "avx2",
    "MKL_CBWR": "AVX2,STRICT",
    "ONEDNN_MAX_CPU_ISA": "AVX2",
    "OMP_NUM_THREADS": "2",
    "MKL_NUM_THREADS": "2",
}
"""The environment every miniature process runs under (`pin`)."""

MACHINE_KNOBS = ("MKL_ENABLE_INSTRUCTIONS", "NUMERICS")
"""Also recorded: what emulates a machine with fewer instructions, and the opt-out."""


def pin(argv: list[str]) -> None:
    """Re-execute `python -m reproduce *argv` with `PINNED` set, unless it is set already or
    NUMERICS=native. Never returns when it re-executes."""
    if os.environ.get("NUMERICS") == "native" or all(os.environ.get(k) == v for k, v in PINNED.items()):
        return
    if "torch" in sys.modules:  # too late to pin in this process, and a re-exec would lose its state
        raise RuntimeError("reproduce.numerics.pin() must run before torch is imported")
    os.execve(sys.executable, [sys.executable, "-m", "reproduce", *argv], {**os.environ, **PINNED})


def recorded() -> dict:
    """The numeric settings in force: the pinned variables as set, the machine knobs, and the kernel
    set ATen actually dispatches (torch.backends.cpu.get_cpu_capability)."""
    import torch

    return {"env": {k: os.environ.get(k) for k in (*PINNED, *MACHINE_KNOBS)},
            "pinned": all(os.environ.get(k) == v for k, v in PINNED.items()),
            "aten_capability": torch.backends.cpu.get_cpu_capability(), "torch_threads": torch.get_num_threads()}


PROBES = {
    # the tests' (tiny model, a few steps)
    "smoke": dict(seeds=(1,), bench_items=3, train_rows=32, warm_eval_items=4, side=56, model_size="tiny",
                  vision_steps=2, warmup_steps=2, warmup_eval_every=2, rl_steps=2, rl_save_freq=1,
                  curve_steps=(1, 2), parallel=1,
                  extra_overrides=("data.min_pixels=3136", "data.max_pixels=3136", "data.max_response_length=8")),
    # the miniature's own model and data, its warm start cut to 50 + 50 steps and 4 RL steps
    "pilot": dict(seeds=(1,), train_rows=600, warm_eval_items=32, vision_steps=50, warmup_steps=50,
                  warmup_eval_every=50, rl_steps=4, rl_save_freq=2, curve_steps=(2, 4), parallel=1),
}


def probe(size: str, runs) -> dict:
    """The miniature's data, warm start and one GRPO run at a probe's size, in `runs`: the sha256 of
    the warm start's weights and of the RL run's last checkpoint, and the seconds each took."""
    import hashlib
    import time
    from pathlib import Path

    from bench.provenance import weights_digest

    from . import mini

    spec = mini.MiniSpec(**PROBES[size])
    runs = Path(runs)
    data = mini.stage_data(spec, runs, force=True)
    t0 = time.monotonic()
    base = mini.stage_warm_start(spec, runs, data, force=True)
    t1 = time.monotonic()
    grpo = [r for r in mini.method_runs(spec) if r.name.startswith("GRPO-")]
    out = mini.stage_rl(spec, runs, base, data, True, plan=grpo)[grpo[0].name]
    t2 = time.monotonic()
    ds = sorted((out / "checkpoints" / f"step_{spec.rl_steps}" / "ds").glob("*model_states.pt"))
    # the model states file also pickles its run's paths and config: the tensors are what is compared
    import torch

    states = [torch.load(p, weights_only=True, map_location="cpu")["module"] for p in ds]
    rl = hashlib.sha256(b"".join(t.numpy().tobytes() for s in states for t in s.values())).hexdigest()
    return {"numerics": recorded(), "warm_start_sha256": weights_digest(base), "rl_sha256": rl,
            "warm_start_s": round(t1 - t0, 1), "rl_s": round(t2 - t1, 1)}


def main(argv: list[str] | None = None) -> int:
    """`python -m reproduce.numerics --probe smoke|pilot --runs DIR`: one probe under the environment
    as it is (set PINNED, or not, from outside), as JSON on stdout."""
    import argparse
    import json

    parser = argparse.ArgumentParser(prog="python -m reproduce.numerics", description=main.__doc__)
    parser.add_argument("--probe", choices=list(PROBES), default="smoke")
    parser.add_argument("--runs", required=True)
    args = parser.parse_args(argv)
    print(json.dumps(probe(args.probe, args.runs)))
    return 0


if __name__ == "__main__":
    from bench.errors import exit_on_usage_error

    sys.exit(exit_on_usage_error(main))
