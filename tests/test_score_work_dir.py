"""`bench.score` over a whole work dir, in process: which files it scores and which it leaves alone,
what it writes, VLMEvalKit's own scores beside ours, and each broken input named."""

from __future__ import annotations

import json
import re

import pandas as pd
import pytest

from bench.score import ResultsError, main, score_file, score_work_dir, vlmeval_scores
from tests.helpers.scores import record_predictions, recorded_entry

OPTIONS = {"A": 1, "B": 2, "C": 3, "D": 4}  # numbers, as a spreadsheet reads them back


def boxed(answer: str) -> str:
    return f"<think>w</think> \\boxed{{{answer}}}"


def mmstar_rows() -> list[dict]:
    """Right by letter, right by option text, wrong, and unboxed: accuracy 2 of 4."""
    predictions = [boxed("B"), boxed("2"), boxed("C"), "The answer is B"]
    return [{"index": i, "question": "How many?", **OPTIONS, "answer": "B", "prediction": p,
             "category": "c1" if i < 2 else "c2"} for i, p in enumerate(predictions)]


@pytest.fixture
def work(tmp_path):
    model = tmp_path / "work" / "m"
    model.mkdir(parents=True)
    pd.DataFrame(mmstar_rows()).to_excel(model / "m_MMStar.xlsx", index=False)
    pd.DataFrame([{"x": 1}]).to_csv(model / "m_MMStar_acc.csv", index=False)  # VLMEvalKit's own output
    pd.DataFrame([{"x": 1}]).to_csv(model / "other_MMStar.csv", index=False)  # not this model's
    pd.DataFrame([{"index": 0, "question": "q"}]).to_csv(model / "m_Broken.tsv", sep="\t", index=False)
    (model / "status.json").write_text(json.dumps({"datasets": {"MMStar": {"primary_metric_value": 0.6}}}))
    record_predictions(model, {"MMStar": model / "m_MMStar.xlsx"})  # as bench.run leaves it
    (tmp_path / "work" / "n").mkdir()  # a model with nothing to score
    (tmp_path / "work" / "logs").mkdir()
    return tmp_path / "work"


def test_numeric_option_cells_are_options():
    """A spreadsheet gives option "2" back as the number 2: it still counts as option B's text."""
    from bench.score import column_options

    row = pd.Series({"A": 1, "B": 2.0, "C": 2.5, "D": float("nan"), "E": "", "F": None, "answer": "B"})
    assert column_options(row) == {"A": "1", "B": "2", "C": "2.5"}
    frame = pd.DataFrame({"A": [1], "B": [2.0], "C": [True], "answer": ["B"]})  # numpy scalars in each row
    assert column_options(frame.iloc[0]) == {"A": "1", "B": "2"}


def test_a_work_dir_is_scored_file_by_file(work, capsys):
    frame = score_work_dir(work)
    assert frame.attrs["problems"] == 1
    assert "m_Broken.tsv: not among the predictions bench.run recorded (bench_run.json); not scored" in capsys.readouterr().err
    assert frame[["model", "dataset", "n", "accuracy", "vlmeval_score"]].to_dict("records") == [
        {"model": "m", "dataset": "MMStar", "n": 4, "accuracy": 50.0, "vlmeval_score": 60.0}]
    assert frame["exact_match"].iloc[0] is not None
    scores = json.loads((work / "m" / "r1_scores.json").read_text())
    assert scores["model"] == "m" and scores["scale"] == "0-100" and list(scores["datasets"]) == ["MMStar"]
    assert scores["datasets"]["MMStar"]["categories"] == {"c1": 100.0, "c2": 0.0}
    assert scores["datasets"]["MMStar"]["vlmeval_score"] == 60.0
    one = pd.read_csv(work / "m" / "m_MMStar_r1_score.csv")
    assert one["accuracy"].tolist() == [50.0] and "categories" not in one.columns
    assert one.columns[0] == "model"  # written without pandas' index column
    table = pd.read_csv(work / "scores.csv")
    assert table["dataset"].tolist() == ["MMStar"] and table.columns[0] == "model"
    assert not {"categories", "predictions"} & (set(table.columns) | set(one.columns))  # in r1_scores.json only
    assert not (work / "n" / "r1_scores.json").exists()
    assert score_file(work / "m" / "m_MMStar.xlsx", dataset="MMStar")["accuracy"] == 50.0


