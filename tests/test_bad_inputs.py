"""Inputs that used to hang, execute, abort a whole run or end in a traceback: each is now named in
one line and refused at load, or counted and skipped."""

from __future__ import annotations

import ast
import errno
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from bench.errors import UsageError, exit_on_usage_error
from bench.lock import hold_folder_lock
from train.config import ConfigError, load_config

REPO = Path(__file__).resolve().parents[1]
TINY = REPO / "reproduce" / "configs" / "tiny_cpu.yaml"


def cli(*args: str, env: dict | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True, cwd=REPO, timeout=timeout,
                          env={**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO), **(env or {})})


def one_error(result: subprocess.CompletedProcess) -> str:
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: "), result.stderr[-3000:]
    return lines[0]


# ---------------------------------------------------------------- config values that passed validation
ALIASES = "a: &a [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]\n" + "".join(
    f"{c}: &{c} [{', '.join([f'*{p}'] * 10)}]\n" for p, c in zip("abcdefgh", "bcdefghi", strict=False)) + "trainer: {logger: *i}\n"


def test_yaml_aliases_that_expand_beyond_a_bound_are_refused_at_load(tmp_path):
    (tmp_path / "bomb.yaml").write_text(ALIASES)
    with pytest.raises(ConfigError, match=r"bomb.yaml: the config expands to more than 100,000 values"):
        load_config(tmp_path / "bomb.yaml")
    with pytest.raises(ConfigError, match="override trainer.logger: the config expands"):
        load_config(TINY, ["trainer.logger=[" + ", ".join(["x"] * 100_001) + "]"])
    (tmp_path / "small.yaml").write_text("trainer: {project_name: &p shared, experiment_name: *p}\n")  # ordinary
    assert load_config([TINY, tmp_path / "small.yaml"]).trainer.experiment_name == "shared"


BAD_VALUES = [
    ("worker.reward.function=5", "config key worker.reward.function must be a string or null, got 5"),
    ("worker.reward.function=nosuchmod:fn", "worker.reward.function=nosuchmod:fn: cannot import nosuchmod"),
    ("worker.reward.function=tests.helpers.rewards:nosuchfn",
     "worker.reward.function=tests.helpers.rewards:nosuchfn: tests.helpers.rewards has no function nosuchfn"),
    ("worker.reward.function=a:b:c", "worker.reward.function='a:b:c' must look like package.module:function"),
    ("algorithm.image_transforms=5", "algorithm.image_transforms must be a list of strings or null, got 5"),
    ("worker.actor.optim.betas=abc", "worker.actor.optim.betas must be a list of finite numbers, got 'abc'"),
    ("worker.actor.optim.betas=[0.9]", "worker.actor.optim.betas=[0.9] must be two numbers in [0, 1)"),
    ("trainer.logger=5", "trainer.logger must be a list of strings, got 5"),
    ("trainer.logger=[jsonl, nope]", "trainer.logger: unknown logger 'nope'; valid names: jsonl, console"),
    ("worker.rollout.temperature=-1", "worker.rollout.temperature=-1.0 must be > 0"),
    ("worker.actor.optim.lr=.nan", "worker.actor.optim.lr must be a finite number, got nan"),
    ("worker.actor.optim.lr=-1e-6", "worker.actor.optim.lr=-1e-06 must be >= 0"),
    ("worker.rollout.top_p=1.5", "worker.rollout.top_p=1.5 must be >= 0 and <= 1"),
    ("worker.rollout.top_k=0", "worker.rollout.top_k=0 must be -1 (off) or >= 1"),
    ("worker.reward.workers=0", "worker.reward.workers=0 must be >= 1"),
    ("worker.reward.timeout_s=.inf", "worker.reward.timeout_s must be a finite number, got inf"),
    # spellings YAML reads as strings that float() then took: every float field is checked at once
    ("worker.reward.timeout_s=-nan", "worker.reward.timeout_s=nan must be a finite number"),
    ("worker.reward.timeout_s=1e400", "worker.reward.timeout_s=inf must be a finite number"),
    ("worker.actor.optim.lr=1e400", "worker.actor.optim.lr=inf must be a finite number"),
    ("worker.actor.optim.lr=-nan", "worker.actor.optim.lr=nan must be a finite number"),
    ("algorithm.kl_coef=-nan", "algorithm.kl_coef=nan must be a finite number"),
    ("trainer.seed=-1", "trainer.seed=-1 must be in [0, 2**63)"),
    ("trainer.seed=18446744073709551616", "trainer.seed=18446744073709551616 must be in [0, 2**63)"),
    ("trainer.seed=1e23", "trainer.seed must be a whole number, got '1e23'"),
    ("worker.actor.clip_ratio_low=1.0", "worker.actor.clip_ratio_low=1.0 must be < 1"),
    ("data.min_pixels=-10", "data.min_pixels=-10 must be >= 1"),
]


@pytest.mark.parametrize(("override", "needle"), BAD_VALUES, ids=[b[0] for b in BAD_VALUES])
def test_values_that_used_to_crash_later_are_refused_at_load(override, needle):
    with pytest.raises(ConfigError) as info:
        load_config(TINY, [override])
    assert needle in str(info.value)


