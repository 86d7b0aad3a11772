"""Generated tokens per second of a full Share-GRPO step on the tiny model (B = 4 questions,
Q = 2, n = 4, 64 new tokens), with peak memory. `make bench-perf` prints the figures."""

import json
import os
import resource
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from bench.data import training_rows
from train.tiny import build_tiny

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_share_grpo_step_throughput(tmp_path, benchmark):
    model = build_tiny(tmp_path / "model", seed=0)
    data = tmp_path / "train.parquet"
    pd.DataFrame(training_rows(16, seed=0, tasks=["SynthCount"])).to_parquet(data)
    steps = 6 if benchmark.enabled else 2
    cmd = [sys.executable, "-m", "train", "--config", str(REPO / "reproduce/configs/tiny_cpu.yaml"),
           f"worker.actor.model.model_path={model}", f"data.train_files={data}", f"trainer.output_dir={tmp_path / 'run'}",
           "trainer.progress_bar=false", "data.rollout_batch_size=4", "worker.actor.global_batch_size=8",
           "algorithm.num_variants=2", "worker.rollout.n=4", "data.max_response_length=64",
           "worker.reward.function=tests.helpers.rewards:length_parity", f"trainer.max_steps={steps}",
           "trainer.save_freq=0"]
    result = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=900,
                            env={k: v for k, v in os.environ.items() if k != "MASTER_PORT"})
    assert result.returncode == 0, result.stderr[-2000:]
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    measured = rows[1:]  # the first step warms up
    tps = sorted(r["perf/tokens_per_s"] for r in measured)[len(measured) // 2]
    peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    split = {k: sum(r[f"perf/{k}_time"] for r in measured) / len(measured)
             for k in ("generate", "reward", "old_log_prob", "update")}
    benchmark.extra_info.update({"tokens_per_s": tps, "peak_rss_mb": peak_mb, **split})
    benchmark.pedantic(lambda: None, rounds=1)
    print(f"\nShare-GRPO step (B=4, Q=2, n=4, 64 tokens): {tps:,.0f} generated tokens/s (median of {len(measured)} steps), "
          f"peak RSS {peak_mb:,.0f} MB; time split (s): " + ", ".join(f"{k} {v:.3f}" for k, v in split.items()))
    assert tps > 0
