"""bench.score's reader and row functions, each against a hand-worked file or row: the text every
cell holds, the index keys, the whole response and the options of a multiple-choice row."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from bench.score import (
    MAX_RECORD_CHARS,
    ResultsError,
    full_response,
    options,
    prediction_keys,
    read_predictions,
    score_file,
)
from bench.verify import Grade


# ---------------------------------------------------------------- read_predictions
def test_a_json_file_read_as_text_keeps_each_cells_text_and_null_is_empty(tmp_path):
    """pandas reads JSON null back as None or NaN: as text it is the empty cell, never "NaN" (which
    would be a prediction, and would hide an empty gold). "07" stays "07", not the number 7."""
    path = tmp_path / "m_X.json"
    path.write_text(json.dumps([{"index": "07", "answer": None, "prediction": None},
                                {"index": 7, "answer": "NA", "prediction": [1, 2]}]))
    assert read_predictions(path, text=True).to_dict("records") == [
        {"index": "07", "answer": "", "prediction": ""},
        {"index": "7", "answer": "NA", "prediction": "[1, 2]"}]


def test_a_tsv_read_as_text_keeps_each_cells_text(tmp_path):
    path = tmp_path / "m_X.tsv"
    path.write_text("index\tanswer\tprediction\n007\tNA\t1.50\n")
    assert read_predictions(path, text=True).iloc[0].tolist() == ["007", "NA", "1.50"]


def test_read_without_text_keeps_every_cell_as_stored(tmp_path):
    """The default read (files this project rewrites in place) keeps each cell as the file stores
    it: JSON's numbers as numbers and its strings as strings (pandas would infer 7 from "7"), a CSV's
    cells as their text, a spreadsheet's numbers as numbers and its strings as strings ("007" stays)."""
    path = tmp_path / "m_X.json"
    path.write_text(json.dumps([{"index": 7, "answer": "2", "prediction": "p", "B": None},
                                {"index": 8, "answer": "10", "prediction": "q", "B": 1.5}]))
    frame = read_predictions(path)
    assert frame["index"].tolist() == [7, 8] and frame["answer"].tolist() == ["2", "10"]
    assert pd.isna(frame.at[0, "B"]) and frame.at[1, "B"] == 1.5  # a null as pandas gives it back
    csv = tmp_path / "m_X.csv"
    csv.write_text("index,answer,prediction\n07,NA,1.50\n")
    assert read_predictions(csv).iloc[0].tolist() == ["07", "NA", "1.50"]
    assert read_predictions(csv, text=True).iloc[0].tolist() == ["07", "NA", "1.50"]
    sheet = tmp_path / "m_X.xlsx"
    pd.DataFrame({"index": [1], "answer": ["007"], "prediction": ["NA"], "B": [2.5], "C": [None]}).to_excel(
        sheet, index=False)
    assert read_predictions(sheet).iloc[0].tolist() == [1, "007", "NA", 2.5, ""]
    assert read_predictions(sheet, text=True).iloc[0].tolist() == ["1", "007", "NA", "2.5", ""]


def test_a_json_cell_that_is_a_string_stays_as_it_is_and_a_null_prediction_scores_as_empty(tmp_path):
    path = tmp_path / "m_X.json"
    path.write_text(json.dumps([{"index": 0, "answer": "NaN", "prediction": None}]))
    metrics = score_file(path)
    assert metrics["accuracy"] == 0.0 and metrics["no_box"] == 100.0 and metrics["empty_gold"] == 0


# ---------------------------------------------------------------- gold_answer
def test_a_gold_is_its_stripped_text_and_only_an_empty_cell_is_no_gold():
    from bench.score import gold_answer

    golds = [" B ", "NA", "None", "nan", "  ", "", 2, 2.5, float("nan"), None]
    assert [gold_answer(pd.Series({"answer": g})) for g in golds] == [
        "B", "NA", "None", "nan", "", "", "2", "2.5", "", ""]


# ---------------------------------------------------------------- prediction_keys
def test_index_keys_are_the_files_exact_strings(tmp_path):
    """Integer-looking indices are ints, as VLMEvalKit files them ("07" is 7); any other index is its
    text: "1.50" and "1.5" are two rows, and 7 is not the float 7.0 of a column read as numbers."""
    path = tmp_path / "m_X.csv"
    path.write_text("index,answer,prediction\n07,a,p\n1.50,a,p\n1.5,a,p\n")
    assert prediction_keys(path) == ["7", "1.50", "1.5"]


def test_index_keys_read_the_bytes_given_not_the_file_again(tmp_path):
    path = tmp_path / "m_X.csv"
    path.write_text("index,answer,prediction\n1,a,p\n")
    assert prediction_keys(path, data=b"index,answer,prediction\n3,a,p\n") == ["3"]


def test_a_file_without_an_index_column_is_named(tmp_path):
    path = tmp_path / "m_X.csv"
    path.write_text("answer,prediction\na,p\n")
    with pytest.raises(ResultsError, match=r"^.*m_X\.csv: no index column$"):
        prediction_keys(path)


