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


@pytest.mark.slow
def test_grid_writes_curves_report_and_plot(tmp_path):
    out = tmp_path / "cpu_scaling"
    cmd = [sys.executable, "-m", "reproduce.perf", "--grid", "--points", "tiny:16:4", "tiny:32:4",
           "--alternations", "1", "--steps", "1", "--peer-python", "", "--work-dir", str(tmp_path / "work"),
           "--out", str(out)]
    result = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    points = json.loads(out.with_suffix(".json").read_text())["points"]
    assert list(points) == ["tiny_L16_n4", "tiny_L32_n4"]
    for length, p in zip((16, 32), points.values(), strict=True):
        assert p["workload"]["new_tokens"] == length and p["workload"]["completions"] == 4
        for s in p["trainers"].values():  # exactly `length` tokens for each of 2 x 4 responses
            assert s["tokens_per_step"] == 2 * 4 * length and s["steps"] == 1
    md = out.with_suffix(".md").read_text()
    assert "| tiny | 32 | 4 | ours Share-GRPO |" in md and "Points left out:" in md
    assert out.with_suffix(".png").read_bytes()[:4] == b"\x89PNG"
    assert not out.with_suffix(".partial.json").exists()


def test_grid_verdicts_apply_each_target_where_it_applies():
    from reproduce.perf.grid import verdicts

    def point(length, tps, rss, share):
        return {"workload": {"new_tokens": length}, "ratios": {
            "tokens/s, ours GRPO / TRL": {"median": tps}, "peak RSS, ours GRPO / TRL": {"median": rss},
            "step time, ours Share-GRPO / ours GRPO": {"median": share}}}

    assert verdicts(point(64, 1.5, 1.0, 3.0)) == {"tokens/s, ours GRPO / TRL": "met", "peak RSS, ours GRPO / TRL": "met"}
    assert verdicts(point(1024, 1.49, 1.01, 1.41)) == {"tokens/s, ours GRPO / TRL": "missed",
                                                      "peak RSS, ours GRPO / TRL": "missed",
                                                      "step time, ours Share-GRPO / ours GRPO": "missed"}


def test_grid_points_are_checked():
    from reproduce.perf.__main__ import grid_points

    assert grid_points(["small:256:16"]) == [("small", 256, 16)]
    for bad in ("small:256", "small:x:16", "tiny:64:3"):
        with pytest.raises(ValueError, match="--points"):
            grid_points([bad])


@pytest.mark.slow
def test_memory_probe_trains_the_fixed_length_and_stops_at_the_limit(tmp_path):
    from reproduce.perf.memory import probe

    ok = probe("ours", 24, False, tmp_path, sys.executable, limit_mb=8192, model="tiny")
    assert ok["ok"] and ok["tokens"] == 2 * 16 * 24 and 0 < ok["peak_rss_mb"] < 8192
    over = probe("ours", 24, False, tmp_path, sys.executable, limit_mb=100, model="tiny")
    assert not over["ok"] and over["peak_rss_mb"] > 100 and over["step_s"] is None


def test_published_shape_config_is_wired_to_the_local_tokenizer():
    """The GPU benchmark's model: Qwen2.5-VL-3B's shape (checked against the published parameter
    count on the meta device) with this project's tokenizer ids for its special tokens."""
    from train.plan import count_parameters
    from train.tiny import SIZES, build_tokenizer, published_config_for

    tokenizer = build_tokenizer(0, SIZES["mini"].vocab)
    config = published_config_for(tokenizer, "Qwen/Qwen2.5-VL-3B-Instruct")
    assert config.image_token_id == tokenizer.convert_tokens_to_ids("<|image_pad|>") < len(tokenizer)
    assert config.text_config.eos_token_id == tokenizer.convert_tokens_to_ids("<|im_end|>")
    assert count_parameters(config).total == 3_754_622_976


@pytest.mark.gpu
def test_perf_runs_on_the_gpu_in_bf16_with_the_3b_shape(tmp_path):
    out = tmp_path / "gpu"
    cmd = [sys.executable, "-m", "reproduce.perf", "--model", "Qwen/Qwen2.5-VL-3B-Instruct", "--dtype", "bfloat16",
           "--new-tokens", "16", "--completions", "2", "--alternations", "1", "--steps", "1", "--peer-python", "",
           "--work-dir", str(tmp_path / "work"), "--out", str(out)]
    result = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=1100)
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads(out.with_suffix(".json").read_text())
    assert summary["machine"]["gpu"] and summary["workload"]["dtype"] == "bfloat16"
    for s in summary["trainers"].values():
        assert s["peak_gpu_mb"] > 3_754_622_976 * 2 / 2**20  # at least the bf16 weights
        assert s["tokens_per_step"] == 2 * 2 * 16


def test_memory_search_steps_by_secant_and_stops_when_bracketed():
    from reproduce.perf.memory import next_length

    def p(length, mb, ok=True):
        return {"length": length, "peak_rss_mb": mb, "ok": ok}

    # 1,000 MB at 128 and 2,000 at 256: the line meets 8,192 MB at 1,049 tokens -> 1,024
    assert next_length([p(128, 1000), p(256, 2000)], 8192) == 1024
    # the secant (4,195) passes a probe already over the limit: three quarters of 256..3,328
    assert next_length([p(128, 2131), p(256, 2322), p(3328, 8200, ok=False)], 8192) == 2560
    # within at 512, over at 576: bracketed to 64 tokens, done
    assert next_length([p(512, 7540), p(576, 8195, ok=False)], 8192) is None
    # memory that stops growing: double the longest length within
    assert next_length([p(128, 3000), p(256, 2900)], 8192) == 512


