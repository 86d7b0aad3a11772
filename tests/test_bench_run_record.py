"""bench.run's work around VLMEvalKit, in process: the work folder prepared and claimed, the record
begun, the full responses kept across a re-run, and each finished predictions file checked and
recorded. VLMEvalKit's runner is replaced by one that writes the predictions file it would (its
name, layout and columns), so that these stages run where a mutation tool sees them; the real
runner is driven in test_bench_run_reliability.py and test_provenance_property.py."""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import openpyxl
import pandas as pd
import pytest

from bench.data import write
from bench.errors import UsageError
from bench.fileio import write_table_atomic
from bench.lock import hold_folder_lock
from bench.preflight import finished_predictions
from bench.provenance import prediction_entry, weights_digest
from bench.run import (
    arguments,
    cuda_max_memory_gib,
    file_md5,
    finish_record,
    main,
    official_tsv_problems,
    preflight,
    prepare_model_dir,
    restore_records,
    run,
    saved_records,
    start_record,
    versions,
)
from bench.score import read_predictions, unlike_record

SINCE = "2026-01-01T00:00:00+00:00"


@pytest.fixture(scope="module")
def lmu(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("lmu")
    write(folder, n=3, seed=0, side=28, tasks=["SynthCount", "SynthColour"])
    return folder


SMALL_CONFIG = {"model_type": "qwen2_5_vl", "hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1,
                "num_attention_heads": 2, "num_key_value_heads": 1, "vocab_size": 64, "eos_token_id": 0,
                "vision_config": {"depth": 1, "hidden_size": 16, "intermediate_size": 32, "num_heads": 2,
                                  "out_hidden_size": 16}}
"""A Qwen2.5-VL config of 31,200 parameters, written out rather than built (`train.tiny` computes
on the CPU, which a process forked by the mutation tool may not: its thread pool hangs)."""


@pytest.fixture()
def model(tmp_path: Path) -> Path:
    """A checkpoint folder as check_model_folder accepts it (config.json of the architecture, a
    safetensors file); no model is loaded from it here."""
    from safetensors.numpy import save_file

    folder = tmp_path / "ckpt" / "step_4"
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps(SMALL_CONFIG))
    save_file({"w": np.zeros(2, dtype=np.float32)}, str(folder / "model.safetensors"))
    return folder


@pytest.fixture()
def env(monkeypatch, lmu: Path):
    """The process state bench.run sets (LMUData, SPLIT_THINK, sys.argv), undone after the test."""
    for name in ("LMUData", "SPLIT_THINK", "RANK"):
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(sys, "argv", list(sys.argv))
    return monkeypatch


@pytest.fixture()
def own_lmu(lmu: Path, tmp_path: Path) -> Path:
    """A data folder whose MMStar.tsv is not VLMEvalKit's file (SynthCount's rows under that name)."""
    own = tmp_path / "own_lmu"
    own.mkdir()
    shutil.copy(lmu / "SynthCount.tsv", own / "MMStar.tsv")
    return own


def predictions(lmu: Path, dataset: str, rows: int | None = None, thinking: bool = True) -> pd.DataFrame:
    """What VLMEvalKit's inference writes for a dataset: the TSV's columns but the image, then the
    prediction, and our adapters' extra_records (the full response)."""
    tsv = pd.read_csv(lmu / f"{dataset}.tsv", sep="\t").drop(columns=["image"]).head(rows)
    full = [f"<think>look {k}</think>\\boxed{{{a}}}" for k, a in enumerate(tsv["answer"])]
    frame = tsv.assign(prediction=[f"\\boxed{{{a}}}" for a in tsv["answer"]])
    return frame.assign(extra_records=[repr({"full_response": f}) for f in full]) if thinking else frame


def fake_vlmeval(lmu: Path, seen: list, short: str | None = None, skip: tuple[str, str] | None = None,
                 errors: dict[str, str] | None = None):
    """VLMEvalKit's `run.main` as bench.run calls it: reads sys.argv and writes
    `{work}/{model}/{model}_{dataset}.xlsx` per pair (`short`: a dataset answered but for its last
    item; `skip`: a (model, dataset) pair with no file; `errors`: {dataset: updated_at, or "now"}
    stamped in status.json with an error, as VLMEvalKit records a dataset that failed)."""

    def main() -> None:
        argv = sys.argv
        seen.append(list(argv))
        take = lambda flag: argv[argv.index(flag) + 1:next(  # noqa: E731
            (k for k in range(argv.index(flag) + 1, len(argv)) if argv[k].startswith("--")), len(argv))]
        work = Path(take("--work-dir")[0])
        for name in take("--model"):
            for dataset in take("--data"):
                if (name, dataset) != skip:
                    frame = predictions(lmu, dataset, 2 if dataset == short else None)
                    frame.to_excel(work / name / f"{name}_{dataset}.xlsx", index=False)
            status = {d: {"error_message": "CUDA out of memory", "updated_at": now() if t == "now" else t}
                      for d, t in (errors or {}).items()}
            (work / name / "status.json").write_text(json.dumps({"datasets": status}))

    return main


def vlmeval_run():
    """`vlmeval` with its `run` module, imported as bench.run imports it (`import_vlmeval`)."""
    from bench.vlmeval_compat import import_vlmeval

    import_vlmeval()
    import vlmeval.run

    return vlmeval


