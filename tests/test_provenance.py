"""bench.provenance worked by hand, in process: the digests that tie a score to the weights and the
predictions it came from (the subprocess property test in test_provenance_property.py runs the
same functions through bench.run, where a mutation tool cannot see them)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from bench.provenance import file_sha256, index_digest, index_key, prediction_entry, weights_digest


def slow_weights_digest(folder: Path, names: list[str]) -> str:
    """The documented digest, spelled out: for each named file in name order, its name, a NUL, its
    size, a NUL, then the sha256 of its content."""
    out = hashlib.sha256()
    for name in sorted(names):
        data = (folder / name).read_bytes()
        out.update(name.encode() + b"\0" + str(len(data)).encode() + b"\0" + hashlib.sha256(data).digest())
    return out.hexdigest()


@pytest.fixture()
def checkpoint(tmp_path: Path) -> Path:
    (tmp_path / "config.json").write_text('{"hidden_size": 8}')
    (tmp_path / "model-00001-of-00002.safetensors").write_bytes(b"\x01" * 10)
    (tmp_path / "model-00002-of-00002.safetensors").write_bytes(b"\x02" * 3)
    (tmp_path / "extra.bin").write_bytes(b"bin")
    return tmp_path


WEIGHTS = ["config.json", "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors", "extra.bin"]


def test_weights_digest_is_the_documented_sha256(checkpoint: Path):
    assert weights_digest(checkpoint) == slow_weights_digest(checkpoint, WEIGHTS)


def test_weights_digest_reads_config_and_weight_files_only(checkpoint: Path):
    before = weights_digest(checkpoint)
    (checkpoint / "tokenizer.json").write_text("{}")
    (checkpoint / "README.md").write_text("notes")
    (checkpoint / "sub").mkdir()
    (checkpoint / "sub" / "other.safetensors").write_bytes(b"x")  # not the folder's own: not read
    (checkpoint / "dir.pt").mkdir()  # a folder named like a weight file is not a file
    assert weights_digest(checkpoint) == before
    for name in ("a.pt", "b.pth"):
        (checkpoint / name).write_bytes(b"w")
        assert weights_digest(checkpoint) != before, name
        (checkpoint / name).unlink()


@pytest.mark.parametrize("change", ["content", "rename", "config", "remove"])
def test_weights_digest_moves_with_every_change(checkpoint: Path, change: str):
    before = weights_digest(checkpoint)
    shard = checkpoint / "model-00002-of-00002.safetensors"
    if change == "content":  # same size, other bytes: a checkpoint retrained in place
        shard.write_bytes(b"\x03" * 3)
    elif change == "rename":
        shard.rename(checkpoint / "model-00003-of-00003.safetensors")
    elif change == "config":
        (checkpoint / "config.json").write_text('{"hidden_size": 9}')
    else:
        shard.unlink()
    assert weights_digest(checkpoint) != before


def test_weights_digest_names_the_boundary_between_files(tmp_path: Path):
    """The name and size are hashed with each file, so moving a byte from one file into the next
    (same concatenated content) changes the digest."""
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir(), b.mkdir()
    (a / "x.bin").write_bytes(b"ab"), (a / "y.bin").write_bytes(b"c")
    (b / "x.bin").write_bytes(b"a"), (b / "y.bin").write_bytes(b"bc")
    assert weights_digest(a) != weights_digest(b)


def test_weights_digest_of_an_empty_folder_is_the_empty_sha256(tmp_path: Path):
    assert weights_digest(tmp_path) == hashlib.sha256().hexdigest()


@pytest.mark.parametrize(("index", "key"), [
    ("007", "7"), (7, "7"), (" 12 ", "12"), ("-3", "-3"), ("-03", "-3"), ("0", "0"),
    ("a7", "a7"), ("7a", "7a"), ("1.0", "1.0"), ("1e3", "1e3"), (" q_1 ", "q_1"), ("", ""),
])
def test_index_key_as_vlmevalkit_files_it(index, key):
    assert index_key(index) == key


def test_index_digest_is_the_sha256_of_sorted_lines():
    assert index_digest(["2", "10", "1"]) == hashlib.sha256(b"1\n10\n2").hexdigest()
    assert index_digest(["10", "2", "1"]) == index_digest(["1", "2", "10"])
    assert index_digest(["1", "2"]) != index_digest(["1", "2", "2"])  # a repeated item shows


def test_file_sha256_of_a_file_and_of_its_bytes(tmp_path: Path):
    path = tmp_path / "p.xlsx"
    path.write_bytes(b"predictions")
    assert file_sha256(path) == file_sha256(path, b"predictions") == hashlib.sha256(b"predictions").hexdigest()
    # the bytes given are hashed, not the file: the caller parses what it checked
    assert file_sha256(path, b"other") == hashlib.sha256(b"other").hexdigest()


def test_prediction_entry_fields(tmp_path: Path):
    path = tmp_path / "model_SynthCount.xlsx"
    path.write_bytes(b"rows")
    keys = ["3", "1", "2"]
    expected = {"file": "model_SynthCount.xlsx", "sha256": hashlib.sha256(b"rows").hexdigest(), "rows": 3,
                "indices_sha256": hashlib.sha256(b"1\n2\n3").hexdigest(), "tsv_md5": "abc"}
    assert prediction_entry(path, keys, "abc") == expected
    assert prediction_entry(path, keys, "abc", data=b"rows") == expected
    assert prediction_entry(path, keys, None, data=b"else") == {
        **expected, "sha256": hashlib.sha256(b"else").hexdigest(), "tsv_md5": None}
    assert prediction_entry(path, ["1", "1"], None)["rows"] == 2
