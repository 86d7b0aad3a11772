"""The paper-scale smoke (`make smoke-paper`, `reproduce.paper_smoke`): fixtures in VLMEvalKit's
layouts that its own dataset classes take, the md5 guard of `bench.run`, the generation counters,
the cost estimate, and the whole path on the tiny model on the CPU (the GPU run is marked `gpu`)."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from reproduce.paper_fixtures import LAYOUTS, table1_datasets, write_fixtures
from reproduce.paper_smoke import FULL_ITEMS, full_run_cost, item_counts

REPO = Path(__file__).resolve().parents[1]


def test_every_table1_benchmark_has_a_fixture_layout_and_a_published_count():
    assert set(table1_datasets()) == set(LAYOUTS) == set(FULL_ITEMS)


def test_fixtures_load_in_vlmevalkits_own_dataset_classes(tmp_path, monkeypatch):
    """Each fixture is taken by the class VLMEvalKit serves that dataset with (not its custom-TSV
    fallback), and its prompt holds the image and the question; MMMU's is interleaved."""
    from bench.vlmeval_compat import accept_local_tsv, import_vlmeval

    vlmeval = import_vlmeval()
    for cls in vlmeval.dataset.DATASET_CLASSES:  # accept_local_tsv changes classes: undone at teardown
        if "DATASET_MD5" in cls.__dict__:
            monkeypatch.setattr(cls, "DATASET_MD5", cls.DATASET_MD5)
    write_fixtures(tmp_path, items=2)
    monkeypatch.setenv("LMUData", str(tmp_path))
    expected = {"MathVista_MINI": "MathVista", "MMStar": "ImageMCQDataset", "MMMU_DEV_VAL": "MMMUDataset",
                "MathVerse_MINI": "MathVerse", "MathVision": "MathVision", "AI2D_TEST": "ImageMCQDataset"}
    for dataset, class_name in expected.items():
        accept_local_tsv(dataset)
        built = vlmeval.dataset.build_dataset(dataset)
        assert type(built).__name__ == class_name and len(built) == 2, dataset
        message = built.build_prompt(built.data.iloc[1])
        kinds = [m["type"] for m in message]
        assert "image" in kinds and "text" in kinds and Path(next(m["value"] for m in message if m["type"] == "image")).is_file()
        if dataset == "MMMU_DEV_VAL":
            assert kinds == ["text", "image", "text"], kinds  # "<image 1>" split out by split_MMMU
        if dataset in ("MMStar", "AI2D_TEST"):
            assert "B. 4" in message[-1]["value"]


def test_bench_run_stops_on_a_tsv_vlmevalkit_would_download_over(tmp_path, capsys):
    """A local MMStar.tsv that is not VLMEvalKit's file would be overwritten by a download (offline:
    fail mid-run); bench.run names it before any work, unless --trust-local-tsv."""
    from bench.run import main
    from train.tiny import build_tiny

    tiny_model = build_tiny(tmp_path / "model", seed=0)
    write_fixtures(tmp_path / "lmu", items=2, datasets=["MMStar"])
    rc = main(["--model", str(tiny_model), "--data", "MMStar", "--work-dir", str(tmp_path / "work"),
               "--lmudata", str(tmp_path / "lmu")])
    err = capsys.readouterr().err
    assert rc == 2 and "MMStar.tsv: md5" in err and "--trust-local-tsv" in err
    assert not (tmp_path / "work" / "model").exists()  # only its lock was there, and it is gone


def test_new_tokens_are_counted_at_generate():
    from bench.adapter import GenerationLog, count_new_tokens

    class Model:
        config = object()

        def generate(self, input_ids, max_new_tokens):
            return torch.cat([input_ids, torch.zeros(input_ids.shape[0], max_new_tokens, dtype=torch.long)], dim=1)

    model = Model()
    counter = count_new_tokens(model)
    model.generate(input_ids=torch.ones(1, 7, dtype=torch.long), max_new_tokens=5)
    model.generate(torch.ones(1, 3, dtype=torch.long), max_new_tokens=2)
    assert counter == [7]
    log = GenerationLog()
    log.record("m", 2.0, 10)
    log.record("m", 3.0, 15)
    assert log.summary("m") == {"items": 2, "seconds": 5.0, "new_tokens": 25, "items_per_s": 0.4, "tokens_per_s": 5.0}
    assert log.summary("other") is None
    assert count_new_tokens(None) == [0]  # an engine that is not a transformers model: not counted


