"""`bench.run` never ends a broken evaluation with exit 0: bad TSVs and model folders stop it
before any work, a dataset that fails during the run is marked failed (the others are kept), an
earlier run's files are never silently reused or unpickled, and one model folder takes one run."""

from __future__ import annotations

import json
import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from bench.data import write
from bench.lock import hold_folder_lock
from bench.preflight import check_model_folder, check_tsv
from train.tiny import build_tiny

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    root = tmp_path_factory.mktemp("bench_run")
    write(root / "lmu", n=3, seed=0, side=28, tasks=["SynthCount", "SynthColour"])
    return root, build_tiny(root / "model", seed=0)


def variant(root: Path, name: str, change) -> Path:
    """A copy of SynthCount.tsv, read as strings, changed by `change(frame)`."""
    frame = pd.read_csv(root / "lmu" / "SynthCount.tsv", sep="\t", dtype=str)
    change(frame)
    path = root / "lmu" / f"{name}.tsv"
    frame.to_csv(path, sep="\t", index=False)
    return path


def bench_run(root: Path, work: Path, *args: str, model: Path | None = None) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "bench.run", "--model", str(model or root / "model"), "--work-dir", str(work),
           "--lmudata", str(root / "lmu"), *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=REPO,
                          env={**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO)})


def errors(result: subprocess.CompletedProcess) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.startswith("error: ")]


# ---------------------------------------------------------------- the checks, one by one
def test_a_good_tsv_passes_and_lists_the_items_to_answer(assets):
    root, _ = assets
    assert check_tsv(root / "lmu" / "SynthCount.tsv")[:2] == ([], [])
    assert check_tsv(root / "lmu" / "SynthCount.tsv", None).expected == ["0", "1", "2"]
    assert check_tsv(root / "lmu" / "SynthCount.tsv", 2).expected == ["0", "1"]


def set_cell(column, row, value):
    def change(frame):
        frame.loc[row, column] = value
    return change


BAD_TSVS = [
    ("duplicate index", lambda f: f.__setitem__("index", "7"), "duplicate index values 7 (3 rows)"),
    # two spellings of one number: VLMEvalKit files both as index 7, so one prediction answers both
    ("7 and 07", lambda f: (set_cell("index", 0, "7")(f), set_cell("index", 1, "07")(f)),
     "duplicate index values 7 (2 rows: 7, 07)"),
    ("missing index", set_cell("index", 1, ""), "no index in row 2"),
    ("index that is code", set_cell("index", 0, "__import__('os').getcwd()"),
     "index cells that are not plain numbers or names (VLMEvalKit evaluates them as Python): row 1"),
    ("invalid base64", set_cell("image", 1, "!" * 80), "row 2: image is not valid base64"),
    ("base64 of no image", set_cell("image", 2, "QUJD" * 20), "row 3: image does not decode"),
    ("image list that is code", set_cell("image", 0, "[__import__('os').getcwd()" + " " * 60 + "]"),
     "row 1: image list is not a list of strings"),
    ("image reference to nothing", set_cell("image", 0, "99"), "row 1: image refers to index '99', which holds no image"),
    ("choices that are code", lambda f: f.__setitem__("choices", "[open('x')]"),
     "choices cells that are not Python literals (VLMEvalKit evaluates them): row 1, row 2, row 3"),
    ("no image column", lambda f: f.drop(columns=["image"], inplace=True), "no 'image' column"),
    ("no index column", lambda f: f.drop(columns=["index"], inplace=True), "no 'index' column"),
]


@pytest.mark.parametrize(("change", "needle"), [c[1:] for c in BAD_TSVS], ids=[c[0] for c in BAD_TSVS])
def test_a_bad_tsv_is_named_with_its_rows(assets, change, needle):
    root, _ = assets
    path = variant(root, "Bad", change)
    problems = check_tsv(path).problems
    assert len(problems) == 1 and problems[0].startswith(f"{path}: ") and needle in problems[0], problems