def args_for(model: Path, work: Path, lmu: Path, *more: str):
    return arguments().parse_args(["--model", str(model), "--data", "SynthCount", "SynthColour", "--work-dir", str(work),
                                   "--lmudata", str(lmu), *more])


# ---------------------------------------------------------------- the whole command, in process
def test_a_finished_run_records_what_made_each_file(env, lmu: Path, model: Path, tmp_path: Path):
    vlmeval = vlmeval_run()

    seen: list = []
    env.setattr(vlmeval.run, "main", fake_vlmeval(lmu, seen))
    work = tmp_path / "work"
    assert run(args_for(model, work, lmu, "--max-new-tokens", "8")) == 0
    assert seen == [["vlmeval", "--data", "SynthCount", "SynthColour", "--model", "step_4", "--work-dir", str(work),
                     "--mode", "infer"]]
    record = json.loads((work / "step_4" / "bench_run.json").read_text())
    assert record["status"] == "finished" and record["failed"] == {}
    assert (record["model"], record["vlmeval_name"], record["datasets"]) == (str(model), "step_4", ["SynthCount", "SynthColour"])
    assert record["settings"]["weights_sha256"] == weights_digest(model)
    assert record["settings"]["max_new_tokens"] == 8
    assert (record["lmudata"], record["split_think"], record["judge"]) == (str(lmu.resolve()), "1", None)
    assert record["argv"] == seen[0]
    md5 = {d: hashlib.md5((lmu / f"{d}.tsv").read_bytes(), usedforsecurity=False).hexdigest() for d in record["datasets"]}
    assert record["tsv_md5"] == md5
    for dataset in record["datasets"]:
        path = work / "step_4" / f"step_4_{dataset}.xlsx"
        assert record["predictions"][dataset] == prediction_entry(path, ["0", "1", "2"], md5[dataset])
        assert unlike_record(path, record["predictions"][dataset]) is None
    assert record["ended"] >= record["started"]
    assert set(record["versions"]) == {"r1-sharevl", "ms-vlmeval", "transformers", "torch", "math-verify"}
    assert record["cuda_max_memory_gib"] is None
    hold_folder_lock(work / "step_4", "--work-dir", "test").close()  # the run let go of its folder


def test_a_short_file_fails_its_pair_and_keeps_the_other(env, lmu: Path, model: Path, tmp_path: Path, capsys):
    vlmeval = vlmeval_run()

    env.setattr(vlmeval.run, "main", fake_vlmeval(lmu, [], short="SynthColour"))
    work = tmp_path / "work"
    assert run(args_for(model, work, lmu)) == 1
    err = capsys.readouterr().err.splitlines()
    assert err[-2:] == ["error: step_4 x SynthColour: step_4_SynthColour.xlsx answers 2 of the 3 items it had to",
                        "bench.run: 1 of 2 (model, dataset) pairs failed; the others are kept"]
    record = json.loads((work / "step_4" / "bench_run.json").read_text())
    assert record["status"] == "failed"
    assert record["failed"] == {"SynthColour": "step_4_SynthColour.xlsx answers 2 of the 3 items it had to"}
    assert list(record["predictions"]) == ["SynthCount"]


def test_a_rank_other_than_0_records_nothing(env, lmu: Path, model: Path, tmp_path: Path):
    vlmeval = vlmeval_run()

    seen: list = []
    env.setattr(vlmeval.run, "main", fake_vlmeval(lmu, seen))
    env.setenv("RANK", "1")
    work = tmp_path / "work"
    (work / "step_4").mkdir(parents=True)  # rank 0 makes it; this rank only infers into it
    assert run(args_for(model, work, lmu)) == 0
    assert len(seen) == 1
    assert not (work / "step_4" / "bench_run.json").exists() and not (work / "step_4" / ".lock").exists()


def test_nothing_runs_and_nothing_is_left_when_a_check_fails(env, lmu: Path, own_lmu: Path, model: Path,
                                                             tmp_path: Path):
    """A TSV named as a dataset VLMEvalKit knows, unlike its own file, is refused after the folder is
    claimed: the folder that holds nothing but the lock goes again."""
    vlmeval = vlmeval_run()

    from bench.vlmeval_compat import official_md5

    seen: list = []
    env.setattr(vlmeval.run, "main", fake_vlmeval(lmu, seen))
    own = own_lmu
    args = args_for(model, tmp_path / "work", own)
    args.data = ["MMStar"]
    with pytest.raises(UsageError, match=f"MMStar.tsv: md5 {file_md5(own / 'MMStar.tsv')} is not VLMEvalKit's "
                                         f"{official_md5('MMStar')} for MMStar"):
        run(args)
    assert seen == [] and not (tmp_path / "work" / "step_4").exists()
    (tmp_path / "work" / "step_4").mkdir()
    (tmp_path / "work" / "step_4" / "notes.txt").write_text("the user's")
    with pytest.raises(UsageError):
        run(args)
    assert sorted(p.name for p in (tmp_path / "work" / "step_4").iterdir()) == [".lock", "notes.txt"]  # not removed