def test_a_custom_reward_function_is_imported_at_load():
    from train.config import reward_function

    cfg = load_config(TINY, ["worker.reward.function=tests.helpers.rewards:length_parity"])
    from tests.helpers.rewards import length_parity

    assert reward_function(cfg) is length_parity and reward_function(load_config(TINY)) is None


@pytest.mark.parametrize(("args", "env", "needle"), [
    (["--world-size", "0"], {}, "error: --world-size 0: must be >= 1"),
    ([], {"WORLD_SIZE": "abc"}, "error: WORLD_SIZE='abc': must be a whole number >= 1"),
], ids=["world-size 0", "WORLD_SIZE=abc"])
def test_world_sizes_that_planned_for_one_gpu_are_refused(args, env, needle):
    assert one_error(cli("train", "--config", str(TINY), "--dry-run", *args, env=env)) == needle


@pytest.mark.parametrize("value", ["nan", "inf", "0", "-1"])
def test_verify_timeout_must_be_a_finite_positive_number(value):
    line = one_error(cli("bench.verify", "--response", "\\boxed{1}", "--answer", "1", "--timeout", value))
    assert line.startswith(f"error: --timeout {float(value)}: give seconds per answer in (0, 3600]")


# ---------------------------------------------------------------- one bad row, counted and skipped
def test_deeply_nested_rewrites_are_a_bad_row_not_a_crash(tmp_path):
    from bench.verify.__main__ import read_jsonl
    from train.expand import parse_new_questions

    deep = "[" * 100_000 + "]" * 100_000
    with pytest.raises(ValueError, match="new_questions is not a JSON or Python list"):
        parse_new_questions(deep)
    (tmp_path / "rows.jsonl").write_text(json.dumps({"response": "\\boxed{1}", "answer": "1"}) + "\n" + deep + "\n")
    rows = read_jsonl(tmp_path / "rows.jsonl")
    assert rows[0].problem is None and rows[1].problem == f"{tmp_path / 'rows.jsonl'}:2: not valid JSON here (nested too deep)"


def test_training_rows_with_a_fifo_a_thin_image_or_deep_rewrites_are_skipped(tmp_path):
    """A FIFO used to block the loader forever; a 4000x1 image raised from the processor; 100,000
    nested brackets raised RecursionError. Each is now one skipped row; the good row is kept."""
    from PIL import Image

    from bench.processing import load_processor
    from train.config import DataConfig
    from train.data import load_rows
    from train.tiny import build_tiny

    processor = load_processor(build_tiny(tmp_path / "model", seed=0))
    Image.new("RGB", (56, 56), (255, 0, 0)).save(tmp_path / "ok.png")
    Image.new("RGB", (4000, 1), (255, 0, 0)).save(tmp_path / "thin.png")
    os.mkfifo(tmp_path / "fifo.png")
    rows = [{"problem": "<image>How many?", "answer": "1", "images": [name]} for name in ("ok.png", "fifo.png", "thin.png")]
    rows.append({"problem": "<image>How many?", "answer": "1", "images": ["ok.png"], "new_questions": "[" * 100_000})
    path = tmp_path / "train.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    messages = []
    kept, skipped = load_rows(DataConfig(train_files=str(path), min_pixels=3136, max_pixels=12544, max_prompt_length=512),
                              processor, log=lambda m, **_: messages.append(m))
    assert [r.source for r in kept] == [f"{path} row 0"]
    assert dict(skipped) == {"unreadable_image": 1, "unprocessable_image": 1, "bad_rewrites": 1}
    assert any(f"{path} row 1: skipped: image unreadable" in m and "not a regular file" in m for m in messages)
    assert any(f"{path} row 2: skipped: the processor refuses it" in m for m in messages)


def test_column_json_with_columns_of_different_lengths_is_named(tmp_path):
    from train.data import DataError, read_records

    (tmp_path / "cols.json").write_text(json.dumps({"problem": ["a", "b"], "answer": ["1"]}))
    with pytest.raises(DataError, match=r"cols.json: a column-form JSON needs one list per column, all of one length "
                                        r"\(lengths: problem=2, answer=1\)"):
        read_records(tmp_path / "cols.json")


def test_bench_data_bounds_the_image_side():
    assert one_error(cli("bench.data", "--out", "/nonexistent/x", "--n", "1", "--side", "100000")) == (
        "error: --side 100000: one image would need 27.9 GiB of memory (side x side x 3 bytes); the largest side is 4096")


# ---------------------------------------------------------------- checkpoints
def fake_checkpoint(root: Path, step: int, ds: bool = True, state: bool = True) -> Path:
    path = root / "checkpoints" / f"step_{step}"
    path.mkdir(parents=True)
    if ds:
        (path / "ds").mkdir()
    if state:
        (path / "trainer_state.json").write_text(json.dumps({"step": step}))
    return path


