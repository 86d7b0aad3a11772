"""The checkpoint layout in process, with a stand-in for DeepSpeed's engine that writes and reads a
file where DeepSpeed writes its folder (the trainer's own tests run DeepSpeed itself): atomic
saves, `latest`, the retention of the newest checkpoints by step number, failed saves, and which
checkpoint a resume picks."""

from __future__ import annotations

import errno
import json
import re
from pathlib import Path

import pytest
import yaml

from bench.errors import UsageError
from train.checkpoint import (
    DS_TAG,
    CheckpointError,
    checkpoint_root,
    find_resume,
    is_complete,
    load_checkpoint,
    save_checkpoint,
)


class Engine:
    """Writes `{dir}/{tag}/weights` on save (or raises `fail`); records loads."""

    def __init__(self, fail: BaseException | None = None) -> None:
        self.fail, self.loads = fail, []

    def save_checkpoint(self, save_dir: str, tag: str) -> None:
        if self.fail:
            (Path(save_dir) / tag).mkdir()
            raise self.fail
        (Path(save_dir) / tag).mkdir()
        (Path(save_dir) / tag / "weights").write_text(save_dir)

    def load_checkpoint(self, load_dir: str, **kwargs) -> None:
        self.loads.append((load_dir, kwargs))


def save(out: Path, step: int, limit: int = 2, engine: Engine | None = None) -> Path:
    return save_checkpoint(engine or Engine(), out, step, {"data_position": [step * 4]}, {"lr": 1e-6}, limit)


def test_a_save_writes_the_layout_and_names_it_latest(tmp_path):
    final = save(tmp_path, 3)
    root = checkpoint_root(tmp_path)
    assert final == root / "step_3" and is_complete(final)
    assert json.loads((final / "trainer_state.json").read_text()) == {"data_position": [12], "step": 3}
    assert yaml.safe_load((final / "config.yaml").read_text()) == {"lr": 1e-6}
    assert (final / DS_TAG / "weights").read_text() == str(root / "step_3.tmp")  # written under .tmp, then renamed
    assert (root / "latest").read_text() == "step_3\n"
    assert sorted(p.name for p in root.iterdir()) == ["latest", "step_3"]


def test_retention_keeps_the_newest_by_step_number(tmp_path):
    """step_10 is newer than step_9 (a text sort would keep step_9)."""
    for step in (8, 9, 10, 11):
        save(tmp_path, step, limit=2)
    root = checkpoint_root(tmp_path)
    assert sorted(p.name for p in root.iterdir()) == ["latest", "step_10", "step_11"]
    save(tmp_path, 12, limit=1)
    assert sorted(p.name for p in root.iterdir()) == ["latest", "step_12"]


def test_saving_a_step_again_replaces_it(tmp_path):
    save(tmp_path, 2)
    (checkpoint_root(tmp_path) / "step_2" / "stale").write_text("x")
    final = save(tmp_path, 2)
    assert not (final / "stale").exists() and is_complete(final)


@pytest.mark.parametrize(("fail", "said", "not_said"), [
    (OSError(errno.ENOSPC, "No space left on device"), "No space left on device", "boom"),
    (RuntimeError("boom   in\nthe writer"), "boom in the writer", "No space left"),
])
def test_a_failed_save_cleans_up_and_says_why(tmp_path, fail, said, not_said):
    save(tmp_path, 1)
    with pytest.raises(CheckpointError) as err:
        save(tmp_path, 2, engine=Engine(fail))
    message = str(err.value)
    assert said in message and not_said not in message
    assert "step_2.tmp was removed" in message and "GiB free" in message
    root = checkpoint_root(tmp_path)
    assert sorted(p.name for p in root.iterdir()) == ["latest", "step_1"]  # the earlier one intact
    assert (root / "latest").read_text() == "step_1\n"


def make(root: Path, step: int, complete: bool = True, suffix: str = "") -> Path:
    path = root / f"step_{step}{suffix}"
    path.mkdir(parents=True)
    if complete:
        (path / DS_TAG).mkdir()
        (path / "trainer_state.json").write_text("{}")
    return path


def test_is_complete_needs_the_state_and_the_deepspeed_folder(tmp_path):
    only_state = make(tmp_path, 1, complete=False)
    (only_state / "trainer_state.json").write_text("{}")
    only_ds = make(tmp_path, 2, complete=False)
    (only_ds / DS_TAG).mkdir()
    assert not is_complete(only_state) and not is_complete(only_ds) and is_complete(make(tmp_path, 3))


