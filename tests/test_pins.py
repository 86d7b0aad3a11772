"""The `vllm` extra and the lock agree: the pinned vLLM release's own requirements (its wheel's
metadata, recorded in requirements/vllm-requires.txt) accept every locked version they name."""

from pathlib import Path

from packaging.requirements import Requirement

from reproduce import pins
from train.rollout import VLLM_VERSION

ROOT = Path(__file__).resolve().parents[1]


def test_the_recorded_vllm_metadata_is_the_pinned_release_and_agrees_with_the_lock(capsys):
    version, requirements = pins.read_record(pins.RECORD.read_text())
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert version == pins.vllm_pin(pyproject) == VLLM_VERSION
    names = {r.name for r in requirements}
    assert {"torch", "transformers"} <= names  # the two the issue is about are in the record
    assert pins.main([]) == 0
    assert "0 conflicts" in capsys.readouterr().out


def test_a_release_built_for_another_torch_is_named_as_a_conflict():
    """vLLM 0.11.0's requirements (torch==2.8.0, transformers<5; its METADATA) against today's lock."""
    lock = pins.locked((ROOT / "requirements" / "lock.txt").read_text(),
                       (ROOT / "requirements" / "constraints.txt").read_text())
    assert lock["torch"] == "2.13.0"
    old = [Requirement("torch==2.8.0"), Requirement("transformers<5,>=4.56.0"), Requirement("regex"),
           Requirement('xformers==0.0.32.post1; platform_system == "Linux" and platform_machine == "x86_64"'),
           Requirement('numpy<2; extra == "bench"'), Requirement('pandas<1; sys_platform == "darwin"')]
    found = pins.conflicts(old, lock)
    assert found == ["vllm requires torch==2.8.0, the lock pins torch==2.13.0",
                     f"vllm requires transformers<5,>=4.56.0, the lock pins transformers=={lock['transformers']}"]


def test_a_stale_record_is_refused(tmp_path, monkeypatch, capsys):
    stale = tmp_path / "vllm-requires.txt"
    stale.write_text("# vllm==0.11.0: recorded\ntorch==2.8.0\n")
    monkeypatch.setattr(pins, "RECORD", stale)
    monkeypatch.setattr(pins, "ROOT", ROOT)
    assert pins.main([]) == 1
    assert "records vllm==0.11.0, pyproject.toml pins 0.28.0" in capsys.readouterr().err
