"""What the numeric pin (`reproduce.numerics`) holds: the miniature's data, warm start and one short
GRPO run at a probe's size, under the environment as it is (set the pinned variables, or not, from
outside), with the digests of the weights they made and the seconds each took.

    python -m reproduce.mini.probe --probe pilot --runs runs/probe_pinned
"""

from __future__ import annotations

import sys

from ..numerics import recorded
from .spec import MiniSpec, method_runs
from .stages import stage_data, stage_rl, stage_warm_start

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

    spec = MiniSpec(**PROBES[size])
    runs = Path(runs)
    data = stage_data(spec, runs, force=True)
    t0 = time.monotonic()
    base = stage_warm_start(spec, runs, data, force=True)
    t1 = time.monotonic()
    grpo = [r for r in method_runs(spec) if r.name.startswith("GRPO-")]
    out = stage_rl(spec, runs, base, data, True, plan=grpo)[grpo[0].name]
    t2 = time.monotonic()
    ds = sorted((out / "checkpoints" / f"step_{spec.rl_steps}" / "ds").glob("*model_states.pt"))
    # the model states file also pickles its run's paths and config: the tensors are what is compared
    import torch

    states = [torch.load(p, weights_only=True, map_location="cpu")["module"] for p in ds]
    rl = hashlib.sha256(b"".join(t.numpy().tobytes() for s in states for t in s.values())).hexdigest()
    return {"numerics": recorded(), "warm_start_sha256": weights_digest(base), "rl_sha256": rl,
            "warm_start_s": round(t1 - t0, 1), "rl_s": round(t2 - t1, 1)}


def main(argv: list[str] | None = None) -> int:
    """`python -m reproduce.mini.probe --probe smoke|pilot --runs DIR`: one probe under the environment
    as it is (set PINNED, or not, from outside), as JSON on stdout."""
    import argparse
    import json

    parser = argparse.ArgumentParser(prog="python -m reproduce.mini.probe", description=main.__doc__)
    parser.add_argument("--probe", choices=list(PROBES), default="smoke")
    parser.add_argument("--runs", required=True)
    args = parser.parse_args(argv)
    print(json.dumps(probe(args.probe, args.runs)))
    return 0


if __name__ == "__main__":
    from bench.errors import exit_on_usage_error

    sys.exit(exit_on_usage_error(main))