def test_resume_none_explicit_and_auto(tmp_path, capsys):
    root = checkpoint_root(tmp_path)
    assert find_resume(tmp_path, "auto") is None  # no checkpoints folder at all
    assert find_resume(tmp_path, "none") is None
    for step in (9, 10):
        make(root, step)
    make(root, 11, suffix=".tmp")  # a save killed just before its rename: never resumed from
    assert find_resume(tmp_path, "auto") == root / "step_10"  # by number, not by text
    assert find_resume(tmp_path, "none") is None
    assert find_resume(tmp_path, str(root / "step_9")) == root / "step_9"
    incomplete = make(tmp_path / "elsewhere", 12, complete=False)
    with pytest.raises(UsageError, match=r"trainer.resume=.*step_12: not a complete checkpoint folder"):
        find_resume(tmp_path, str(incomplete))
    (root / "latest").write_text("step_9\n")
    assert find_resume(tmp_path, "auto") == root / "step_9"  # latest, when it names a complete one
    assert capsys.readouterr().err == ""


def test_an_incomplete_newest_checkpoint_is_passed_over_with_a_message(tmp_path, capsys):
    root = checkpoint_root(tmp_path)
    make(root, 4)
    make(root, 6, complete=False)
    make(root, 2, complete=False)  # older than the newest complete one: not worth a message
    (root / "latest").write_text("step_6\n")
    assert find_resume(tmp_path, "auto") == root / "step_4"
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"{root / 'step_6'}: incomplete checkpoint (no trainer_state.json or ds/), passed over; "
                   "resuming from step_4"]
    (root / "step_4" / "trainer_state.json").unlink()
    assert find_resume(tmp_path, "auto") is None
    assert "resuming from the start" in capsys.readouterr().err


def test_load_restores_everything_and_returns_the_trainer_state(tmp_path):
    final = save(tmp_path, 5)
    engine = Engine()
    assert load_checkpoint(engine, final) == {"data_position": [20], "step": 5}
    assert engine.loads == [(str(final), {"tag": DS_TAG, "load_optimizer_states": True,
                                          "load_lr_scheduler_states": True})]


def test_a_stale_tmp_folder_is_replaced_and_the_config_keeps_its_order(tmp_path):
    root = checkpoint_root(tmp_path)
    (root / "step_2.tmp" / "ds").mkdir(parents=True)
    (root / "step_2.tmp" / "stale").write_text("from a killed save")
    final = save_checkpoint(Engine(), tmp_path, 2, {}, {"worker": 1, "algorithm": 2, "data": 3}, 2)
    assert not (final / "stale").exists() and not (root / "step_2.tmp").exists()
    assert list(yaml.safe_load((final / "config.yaml").read_text())) == ["worker", "algorithm", "data"]


def test_completed_never_counts_a_tmp_folder(tmp_path):
    from train.checkpoint import completed

    make(tmp_path, 3)
    make(tmp_path, 5, suffix=".tmp")  # complete inside, but its rename never happened
    make(tmp_path, 7, complete=False)
    assert [p.name for p in completed(tmp_path)] == ["step_3"]


@pytest.mark.parametrize(("exc", "free", "full"), [
    (OSError(errno.ENOSPC, "write failed"), 10 * 2**30, True),  # by errno alone
    (RuntimeError("[enforce fail] write: No space left on device (28) at 4096"), 10 * 2**30, True),  # by message alone
    (RuntimeError("unexpected pos 4096 vs 0"), 10 * 2**20, True),  # hidden ENOSPC: less than 64 MiB free
    (RuntimeError("unexpected pos 4096 vs 0"), 64 * 2**20, False),  # exactly the bound: not full
    (RuntimeError("unexpected pos 4096 vs 0"), 0, True),
    (RuntimeError("unexpected pos 4096 vs 0"), None, False),  # free space unknown: the error as it is
    (PermissionError(errno.EACCES, "Permission denied"), 10 * 2**30, False),
])
def test_a_failed_save_says_no_space_only_when_it_is(tmp_path, monkeypatch, exc, free, full):
    from train.checkpoint import save_failure

    seen = []

    def disk_usage(path):
        seen.append(path)
        if free is None:
            raise OSError("statvfs failed")
        return type("Usage", (), {"free": free})()

    monkeypatch.setattr("shutil.disk_usage", disk_usage)
    root = tmp_path / "out" / "checkpoints"  # not created yet: its parent is asked
    message = save_failure(root, 4, exc)
    assert seen == [tmp_path / "out"]
    assert ("No space left on device;" in message) == full
    shown = 0.0 if free is None else free / 2**30
    assert f"; {shown:.2f} GiB free there); its partial folder step_4.tmp was removed" in message
    assert message.startswith(f"checkpoint step_4 could not be written under {root} (")