def test_resume_takes_the_newest_complete_checkpoint_and_passes_over_an_incomplete_one(tmp_path, capsys):
    from train.checkpoint import find_resume

    for step in (2, 4, 6):
        fake_checkpoint(tmp_path, step)
    assert find_resume(tmp_path, "auto") == tmp_path / "checkpoints" / "step_6"  # newest, not oldest
    (tmp_path / "checkpoints" / "latest").write_text("step_4\n")
    assert find_resume(tmp_path, "auto") == tmp_path / "checkpoints" / "step_4"  # `latest` names it
    fake_checkpoint(tmp_path, 8, ds=False)
    (tmp_path / "checkpoints" / "latest").write_text("step_8\n")
    assert find_resume(tmp_path, "auto") == tmp_path / "checkpoints" / "step_6"
    assert f"{tmp_path / 'checkpoints' / 'step_8'}: incomplete checkpoint (no trainer_state.json or ds/), passed " \
           "over; resuming from step_6" in capsys.readouterr().err
    with pytest.raises(UsageError, match="step_8: not a complete checkpoint folder"):
        find_resume(tmp_path, str(tmp_path / "checkpoints" / "step_8"))
    assert find_resume(tmp_path, "none") is None


def test_a_failed_save_removes_its_partial_folder_and_says_the_disk_is_full(tmp_path):
    from train.checkpoint import CheckpointError, save_checkpoint

    class FullDisk:
        def save_checkpoint(self, path, tag):
            (Path(path) / tag).mkdir()
            (Path(path) / tag / "big.pt").write_bytes(b"x" * 1000)
            raise OSError(errno.ENOSPC, "No space left on device")

    done = fake_checkpoint(tmp_path, 2)
    with pytest.raises(CheckpointError, match=r"checkpoint step_4 could not be written under .* \(No space left on "
                                              r"device; .* GiB free there\); its partial folder step_4.tmp was removed"):
        save_checkpoint(FullDisk(), tmp_path, 4, {}, {}, save_limit=2)
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == [done.name]


# ---------------------------------------------------------------- corrupt results files
@pytest.mark.parametrize("content", [b"[]", b"\xff\xfe not utf-8", b'{"datasets": [1]}', b'{"datasets": {"X": 1}}'],
                         ids=["list", "not UTF-8", "datasets a list", "entry a number"])
def test_score_ignores_a_corrupt_status_json_with_a_message(tmp_path, capsys, content):
    from bench.score import vlmeval_scores

    (tmp_path / "status.json").write_bytes(content)
    assert vlmeval_scores(tmp_path) == {}


def test_an_extra_records_cell_that_would_exhaust_memory_is_not_parsed():
    from bench.score import full_response

    deep = "{" + "[" * 200_000 + "]" * 200_000 + "}"
    row = pd.Series({"prediction": "B", "thinking": "t", "extra_records": deep})
    assert full_response(row) == "<think>t</think>B"
    row["extra_records"] = "{'full_response': '" + "x" * 2_000_000 + "'}"  # over the bound: not parsed
    assert full_response(row) == "<think>t</think>B"


@pytest.mark.parametrize("content", ["[1]", "{not json", '{"model": "m", "datasets": [1]}', '{"datasets": {"A": 3}}'])
def test_table1_and_submit_name_a_malformed_scores_file(tmp_path, content):
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "r1_scores.json").write_text(content)
    line = one_error(cli("reproduce", "table1", "--work-dir", str(tmp_path), "--out", str(tmp_path / "t")))
    assert f"{tmp_path / 'm' / 'r1_scores.json'}: not a scores file" in line
    line = one_error(cli("reproduce", "submit", "--work-dir", str(tmp_path), "--model", "m", "--out", str(tmp_path / "s")))
    assert f"{tmp_path / 'm' / 'r1_scores.json'}: not a" in line or "no 'datasets' object" in line


def good_scores(root: Path, model: str = "m") -> list[str]:
    """A work dir as a user's run leaves it for a submission (every category of the record's
    benchmarks, scored by bench.score) and the MMBench server's result tables: returns the
    `--mmbench-scores` option and its value."""
    from tests.helpers.scores import mmbench_server_tables, scored_work_dir

    scored_work_dir(root, model)
    return ["--mmbench-scores", json.dumps(mmbench_server_tables(root / "server"))]


def test_submit_names_a_malformed_run_file_a_failed_run_and_meta_that_is_not_an_object(tmp_path):
    from tests.helpers.scores import update_record

    server = good_scores(tmp_path)
    args = ["reproduce", "submit", "--work-dir", str(tmp_path), "--model", "m", "--out", str(tmp_path / "s"), *server]
    assert "--meta [1]: give a JSON object of META fields" in one_error(cli(*args, "--meta", "[1]"))
    kept = (tmp_path / "m" / "bench_run.json").read_text()
    (tmp_path / "m" / "bench_run.json").write_text("[")
    assert f"{tmp_path / 'm' / 'bench_run.json'}: missing or not a readable JSON object" in one_error(cli(*args))
    (tmp_path / "m" / "bench_run.json").write_text(kept)
    update_record(tmp_path / "m", model="x/y", status="failed", failed={"MathVista_MINI": "no prediction file"})
    assert "that evaluation failed (MathVista_MINI: no prediction file)" in one_error(cli(*args))
    assert not list(tmp_path.glob("s.*"))