def test_a_re_run_with_reuse_keeps_the_full_responses(env, lmu: Path, model: Path, tmp_path: Path):
    """VLMEvalKit's --reuse writes a finished file back without extra_records: bench.run puts them back."""
    vlmeval = vlmeval_run()

    work = tmp_path / "work"
    env.setattr(vlmeval.run, "main", fake_vlmeval(lmu, []))
    assert run(args_for(model, work, lmu)) == 0
    path = work / "step_4" / "step_4_SynthCount.xlsx"
    before = read_predictions(path)

    def rewrite_without_records() -> None:
        for dataset in ("SynthCount", "SynthColour"):
            predictions(lmu, dataset, thinking=False).to_excel(work / "step_4" / f"step_4_{dataset}.xlsx", index=False)

    env.setattr(vlmeval.run, "main", rewrite_without_records)
    assert run(args_for(model, work, lmu, "--reuse")) == 0
    assert read_predictions(path)["extra_records"].tolist() == before["extra_records"].tolist()
    record = json.loads((work / "step_4" / "bench_run.json").read_text())
    assert unlike_record(path, record["predictions"]["SynthCount"]) is None  # the record is of the restored file


# ---------------------------------------------------------------- the stages, one by one
def test_finished_predictions_by_case(tmp_path: Path):
    d = tmp_path / "m"
    d.mkdir()
    assert finished_predictions(d, None, "D", ["0"], SINCE) == ("no prediction file was written (see VLMEvalKit's log above)", [])
    path = d / "m_D.csv"
    pd.DataFrame({"index": ["007", "2", "x"], "answer": "A", "prediction": "A"}).to_csv(path, index=False)
    assert finished_predictions(d, path, "D", None, SINCE) == (None, ["7", "2", "x"])  # file order, VLMEvalKit's keys
    assert finished_predictions(d, path, "D", ["x", "7", "02"], SINCE) == (None, ["7", "2", "x"])
    assert finished_predictions(d, path, "D", ["x", "7", "3"], SINCE) == ("m_D.csv answers 2 of the 3 items it had to", [])
    assert finished_predictions(d, path, "D", ["x", "7"], SINCE).problem == "m_D.csv answers 2 of the 2 items it had to"
    assert finished_predictions(d, path, "D", None, SINCE, data=b"answer,prediction\nA,A\n") == (
        "m_D.csv has no index column", [])  # the bytes given are parsed, not the file
    assert finished_predictions(d, path, "D", None, SINCE, data=b"index\n1\n").problem == (
        f"{d / 'm_D.csv'}: missing column(s) answer, prediction")
    status = {"datasets": {"D": {"error_message": "  CUDA\n out of   memory ", "updated_at": "2026-01-01T00:00:01+00:00"}}}
    (d / "status.json").write_text(json.dumps(status))
    assert finished_predictions(d, path, "D", None, SINCE).problem == "VLMEvalKit: CUDA out of memory"
    assert finished_predictions(d, None, "D", None, SINCE).problem == "VLMEvalKit: CUDA out of memory"  # no file either
    assert finished_predictions(d, path, "D", None, "2026-01-01T00:00:02+00:00").problem is None  # an earlier run's error
    status["datasets"]["D"]["error_message"] = "x" * 400
    (d / "status.json").write_text(json.dumps(status))
    assert finished_predictions(d, path, "D", None, SINCE).problem == "VLMEvalKit: " + "x" * 300
    (d / "status.json").write_text("[1, 2]")  # not VLMEvalKit's layout: no error read from it
    assert finished_predictions(d, path, "D", None, SINCE).problem is None


def test_finish_record_records_the_bytes_it_checked(env, tmp_path: Path, lmu: Path):
    work = tmp_path / "work"
    (work / "m").mkdir(parents=True)
    args = arguments().parse_args(["--model", "m", "--data", "D", "E", "F", "--work-dir", str(work), "--judge", "j"])
    env.setenv("SPLIT_THINK", "1")
    pd.DataFrame({"index": [1, 2], "answer": "A", "prediction": "A"}).to_csv(work / "m" / "m_D.csv", index=False)
    pd.DataFrame({"index": [1], "answer": "A", "prediction": "A"}).to_csv(work / "m" / "m_E.csv", index=False)
    started = {"model": "m", "status": "running", "predictions": {"G": {"file": "m_G.csv"}}}
    lines = finish_record(args, "m", started, {"D": ["1", "2"], "E": ["1", "2"]}, {"D": "md5d"}, SINCE, "/lmu", ["v"])
    assert lines == ["m x E: m_E.csv answers 1 of the 2 items it had to", "m x F: no prediction file was written "
                     "(see VLMEvalKit's log above)"]
    record = json.loads((work / "m" / "bench_run.json").read_text())
    assert record["predictions"] == {"G": {"file": "m_G.csv"},
                                     "D": prediction_entry(work / "m" / "m_D.csv", ["1", "2"], "md5d")}
    assert {k: record[k] for k in ("model", "lmudata", "split_think", "judge", "argv", "tsv_md5", "status", "generation")} == {
        "model": "m", "lmudata": "/lmu", "split_think": "1", "judge": "j", "argv": ["v"], "tsv_md5": {"D": "md5d"},
        "status": "failed", "generation": None}
    assert record["failed"] == {"E": "m_E.csv answers 1 of the 2 items it had to",
                                "F": "no prediction file was written (see VLMEvalKit's log above)"}
    assert record["prompt_placement"] == args.prompt_placement
    args.data = ["D"]
    assert finish_record(args, "m", started, {}, {}, SINCE, None, ["v"]) == []  # no local TSV: any index set
    record = json.loads((work / "m" / "bench_run.json").read_text())
    assert record["status"] == "finished" and record["failed"] == {}
    assert record["predictions"]["D"]["tsv_md5"] is None


