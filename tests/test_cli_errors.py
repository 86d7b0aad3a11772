"""Every entry point answers a user's mistake with one line that names the culprit and a non-zero
exit, and leaves nothing half-written; the bad inputs a new user tried, as a table."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from bench.data import training_rows, write
from train.tiny import build_tiny

REPO = Path(__file__).resolve().parents[1]
TINY = REPO / "reproduce" / "configs" / "tiny_cpu.yaml"


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    model = build_tiny(root / "model", seed=0)
    pd.DataFrame(training_rows(8, seed=0, tasks=["SynthCount"])).to_parquet(root / "train.parquet")
    (root / "empty.parquet").write_bytes(b"")
    (root / "corrupt.parquet").write_bytes(b"PAR1 this is not parquet PAR1")
    (root / "latin1.jsonl").write_bytes(b'{"problem": "<image>a", "answer": "1", "images": []}\n{"problem": "caf\xe9"}\n')
    (root / "bad.yaml").write_text("data:\n  rollout_batch_size: [1\n")
    write(root / "lmu", n=2, seed=0, side=28, tasks=["SynthCount"])
    (root / "rows.jsonl").write_text('{"response": "\\\\boxed{1}", "answer": "1"}\n')
    return root, model


def train_args(root: Path, model: Path, *overrides: str) -> list[str]:
    return ["train", "--config", str(TINY), f"worker.actor.model.model_path={model}",
            f"data.train_files={root / 'train.parquet'}", f"trainer.output_dir={root / 'out'}",
            "trainer.progress_bar=false", *overrides]


# (id, argv builder, text the one line must contain)
CASES = [
    ("global_batch_size=0", lambda r, m: train_args(r, m, "worker.actor.global_batch_size=0"),
     "worker.actor.global_batch_size=0 must be >= 1"),
    ("max_response_length=0", lambda r, m: train_args(r, m, "data.max_response_length=0"),
     "data.max_response_length=0 must be >= 1"),
    ("micro_batch=0", lambda r, m: train_args(r, m, "worker.actor.micro_batch_size_per_device_for_update=0"),
     "micro_batch_size_per_device_for_update=0 must be >= 1"),
    ("max_steps=-1", lambda r, m: train_args(r, m, "trainer.max_steps=-1"), "trainer.max_steps=-1 must be >= 1"),
    ("missing model", lambda r, m: train_args(r, m, f"worker.actor.model.model_path={r / 'nope'}"),
     "worker.actor.model.model_path="),
    ("empty parquet", lambda r, m: train_args(r, m, f"data.train_files={r / 'empty.parquet'}"),
     "empty.parquet: empty file"),
    ("corrupt parquet", lambda r, m: train_args(r, m, f"data.train_files={r / 'corrupt.parquet'}"),
     "corrupt.parquet: not a readable parquet file"),
    ("non-UTF-8 JSONL", lambda r, m: train_args(r, m, f"data.train_files={r / 'latin1.jsonl'}"),
     "latin1.jsonl line 2: not UTF-8 text"),
    ("unwritable output_dir", lambda r, m: train_args(r, m, f"trainer.output_dir={r / 'train.parquet' / 'x'}"),
     "train.parquet/x: cannot write there"),
    ("bad YAML", lambda r, m: ["train", "--config", str(r / "bad.yaml")], "bad.yaml line 3: not valid YAML"),
    ("unknown key", lambda r, m: train_args(r, m, "trainer.max_stpes=3"), "unknown config key(s): trainer.max_stpes"),
    ("bench.data --n 0", lambda r, m: ["bench.data", "--out", str(r / "bd"), "--n", "0"], "--n 0"),
    ("bench.data --side 3", lambda r, m: ["bench.data", "--out", str(r / "bd"), "--side", "3"], "--side 3"),
    ("bench.data --train -3", lambda r, m: ["bench.data", "--out", str(r / "bd"), "--train", "-3"], "--train -3"),
    ("bench.verify missing file", lambda r, m: ["bench.verify", "--jsonl", str(r / "none.jsonl")], "none.jsonl: no such file"),
    ("bench.verify missing table", lambda r, m: ["bench.verify", "--agreement", "--table", str(r / "t.tsv")],
     "verifier table not found"),
    ("bench.verify no answer", lambda r, m: ["bench.verify", "--response", "x"], "--response needs --answer"),
    ("bench.score missing", lambda r, m: ["bench.score", "--work-dir", str(r / "nowd")], "nowd"),
    ("bench.run unknown model", lambda r, m: ["bench.run", "--model", str(r / "nomodel"), "--data", "SynthCount",
                                              "--work-dir", str(r / "wd"), "--lmudata", str(r / "lmu")], "unknown model"),
    ("bench.run missing lmudata", lambda r, m: ["bench.run", "--model", str(m), "--data", "SynthCount",
                                                "--work-dir", str(r / "wd"), "--lmudata", str(r / "nolmu")], "nolmu"),
    ("reproduce table1", lambda r, m: ["reproduce", "table1", "--work-dir", str(r / "nowd")], "nowd"),
    ("reproduce scale", lambda r, m: ["reproduce", "run", "--scale", "huge"], "SCALE='huge' is not a scale"),
]


@pytest.mark.parametrize(("build", "needle"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_one_line_names_the_culprit(files, build, needle):
    root, model = files
    before = sorted(p.relative_to(root) for p in root.rglob("*"))
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO)}
    result = subprocess.run([sys.executable, "-m", *build(root, model)], capture_output=True, text=True, cwd=REPO,
                            env=env, timeout=300)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode != 0
    assert len(lines) == 1, result.stderr[-3000:]
    assert lines[0].startswith("error: ") and needle in lines[0], lines[0]
    after = sorted(p.relative_to(root) for p in root.rglob("*") if not p.name.startswith(".lock"))
    assert [p for p in after if p not in before and p.name not in ("out", "wd")] == []  # nothing half-written


# Every entry point that reads a file, against the four ways a file goes wrong. A read-only output
# folder is tried in tests/test_bad_inputs.py (it needs a private mount namespace) and a concurrent
# second run beside each lock's test (trainer below, bench.run and reproduce in their own files).
@pytest.fixture(scope="module")
def broken(tmp_path_factory):
    root = tmp_path_factory.mktemp("broken")
    (root / "empty.jsonl").write_bytes(b"")
    (root / "garbage.jsonl").write_bytes(b"\x00\x01 not json\n")
    (root / "a_folder").mkdir()
    (root / "a_file").write_text("not a folder")
    (root / "empty_dir").mkdir()
    (root / "corrupt_preds" / "m").mkdir(parents=True)
    (root / "corrupt_preds" / "m" / "m_SynthCount.xlsx").write_bytes(b"PK\x03\x04 not a workbook")
    (root / "corrupt_scores" / "m").mkdir(parents=True)
    (root / "corrupt_scores" / "m" / "r1_scores.json").write_text('{"datasets": ')
    (root / "ckpt" / "ds").mkdir(parents=True)
    (root / "ckpt" / "trainer_state.json").write_text("{}")
    (root / "ckpt" / "config.yaml").write_text("worker: [")
    lmu = root / "lmu"
    lmu.mkdir()
    (lmu / "Empty.tsv").write_bytes(b"")
    (lmu / "Garbage.tsv").write_bytes(b"index\timage\n1\t\xff\xfe\n")
    (lmu / "Folder.tsv").mkdir()
    (lmu / "Text.tsv").write_text("just one line of text\n")
    return root


def _bench_run(data: str):
    return lambda b, m: ["bench.run", "--model", str(m), "--data", data, "--work-dir", str(b / "wd"), "--lmudata",
                         str(b / "lmu")]


def _train(data: str):
    return lambda b, m: ["train", "--config", str(TINY), f"worker.actor.model.model_path={m}",
                         f"data.train_files={b / data}", f"trainer.output_dir={b / 'out'}"]


MATRIX = [
    ("bench.verify", "missing", lambda b, m: ["bench.verify", "--jsonl", str(b / "none.jsonl")], "none.jsonl: no such file"),
    ("bench.verify", "empty", lambda b, m: ["bench.verify", "--jsonl", str(b / "empty.jsonl")], "empty.jsonl: empty file"),
    ("bench.verify", "wrong type", lambda b, m: ["bench.verify", "--jsonl", str(b / "a_folder")], "a_folder: not a regular file"),
    ("bench.score", "missing", lambda b, m: ["bench.score", "--work-dir", str(b / "none")], "none: no such folder"),
    ("bench.score", "empty", lambda b, m: ["bench.score", "--work-dir", str(b / "empty_dir")], "no prediction file could be scored"),
    ("bench.score", "corrupt", lambda b, m: ["bench.score", "--work-dir", str(b / "corrupt_preds")],
     "no prediction file could be scored (1 unreadable or ambiguous)"),
    ("bench.score", "wrong type", lambda b, m: ["bench.score", "--work-dir", str(b / "a_file")], "a_file: not a folder"),
    ("bench.run", "missing", _bench_run("None"), "offline and no TSV for None"),
    ("bench.run", "empty", _bench_run("Empty"), "Empty.tsv: empty file"),
    ("bench.run", "corrupt", _bench_run("Garbage"), "Garbage.tsv: not a readable TSV"),
    ("bench.run", "wrong type", _bench_run("Folder"), "Folder.tsv: not a regular file"),
    ("bench.run", "not a table", _bench_run("Text"), "Text.tsv: no 'index' or 'image' column"),
    ("train", "missing", _train("none.parquet"), "training data not found"),
    ("train", "wrong type", _train("a_file"), "unsupported data format"),
    ("train", "corrupt", _train("garbage.jsonl"), "garbage.jsonl line 1: not valid JSON"),
    ("train", "empty", _train("empty.jsonl"), "empty.jsonl: empty file"),
    ("train.export", "missing", lambda b, m: ["train.export", str(b / "none"), str(b / "x")], "not a complete training checkpoint"),
    ("train.export", "wrong type", lambda b, m: ["train.export", str(b / "a_file"), str(b / "x")],
     "not a complete training checkpoint"),
    ("train.export", "corrupt", lambda b, m: ["train.export", str(b / "ckpt"), str(b / "x")], "ckpt/config.yaml: not valid YAML of a training config"),
    ("reproduce table1", "missing", lambda b, m: ["reproduce", "table1", "--work-dir", str(b / "none")], "none"),
    ("reproduce table1", "empty", lambda b, m: ["reproduce", "table1", "--work-dir", str(b / "empty_dir")],
     "no */r1_scores.json"),
    ("reproduce table1", "corrupt", lambda b, m: ["reproduce", "table1", "--work-dir", str(b / "corrupt_scores")],
     "r1_scores.json: not a scores file"),
    ("reproduce submit", "corrupt", lambda b, m: ["reproduce", "submit", "--work-dir", str(b / "corrupt_scores"),
                                                  "--model", "m", "--out", str(b / "s")], "r1_scores.json: not a scores file (JSONDecodeError)"),
    ("reproduce submit", "missing", lambda b, m: ["reproduce", "submit", "--work-dir", str(b / "none"), "--model", "m",
                                                  "--out", str(b / "s")], "r1_scores.json: not found"),
]


@pytest.mark.parametrize(("build", "needle"), [c[2:] for c in MATRIX], ids=[f"{c[0]}: {c[1]}" for c in MATRIX])
def test_every_entry_point_names_a_broken_file(files, broken, build, needle):
    _, model = files
    result = subprocess.run([sys.executable, "-m", *build(broken, model)], capture_output=True, text=True, cwd=REPO,
                            env={**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO)}, timeout=300)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-3000:]
    assert lines[-1].startswith("error: ") and needle in lines[-1], result.stderr[-3000:]
    assert all(str(broken) in line for line in lines[:-1])  # any line before the error names its file


def run_env() -> dict[str, str]:
    """No MASTER_PORT: two trainers at once each pick a free port (a pid-derived one collided)."""
    return {**{k: v for k, v in os.environ.items() if k != "MASTER_PORT"}, "HF_HUB_OFFLINE": "1",
            "PYTHONPATH": str(REPO)}


def training(root: Path, model: Path, out: Path, *overrides: str) -> list[str]:
    return [sys.executable, "-m", *train_args(root, model, f"trainer.output_dir={out}", "trainer.save_freq=0",
                                              *overrides)]


def test_a_second_trainer_on_one_output_dir_is_refused(files, tmp_path):
    root, model = files
    out = tmp_path / "shared"
    args = training(root, model, out, "trainer.max_steps=200")
    first = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=REPO, env=run_env())
    try:
        while not ((out / ".lock").exists() and (out / ".lock").read_text().startswith("pid")):
            assert first.poll() is None, "the first run ended before taking the lock"
            time.sleep(0.1)  # until the first run holds the lock (the pytest timeout bounds the wait)
        second = subprocess.run(args, capture_output=True, text=True, cwd=REPO, env=run_env(), timeout=300)
        assert second.returncode == 2
        assert f"trainer.output_dir={out} is in use by a running training (pid {first.pid})" in second.stderr
    finally:
        first.kill()
        first.wait()


def test_cut_off_metrics_line_is_dropped_and_a_finished_rerun_keeps_its_summary(files, tmp_path):
    root, model = files
    env = run_env()
    out = tmp_path / "run"
    args = training(root, model, out, "trainer.max_steps=1")
    subprocess.run(args, check=True, capture_output=True, cwd=REPO, env=env, timeout=300)
    last = json.loads((out / "summary.json").read_text())["last"]
    assert last["train/rows"] > 0
    rerun = subprocess.run(args, capture_output=True, text=True, cwd=REPO, env=env, timeout=300)  # nothing to do
    assert rerun.returncode == 0 and json.loads((out / "summary.json").read_text())["last"] == last
    with (out / "metrics.jsonl").open("a") as f:
        f.write('{"step": 2, "reward/me')  # a write cut off by a kill
    fresh = subprocess.run([*args, "trainer.resume=none", "trainer.max_steps=2"], capture_output=True, text=True,
                           cwd=REPO, env=env, timeout=300)
    assert fresh.returncode == 0, fresh.stderr[-2000:]
    assert "metrics.jsonl: dropped a cut-off last line" in fresh.stderr
    assert [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()] == [1, 2]


def test_results_files_get_the_users_umask(tmp_path):
    from bench.fileio import write_text_atomic

    old = os.umask(0o027)
    try:
        path = write_text_atomic(tmp_path / "r.json", "{}")
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == 0o640