def test_submit_names_a_broken_server_file_and_a_broken_judged_file(tmp_path):
    """The MMBench server's result file and VLMEvalKit's judged MMVet file are read as data: a
    broken one is one line naming it, and nothing is written."""
    from tests.helpers.scores import JUDGE, mmbench_server_tables, update_record

    option, given = good_scores(tmp_path)
    update_record(tmp_path / "m", model="x/y")
    args = ["reproduce", "submit", "--work-dir", str(tmp_path), "--model", "m", "--out", str(tmp_path / "s"), "--meta",
            json.dumps({"Parameters": "7B", "Language Model": "l", "Vision Model": "v", "OpenSource": "Yes"})]
    broken = tmp_path / "server" / "MMBench_TEST_CN_V11_acc.xlsx"
    broken.write_bytes(b"not a workbook")
    line = one_error(cli(*args, option, given))
    assert line.startswith(f"error: --mmbench-scores MMBench_TEST_CN_V11: {broken}: cannot be read"), line
    broken.unlink()
    assert f"--mmbench-scores MMBench_TEST_CN_V11: {broken}: cannot be read (FileNotFoundError" in \
        one_error(cli(*args, option, given))
    given = json.dumps(mmbench_server_tables(tmp_path / "server"))
    judged = tmp_path / "m" / f"m_MMVet_{JUDGE}.xlsx"
    judged.write_text("garbage")
    assert one_error(cli(*args, option, given)).startswith(f"error: MMVet: {judged}: cannot be read")
    assert cli(*args, option, given.replace("MMBench_TEST_CN_V11_acc", "nope")).returncode == 2
    assert not list(tmp_path.glob("s.*"))


def test_the_supported_vlm_entry_quotes_the_model_path():
    from reproduce.submit import CONFIG_MARKER, supported_vlm_entry

    path = "/data/it's \"mine\"/ckpt"
    text = supported_vlm_entry("My-Model", path, "every_text")
    entry = text.split(CONFIG_MARKER)[1]
    tree = ast.parse("{" + entry.rstrip().rstrip(",") + "}")
    call = tree.body[0].value.values[0]
    assert tree.body[0].value.keys[0].value == "My-Model"
    assert next(k.value.value for k in call.keywords if k.arg == "model_path") == path