def test_prepare_model_dir_starts_afresh_and_removes_every_foreign_pickle(tmp_path: Path):
    d = tmp_path / "m"
    d.mkdir()
    settings = {"model": "/ckpt/m", "weights_sha256": "a" * 64, "max_new_tokens": 8}
    (d / "bench_run.json").write_text(json.dumps({"settings": settings}))
    stale = ["m_D.xlsx", "m_D.tsv", "m_D.csv", "m_D.json", "m_D_PREV.pkl", "m_D_checkpoint.pkl", "3_D.pkl"]
    kept = ["m_E.xlsx", "m_D_judge.xlsx", "x3_D.txt", "bench_run.json"]
    for name in stale + kept + ["foreign.pkl"]:
        (d / name).write_bytes(b"\x80\x04K\x01.")  # a pickle of 1: not one JsonPickle wrote
    for name in ("m_D_PREV.pkl", "m_D_checkpoint.pkl", "3_D.pkl"):  # VLMEvalKit's resume state, as JsonPickle writes it
        from bench.no_pickle import JsonPickle

        with (d / name).open("wb") as handle:
            JsonPickle.dump({"1": "A"}, handle)
    (d / "bench_run.json").write_text(json.dumps({"settings": settings}))
    prepare_model_dir(d, "m", ["D"], False, settings)
    assert sorted(p.name for p in d.iterdir()) == sorted(kept)


def test_prepare_model_dir_with_reuse_keeps_what_the_same_settings_made(tmp_path: Path):
    d = tmp_path / "m"
    d.mkdir()
    settings = {"model": "/ckpt/m", "weights_sha256": "a" * 64, "max_new_tokens": 8}
    (d / "bench_run.json").write_text(json.dumps({"settings": settings}))
    (d / "m_D.xlsx").write_bytes(b"x")
    prepare_model_dir(d, "m", ["D"], True, settings)
    assert (d / "m_D.xlsx").exists()
    with pytest.raises(UsageError) as caught:
        prepare_model_dir(d, "m", ["D"], True, {**settings, "max_new_tokens": 64, "batch_size": 2})
    assert caught.value.lines == (f"--reuse: the predictions in {d} were made with other settings (max_new_tokens=8 then, "
                                  "64 now; batch_size=None then, 2 now); drop --reuse to redo them, or use another "
                                  "--work-dir",)
    with pytest.raises(UsageError, match=r"--reuse: .* made with other settings \(weights_sha256='a+' then, 'b+' now\)"):
        prepare_model_dir(d, "m", ["D"], True, {**settings, "weights_sha256": "b" * 64})
    (d / "bench_run.json").write_text("{broken")
    with pytest.raises(UsageError) as caught:
        prepare_model_dir(d, "m", ["D"], True, settings)
    assert caught.value.lines == (f"--reuse: {d} holds predictions but no readable bench_run.json settings, so what "
                                  "made them is unknown; drop --reuse to redo them, or use another --work-dir",)
    prepare_model_dir(d, "m", ["E"], True, settings)  # nothing of the datasets asked for: nothing to doubt
    (d / "m_D.xlsx").unlink()
    prepare_model_dir(d, "m", ["D"], True, settings)


def test_prepare_model_dir_never_mixes_two_models_or_two_weights(tmp_path: Path):
    d = tmp_path / "step_4"
    d.mkdir()
    before = {"model": "/a/step_4", "weights_sha256": "a" * 64}
    (d / "bench_run.json").write_text(json.dumps({"settings": before}))
    for reuse in (False, True):
        with pytest.raises(UsageError, match="holds the predictions of /a/step_4, another model filed under the name step_4"):
            prepare_model_dir(d, "step_4", ["D"], reuse, {"model": "/b/step_4", "weights_sha256": "a" * 64})
    with pytest.raises(UsageError) as caught:
        prepare_model_dir(d, "step_4", ["D"], False, {"model": "/a/step_4", "weights_sha256": "b" * 64})
    assert caught.value.lines == (f"--work-dir: {d} holds predictions of other weights (sha256 aaaaaaaaaaaa then, "
                                  "bbbbbbbbbbbb now); remove that folder or use another --work-dir",)
    prepare_model_dir(d, "step_4", ["D"], False, before)