def test_step_floor_hand_worked():
    """One row, 2 parameters, 1 layer of 1 KV head of width 1, a 1-token prompt, 2 new tokens, at
    1 byte/s and 1 FLOP/s: decode reads 2 x 4 weight bytes plus KV 4 x (1 + 2) bytes = 20 s; the
    update is 6 x 2 x 3 = 36 s."""
    from reproduce.perf.floors import ChipRates, StepShape, step_floor

    f = step_floor(StepShape(parameters=2, layers=1, kv_heads=1, head_dim=1, rows=1, prompt_tokens=1, new_tokens=2),
                   ChipRates("test", copy_bytes_per_s=1.0, matmul_flop_per_s=1.0))
    assert (f["decode_s"], f["update_s"], f["step_s"]) == (20.0, 36.0, 56.0)
    assert f["tokens_per_s"] == 2 / 56
    # one of the 2 parameters in the vision tower: read once, not per token: 3 x 2 bytes + 12 = 18 s
    f = step_floor(StepShape(parameters=2, vision_parameters=1, layers=1, kv_heads=1, head_dim=1, rows=1,
                             prompt_tokens=1, new_tokens=2), ChipRates("test", copy_bytes_per_s=1.0, matmul_flop_per_s=1.0))
    assert f["decode_s"] == 2 * 2 + 2 + 12 == 18.0


def test_gpu_suite_runs_through_and_reports_on_a_cpu(tmp_path):
    """`python -m reproduce.perf.gpu` at the smallest sizes (the tiny model, no peer): the machine,
    the chip's rates, the `gpu` tests (skipped here) and a workload with its floor, written as
    JSON and Markdown."""
    out = tmp_path / "gpu"
    cmd = [sys.executable, "-m", "reproduce.perf.gpu", "--model", "tiny", "--new-tokens", "4", "--steps", "1",
           "--workloads", "16_rows", "--peer-python", "", "--out", str(out), "--work-dir", str(tmp_path / "w"),
           "--with-tests"]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(out.with_suffix(".json").read_text())
    assert result["device"]["versions"]["torch"].startswith("2.13.0") and result["device"]["gpu"] is None
    assert result["rates"]["copy_bytes_per_s"] > 0 and result["rates"]["matmul_flop_per_s"] > 0
    assert "skipped" in result["tests"]["summary"]
    wr = result["workloads"]["16_rows"]
    assert set(wr["trainers"]) == {"ours_grpo", "ours_share_grpo"}
    assert wr["trainers"]["ours_grpo"]["tokens_per_step"] == 16 * 4
    assert wr["floor"]["shape"]["rows"] == 16 and wr["floor"]["shape"]["prompt_tokens"] > 10
    assert wr["floor"]["step_s"] == wr["floor"]["decode_s"] + wr["floor"]["update_s"] > 0
    assert "step time, ours Share-GRPO / ours GRPO" in wr["ratios"]
    assert wr["runs"]["ours_grpo"]["settings"] == {
        "weights": "bf16, float32 master weights and Adam states (DeepSpeed bf16, ZeRO-0)", "gradient_checkpointing": False,
        "micro_batch": 8}
    md = out.with_suffix(".md").read_text()
    assert "Floor of a step" in md and "| ours (grpo) |" in md
    # ours GRPO ran one more step under the profiler, not counted in its figures
    assert wr["runs"]["ours_grpo"]["steps_done"] == 1 + 1 + 1 and len(wr["runs"]["ours_grpo"]["step_time"]) == 1
    table = (tmp_path / "gpu_profile_16_rows.txt").read_text()
    assert "Profiled step" in table and "4 new tokens per response" in table and " events." in table
    assert "aten::" in table and "gpu_profile_16_rows.txt" in md


def test_gpu_suite_names_a_run_that_failed(tmp_path):
    """A trainer whose run fails keeps its place in the report, with its error."""
    from reproduce.perf.compare import run_once
    from reproduce.perf.gpu import markdown, workload_report
    from reproduce.perf.workload import Workload

    failed = run_once("ours_grpo", sys.executable, tmp_path / "no_such_workload", timeout_s=300)
    assert "workload.json" in failed["error"]
    wr = workload_report("16_rows", Workload(), {"ours_grpo": failed}, None, None)
    assert wr["trainers"] == {} and wr["ratios"] == {}
    md = markdown({"device": {"python": "3", "versions": {}}, "workloads": {"16_rows": wr}})
    assert "| ours_grpo |" in md and "workload.json" in md


def test_device_busy_time_counts_each_kernel_once_and_overlaps_once():
    """Hand-worked: kernels on [0, 10] and [5, 20] (two streams) and [30, 40] us are busy 30 us; the
    CPU operator that launched them (its self device time is theirs again) and a user annotation
    are not counted. The old sum of every event's self device time gave 10 + 15 + 10 + 35 = 70."""
    from types import SimpleNamespace

    from torch.autograd import DeviceType

    from reproduce.perf.run_ours import device_busy_s

    def event(a, b, device=DeviceType.CUDA, annotation=False):
        return SimpleNamespace(time_range=SimpleNamespace(start=a, end=b), device_type=device,
                               is_user_annotation=annotation)

    events = [event(0, 10), event(5, 20), event(30, 40), event(0, 45, DeviceType.CPU), event(0, 50, annotation=True),
              event(12, 18)]  # inside another kernel's span
    assert device_busy_s(events) == pytest.approx(30e-6)
    assert device_busy_s([]) == 0.0