# ---------------------------------------------------------------- read-only folders and full disks
def in_mount_namespace(setup: str, *cmd: str, timeout: int = 300) -> subprocess.CompletedProcess:
    """Run `cmd` in a private mount namespace after the shell `setup` (a read-only bind mount, a
    tiny tmpfs): the one way to make root see a read-only folder or a full disk."""
    probe = subprocess.run(["unshare", "-m", "true"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip(f"no private mount namespace here ({probe.stderr.decode().strip()})")
    script = f'{setup} && exec "$@"'
    return subprocess.run(["unshare", "-m", "sh", "-c", script, "sh", *cmd], capture_output=True, text=True, cwd=REPO,
                          timeout=timeout, env={**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO)})


def read_only(folder: Path) -> str:
    return f"mount --bind {folder} {folder} && mount -o remount,bind,ro {folder}"


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    from bench.data import write
    from train.tiny import build_tiny

    root = tmp_path_factory.mktemp("ro_inputs")
    write(root / "lmu", n=2, seed=0, side=28, tasks=["SynthCount"])
    (root / "rows.jsonl").write_text(json.dumps({"response": "\\boxed{1}", "answer": "1"}) + "\n")
    (root / "server.json").write_text(good_scores(root / "scored", "R1-ShareVL-7B")[1])
    pd.DataFrame({"problem": pd.Series([], dtype=str)}).to_parquet(root / "no_questions.parquet")
    return root, build_tiny(root / "model", seed=0)


@pytest.fixture(scope="module")
def checkpoint(inputs):
    """A one-step training checkpoint of the tiny model."""
    from bench.data import training_rows

    root, model = inputs
    pd.DataFrame(training_rows(8, seed=0, tasks=["SynthCount"])).to_parquet(root / "train.parquet")
    result = cli("train", "--config", str(TINY), f"worker.actor.model.model_path={model}",
                 f"data.train_files={root / 'train.parquet'}", f"trainer.output_dir={root / 'run'}", "trainer.max_steps=1",
                 "trainer.progress_bar=false", "worker.reward.function=tests.helpers.rewards:length_parity", timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return root / "run" / "checkpoints" / "step_1"


def test_a_checkpoint_holding_a_pickle_payload_is_refused_and_never_runs(inputs, checkpoint, tmp_path):
    """DeepSpeed loads its ds/*.pt with torch.load(weights_only=False): resume and export load them
    weights-only (DeepSpeed's own few classes allowed), so a state file holding an object whose
    unpickling runs code is refused with one line naming the checkpoint, and the code never runs.
    The genuine checkpoint resumes and exports (the resume tests check it bit-exact)."""
    import torch

    from tests.test_bench_run_reliability import Payload

    root, model = inputs
    run = tmp_path / "run"
    shutil.copytree(checkpoint.parent, run / "checkpoints")
    marker = tmp_path / "payload_ran"
    states = run / "checkpoints" / "step_1" / "ds" / "mp_rank_00_model_states.pt"
    genuine = torch.load(states, weights_only=True)
    torch.save({**genuine, "client_state": Payload(marker)}, states)
    resumed = cli("train", "--config", str(TINY), f"worker.actor.model.model_path={model}",
                  f"data.train_files={root / 'train.parquet'}", f"trainer.output_dir={run}", "trainer.max_steps=2",
                  "trainer.resume=auto", "trainer.progress_bar=false",
                  "worker.reward.function=tests.helpers.rewards:length_parity", timeout=600)
    errors = [line for line in resumed.stderr.splitlines() if line.startswith("error: ")]  # after the model's load bar
    assert resumed.returncode == 2 and len(errors) == 1, resumed.stderr[-2000:]
    assert f"{run / 'checkpoints' / 'step_1'}: its DeepSpeed state holds more than tensors" in errors[0]
    assert "(Unsupported global: GLOBAL getattr was not an allowed global by default)" in errors[0]
    exported = cli("train.export", str(run / "checkpoints" / "step_1"), str(tmp_path / "hf"))
    errors = [line for line in exported.stderr.splitlines() if line.startswith("error: ")]
    assert exported.returncode == 2 and len(errors) == 1 and "its DeepSpeed state holds more than tensors" in errors[0]
    assert not marker.exists() and not (tmp_path / "hf").exists()


READ_ONLY_CASES = [
    ("bench.data", lambda r, m, ro: ["bench.data", "--out", str(ro / "d"), "--n", "1"]),
    ("bench.verify --out", lambda r, m, ro: ["bench.verify", "--jsonl", str(r / "rows.jsonl"), "--out", str(ro / "g.jsonl")]),
    ("bench.run", lambda r, m, ro: ["bench.run", "--model", str(m), "--data", "SynthCount", "--work-dir", str(ro / "w"),
                                    "--lmudata", str(r / "lmu")]),
    ("train.tiny", lambda r, m, ro: ["train.tiny", "--out", str(ro / "t")]),
    ("reproduce table1", lambda r, m, ro: ["reproduce", "table1", "--work-dir", str(r / "scored"), "--out", str(ro / "t"),
                                           "--columns", "MathVista_MINI"]),
    ("reproduce submit", lambda r, m, ro: ["reproduce", "submit", "--work-dir", str(r / "scored"), "--model",
                                           "R1-ShareVL-7B", "--out", str(ro / "s"), "--mmbench-scores",
                                           (r / "server.json").read_text()]),
    ("train", lambda r, m, ro: ["train", "--config", str(TINY), f"worker.actor.model.model_path={m}",
                                f"trainer.output_dir={ro / 'o'}"]),
    ("train.export", lambda r, m, ro: ["train.export", str(r / "run" / "checkpoints" / "step_1"), str(ro / "hf")]),
    ("rewriter", lambda r, m, ro: ["train.expand", "rewrite", "--input", str(r / "no_questions.parquet"), "--output",
                                   str(ro / "rw.parquet"), "--endpoint", "http://127.0.0.1:9/v1", "--model", "m"]),
]


@pytest.mark.parametrize("build", [c[1] for c in READ_ONLY_CASES], ids=[c[0] for c in READ_ONLY_CASES])
def test_a_read_only_output_folder_is_one_line(inputs, checkpoint, tmp_path, build):
    root, model = inputs
    ro = tmp_path / "ro"
    ro.mkdir()
    result = in_mount_namespace(read_only(ro), sys.executable, "-m", *build(root, model, ro))
    line = one_error(result)
    assert str(ro) in line and ("Read-only file system" in line or "cannot write there" in line), line


@pytest.mark.parametrize("setup", ["read-only", "full"])
def test_bench_score_on_a_read_only_or_full_work_folder_is_one_line(inputs, tmp_path, setup):
    """bench.score writes its scores into the work folder: read-only (errno 30) or full (errno 28)
    is one line naming the file, not a traceback."""
    root, _ = inputs
    work = tmp_path / "work"
    work.mkdir()
    if setup == "read-only":
        shutil.copytree(root / "scored", work, dirs_exist_ok=True)
        mount = read_only(work)
    else:  # a 1 MiB tmpfs, filled up once the inputs are in it
        mount = (f"mount -t tmpfs -o size=1m tmpfs {work} && cp -r {root / 'scored'}/. {work} && "
                 f"(head -c 2M /dev/zero > {work}/filler 2>/dev/null; true)")
    result = in_mount_namespace(mount, sys.executable, "-m", "bench.score", "--work-dir", str(work))
    line = one_error(result)
    assert str(work) in line and ("Read-only file system" in line if setup == "read-only" else
                                  "No space left on device" in line), line


def test_a_full_disk_during_a_checkpoint_is_cleaned_up_and_named(inputs, tmp_path):
    """The output folder is a 1 MiB tmpfs: the lock, config and metrics fit, a checkpoint does not."""
    import pandas as pd

    from bench.data import training_rows

    root, model = inputs
    pd.DataFrame(training_rows(8, seed=0, tasks=["SynthCount"])).to_parquet(tmp_path / "train.parquet")
    out = tmp_path / "out"
    out.mkdir()
    result = in_mount_namespace(f"mount -t tmpfs -o size=1m tmpfs {out}", sys.executable, "-m", "train", "--config",
                                str(TINY), f"worker.actor.model.model_path={model}",
                                f"data.train_files={tmp_path / 'train.parquet'}", f"trainer.output_dir={out}",
                                "trainer.max_steps=1", "trainer.progress_bar=false",
                                "worker.reward.function=tests.helpers.rewards:length_parity", timeout=600)
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert result.returncode == 2 and len(errors) == 1, result.stderr[-3000:]
    assert "checkpoint step_1 could not be written" in errors[0] and "No space left on device" in errors[0]
    assert "its partial folder step_1.tmp was removed" in errors[0]


def test_a_lock_that_cannot_be_written_is_one_line(tmp_path):
    def main():
        hold_folder_lock(tmp_path / "x" / "y", "trainer.output_dir", "training")

    (tmp_path / "x").write_text("a file, not a folder")
    assert exit_on_usage_error(main) == 2


def test_environment_os_errors_are_one_line_and_bugs_keep_their_traceback(capsys):
    def read_only():
        raise PermissionError(errno.EROFS, "Read-only file system", "/ro/out.json")

    def bug():
        raise FileNotFoundError(errno.ENOENT, "No such file or directory", "/code/bug")

    assert exit_on_usage_error(read_only) == 2
    assert capsys.readouterr().err == "error: /ro/out.json: Read-only file system\n"
    with pytest.raises(FileNotFoundError):
        exit_on_usage_error(bug)


# ---------------------------------------------------------------- a second run, and small things
def test_a_second_pipeline_on_one_runs_folder_is_refused(tmp_path):
    from reproduce.mini import run_mini

    held = hold_folder_lock(tmp_path, "runs folder", "reproduce run or ablations")
    try:
        with pytest.raises(UsageError, match=rf"runs folder={tmp_path} is in use by a running reproduce run or "
                                             rf"ablations \(pid {os.getpid()}\)"):
            run_mini(runs=tmp_path, out=tmp_path / "results")
    finally:
        held.close()


def test_python_m_train_rewrite_is_the_rewriter():
    result = cli("train.rewrite", "--help")
    assert result.returncode == 0 and "--endpoint" in result.stdout


def test_the_trainer_picks_a_free_port():
    import socket

    from train.launcher import free_port

    port = free_port()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))  # nothing held it