def test_start_record_keeps_only_unchanged_predictions_of_datasets_not_redone(tmp_path: Path):
    d = tmp_path / "m"
    d.mkdir()
    files = {}
    for dataset in ("D", "E", "F"):
        files[dataset] = d / f"m_{dataset}.csv"
        pd.DataFrame({"index": [1], "answer": "A", "prediction": "A"}).to_csv(files[dataset], index=False)
    entries = {k: prediction_entry(p, ["1"], None) for k, p in files.items()}
    (d / "bench_run.json").write_text(json.dumps({"predictions": {**entries, "G": entries["D"]}}))
    files["E"].write_text("index,answer,prediction\n1,A,B\n")  # changed since recorded
    for name in ("r1_scores.json", "m_D_r1_score.csv", "other_D_r1_score.csv"):
        (d / name).write_text("{}")
    record = start_record(d, "m", "/ckpt/m", ["F"], {"model": "/ckpt/m"})
    assert record["predictions"] == {"D": entries["D"]}  # E changed, F redone, G has no file
    assert json.loads((d / "bench_run.json").read_text()) == record
    assert {k: record[k] for k in ("model", "vlmeval_name", "datasets", "settings", "status")} == {
        "model": "/ckpt/m", "vlmeval_name": "m", "datasets": ["F"], "settings": {"model": "/ckpt/m"}, "status": "running"}
    assert not (d / "r1_scores.json").exists() and not (d / "m_D_r1_score.csv").exists()
    assert (d / "other_D_r1_score.csv").exists()  # another model's name
    (d / "bench_run.json").write_text(json.dumps({"predictions": ["not", "a", "dict"]}))
    assert start_record(d, "m", "/ckpt/m", ["F"], {})["predictions"] == {}


def test_saved_and_restored_records_row_by_row(tmp_path: Path):
    d = tmp_path / "m"
    d.mkdir()
    path = d / "m_D.xlsx"
    frame = pd.DataFrame({"index": [1, 2, 3], "answer": "A", "prediction": ["A", "B", "C"], "thinking": "",
                          "extra_records": [repr({"full_response": "<think> one </think>A"}), None,
                                            repr({"full_response": "no tags"})]})
    frame.to_excel(path, index=False)
    pd.DataFrame({"index": [1], "answer": "A"}).to_excel(d / "m_E.xlsx", index=False)  # no prediction column
    kept = saved_records(tmp_path, ["m", "n"], ["D", "E", "F"])
    assert kept == {path.resolve(): {1: frame.at[0, "extra_records"], 3: frame.at[2, "extra_records"]}}
    frame.drop(columns=["extra_records"]).iloc[[2, 0, 1]].to_excel(path, index=False)  # the re-run's order
    restore_records(kept)
    back = read_predictions(path)
    assert back["index"].tolist() == [3, 1, 2]
    assert back["extra_records"].tolist()[:2] == [frame.at[2, "extra_records"], frame.at[0, "extra_records"]]
    assert back["extra_records"].tolist()[2] == ""  # an empty cell, as stored
    assert back["thinking"].tolist() == ["", "one", ""]
    untouched = path.read_bytes()
    restore_records(kept)  # nothing missing: the file is not rewritten
    assert path.read_bytes() == untouched
    restore_records({tmp_path / "gone.xlsx": {1: "x"}})


def test_records_are_kept_from_every_file_and_only_missing_cells_filled(tmp_path: Path):
    """saved_records goes on past a pair with no file or an unreadable one; restore_records past a
    file that is gone or complete, fills only the cells the re-run left empty, and keeps the
    re-run's own values (a record or thinking it wrote itself)."""
    d = tmp_path / "m"
    d.mkdir()
    (d / "m_A.csv").write_text("not,a\npredictions,file\n")  # unreadable as predictions: skipped
    pd.DataFrame({"answer": ["A"], "prediction": ["A"], "extra_records": ["{}"]}).to_csv(d / "m_B.csv", index=False)
    complete = d / "m_C.xlsx"
    pd.DataFrame({"index": [1], "answer": "A", "prediction": "A", "extra_records": ["{'full_response': 'c'}"]}).to_excel(
        complete, index=False)
    path = d / "m_D.xlsx"
    pd.DataFrame({"index": [1, 2], "answer": "A", "prediction": "A",
                  "extra_records": ["{'full_response': 'old 1'}", "{'full_response': 'old 2'}"]}).to_excel(path, index=False)
    kept = saved_records(tmp_path, ["m"], ["E", "A", "B", "C", "D"])  # E: no file
    assert list(kept) == [complete.resolve(), path.resolve()]  # B has no index column
    pd.DataFrame({"index": [1, 2, 3], "answer": "A", "prediction": "A", "thinking": ["", "mine", ""],
                  "extra_records": [None, "{'full_response': 'new 2'}", "{'full_response': '<think>x <think> y</think>z'}"]}
                 ).to_excel(path, index=False)
    inode = complete.stat().st_ino
    restore_records({tmp_path / "gone.xlsx": {1: "x"}, **kept})
    assert complete.stat().st_ino == inode  # nothing missing: not rewritten
    back = read_predictions(path)
    assert back["extra_records"].tolist() == ["{'full_response': 'old 1'}", "{'full_response': 'new 2'}",
                                              "{'full_response': '<think>x <think> y</think>z'}"]
    assert back["thinking"].tolist() == ["", "mine", "x <think> y"]  # the first <think> opens it


CELLS = {"index": [1, 2, 3], "question": ["Which?", "How many?", "q"], "answer": ["007", "NA", "1e3"],
         "A": ["None", "2020-01-01", ""], "B": [0.5, 3, ""], "prediction": ["007", "n/a", ""]}