def test_the_command_prints_the_table_and_names_what_it_skipped(work, capsys):
    assert main(["--work-dir", str(work)]) == 0
    out, err = capsys.readouterr()
    assert [line.split() for line in out.splitlines()] == [
        ["model", "dataset", "n", "accuracy", "format", "vlmeval_score", "verified"],  # no index column
        ["m", "MMStar", "4", "50.0", "75.0", "60.0", "True"], ["wrote", str(work / "scores.csv")]]
    assert "1 prediction file(s) skipped (see messages above)" in err


@pytest.mark.parametrize("make, message", [
    (lambda p: p, "no such folder"),
    (lambda p: (p.write_text("x"), p)[1], "not a folder"),
    (lambda p: (p.mkdir(), p)[1], "no prediction file could be scored (0 unreadable or ambiguous)"),
])
def test_a_work_dir_that_cannot_be_scored_is_one_line(tmp_path, capsys, make, message):
    path = make(tmp_path / "w")
    with pytest.raises(ResultsError, match=re.escape(f": {message}") + "$"):
        score_work_dir(path)
    assert main(["--work-dir", str(path)]) == 2
    assert capsys.readouterr().err.startswith("error: ") and not (path / "scores.csv").exists()


@pytest.mark.parametrize("content, expected, message", [
    ('{"datasets": {"A": {"primary_metric_value": 0.5}, "B": {"primary_metric_value": 75}, '
     '"C": {"primary_metric_value": "x"}, "D": 3}}', {"A": 50.0, "B": 75.0}, ""),
    ("[1]", {}, "no 'datasets' object; VLMEvalKit's own scores are ignored"),
    ('{"datasets": [1]}', {}, "no 'datasets' object"),
    ("{", {}, "not readable JSON (JSONDecodeError); VLMEvalKit's own scores are ignored"),
])
def test_vlmevalkits_own_scores(tmp_path, capsys, content, expected, message):
    (tmp_path / "status.json").write_text(content)
    assert vlmeval_scores(tmp_path) == expected
    err = capsys.readouterr().err
    assert (message in err and str(tmp_path / "status.json") in err) if message else err == ""
    assert vlmeval_scores(tmp_path / "none") == {}


def test_one_file_every_metric_and_every_format(tmp_path):
    """4 rows: right, right by option text, wrong, unboxed; an empty gold row on top. In every file
    format the reader takes, the same figures: n 5, accuracy 40, format 80 (four boxed), no box 20, 1 empty gold."""
    rows = mmstar_rows() + [{"index": 9, "question": "q", **OPTIONS, "answer": "", "prediction": boxed("A"),
                             "category": "c2"}]
    frame = pd.DataFrame(rows)
    expected = None
    for suffix, write in ((".xlsx", lambda p: frame.to_excel(p, index=False)),
                          (".tsv", lambda p: frame.to_csv(p, sep="\t", index=False)),
                          (".csv", lambda p: frame.to_csv(p, index=False)),
                          (".json", lambda p: frame.to_json(p, orient="records"))):
        path = tmp_path / f"m_MMStar{suffix}"
        write(path)
        metrics = score_file(path, dataset="MMStar")
        got = {k: metrics[k] for k in ("n", "accuracy", "format", "no_box", "empty_gold", "judge_timeouts", "verifier_mode")}
        assert got == {"n": 5, "accuracy": 40.0, "format": 80.0, "no_box": 20.0, "empty_gold": 1, "judge_timeouts": 0,
                       "verifier_mode": "default"}, suffix
        assert "split" not in metrics
        expected = expected or metrics
        assert metrics == expected, suffix
    assert score_file(tmp_path / "m_MMStar.csv", mode="paper", dataset="MMStar")["verifier_mode"] == "paper"


def test_the_full_response_comes_from_extra_records_then_thinking(tmp_path):
    """VLMEvalKit's SPLIT_THINK leaves the text after </think> in `prediction`: the boxed answer in
    the thinking part is only seen through extra_records (our adapters) or the thinking column."""
    base = {"question": "q", **OPTIONS, "answer": "B", "prediction": "so it is that"}
    rows = [{**base, "extra_records": str({"full_response": boxed("B")}), "thinking": None},
            {**base, "extra_records": None, "thinking": "\\boxed{B}"},
            {**base, "extra_records": "{'other': 1}", "thinking": None},
            {**base, "extra_records": "{" + "[" * 200_000, "thinking": None}]
    path = tmp_path / "m_MMStar.json"
    pd.DataFrame(rows).to_json(path, orient="records")
    assert score_file(path, dataset="MMStar")["accuracy"] == 50.0