def test_the_wheelhouse_plan_carries_the_lock_but_not_torch(tmp_path):
    from reproduce.wheelhouse import download_command, plan

    specs = plan(peer=False, with_torch=False)
    names = [s.split("==")[0].lower() for s in specs]
    assert "deepspeed" in names and "transformers" in names and "torch" not in names
    assert "torch" in [s.split("==")[0].lower() for s in plan(peer=False, with_torch=True)]
    assert len(plan(peer=True, with_torch=False)) >= len(specs)
    cmd = download_command("deepspeed==0.19.8", tmp_path, "3.12", ["manylinux_2_28_x86_64", "any"])
    assert cmd[cmd.index("--python-version") + 1] == "3.12" and "--only-binary=:all:" in cmd
    assert [cmd[i + 1] for i, a in enumerate(cmd) if a == "--platform"] == ["manylinux_2_28_x86_64", "any"]
    result = cli("reproduce.wheelhouse", "--dry-run")
    assert result.returncode == 0 and "deepspeed==0.19.8" in result.stdout.split()


def test_bench_run_refuses_zero_new_tokens_before_any_work(tmp_path):
    """--max-new-tokens 0 used to mean the model class's default (512 generated, 0 recorded)."""
    line = one_error(cli("bench.run", "--model", str(tmp_path), "--data", "X", "--work-dir", str(tmp_path / "w"),
                         "--max-new-tokens", "0"))
    assert "--max-new-tokens 0: must be >= 1" in line and not (tmp_path / "w").exists()


DEEP = "[" * 20_000


@pytest.mark.parametrize(("args", "needle"), [
    (("bench.data", "--out", "{file}", "--n", "2"), "{file}: exists already (a file where a folder is needed?)"),
    (("train.tiny", "--out", "{file}"), "{file}: exists already (a file where a folder is needed?)"),
    (("reproduce.paper_smoke", "--out", "{file}", "--shape", "tiny"), "{file}/LMUData: a file where a folder is needed"),
    (("bench.verify", "--jsonl", "{rows}", "--out", "{folder}"), "{folder}: a folder where a file is needed"),
    (("reproduce.wheelhouse", "--out", "{file}"), "{file}: exists already (a file where a folder is needed?)"),
    (("train.export", "{folder}", "{file}"), "{folder}: not a complete training checkpoint"),
    (("reproduce", "submit", "--work-dir", "{folder}", "--model", "m", "--out", ""),
     "--out '': give a folder, or a path without extension"),
    (("reproduce", "table1", "--work-dir", "{folder}", "--out", "{file}/t"), "{file}: exists already"),
], ids=["bench.data", "train.tiny", "paper_smoke", "bench.verify", "wheelhouse", "train.export", "submit", "table1"])
def test_an_output_path_of_the_wrong_kind_is_one_line_for_every_entry_point(tmp_path, args, needle):
    """One wrapper (bench.errors.exit_on_usage_error) turns a path error into one line naming the path."""
    afile, folder, rows = tmp_path / "afile", tmp_path / "adir", tmp_path / "rows.jsonl"
    afile.write_text("mine")
    folder.mkdir()
    rows.write_text(json.dumps({"response": "\\boxed{1}", "answer": "1"}) + "\n")
    if "table1" in args:
        from tests.helpers.scores import write_scores
        from tests.test_eval import PAPER_SIX

        write_scores(folder / "m", PAPER_SIX)
    names = {"file": afile, "folder": folder, "rows": rows}
    line = one_error(cli(*(a.format(**names) for a in args)))
    assert line.startswith(f"error: {needle.format(**names)}"), line
    assert afile.read_text() == "mine" and not list(tmp_path.glob("*.tmp")) and not list(folder.glob(".*"))