def test_a_failure_message_is_one_bounded_line(tmp_path, monkeypatch):
    from train.checkpoint import save_failure

    monkeypatch.setattr("shutil.disk_usage", lambda path: type("Usage", (), {"free": 5 * 2**30})())
    long = save_failure(tmp_path, 1, RuntimeError("x" * 150 + "\n  " + "y" * 150))
    assert "\n" not in long and "x" * 150 + " " + "y" * 49 + ";" in long
    assert "(RuntimeError; 5.00 GiB free" in save_failure(tmp_path, 1, RuntimeError(""))


def test_a_save_failure_asks_the_disk_of_the_checkpoints_folder_once_it_exists(tmp_path, monkeypatch):
    from train.checkpoint import save_failure

    seen = []
    monkeypatch.setattr("shutil.disk_usage", lambda path: seen.append(path) or type("U", (), {"free": 2**30})())
    root = checkpoint_root(tmp_path)
    root.mkdir()
    save_failure(root, 1, RuntimeError("x"))
    assert seen == [root]


def test_a_leftover_tmp_folder_is_neither_resumed_nor_reported(tmp_path, capsys):
    root = checkpoint_root(tmp_path)
    make(root, 3)
    make(root, 8, suffix=".tmp", complete=False)  # a save killed before DeepSpeed wrote anything
    assert find_resume(tmp_path, "auto") == root / "step_3"
    assert capsys.readouterr().err == ""


def test_an_unreadable_latest_file_falls_back_to_the_newest_complete_checkpoint(tmp_path, capsys):
    root = checkpoint_root(tmp_path)
    make(root, 3)
    make(root, 5)
    (root / "latest").write_bytes(b"step_\xff\xfe3\n")  # not UTF-8: names nothing, and no UnicodeDecodeError
    assert find_resume(tmp_path, "auto") == root / "step_5"


def test_latest_may_only_name_a_step_folder_of_this_run(tmp_path, capsys):
    """A tampered `latest` naming a checkpoint elsewhere (an absolute path, `..`, a link out of
    checkpoints/) is passed over with one line: DeepSpeed would unpickle whatever that folder holds."""
    root = checkpoint_root(tmp_path / "run")
    make(root, 3)
    outside = make(tmp_path / "evil" / "checkpoints", 99)  # complete, and not this run's
    (root / "step_77").symlink_to(outside, target_is_directory=True)
    for name in (str(outside), f"../../evil/checkpoints/{outside.name}", "step_77", "step_3/../../../evil/checkpoints/step_99"):
        (root / "latest").write_text(name + "\n")
        assert find_resume(tmp_path / "run", "auto") == root / "step_3", name  # the newest of this run's own
        assert "not a step_N folder of" in capsys.readouterr().err, name


@pytest.mark.parametrize("state,message", [
    ({"step": -5, "data_position": [0]}, "step=-5 must be a whole number >= 0"),
    ({"step": 2.5, "data_position": [0]}, "step=2.5 must be a whole number >= 0"),
    ({"step": 2}, "data_position=None must be 1 whole number(s) >= 0, one per rank"),
    ({"step": 2, "data_position": [-1]}, "data_position=[-1] must be 1 whole number(s) >= 0"),
    ({"step": 2, "data_position": [0, 3]}, "data_position=[0, 3] must be 1 whole number(s)"),
    ([1, 2], "not a JSON object"),
])
def test_a_trainer_state_that_cannot_be_resumed_is_refused_before_deepspeed_loads(tmp_path, state, message):
    final = save(tmp_path, 5)
    (final / "trainer_state.json").write_text(json.dumps(state))
    engine = Engine()
    with pytest.raises(UsageError, match=re.escape(message)):
        load_checkpoint(engine, final)
    assert engine.loads == []  # nothing was loaded