def test_full_run_cost_hand_worked(tmp_path):
    """2 models x (1,000 + 500) items x 2,048 tokens / 100 tokens/s = 61,440 s = 17.07 h; on 8 GPUs 2.13 h."""
    cost = full_run_cost(100.0, {"a": (1000, "published"), "b": (500, "published")}, models=2)
    assert cost["hours_one_gpu"] == pytest.approx(2 * 1500 * 2048 / 100 / 3600)
    assert cost["hours_8_gpus"] == pytest.approx(cost["hours_one_gpu"] / 8)
    write_fixtures(tmp_path, items=3, datasets=["MMStar"])
    counts = item_counts(tmp_path)
    assert counts["MMStar"] == (3, str(tmp_path / "MMStar.tsv")) and counts["AI2D_TEST"] == (3088, "published")


@pytest.mark.slow
def test_the_paper_scale_path_runs_end_to_end_on_the_tiny_model(tmp_path):
    """Fixtures -> bench.run under torchrun -> bench.score -> Table 1, the commands SCALE=paper runs,
    on the tiny model on the CPU; what the GPU smoke reports is all there. It runs, as on a GPU image,
    where decord and jieba cannot be imported (every process of it, children too)."""
    out = tmp_path / "smoke"
    blocker = str(REPO / "tests" / "helpers" / "without_optional")
    env = {**os.environ, "PYTHONPATH": blocker}
    proc = subprocess.run([sys.executable, "-m", "reproduce.paper_smoke", "--out", str(out), "--shape", "tiny",
                           "--max-new-tokens", "8"], cwd=REPO, capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    check = [sys.executable, "-c", "import decord"]
    assert "No module named 'decord'" in subprocess.run(check, env=env, capture_output=True, text=True).stderr
    result = json.loads((out / "smoke.json").read_text())
    assert [s["name"] for s in result["steps"]] == ["build model", "bench.run", "bench.score", "reproduce table1"]
    assert all(s["rc"] == 0 for s in result["steps"])
    assert "torch.distributed.run" in result["steps"][1]["cmd"] and "--trust-local-tsv" in result["steps"][1]["cmd"]
    gen = result["generation"]
    assert gen["items"] == 12 and 0 < gen["new_tokens"] <= 12 * 8
    record = json.loads((out / "work" / "model" / "bench_run.json").read_text())
    assert record["status"] == "finished" and record["cuda_max_memory_gib"] is None
    assert record["tsv_md5"]["MMStar"] == hashlib.md5((out / "LMUData" / "MMStar.tsv").read_bytes()).hexdigest()
    row = next(line for line in (out / "table1.md").read_text().splitlines() if line.startswith("| model |"))
    assert row.count("|") == 9 and "missing" not in row and "paper" not in row  # six columns, Average, no paper cells
    assert result["full_run_cost"]["items_per_model"] == sum(FULL_ITEMS.values())
    assert "bench.run" in (out / "smoke.md").read_text()


@pytest.mark.gpu
def test_the_paper_scale_smoke_on_a_gpu(tmp_path):
    """The command docs/evaluation.md gives for the GPU: the 3B shape, in its 4-minute budget."""
    out = tmp_path / "smoke"
    proc = subprocess.run([sys.executable, "-m", "reproduce.paper_smoke", "--out", str(out)], cwd=REPO,
                          capture_output=True, text=True, timeout=300)
    result = json.loads((out / "smoke.json").read_text())
    assert proc.returncode == 0, (out / "smoke.md").read_text()
    assert result["generation"]["items"] == 12 and result["cuda_max_memory_gib"] > 1


@pytest.mark.parametrize("args, message", [
    (["--items", "0"], "--items 0: must be > 0"),
    (["--max-new-tokens", "-1"], "--max-new-tokens -1: must be > 0"),
    (["--count-items-in", "/no/such/folder"], "--count-items-in /no/such/folder: no such folder"),
])
def test_smoke_usage_errors_are_one_line_before_any_work(tmp_path, capsys, args, message):
    from reproduce.paper_smoke import main

    assert main(["--out", str(tmp_path / "s"), "--shape", "tiny", *args]) == 2
    assert capsys.readouterr().err.strip() == f"error: {message}"
    assert not (tmp_path / "s").exists()
