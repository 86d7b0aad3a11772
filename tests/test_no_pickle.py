"""VLMEvalKit's .pkl intermediates as JSON (`bench.no_pickle`): what VLMEvalKit stores round-trips
through its own dump/load, and a real pickle is neither loaded nor left in a work folder."""

from __future__ import annotations

import os
import pickle

import numpy as np
import pytest

from bench.no_pickle import MAGIC, JsonPickle, remove_foreign
from tests.test_bench_run_reliability import payload_pickle


@pytest.fixture
def vlmeval_file():
    from bench.vlmeval_compat import import_vlmeval

    import_vlmeval()  # installs JsonPickle as vlmeval/smp/file.py's pickle
    import vlmeval.smp.file

    assert vlmeval.smp.file.pickle is JsonPickle
    return vlmeval.smp.file


def test_what_vlmeval_keeps_round_trips_through_its_own_dump_and_load(tmp_path, vlmeval_file):
    """{index: prediction} with numpy and Python integer indices, string indices, and structured
    records: the same dict back, integer keys still integers (VLMEvalKit looks rows up by them)."""
    data = {np.int64(3): "<think>t</think> \\boxed{2}", 4: {"prediction": "B", "extra_records": {"n": 1}},
            "id-7": "x", np.int64(12): ""}
    path = str(tmp_path / "01_SynthCount.pkl")
    vlmeval_file.dump(data, path)
    assert open(path, "rb").read().startswith(MAGIC)
    back = vlmeval_file.load(path)
    assert back == {3: data[np.int64(3)], 4: data[4], "id-7": "x", 12: ""}
    assert all(type(k) in (int, str) for k in back) and np.int64(3) in back
    vlmeval_file.dump(["a", 1], path)
    assert vlmeval_file.load(path) == ["a", 1]


def test_a_real_pickle_is_refused_by_name_and_never_runs(tmp_path, vlmeval_file):
    marker = tmp_path / "payload_ran"
    path = tmp_path / "m_SynthCount_checkpoint.pkl"
    path.write_bytes(payload_pickle(marker))
    with pytest.raises(ValueError, match=f"{path}: not a JSON intermediate bench.run wrote; a pickle is never loaded"):
        vlmeval_file.load(str(path))
    assert not marker.exists()
    with pytest.raises(TypeError, match="cannot be kept as JSON"):
        JsonPickle.dump({1: object()}, (tmp_path / "x.pkl").open("wb"))


def test_foreign_pickles_are_removed_and_ours_kept(tmp_path, capsys):
    ours, theirs, fifo, link = (tmp_path / n for n in ("00_X.pkl", "01_X.pkl", "02_X.pkl", "03_X.pkl"))
    with ours.open("wb") as handle:
        JsonPickle.dump({1: "a"}, handle)
    theirs.write_bytes(pickle.dumps({1: "a"}))
    os.mkfifo(fifo)  # opened, it would block the run
    link.symlink_to(ours)
    assert remove_foreign(tmp_path) == [theirs, fifo, link]
    assert [p.name for p in tmp_path.iterdir()] == ["00_X.pkl"]
    assert f"note: {theirs}: removed (a pickle" in capsys.readouterr().err
    assert remove_foreign(tmp_path / "none") == []