@pytest.mark.parametrize("suffix", [".xlsx", ".tsv", ".csv", ".json"])
def test_restoring_the_records_leaves_every_other_cell_as_stored(tmp_path: Path, suffix: str):
    """restore_records rewrites a predictions file in place. It once read it with pandas' type
    inference and wrote that back: the golds "007" and "1e3" became 7.0 and 1000.0, "NA" and the
    option "None" empty cells, in a TSV, CSV or spreadsheet (VLMEvalKit writes any of them, by
    PRED_FORMAT). Only the emptied records may change."""
    d = tmp_path / "m"
    d.mkdir()
    path = d / f"m_D{suffix}"
    records = [repr({"full_response": f"<think>t{i}</think>{i}"}) for i in (1, 2)] + [None]  # the third: none
    cells = CELLS if suffix in (".xlsx", ".json") else {k: [str(v) for v in col] for k, col in CELLS.items()}
    write_table_atomic(pd.DataFrame({**cells, "extra_records": records}), path)
    kept = saved_records(tmp_path, ["m"], ["D"])
    assert list(kept[path.resolve()].values()) == records[:2]
    write_table_atomic(pd.DataFrame(cells), path)  # the re-run: no records
    stored = path.read_bytes()
    if suffix == ".xlsx":
        stored_cells = [[c.value for c in row] for row in openpyxl.load_workbook(path).active.iter_rows()]
    restore_records(kept)
    back = read_predictions(path, text=True)
    assert back["extra_records"].tolist() == [*records[:2], ""]
    assert back.drop(columns=["extra_records"]).equals(read_predictions(path, text=True, data=stored))
    assert back["answer"].tolist() == ["007", "NA", "1e3"] and back["A"].tolist() == ["None", "2020-01-01", ""]
    if suffix == ".xlsx":  # each cell of its type: numbers stay numbers, strings strings
        after = [[c.value for c in row][:-1] for row in openpyxl.load_workbook(path).active.iter_rows()]
        assert after == stored_cells
    elif suffix == ".json":
        rows = json.loads(path.read_text())
        assert [{k: v for k, v in row.items() if k != "extra_records"} for row in rows] == json.loads(stored)
        assert rows[2]["extra_records"] is None  # a row with no record stays null


def test_an_empty_cell_in_each_form_a_file_gives_it():
    from bench.run import _empty

    assert [_empty(c) for c in ("", None, float("nan"), np.float64("nan"))] == [True] * 4
    assert [_empty(c) for c in (" ", "x", 0, 0.0, "nan", np.int64(0))] == [False] * 6




def test_thinking_is_taken_only_between_both_tags(tmp_path: Path):
    path = tmp_path / "m_D.xlsx"
    pd.DataFrame({"index": [1], "answer": "A", "prediction": "A", "thinking": "kept", "extra_records": [None]}).to_excel(
        path, index=False)
    restore_records({path: {1: "{'full_response': 'half</think>A'}"}})
    assert read_predictions(path)["thinking"].tolist() == ["kept"]


def test_preflight_refuses_before_any_work_and_names_every_problem(tmp_path: Path, lmu: Path, model: Path, capsys):
    args = arguments().parse_args(["--model", str(model), "--data", "SynthCount", "--work-dir", "w"])
    expected, md5s = preflight(args, {"SynthCount": lmu / "SynthCount.tsv"})
    assert expected == {"SynthCount": ["0", "1", "2"]}
    assert md5s == {"SynthCount": file_md5(lmu / "SynthCount.tsv")}
    args.limit = 2
    assert preflight(args, {"SynthCount": lmu / "SynthCount.tsv"})[0] == {"SynthCount": ["0", "1"]}
    gap = tmp_path / "Gap.tsv"
    pd.read_csv(lmu / "SynthCount.tsv", sep="\t").assign(image=["", "x", "y"]).iloc[:1].to_csv(gap, sep="\t", index=False)
    bad = tmp_path / "Bad.tsv"
    bad.write_text("index\tquestion\n1\tq\n")
    worse = tmp_path / "Worse.tsv"
    worse.write_text("")
    (model / "config.json").write_text("{not json")
    with pytest.raises(UsageError) as caught:
        preflight(args, {"SynthCount": lmu / "SynthCount.tsv", "Gap": gap, "Bad": bad, "Worse": worse})
    assert [str(bad) in caught.value.lines[0], str(worse) in caught.value.lines[1]] == [True, True]
    assert len(caught.value.lines) == 3 and "config.json" in caught.value.lines[2]
    assert capsys.readouterr().err == f"note: {gap}: 1 row(s) without an image, which VLMEvalKit skips: row 1\n"


def test_a_tsv_of_a_known_dataset_must_be_vlmevalkits_own():
    from bench.vlmeval_compat import official_md5

    md5 = official_md5("MMStar")
    assert official_tsv_problems({"MMStar": Path("/l/MMStar.tsv")}, {"MMStar": md5}, False) == []
    assert official_tsv_problems({"MMStar": Path("/l/MMStar.tsv"), "Synth": Path("/l/Synth.tsv")},
                                 {"MMStar": "0" * 32, "Synth": "1" * 32}, False) == [
        f"/l/MMStar.tsv: md5 {'0' * 32} is not VLMEvalKit's {md5} for MMStar, so VLMEvalKit would download its own "
        "file over this one (offline: fail); use VLMEvalKit's TSV, or pass --trust-local-tsv to evaluate this file as it is"]
    assert official_tsv_problems({"MMStar": Path("/l/MMStar.tsv")}, {"MMStar": "0" * 32}, True) == []


