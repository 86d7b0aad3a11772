"""The side-by-side benchmark's own plumbing, without the peer (TRL lives in .venv-peer, made by
`make bench-perf`): the workload is exactly what it claims and the report carries its figures."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_bench_perf_runs_ours_and_reports(tmp_path):
    out = tmp_path / "cpu"
    cmd = [sys.executable, "-m", "reproduce.perf", "--alternations", "1", "--steps", "2", "--peer-python", "",
           "--work-dir", str(tmp_path / "work"), "--out", str(out)]
    result = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads(out.with_suffix(".json").read_text())
    assert set(summary["trainers"]) == {"ours_grpo", "ours_share_grpo"}
    for key in ("ours_grpo", "ours_share_grpo"):
        s = summary["trainers"][key]
        assert s["steps"] == 2 and s["tokens_per_step"] == 2 * 4 * 64  # min = max new tokens: exactly 64 each
        assert set(s["split_s"]) == {"generate", "reward", "log_prob", "update", "other"}
        assert 0 < s["split_s"]["generate"] < s["step_time_s"] and s["peak_rss_mb"] > 0
        assert s["tokens_per_s"] == pytest.approx(512 / s["step_time_s"])
    raw = summary["raw"]["ours_share_grpo"][0]
    assert len(raw["step_time"]) == 2 and len(raw["loss"]) == 2
    assert list(summary["ratios"]) == ["step time, ours Share-GRPO / ours GRPO"]
    text = out.with_suffix(".md").read_text()
    assert "ours (grpo)" in text and "ours (share_grpo)" in text and "grades/s" in text