# ---------------------------------------------------------------- full_response
def test_the_full_response_of_a_record_at_the_length_limit_is_read():
    body = "x" * (MAX_RECORD_CHARS - len(repr({"full_response": ""})))
    record = repr({"full_response": body})
    assert len(record) == MAX_RECORD_CHARS
    assert full_response(pd.Series({"extra_records": record, "prediction": "p"})) == body
    longer = repr({"full_response": body + "x"})
    assert full_response(pd.Series({"extra_records": longer, "prediction": "p"})) == "p"


def test_the_full_response_of_a_record_already_parsed():
    assert full_response(pd.Series({"extra_records": {"full_response": "R"}, "prediction": "p"})) == "R"
    assert full_response(pd.Series({"extra_records": {"other": "R"}, "prediction": "p"})) == "p"


def test_a_missing_prediction_is_empty_and_missing_thinking_adds_nothing():
    """NaN is truthy: a missing thinking cell must not become "<think>nan</think>"."""
    assert full_response(pd.Series({"prediction": float("nan")})) == ""
    assert full_response(pd.Series({"prediction": "B", "thinking": float("nan")})) == "B"
    assert full_response(pd.Series({"prediction": "B", "thinking": ""})) == "B"
    assert full_response(pd.Series({"prediction": "B", "thinking": "t"})) == "<think>t</think>B"


# ---------------------------------------------------------------- options
@pytest.mark.parametrize("choices", ["('3', '4')", " ['3', '4'] "])
def test_choices_as_a_tuple_or_a_list_literal(choices):
    assert options(pd.Series({"choices": choices})) == {"A": "3", "B": "4"}


@pytest.mark.parametrize("choices", ["[]", "(1)", "[1", "{'a': 1}", "'text'"])
def test_choices_that_are_no_list_fall_back_to_the_question_lines(choices):
    row = pd.Series({"choices": choices, "question": "Which?\nA: 3\nB: 4"})
    assert options(row) == {"A": "3", "B": "4"}


def test_option_lines_in_the_question_column_count_from_two():
    assert options(pd.Series({"question": "Which?\nA: 3\nB: 4"})) == {"A": "3", "B": "4"}
    assert options(pd.Series({"question": "Which?\nA: 3"})) == {}
    row = pd.Series({"question_for_eval": "Which?\n(A) 3\n(B) 4\n(C) 5", "question": "Which?\nA: 1\nB: 2"})
    assert options(row) == {"A": "3", "B": "4", "C": "5"}


# ---------------------------------------------------------------- score_file
def test_judge_timeouts_count_every_judged_pair_that_timed_out(tmp_path, monkeypatch):
    """A multiple-choice row is judged against its letter and its option text: two timeouts."""
    import bench.score as score

    def timed_out(responses, golds, mode="default"):
        assert len(responses) == len(golds) == 3  # ["B", "4"] for the first row, ["7"] for the second
        return [Grade(0.0, 0.0, 0.0, None, "timeout" if g != "7" else "ok") for g in golds]

    monkeypatch.setattr(score, "grade_many", timed_out)
    path = tmp_path / "m_X.csv"
    pd.DataFrame([{"index": 0, "A": "3", "B": "4", "answer": "B", "prediction": "p"},
                  {"index": 1, "answer": "7", "prediction": "p"}]).to_csv(path, index=False)
    metrics = score_file(path)
    assert metrics["judge_timeouts"] == 2 and metrics["n"] == 2


# ---------------------------------------------------------------- read_recorded
def test_the_frame_is_the_recorded_bytes_never_a_second_read(tmp_path, monkeypatch):
    """The file is rewritten (same indices, other predictions) after bench.score read it: the frame
    is the recorded bytes it checked, never a second read of the file as it now is."""
    import bench.score as score
    from tests.helpers.scores import recorded_entry

    path = tmp_path / "m_X.csv"
    path.write_text("index,answer,prediction\n0,A,recorded\n")
    entry = recorded_entry(path)
    checked = tmp_path / "checked.csv"
    checked.write_bytes(path.read_bytes())
    path.write_text("index,answer,prediction\n0,A,rewritten\n")  # the bytes on disk from now on
    reads = []

    def first_read_is_the_recorded_bytes(p):
        reads.append(p)
        return checked if len(reads) == 1 else p

    monkeypatch.setattr(score, "regular_file", first_read_is_the_recorded_bytes)
    frame = score.read_recorded(path, entry)
    assert frame["prediction"].tolist() == ["recorded"] and reads == [path]
    reads.clear()
    monkeypatch.setattr(score, "regular_file", lambda p: p)
    with pytest.raises(ResultsError, match=r"m_X\.csv: changed since bench.run wrote it"):
        score.read_recorded(path, entry)


@pytest.mark.parametrize("error, reason", [(FileNotFoundError(2, "No such file or directory"), "No such file or directory"),
                                           (OSError(), "OSError")])