def test_an_export_never_replaces_a_folder_that_is_not_an_earlier_export(inputs, checkpoint, tmp_path):
    """`train.export CKPT OUT` used to remove whatever OUT was (a file: rename failed, leaving
    OUT.tmp/; a folder: deleted). Only an earlier export (it holds training_config.yaml) is replaced."""
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    for out in (mine, tmp_path / "afile"):
        if out.name == "afile":
            out.write_text("mine")
        line = one_error(cli("train.export", str(checkpoint), str(out)))
        assert f"{out}: exists and is not an earlier export" in line
    assert (mine / "notes.txt").read_text() == "keep me" and (tmp_path / "afile").read_text() == "mine"
    assert not list(tmp_path.glob("*.tmp"))
    first = cli("train.export", str(checkpoint), str(tmp_path / "hf"))
    assert first.returncode == 0 and (tmp_path / "hf" / "training_config.yaml").is_file()
    assert cli("train.export", str(checkpoint), str(tmp_path / "hf")).returncode == 0  # an export is replaced


@pytest.mark.parametrize("out, written", [
    (".", "R1-ShareVL-7B.openvlm.json"), ("sub/", "sub/R1-ShareVL-7B.openvlm.json"),
    ("sub.json", "sub.openvlm.json"), ("other", "other.openvlm.json"),
])
def test_submit_and_table1_out_is_a_stem_or_a_folder(tmp_path, out, written):
    """--out '.' and '/' used to be tracebacks and 'dir/' wrote beside the folder: a folder gets
    files named after the model (the table: table1.*) inside it."""
    server = good_scores(tmp_path / "work", "R1-ShareVL-7B")
    (tmp_path / "sub").mkdir()
    result = subprocess.run([sys.executable, "-m", "reproduce", "submit", "--work-dir", str(tmp_path / "work"), "--model",
                             "R1-ShareVL-7B", "--out", out, *server], capture_output=True, text=True,
                            cwd=tmp_path, env={**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO)})
    assert result.returncode == 0, result.stderr[-2000:]
    assert (tmp_path / written).is_file()
    from reproduce.table1 import build_dataset_table

    paths = build_dataset_table([tmp_path / "work"], tmp_path / "sub", ["MathVista_MINI"], allow_partial=True)
    assert paths[0] == tmp_path / "sub" / "table1.md"


def test_sizes_bench_data_cannot_hold_are_refused_before_anything_is_written(tmp_path):
    """`bench.data --n 100000000` grew memory without bound for minutes."""
    for args in (("--n", "100000000"), ("--n", "1", "--train", "100000000")):
        line = one_error(cli("bench.data", "--out", str(tmp_path / "d"), *args))
        assert "a split would take up to" in line and "more than a quarter of this machine's" in line
    assert not (tmp_path / "d").exists()


def test_paper_smoke_checks_the_tsvs_it_counts_before_any_step(tmp_path):
    (tmp_path / "tsvs").mkdir()
    (tmp_path / "tsvs" / "MathVista_MINI.tsv").write_text("a\tb\n1\t2\n")
    line = one_error(cli("reproduce.paper_smoke", "--out", str(tmp_path / "o"), "--shape", "tiny", "--count-items-in",
                         str(tmp_path / "tsvs")))
    assert f"{tmp_path / 'tsvs' / 'MathVista_MINI.tsv'}: cannot count its items" in line
    assert not (tmp_path / "o").exists()


def test_yaml_nested_thousands_deep_names_the_file_or_the_override(tmp_path):
    deep = tmp_path / "deep.yaml"
    deep.write_text(TINY.read_text() + "\nx: " + "[" * 3000 + "\n")
    assert one_error(cli("train", "--config", str(deep), "--dry-run")) == \
        f"error: {deep}: the config is nested too deeply to be read"
    line = one_error(cli("train", "--config", str(TINY), "--dry-run", "trainer.seed=" + "[" * 3000))
    assert line == "error: override 'trainer.seed': the value is nested too deeply to be read"


@pytest.mark.parametrize("size", ["8k", "24k"])
def test_bench_run_on_a_full_disk_is_one_line_naming_the_work_dir(inputs, tmp_path, size):
    """A work dir on a tiny tmpfs fills up inside VLMEvalKit (its log file at 8k, its prediction
    workbook at 24k): the failing calls name no file, VLMEvalKit's log handler and the workbook
    closing in teardown used to print tracebacks. One line names the work dir, nothing else fails."""
    root, model = inputs
    full = tmp_path / "full"
    full.mkdir()
    result = in_mount_namespace(f"mount -t tmpfs -o size={size} tmpfs {full}", sys.executable, "-m", "bench.run",
                                "--model", str(model), "--data", "SynthCount", "--work-dir", str(full / "w"),
                                "--lmudata", str(root / "lmu"), "--max-new-tokens", "4")
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert result.returncode == 2 and errors == [f"error: {full / 'w'} (a file under it): No space left on device"], \
        result.stderr[-3000:]
    assert not any(s in result.stderr for s in ("Traceback", "Exception ignored", "Logging error")), result.stderr[-3000:]