def test_an_image_reference_and_a_list_of_images_are_accepted(assets):
    root, _ = assets
    frame = pd.read_csv(root / "lmu" / "SynthCount.tsv", sep="\t", dtype=str)
    path = variant(root, "Refs", lambda f: (set_cell("image", 1, "0")(f),
                                            set_cell("image", 2, repr([frame.loc[0, "image"], frame.loc[2, "image"]]))(f)))
    assert check_tsv(path)[:2] == ([], [])


def test_only_the_rows_that_run_are_decoded_and_rows_without_image_are_noted(assets):
    root, _ = assets
    path = variant(root, "Late", set_cell("image", 2, "!" * 80))
    assert check_tsv(path, limit=2)[:2] == ([], [])
    assert check_tsv(path)[0] == [f"{path}: row 3: image is not valid base64"]
    path = variant(root, "NoImage", set_cell("image", 1, ""))
    problems, notes, _ = check_tsv(path)
    assert problems == [] and notes == [f"{path}: 1 row(s) without an image, which VLMEvalKit skips: row 2"]
    assert check_tsv(path, None).expected == ["0", "2"]


def test_unreadable_tsvs(assets, tmp_path):
    (tmp_path / "empty.tsv").write_bytes(b"")
    (tmp_path / "latin1.tsv").write_bytes(b"index\timage\n1\tcaf\xe9\n")
    os.mkfifo(tmp_path / "fifo.tsv")
    assert check_tsv(tmp_path / "empty.tsv")[0] == [f"{tmp_path / 'empty.tsv'}: empty file"]
    assert "not a readable TSV" in check_tsv(tmp_path / "latin1.tsv")[0][0]
    assert check_tsv(tmp_path / "fifo.tsv")[0] == [f"{tmp_path / 'fifo.tsv'}: not a regular file"]  # never opened


def test_model_folders(assets, tmp_path):
    root, model = assets
    assert check_model_folder(model) == []
    (tmp_path / "no_config").mkdir()
    assert "no config.json" in check_model_folder(tmp_path / "no_config")[0]
    cut = tmp_path / "cut"
    cut.mkdir()
    for f in model.iterdir():
        (cut / f.name).write_bytes(f.read_bytes())
    weights = cut / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-100])
    assert "cut off or padded" in check_model_folder(cut)[0]
    weights.write_bytes(b"\xff" * 64)
    assert "not a safetensors file" in check_model_folder(cut)[0]
    weights.unlink()
    assert "no weights" in check_model_folder(cut)[0]


# ---------------------------------------------------------------- the command, end to end
def test_duplicate_indices_stop_the_run_before_any_work(assets, tmp_path):
    root, _ = assets
    variant(root, "DupCount", lambda f: f.__setitem__("index", "7"))
    result = bench_run(root, tmp_path / "work", "--data", "SynthCount", "DupCount", "--limit", "3")
    assert result.returncode == 2
    assert errors(result) == [f"error: {root / 'lmu' / 'DupCount.tsv'}: duplicate index values 7 (3 rows); every "
                              "index must be unique, or rows get one another's predictions"]
    assert not (tmp_path / "work").exists()


def test_a_failed_model_is_marked_failed_and_the_others_are_kept(assets, tmp_path):
    """A model that fails to load inside VLMEvalKit (which logs the error and goes on) makes the
    run exit 1 with one line per failed pair; the good model's predictions stay and are marked finished."""
    root, model = assets
    broken = tmp_path / "broken"
    broken.mkdir()
    for f in model.iterdir():  # a checkpoint whose tokenizer is gone: it passes preflight, fails to load
        if not f.name.startswith("tokenizer"):
            (broken / f.name).write_bytes(f.read_bytes())
    work = tmp_path / "work"
    cmd = [sys.executable, "-m", "bench.run", "--model", str(model), str(broken), "--data", "SynthCount",
           "--work-dir", str(work), "--lmudata", str(root / "lmu"), "--max-new-tokens", "4"]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=REPO,
                            env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert result.returncode == 1, result.stderr[-3000:]
    assert [line.split(": ")[1] for line in errors(result)] == ["broken x SynthCount"]
    assert json.loads((work / "broken" / "bench_run.json").read_text())["status"] == "failed"
    good = json.loads((work / "model" / "bench_run.json").read_text())
    assert good["status"] == "finished" and good["failed"] == {}
    assert len(pd.read_excel(work / "model" / "model_SynthCount.xlsx")) == 3