def test_unreadable_and_empty_files_are_named(tmp_path):
    bad = tmp_path / "m_X.xlsx"
    bad.write_text("not a spreadsheet")
    with pytest.raises(ResultsError, match=re.escape(f"{bad}: cannot be read (")):
        score_file(bad, dataset="X")
    mmmu = tmp_path / "m_MMMU_DEV_VAL.csv"
    pd.DataFrame([{"question": "q", **OPTIONS, "answer": "B", "split": "dev", "prediction": boxed("B")}]).to_csv(mmmu)
    with pytest.raises(ResultsError, match=re.escape(f"{mmmu}: no rows in the validation split")):
        score_file(mmmu, dataset="MMMU_DEV_VAL")
    empty = tmp_path / "m_Y.csv"
    pd.DataFrame(columns=["answer", "prediction"]).to_csv(empty, index=False)
    with pytest.raises(ResultsError, match=re.escape(f"{empty}: no rows") + "$"):
        score_file(empty, dataset="Y")


def test_the_command_line(work, capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    assert out.startswith("usage: python -m bench.score") and "Judge-free scoring of VLMEvalKit prediction files" in out
    assert "{default,paper}" in out and re.search(r"\n\s+verifier mode\n", out)
    assert re.search(r"unverified\s+also score prediction files bench.run did not record\s+\(marked unverified everywhere\)\n", out)
    assert "graded against the gold answers" not in out  # the description is the docstring's first paragraph
    assert main(["--work-dir", str(work), "--mode", "paper"]) == 0
    assert json.loads((work / "m" / "r1_scores.json").read_text())["datasets"]["MMStar"]["verifier_mode"] == "paper"
    with pytest.raises(SystemExit) as exit_:
        main([])
    assert exit_.value.code == 2 and "the following arguments are required: --work-dir" in capsys.readouterr().err


def test_answers_pandas_would_read_as_missing_are_answers(tmp_path):
    """Gold answers None, NA, null, N/A, nan and NaN are texts (the whole file is read as text); only
    an empty cell is no answer. pandas' default reading made 6 of these 7 exact answers score 0."""
    golds = ["None", "NA", "null", "N/A", "nan", "NaN", "7"]
    path = tmp_path / "m_X.xlsx"
    pd.DataFrame({"index": range(7), "answer": golds, "prediction": [boxed(g) for g in golds]}).to_excel(path, index=False)
    metrics = score_file(path)
    assert metrics["n"] == 7 and metrics["accuracy"] == 100.0 and metrics["empty_gold"] == 0
    pd.DataFrame({"index": [0, 1], "answer": ["", "  "], "prediction": [boxed("1"), boxed("1")]}).to_excel(path, index=False)
    assert score_file(path)["empty_gold"] == 2


def test_a_stale_file_beside_the_predictions_is_named_and_neither_is_scored(work, capsys):
    """A .csv left beside the .xlsx of the same dataset (a stale copy scoring 100) in a folder with
    no record (scored unverified): which holds the run's predictions cannot be told from the names,
    so neither is scored."""
    model = work / "m"
    (model / "bench_run.json").unlink()
    rows = [{**r, "prediction": boxed("B")} for r in mmstar_rows()]
    pd.DataFrame(rows).to_csv(model / "m_MMStar.csv", index=False)
    with pytest.raises(ResultsError, match="no prediction file could be scored"):
        score_work_dir(work, allow_unverified=True)
    assert f"{model}: m_MMStar.csv, m_MMStar.xlsx all claim MMStar; none is scored (remove the stale one)" in \
        capsys.readouterr().err.splitlines()
    pd.DataFrame(rows).to_csv(model / "m_Zeta.csv", index=False)  # a dataset after the ambiguous one is scored
    frame = score_work_dir(work, allow_unverified=True)
    assert list(frame["dataset"]) == ["Zeta"] and frame.attrs["problems"] == 2  # m_Broken.tsv and MMStar
    (model / "m_MMStar.csv").unlink()
    assert list(score_work_dir(work, allow_unverified=True)["dataset"]) == ["MMStar", "Zeta"]


def test_a_model_folder_a_running_bench_run_holds_is_not_scored(work, capsys):
    """Scored while bench.run still writes it, a model would get a score over the datasets done so far."""
    import os

    from bench.lock import hold_folder_lock, holder

    assert holder(work / "m") is None and not (work / "n" / ".lock").exists()
    lock = hold_folder_lock(work / "m", "--work-dir", "bench.run of m")
    try:
        assert holder(work / "m") == f"pid {os.getpid()}"
        with pytest.raises(ResultsError, match="no prediction file could be scored"):
            score_work_dir(work)
        assert f"a bench.run (pid {os.getpid()}) is still writing it; not scored" in capsys.readouterr().err
    finally:
        lock.close()
    assert holder(work / "m") is None and list(score_work_dir(work)["dataset"]) == ["MMStar"]


def test_only_the_predictions_bench_run_recorded_are_scored_and_marked_verified(work, capsys):
    """With a bench_run.json record, a file is scored only while its name, sha256, row count and
    index set are the recorded ones (then `verified`); a run that never finished (killed: the record
    still says running) scores nothing and its old scores go; a file without a record (an earlier
    version's folder, VLMEvalKit's own run) is refused unless --allow-unverified, then marked so."""
    model = work / "m"
    record = json.loads((model / "bench_run.json").read_text())
    (model / "bench_run.json").unlink()
    with pytest.raises(ResultsError, match=re.escape("no prediction file could be scored (2 unreadable or ambiguous)")):
        score_work_dir(work)  # m_Broken.tsv and m_MMStar.xlsx, each counted once
    assert (f"{model / 'm_MMStar.xlsx'}: no bench.run record of what made it (an earlier version's file, or "
            "VLMEvalKit's own); not scored; run bench.run again, or pass --allow-unverified to score it marked "
            "unverified") in capsys.readouterr().err.splitlines()
    assert score_work_dir(work, allow_unverified=True)["verified"].tolist() == [False]
    assert main(["--work-dir", str(work), "--allow-unverified"]) == 0
    assert "UNVERIFIED: 1 score(s) above come from files bench.run did not record" in capsys.readouterr().out

    (model / "bench_run.json").write_text(json.dumps(record))
    frame = score_work_dir(work)
    assert frame["verified"].tolist() == [True] and frame["n"].tolist() == [4]
    scored = json.loads((model / "r1_scores.json").read_text())["datasets"]["MMStar"]
    assert scored["verified"] is True and scored["predictions"] == record["predictions"]["MMStar"]
    pd.DataFrame(mmstar_rows()[:1]).to_csv(model / "m_MMStar.csv", index=False)  # a stale sibling: the record says which
    assert score_work_dir(work)["n"].tolist() == [4] and "claim" not in capsys.readouterr().err
    (model / "m_MMStar.csv").unlink()

    pd.DataFrame(mmstar_rows()[:1]).to_excel(model / "m_MMStar.xlsx", index=False)  # truncated since
    with pytest.raises(ResultsError, match="no prediction file could be scored"):
        score_work_dir(work)
    assert "m_MMStar.xlsx: changed since bench.run wrote it (its sha256 is not the recorded one); not scored" in \
        capsys.readouterr().err

    (model / "bench_run.json").write_text(json.dumps({**record, "status": "running"}))  # a re-run killed -9
    with pytest.raises(ResultsError, match="no prediction file could be scored"):
        score_work_dir(work)
    assert "its bench.run did not finish (bench_run.json says running: killed?)" in capsys.readouterr().err
    assert not (model / "r1_scores.json").exists()  # table1 and submit find no stale scores

    (model / "bench_run.json").write_text(json.dumps({"status": "finished", "predictions": {}}))
    with pytest.raises(ResultsError):
        score_work_dir(work)
    assert "not among the predictions bench.run recorded" in capsys.readouterr().err


@pytest.mark.parametrize("rows, entry, message", [
    ([0, 1, 1], None, "answers index '1' more than once (1 such)"),
    ([0, 1], {"rows": 3}, "answers other items than the 3 bench.run recorded"),
    ([0, 1], {"indices_sha256": "0" * 64}, "answers other items than the 2 bench.run recorded"),
    ([0, 1], "drop", "recorded by an earlier bench.run, without its row count and index set; run bench.run again"),
    ([0, 1], {"file": "m_Y.csv"}, "bench.run recorded 'm_Y.csv' for this dataset, not this file"),
])
def test_a_recorded_file_must_answer_each_recorded_index_once(tmp_path, rows, entry, message):
    """Matching the recorded sha256 is not enough: every index answered once, and the row count and
    index set bench.run recorded (which an older record lacks)."""
    from bench.score import unlike_record

    path = tmp_path / "m_X.csv"
    pd.DataFrame({"index": rows, "answer": "A", "prediction": "A"}).to_csv(path, index=False)
    recorded = recorded_entry(path)
    if entry == "drop":
        recorded = {k: v for k, v in recorded.items() if k in ("file", "sha256")}
    elif entry:
        recorded.update(entry)
    assert unlike_record(path, recorded) == message


def test_what_is_scored_is_the_bytes_that_were_checked(tmp_path):
    """The record check and the scoring read the file once (`read_recorded`): a file rewritten
    after the check is not what gets scored, and bytes unlike the record are refused by name."""
    from bench.score import read_recorded

    model = tmp_path / "m"
    model.mkdir()
    path = model / "m_D.csv"
    pd.DataFrame({"index": [0, 1], "answer": ["A", "B"], "prediction": ["\\boxed{A}", "\\boxed{B}"]}).to_csv(path, index=False)
    entry = record_predictions(model, {"D": path})["predictions"]["D"]
    checked = read_recorded(path, entry)
    pd.DataFrame({"index": [0, 1], "answer": ["A", "B"], "prediction": ["\\boxed{C}", "\\boxed{C}"]}).to_csv(path, index=False)
    assert score_file(path, frame=checked)["accuracy"] == 100.0  # the checked bytes, not the rewritten file
    with pytest.raises(ResultsError, match=f"{path}: changed since bench.run wrote it"):
        read_recorded(path, entry)


def test_a_recorded_file_is_read_and_parsed_once(tmp_path, monkeypatch):
    """Scoring a work dir reads each recorded predictions file once and parses it once: the check
    against the record and the scoring share the frame (`read_recorded`)."""
    import bench.score

    model = tmp_path / "m"
    model.mkdir()
    path = model / "m_D.csv"
    pd.DataFrame({"index": [0, 1], "answer": ["A", "B"], "prediction": ["\\boxed{A}", "\\boxed{C}"]}).to_csv(path, index=False)
    record_predictions(model, {"D": path})
    parsed = []
    real = pd.read_csv
    monkeypatch.setattr(bench.score.pd, "read_csv", lambda source, **kw: parsed.append(source) or real(source, **kw))
    assert score_work_dir(tmp_path)["accuracy"].tolist() == [50.0]
    assert len([s for s in parsed if not isinstance(s, str) or s.endswith("m_D.csv")]) == 1


def test_each_folder_a_run_holds_or_left_running_is_counted_once_and_the_others_scored(work, capsys):
    """VLMEvalKit's `logs` folder is not a model folder (were it, its lock would count here)."""
    from bench.lock import hold_folder_lock

    for name in ("b", "c", "z"):
        (work / name).mkdir()
    for name in ("b", "c"):  # c left no scores to remove
        (work / name / "bench_run.json").write_text(json.dumps({"status": "running"}))
    (work / "b" / "r1_scores.json").write_text("{}")
    locks = [hold_folder_lock(work / folder, "--work-dir", "bench.run") for folder in ("z", "logs")]
    try:
        frame = score_work_dir(work)
    finally:
        for lock in locks:
            lock.close()
    assert list(frame["model"]) == ["m"] and frame.attrs["problems"] == 4  # b, c, m's broken tsv, and z last
    err = capsys.readouterr().err.splitlines()
    assert err[0] == (f"{work / 'b'}: its bench.run did not finish (bench_run.json says running: killed?); "
                      "not scored; run it again")
    assert err[-1].startswith(f"{work / 'z'}: a bench.run (pid") and not any("logs" in line for line in err)
    assert not (work / "b" / "r1_scores.json").exists()


def test_the_files_of_the_runs_judge_are_not_predictions(work, capsys):
    from tests.helpers.scores import update_record

    pd.DataFrame(mmstar_rows()).to_excel(work / "m" / "m_MMStar_qwen72b.xlsx", index=False)  # a judge not named gpt
    update_record(work / "m", judge="qwen72b")
    assert score_work_dir(work).attrs["problems"] == 1  # m_Broken.tsv alone
    assert "qwen72b" not in capsys.readouterr().err
    top = work / "m" / "m_Top_5.csv"  # a record whose judge is no name leaves every dataset in
    pd.DataFrame(mmstar_rows()).to_csv(top, index=False)
    record_predictions(work / "m", {"MMStar": work / "m" / "m_MMStar.xlsx", "Top_5": top}, judge=5)
    assert list(score_work_dir(work)["dataset"]) == ["MMStar", "Top_5"]


def checked(model_dir, allow_unverified: bool = False):
    from bench.score import checked_scores

    return checked_scores(model_dir, allow_unverified)


def test_checked_scores_refuses_each_way_a_score_can_be_unlike_its_predictions(work):
    """Every refusal of `checked_scores`, worded in full (`reproduce table1`, `submit` and the
    miniature read scores only through it)."""
    import os

    from bench.lock import hold_folder_lock

    m = work / "m"
    assert main(["--work-dir", str(work)]) == 0
    scores = json.loads((m / "r1_scores.json").read_text())
    assert checked(m) == (scores["datasets"], [])
    lock = hold_folder_lock(m, "--work-dir", "bench.run of m")
    try:
        with pytest.raises(ResultsError) as caught:
            checked(m)
        assert str(caught.value) == f"{m}: a bench.run (pid {os.getpid()}) is writing it; wait for it, then run bench.score"
    finally:
        lock.close()
    record = json.loads((m / "bench_run.json").read_text())
    cases = [
        ({"predictions": ["a", "list"]}, None, "MMStar's score is not of the predictions bench.run recorded last; "
                                               "run python -m bench.score again"),
        ({"status": "running"}, None, f"{m}: its last bench.run did not finish (bench_run.json says running); run it again"),
        (None, {"MMStar": {**scores["datasets"]["MMStar"], "verified": False}},
         "MMStar was scored from a file with no bench.run record (unverified); run bench.run and bench.score again, "
         "or pass --allow-unverified"),
        (None, [], "not a scores file ('datasets' is not an object of per-dataset metrics)"),
    ]
    for change, datasets, message in cases:
        (m / "bench_run.json").write_text(json.dumps({**record, **(change or {})}))
        (m / "r1_scores.json").write_text(json.dumps({**scores, **({"datasets": datasets} if datasets is not None else {})}))
        with pytest.raises(ResultsError) as caught:
            checked(m)
        assert str(caught.value).endswith(message), (str(caught.value), message)
    unverified = {"MMStar": {**scores["datasets"]["MMStar"], "verified": False}, "X": {"accuracy": 1.0}}
    (m / "r1_scores.json").write_text(json.dumps({**scores, "datasets": unverified}))
    assert checked(m, allow_unverified=True) == (unverified, ["MMStar", "X"])
    (m / "r1_scores.json").write_text("[]")
    with pytest.raises(ResultsError) as caught:
        checked(m)
    assert str(caught.value) == f"{m / 'r1_scores.json'}: not a scores file (TypeError); run python -m bench.score"


def test_unlike_record_judges_the_bytes_it_is_given_and_names_a_file_it_cannot_key(tmp_path):
    from bench.provenance import prediction_entry
    from bench.score import unlike_record

    path = tmp_path / "m_X.csv"
    pd.DataFrame({"index": [0, 1], "answer": "A", "prediction": "A"}).to_csv(path, index=False)
    entry, data = recorded_entry(path), path.read_bytes()
    path.write_text("index,answer,prediction\n0,A,B\n")  # rewritten after the caller read it
    assert unlike_record(path, entry, data) is None  # the bytes given are the ones judged, as recorded
    assert unlike_record(path, entry) == "changed since bench.run wrote it (its sha256 is not the recorded one)"
    path.write_text("answer,prediction\nA,A\n")
    assert unlike_record(path, prediction_entry(path, ["0"], None)) == f"{path}: no index column"


def test_a_recorded_file_that_cannot_be_scored_is_named_and_counted_once(work, capsys):
    model = work / "m"
    empty = model / "m_Empty.csv"
    empty.write_text("index,answer,prediction\n")  # finished with no rows: recorded, but nothing to score
    record = json.loads((model / "bench_run.json").read_text())
    record["predictions"]["Empty"] = recorded_entry(empty)
    (model / "bench_run.json").write_text(json.dumps(record))
    frame = score_work_dir(work)
    assert list(frame["dataset"]) == ["MMStar"] and frame.attrs["problems"] == 2  # m_Broken.tsv and m_Empty.csv
    assert f"{empty}: no rows" in capsys.readouterr().err.splitlines()