def test_file_md5_reads_past_its_block(tmp_path: Path):
    data = bytes(range(256)) * 5000  # 1.2 MiB: more than one 1 MiB block
    (tmp_path / "f").write_bytes(data)
    assert file_md5(tmp_path / "f") == hashlib.md5(data, usedforsecurity=False).hexdigest()


def test_versions_name_what_is_missing(monkeypatch):
    import importlib.metadata

    assert versions()["torch"] == importlib.metadata.version("torch")
    assert versions()["ms-vlmeval"] == importlib.metadata.version("ms-vlmeval")

    def version(name: str) -> str:
        if name == "math-verify":
            raise importlib.metadata.PackageNotFoundError(name)
        return f"v-{name}"

    monkeypatch.setattr(importlib.metadata, "version", version)
    assert versions() == {"r1-sharevl": "v-r1-sharevl", "ms-vlmeval": "v-ms-vlmeval", "transformers": "v-transformers",
                          "torch": "v-torch", "math-verify": "not installed"}


def test_the_gpu_memory_figure_is_gib_to_two_places(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert cuda_max_memory_gib() is None
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "max_memory_allocated", lambda: 3 * 2**30 + 2**30 // 8)  # 3.125 GiB
    assert cuda_max_memory_gib() == 3.12  # round half to even


def test_main_ends_a_usage_error_in_one_line_and_status_2(env, capsys, tmp_path: Path):
    import logging

    env.setattr(logging, "raiseExceptions", True)
    assert main(["--model", "m", "--data", "D", "--work-dir", str(tmp_path), "--limit", "0"]) == 2
    assert capsys.readouterr().err == "error: --limit 0: must be >= 1\n"
    assert logging.raiseExceptions is False  # a log handler that cannot write prints no traceback of its own


def now() -> str:
    import datetime

    return datetime.datetime.now().astimezone().isoformat()


def test_a_folder_a_run_holds_is_refused_by_name(env, lmu: Path, model: Path, tmp_path: Path):
    vlmeval = vlmeval_run()
    env.setattr(vlmeval.run, "main", fake_vlmeval(lmu, []))
    held = hold_folder_lock(tmp_path / "work" / "step_4", "--work-dir", "test")
    try:
        with pytest.raises(UsageError) as caught:
            run(args_for(model, tmp_path / "work", lmu))
    finally:
        held.close()
    assert caught.value.lines[0].startswith(f"--work-dir={tmp_path / 'work' / 'step_4'} is in use by a running "
                                            "bench.run of step_4 (pid ")


def test_a_re_run_never_records_an_earlier_runs_file(env, lmu: Path, model: Path, tmp_path: Path):
    """Without --reuse, the earlier file of a dataset is removed first: a dataset VLMEvalKit then
    writes nothing for fails, rather than passing off the old file as this run's."""
    vlmeval = vlmeval_run()
    work = tmp_path / "work"
    env.setattr(vlmeval.run, "main", fake_vlmeval(lmu, []))
    assert run(args_for(model, work, lmu)) == 0
    env.setattr(vlmeval.run, "main", fake_vlmeval(lmu, [], skip=("step_4", "SynthColour")))
    assert run(args_for(model, work, lmu)) == 1
    record = json.loads((work / "step_4" / "bench_run.json").read_text())
    assert record["failed"] == {"SynthColour": "no prediction file was written (see VLMEvalKit's log above)"}
    assert list(record["predictions"]) == ["SynthCount"]


def test_an_error_vlmevalkit_stamps_in_this_run_fails_its_pair(env, lmu: Path, model: Path, tmp_path: Path):
    vlmeval = vlmeval_run()
    work = tmp_path / "work"
    env.setattr(vlmeval.run, "main", fake_vlmeval(lmu, [], errors={"SynthCount": "2020-01-01T00:00:00+00:00",
                                                                  "SynthColour": "now"}))
    assert run(args_for(model, work, lmu)) == 1
    record = json.loads((work / "step_4" / "bench_run.json").read_text())
    assert record["failed"] == {"SynthColour": "VLMEvalKit: CUDA out of memory"}  # SynthCount's is an earlier run's
    assert list(record["predictions"]) == ["SynthCount"]


def test_every_models_failures_count(env, lmu: Path, model: Path, tmp_path: Path, capsys):
    vlmeval = vlmeval_run()
    other = model.parent / "step_8"
    shutil.copytree(model, other)
    env.setattr(vlmeval.run, "main", fake_vlmeval(lmu, [], skip=("step_4", "SynthCount")))
    args = args_for(model, tmp_path / "work", lmu)
    args.model = [str(model), str(other)]
    assert run(args) == 1  # step_4 failed; step_8, finished after it, does not hide that
    assert capsys.readouterr().err.splitlines()[-1] == ("bench.run: 1 of 4 (model, dataset) pairs failed; "
                                                       "the others are kept")
    assert json.loads((tmp_path / "work" / "step_8" / "bench_run.json").read_text())["status"] == "finished"


def test_a_rank_other_than_0_reads_no_weights_and_fails_cleanly(env, lmu: Path, own_lmu: Path, model: Path,
                                                                tmp_path: Path):
    import bench.run

    vlmeval = vlmeval_run()
    env.setattr(vlmeval.run, "main", fake_vlmeval(lmu, []))
    env.setattr(bench.run, "run_settings", lambda *a: pytest.fail("rank 1 computed the run's settings"))
    env.setenv("RANK", "1")
    (tmp_path / "work" / "step_4").mkdir(parents=True)
    assert run(args_for(model, tmp_path / "work", lmu)) == 0
    own = own_lmu
    args = args_for(model, tmp_path / "work", own)
    args.data = ["MMStar"]
    with pytest.raises(UsageError, match="is not VLMEvalKit's"):  # rank 1 holds no lock to give back
        run(args)


def test_the_models_are_registered_with_the_runs_settings(env, lmu: Path, model: Path, tmp_path: Path):
    vlmeval = vlmeval_run()
    env.setattr(vlmeval.run, "main", fake_vlmeval(lmu, []))
    supported = vlmeval.config.supported_VLM
    for name in ("step_4", "R1-ShareVL-7B"):
        env.setitem(supported, name, supported.get(name))
    argv = ("--max-new-tokens", "8", "--batch-size", "2", "--limit", "3", "--prompt-placement", "last_text",
            "--use-vllm", "--attn-implementation", "sdpa")
    assert run(args_for(model, tmp_path / "work", lmu, *argv)) == 0
    local = supported["step_4"].keywords  # the CPU class: no vLLM, no attention choice
    assert local == {"model_path": str(model.resolve()), "prompt_placement": "last_text", "run_name": "step_4",
                     "max_new_tokens": 8, "batch_size": 2, "limit": 3}
    paper = supported["R1-ShareVL-7B"].keywords
    assert {k: paper[k] for k in ("use_vllm", "attn_implementation", "max_new_tokens", "batch_size", "limit",
                                  "prompt_placement")} == {
        "use_vllm": True, "attn_implementation": "sdpa", "max_new_tokens": 8, "batch_size": 2, "limit": 3,
        "prompt_placement": "last_text"}


def test_trust_local_tsv_evaluates_the_file_as_it_is(env, lmu: Path, own_lmu: Path, model: Path,
                                                     tmp_path: Path):
    from bench.vlmeval_compat import _classes_serving, official_md5

    vlmeval = vlmeval_run()
    for cls in _classes_serving("MMStar"):  # accept_local_tsv changes them for this process: undone after
        env.setattr(cls, "DATASET_MD5", cls.DATASET_MD5)
    own = own_lmu
    shutil.copy(lmu / "SynthCount.tsv", own / "SynthCount.tsv")
    env.setattr(vlmeval.run, "main", fake_vlmeval(own, []))
    args = args_for(model, tmp_path / "work", own, "--trust-local-tsv")
    args.data = ["MMStar", "SynthCount"]
    assert official_md5("MMStar") is not None
    assert run(args) == 0
    assert official_md5("MMStar") is None  # VLMEvalKit no longer downloads its own file over this one


def test_the_bytes_checked_are_the_bytes_recorded(env, tmp_path: Path):
    """A file rewritten while bench.run records it: what is checked and recorded is what was read."""
    import bench.run
    from bench.adapter import GENERATION

    work = tmp_path / "work"
    (work / "m").mkdir(parents=True)
    path = work / "m" / "m_D.csv"
    path.write_text("index,answer,prediction\n1,A,A\n2,A,A\n")
    original, read = path.read_bytes(), []
    real = bench.run._read_once

    def read_then_rewritten(p):
        read.append(p)
        data = real(p)
        p.write_text("index,answer,prediction\n1,A,A\n")  # cut short by another writer, after the read
        return data

    env.setattr(bench.run, "_read_once", read_then_rewritten)
    env.setattr(GENERATION, "runs", {})
    GENERATION.record("m", 2.0, 10)
    env.setenv("SPLIT_THINK", "1")
    args = arguments().parse_args(["--model", "m", "--data", "D", "--work-dir", str(work)])
    assert finish_record(args, "m", {"predictions": {}}, {"D": ["1", "2"]}, {}, SINCE, None, []) == []
    assert read == [path]
    record = json.loads((work / "m" / "bench_run.json").read_text())
    assert record["predictions"]["D"]["sha256"] == hashlib.sha256(original).hexdigest()
    assert record["predictions"]["D"]["rows"] == 2
    assert record["generation"] == GENERATION.summary("m") and record["generation"]["items"] == 1
    import re

    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d{4}", record["ended"])


def test_main_names_the_work_dir_when_a_write_fails_without_a_file_name(env, capsys, tmp_path: Path):
    import errno

    import bench.run

    def full_disk(args):
        raise OSError(errno.ENOSPC, "No space left on device")

    env.setattr(bench.run, "run", full_disk)
    assert main(["--model", "m", "--data", "D", "--work-dir", str(tmp_path / "w")]) == 2
    assert capsys.readouterr().err == f"error: {tmp_path / 'w'} (a file under it): No space left on device\n"
