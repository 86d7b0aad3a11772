"""OCRBench, HallusionBench and MMVet as the leaderboard scores them (`reproduce.openvlm_metrics`):
VLMEvalKit's own scorer as the reference, hand-worked values, and the judged files tied to the
recorded predictions."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from reproduce.openvlm_metrics import MetricError, hallusionbench, mmvet, ocrbench
from tests.helpers.scores import (
    JUDGE,
    OCRBENCH_TASKS,
    mmbench_server_tables,
    scored_work_dir,
    vlmeval_scored_rows,
)


@pytest.fixture
def work(tmp_path):
    return scored_work_dir(tmp_path / "work", "m") / "m"


def test_ocrbench_equals_vlmevalkits_own_scorer(tmp_path):
    """VLMEvalKit's OCRBench.evaluate (which runs eval on each answer: here on this test's own
    literals) and ours agree, task by task, on predictions that hit and miss each rule: case,
    newlines, spaces in expressions, several answers."""
    from bench.vlmeval_compat import import_vlmeval

    import_vlmeval()
    from vlmeval.dataset.image_vqa import OCRBench

    rows = []
    for k, task in enumerate(OCRBENCH_TASKS * 3):
        expression = "Expression" in task
        answers = ["x^{2}+1"] if expression else ["Hello World", "hello"]
        prediction = [("x ^ {2} + 1" if expression else "it reads HELLO\nWORLD"),
                      ("X^{2}+1" if expression else "goodbye"), ("no" if expression else "Hello\nWorld")][k // 10]
        rows.append({"index": k, "category": task, "answer": repr(answers), "prediction": prediction})
    path = tmp_path / "m_OCRBench.xlsx"
    pd.DataFrame(rows).to_excel(path, index=False)
    theirs = OCRBench.evaluate(str(path))
    assert ocrbench(path) == {k: theirs[k] for k in ocrbench(path)}
    assert theirs["Final Score"] == 19  # by hand: 10 + 0 + 9 (a newline between words is a space)


def test_the_three_by_hand(work):
    """scored_work_dir's files, every third item wrong. OCRBench: 7 of 10 right (rows 2, 5, 8
    wrong: two recognition tasks and KIE). HallusionBench: aAcc 4/6; fAcc 3/5 figures (VD 0/0,
    VD 0/1, VD 1/0 wrong, VS 0/0, VS 0/1 wrong); qAcc 2/4 questions; Overall their mean. MMVet:
    judge scores 1, .5, 0, 1, .8, .2 over rec | ocr,know | gen,rec | spat,ocr | math,ocr |
    know,rec,gen; VLMEvalKit counts the single-capability item 0 twice in rec: (2 + 0 + .2) / 4."""
    assert ocrbench(work / "m_OCRBench.csv") == {
        "Text Recognition": 4, "Scene Text-centric VQA": 1, "Doc-oriented VQA": 1, "Key Information Extraction": 0,
        "Handwritten Mathematical Expression Recognition": 1, "Final Score": 7, "Final Score Norm": 0.7}
    hallu = hallusionbench(work / "m_HallusionBench.csv", JUDGE)
    assert hallu == pytest.approx({"Overall": (400 / 6 + 60 + 50) / 3, "aAcc": 400 / 6, "fAcc": 60.0, "qAcc": 50.0})
    assert hallusionbench(work / "m_HallusionBench.csv", None) == hallu  # exact matching finds the same yes/no
    assert mmvet(work / "m_MMVet.csv", JUDGE) == pytest.approx({
        "rec": 55.0, "ocr": (0.5 + 1 + 0.8) / 3 * 100, "know": 35.0, "gen": 10.0, "spat": 100.0, "math": 80.0,
        "Overall": 3.5 / 6 * 100})


def test_a_judged_file_that_is_not_of_the_recorded_predictions_is_refused(work):
    judged = work / f"m_MMVet_{JUDGE}.xlsx"
    table = pd.read_excel(judged)
    table.loc[3, "prediction"] = "an answer the model never gave"
    table.to_excel(judged, index=False)
    with pytest.raises(MetricError, match=f"{judged}: its rows are not the predictions of m_MMVet.csv .*index 3"):
        mmvet(work / "m_MMVet.csv", JUDGE)
    table.drop(index=3).to_excel(work / "m_HallusionBench_auxmatch.xlsx", index=False)
    with pytest.raises(MetricError, match="m_HallusionBench_auxmatch.xlsx: missing column"):
        hallusionbench(work / "m_HallusionBench.csv", JUDGE)
    judged.unlink()
    with pytest.raises(MetricError, match=f"{judged}: not found; VLMEvalKit writes it when its judge"):
        mmvet(work / "m_MMVet.csv", JUDGE)
    with pytest.raises(MetricError, match="MMVet is scored by a judge model and bench.run ran without one"):
        mmvet(work / "m_MMVet.csv", None)


@pytest.mark.parametrize("answer, category, message", [
    ("__import__('os').system('true')", "Doc-oriented VQA", "row 3: answer \"__import__('os').sy"),
    ("'cat'", "Doc-oriented VQA", "row 3: answer \"'cat'\" is not a list of strings"),
    ("['cat']", "Poetry", "row 3: category 'Poetry' is not one of OCRBench's ten tasks"),
])
def test_ocrbench_answers_are_parsed_never_run(tmp_path, answer, category, message):
    rows = vlmeval_scored_rows()["OCRBench"]
    rows[1] |= {"answer": answer, "category": category}
    path = tmp_path / "m_OCRBench.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    with pytest.raises(MetricError, match=f"{path}: " + message.replace("(", "\\(").replace(")", "\\)")):
        ocrbench(path)


def test_submit_refuses_a_limit_run_and_a_missing_judge(tmp_path):
    from reproduce.submit import SubmissionError, submit

    work = scored_work_dir(tmp_path / "work", "m", model="org/m", argv=["run.py", "--data", "MMVet", "--limit", "5"])
    server = mmbench_server_tables(tmp_path / "server")
    with pytest.raises(SubmissionError, match="bench.run ran with --limit \\(a smoke run\\)"):
        submit(work, "m", tmp_path / "s", mmbench=server)
    record = work / "m" / "bench_run.json"
    record.write_text(json.dumps({**json.loads(record.read_text()), "argv": [], "judge": None}))
    with pytest.raises(SubmissionError, match="MMVet: .*MMVet is scored by a judge model"):
        submit(work, "m", tmp_path / "s", mmbench=server)
    assert not list(tmp_path.glob("s.*"))