def test_a_recorded_file_that_cannot_be_read_is_named_with_the_reason(tmp_path, monkeypatch, error, reason):
    import bench.score as score

    def fails(p):
        raise error

    monkeypatch.setattr(score, "regular_file", fails)
    path = tmp_path / "m_X.csv"
    with pytest.raises(ResultsError) as raised:
        score.read_recorded(path, {})
    assert str(raised.value) == f"{path}: cannot be read ({reason})"


def test_a_recorded_file_is_checked_for_the_columns_asked_and_each_index_once(tmp_path):
    """The record's bytes match, yet an index answered twice is refused; and the columns required
    are the caller's (a coverage check needs no answer column)."""
    from bench.provenance import prediction_entry
    from bench.score import read_recorded
    from tests.helpers.scores import recorded_entry

    twice = tmp_path / "m_X.csv"
    twice.write_text("index,answer,prediction\n0,A,a\n0,A,b\n")
    with pytest.raises(ResultsError) as raised:
        read_recorded(twice, recorded_entry(twice))
    assert str(raised.value) == f"{twice}: answers index '0' more than once (1 such)"
    bare = tmp_path / "m_Y.csv"
    bare.write_text("index,prediction\n0,a\n")
    entry = prediction_entry(bare, ["0"], None)
    assert read_recorded(bare, entry, require=("prediction",))["prediction"].tolist() == ["a"]
    with pytest.raises(ResultsError, match="missing column"):
        read_recorded(bare, entry)
    no_index = tmp_path / "m_Z.csv"
    no_index.write_text("answer,prediction\nA,a\n")
    with pytest.raises(ResultsError) as raised:
        read_recorded(no_index, prediction_entry(no_index, ["0"], None))
    assert str(raised.value) == f"{no_index}: no index column"


def test_prediction_files_are_the_models_results_files_only(tmp_path):
    from bench.score import prediction_files

    model = tmp_path / "m"
    model.mkdir()
    for name in ("m_MMStar.xlsx", "m_MMStar.pkl", "m_notes.txt", "m_MMStar_r1_score.csv", "m_MMStar_acc.csv",
                 "m_MathVista_gpt-4o.xlsx", "other_MMStar.csv", "m_AI2D.tsv", "m_AI2D.json"):
        (model / name).write_text("x")
    assert prediction_files(model, judge="gpt-4o") == {
        "MMStar": model / "m_MMStar.xlsx", "AI2D": [model / "m_AI2D.json", model / "m_AI2D.tsv"]}


# ---------------------------------------------------------------- score_file and its parts
def test_exact_match_scores_only_rows_whose_gold_is_an_option_letter():
    from bench.score import exact_match

    rows = [pd.Series({"A": "red", "B": "blue", "answer": "A", "prediction": "A"}),
            pd.Series({"A": "red", "B": "blue", "answer": "red", "prediction": "B"})]  # a text gold: not scored here
    assert exact_match(rows) == 100.0


def test_categories_of_mathvista_skills_in_every_form_and_no_empty_category():
    from bench.score import category_scores

    frame = pd.DataFrame({"task": ["t", "t", "t"],
                          "skills": ["['algebra', 'logic']", "'algebra'", "plain words, not a literal"]})
    assert category_scores(frame, [1.0, 0.0, 1.0], "MathVista_MINI") == {
        "t": pytest.approx(200 / 3), "algebra": 50.0, "logic": 100.0, "plain words, not a literal": 100.0}
    frame = pd.DataFrame({"category": ["c", float("nan"), " "]})
    assert category_scores(frame, [1.0, 0.0, 0.0], "MMStar") == {"c": 100.0}


def test_only_mmmu_is_cut_to_its_validation_split_and_the_mode_reaches_the_grader(tmp_path, monkeypatch):
    import bench.score as score

    path = tmp_path / "m_X.csv"
    pd.DataFrame({"index": [0, 1], "answer": ["1", "2"], "prediction": ["\\boxed{1}", "\\boxed{2}"],
                  "split": ["dev", "validation"]}).to_csv(path, index=False)
    assert score_file(path, dataset="MathVista_MINI")["n"] == 2
    mmmu = score_file(path, dataset="MMMU_DEV_VAL")
    assert mmmu["n"] == 1 and mmmu["split"] == "validation"
    modes = []
    real = score.grade_many
    monkeypatch.setattr(score, "grade_many", lambda r, g, mode="default": modes.append(mode) or real(r, g, mode=mode))
    assert score_file(path, mode="paper")["verifier_mode"] == "paper" and modes == ["paper"]


def test_a_run_record_that_is_not_an_object_is_no_record(tmp_path):
    from bench.score import run_record

    (tmp_path / "bench_run.json").write_text("[1, 2]")
    assert run_record(tmp_path) == {}
    (tmp_path / "bench_run.json").write_text('{"status": "finished"}')
    assert run_record(tmp_path) == {"status": "finished"}


def test_a_status_file_with_nothing_evaluated_yet_is_no_scores_and_no_complaint(tmp_path, capsys):
    from bench.score import vlmeval_scores

    (tmp_path / "status.json").write_text("{}")
    assert vlmeval_scores(tmp_path) == {} and capsys.readouterr().err == ""