def test_a_file_that_fails_to_close_on_a_full_disk_ends_the_command_in_one_line(capsys):
    """Python reports a failing close in teardown as "Exception ignored" and carries on: the command
    would end with status 0 and a truncated file. It ends in one line and status 2."""

    class Workbook:
        def __del__(self):
            raise OSError(errno.ENOSPC, "No space left on device")

    def main():
        Workbook()  # freed at once: its close fails in __del__
        return 0

    assert exit_on_usage_error(main, output="/w") == 2
    assert capsys.readouterr().err == "error: /w: No space left on device (a file failed to close)\n"


def test_a_full_disk_during_an_atomic_write_names_the_file(tmp_path, capsys):
    """A write() that fails for a full disk names no file: the atomic writer names the one it was
    writing, and leaves no temporary file."""
    from bench.fileio import write_atomic

    def full(tmp):
        raise OSError(errno.ENOSPC, "No space left on device")

    assert exit_on_usage_error(lambda: write_atomic(tmp_path / "bench_run.json", full)) == 2
    assert capsys.readouterr().err == f"error: {tmp_path / 'bench_run.json'}: No space left on device\n"
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("option", ["--meta", "--mmbench-scores"])
def test_json_nested_thousands_deep_in_an_option_is_argparse_s_one_line(tmp_path, option):
    result = cli("reproduce", "submit", "--work-dir", str(tmp_path), "--model", "m", "--out", str(tmp_path / "s"),
                 option, DEEP)
    assert result.returncode == 2 and result.stderr.strip().splitlines()[-1].endswith(
        f"error: argument {option}: not JSON that can be read (RecursionError)")


def test_recursion_in_any_entry_point_is_one_line(capsys):
    def deep():
        return deep()

    assert exit_on_usage_error(deep) == 2
    assert capsys.readouterr().err == "error: an input is nested too deeply to be read (RecursionError)\n"


def test_a_fifo_where_a_results_file_is_expected_is_named_not_waited_on(tmp_path, capsys):
    """Opening a FIFO for reading waits for a writer forever: every results reader checks for a
    regular file first (bench.fileio.regular_file), in bench.score, table1 and submit alike."""
    from bench.score import ResultsError, read_predictions, run_record, score_work_dir
    from reproduce.submit import SubmissionError, read_json_object
    from reproduce.table1 import TableError, collect_scores

    model = tmp_path / "work" / "m"
    model.mkdir(parents=True)
    for name in ("m_X.xlsx", "status.json", "bench_run.json", "r1_scores.json"):
        os.mkfifo(model / name)
    with pytest.raises(ResultsError, match="m_X.xlsx: cannot be read .*a FIFO, where a results file is needed"):
        read_predictions(model / "m_X.xlsx")
    assert run_record(model) == {}
    with pytest.raises(ResultsError, match="no prediction file could be scored"):
        score_work_dir(tmp_path / "work")
    assert "status.json: not readable JSON (OSError)" in capsys.readouterr().err
    with pytest.raises(SubmissionError, match="r1_scores.json: not a readable JSON file"):
        read_json_object(model / "r1_scores.json")
    with pytest.raises(TableError, match="r1_scores.json: not a scores file"):
        collect_scores([tmp_path / "work"])


def test_a_config_of_another_architecture_or_too_large_is_refused_before_a_model_is_built(tmp_path):
    """A config.json that parses but describes a Llama used to build a full-size model and be killed
    by the OOM killer; one whose parameters cannot fit this machine is refused too (counted on the
    meta device)."""
    from bench.preflight import architecture_problem, check_model_folder
    from train.tiny import build_tiny

    llama = tmp_path / "llama"
    llama.mkdir()
    (llama / "config.json").write_text('{"model_type": "llama"}')
    assert check_model_folder(llama) == [f"{llama / 'config.json'}: model_type 'llama' is not an architecture this "
                                         "harness runs (qwen2_5_vl)"]
    line = one_error(cli("train", "--config", str(TINY), f"worker.actor.model.model_path={llama}",
                         f"trainer.output_dir={tmp_path / 'out'}"))
    assert "model_type 'llama' is not an architecture this harness runs" in line
    tiny = build_tiny(tmp_path / "tiny", seed=0)
    config = json.loads((tiny / "config.json").read_text())
    assert architecture_problem(tiny / "config.json", config) is None
    problem = architecture_problem(tiny / "config.json", config, memory_bytes=1000)
    assert problem and "parameters take" in problem and "more than this machine's 0.0 GiB" in problem
    config["vision_config"]["depth"] = "two"
    assert "not a Qwen2.5-VL config that can be built (TypeError" in architecture_problem(tiny / "config.json", config)