class Payload:
    """Unpickled, it creates its marker file: a pickle that runs code."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return Path.touch, (self.marker,)


def payload_pickle(marker: Path) -> bytes:
    return pickle.dumps(Payload(marker))


def test_a_rerun_without_reuse_starts_afresh_and_never_unpickles(assets, tmp_path):
    """VLMEvalKit alone would keep the first run's predictions (made with 2 tokens) and unpickle a
    crafted intermediate file; without --reuse both are removed first. --reuse with other
    settings is refused."""
    root, _ = assets
    work = tmp_path / "work"
    assert bench_run(root, work, "--data", "SynthCount", "--max-new-tokens", "2").returncode == 0
    short = pd.read_excel(work / "model" / "model_SynthCount.xlsx")["prediction"].astype(str).str.len()

    marker = tmp_path / "payload_ran"
    (work / "model" / "01_SynthCount.pkl").write_bytes(payload_pickle(marker))
    result = bench_run(root, work, "--data", "SynthCount", "--max-new-tokens", "12")
    assert result.returncode == 0, result.stderr[-3000:]
    assert not marker.exists()
    long = pd.read_excel(work / "model" / "model_SynthCount.xlsx")["prediction"].astype(str).str.len()
    assert long.sum() > short.sum()  # answered again with 12 tokens, not the 2-token answers kept
    run = json.loads((work / "model" / "bench_run.json").read_text())
    assert run["settings"]["max_new_tokens"] == 12 and run["status"] == "finished"

    refused = bench_run(root, work, "--data", "SynthCount", "--max-new-tokens", "4", "--reuse")
    assert refused.returncode == 2
    assert errors(refused) == [f"error: --reuse: the predictions in {work / 'model'} were made with other settings "
                               "(max_new_tokens=12 then, 4 now); drop --reuse to redo them, or use another --work-dir"]


def test_reuse_is_refused_for_other_weights_in_the_same_folder_or_unknown_settings(assets, tmp_path):
    """--reuse keeps predictions only for the same weights by content: the same folder retrained in
    place is refused, naming the digests; and predictions whose bench_run.json is gone or corrupt
    are of unknown settings, refused too (the check used to be skipped)."""
    root, model = assets
    mine = tmp_path / "model"
    shutil.copytree(model, mine)
    work = tmp_path / "work"
    assert bench_run(root, work, "--data", "SynthCount", "--max-new-tokens", "2", model=mine).returncode == 0
    marker = tmp_path / "payload_ran"  # VLMEvalKit's --reuse would unpickle its rank file (`infer_data`)
    (work / "model" / "01_SynthCount.pkl").write_bytes(payload_pickle(marker))
    reused = bench_run(root, work, "--data", "SynthCount", "--max-new-tokens", "2", "--reuse", model=mine)
    assert reused.returncode == 0 and not marker.exists()
    assert f"note: {work / 'model' / '01_SynthCount.pkl'}: removed (a pickle" in reused.stderr
    build_tiny(mine, seed=1)  # retrained in place: same folder, same name, other weights
    refused = bench_run(root, work, "--data", "SynthCount", "--max-new-tokens", "2", "--reuse", model=mine)
    assert refused.returncode == 2 and "were made with other settings (weights_sha256=" in errors(refused)[0]
    for corrupt in ("{not json", "[]", '{"settings": 3}'):
        (work / "model" / "bench_run.json").write_text(corrupt)
        refused = bench_run(root, work, "--data", "SynthCount", "--max-new-tokens", "2", "--reuse", model=mine)
        assert errors(refused) == [f"error: --reuse: {work / 'model'} holds predictions but no readable bench_run.json "
                                   "settings, so what made them is unknown; drop --reuse to redo them, or use another "
                                   "--work-dir"], corrupt


def test_two_models_never_share_a_work_folder(assets, tmp_path):
    """a/step_4 and b/step_4 are both filed as step_4: in one run they are refused at once; in two
    runs the second is refused, since the first's predictions of other datasets would be scored as
    its own; so is the same folder retrained in place."""
    root, model = assets
    a, b = tmp_path / "a" / "step_4", tmp_path / "b" / "step_4"
    shutil.copytree(model, a)
    shutil.copytree(model, b)
    work = tmp_path / "work"
    both = subprocess.run([sys.executable, "-m", "bench.run", "--model", str(a), str(b), "--data", "SynthCount",
                           "--work-dir", str(work), "--lmudata", str(root / "lmu")], capture_output=True, text=True,
                          timeout=600, cwd=REPO, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert errors(both) == [f"error: --model {a} and {b} would share the work folder step_4 (VLMEvalKit files results "
                            "by folder name): give them distinct folder names"] and not work.exists()
    assert bench_run(root, work, "--data", "SynthColour", "--max-new-tokens", "2", model=a).returncode == 0
    second = bench_run(root, work, "--data", "SynthCount", "--max-new-tokens", "2", model=b)
    assert errors(second) == [f"error: --work-dir: {work / 'step_4'} holds the predictions of {a}, another model filed "
                              "under the name step_4; use another --work-dir, or give the checkpoint folder a distinct name"]
    build_tiny(a, seed=3)  # retrained in place
    again = bench_run(root, work, "--data", "SynthCount", "--max-new-tokens", "2", model=a)
    assert "holds predictions of other weights (sha256 " in errors(again)[0]
    assert set(p.name for p in (work / "step_4").glob("*.xlsx")) == {"step_4_SynthColour.xlsx"}


def test_a_second_run_on_one_model_folder_is_refused(assets, tmp_path):
    root, _ = assets
    work = tmp_path / "work"
    held = hold_folder_lock(work / "model", "--work-dir", "bench.run of model")
    try:
        result = bench_run(root, work, "--data", "SynthCount", "--max-new-tokens", "2")
    finally:
        held.close()
    assert result.returncode == 2
    assert errors(result) == [f"error: --work-dir={work / 'model'} is in use by a running bench.run of model "
                              f"(pid {os.getpid()}); wait for it to end or choose another --work-dir"]
    assert not (work / "model" / "model_SynthCount.xlsx").exists()


def test_ocrbench_answers_that_are_not_literals_are_refused_before_vlmevalkit_evaluates_them(assets):
    """VLMEvalKit's OCRBench scorer runs `eval` on every `answer` cell (image_vqa.py:527 in
    ms-vlmeval 0.0.20): in a TSV named OCRBench each must be a Python literal; the same column
    elsewhere is plain text."""
    root, _ = assets
    call = "__import__('os').system('touch /tmp/owned')"
    path = variant(root, "OCRBench", lambda f: (f.__setitem__("answer", "['3']"), set_cell("answer", 1, call)(f)))
    assert check_tsv(path).problems == [
        f"{path}: answer cells that are not Python literals (VLMEvalKit evaluates them): row 2"]
    assert check_tsv(variant(root, "OCRBench", lambda f: f.__setitem__("answer", "['3', 'three']"))).problems == []
    assert check_tsv(variant(root, "Other", set_cell("answer", 1, call))).problems == []
