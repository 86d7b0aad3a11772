"""Table 1 (`reproduce/table1.py`) against hand-worked tables: every cell, the average, the paper's
value and the difference, the standard error, and each refusal with its message."""

from __future__ import annotations

import csv
import io
import json
import math
import statistics

import pytest

from reproduce.paper import PaperCell
from reproduce.table1 import (
    Row,
    TableError,
    average,
    build_dataset_table,
    build_paper_table1,
    collect_scores,
    fmt_cell,
    render,
    standard_error,
)
from tests.helpers.scores import scores_dir, update_record

PAPER_MODEL = {"MathVista_MINI": 74.0, "MMStar": 66.0, "MMMU_DEV_VAL": 55.0, "MathVerse_MINI": 50.0,
               "MathVision": 28.0, "AI2D_TEST": 83.0}
CKPT = {"MathVista_MINI": 60.0, "MMStar": 50.0, "MMMU_DEV_VAL": 40.0, "MathVerse_MINI": 30.0, "MathVision": 20.0,
        "AI2D_TEST": 10.0}


def test_paper_table_cells_by_hand(tmp_path):
    """R1-ShareVL-7B beside the paper's recovered cells (MathVista 75.4, MathVerse 52.8, MathVision
    29.5; the others not recovered), and a CKPT row with no paper cells. Averages: 356 / 6 = 59.3
    and 210 / 6 = 35.0."""
    work = scores_dir(tmp_path, "R1-ShareVL-7B", PAPER_MODEL)
    scores_dir(tmp_path, "mine", CKPT)
    md_path, csv_path, tex_path = build_paper_table1([work], tmp_path / "t")
    assert [md_path.name, csv_path.name, tex_path.name] == ["t.md", "t.csv", "t.tex"]
    lines = md_path.read_text().splitlines()
    assert lines[2:] == [
        "| Model | MathVista | MMStar | MMMU | MathVerse | MathVision | AI2D | Average |",
        "|---|---|---|---|---|---|---|---|",
        "| R1-ShareVL-7B | 74.0 [paper 75.4 (Δ -1.4)] | 66.0 [paper not recovered] | 55.0 [paper not recovered] | "
        "50.0 [paper 52.8 (Δ -2.8)] | 28.0 [paper 29.5 (Δ -1.5)] | 83.0 [paper not recovered] | "
        "59.3 [paper not recovered] |",
        "| mine | 60.0 | 50.0 | 40.0 | 30.0 | 20.0 | 10.0 | 35.0 |",
    ]
    assert lines[0].startswith("**Table 1 (paper scale), accuracy 0-100") and "verifier mode: default" in lines[0]
    rows = list(csv.DictReader(io.StringIO(csv_path.read_text())))
    assert len(rows) == 14
    vista = rows[0]
    assert (vista["model"], vista["column"], vista["runs"], vista["measured_std"], vista["measured_se"]) == \
        ("R1-ShareVL-7B", "MathVista", "1", "", "")
    assert float(vista["measured_mean"]) == 74.0 and float(vista["paper"]) == 75.4
    assert float(vista["diff"]) == pytest.approx(-1.4) and vista["paper_source"].startswith("confirmed")
    mine_avg = rows[-1]
    assert (mine_avg["column"], float(mine_avg["measured_mean"]), mine_avg["paper"], mine_avg["diff"]) == \
        ("Average", 35.0, "", "")
    tex = tex_path.read_text()
    assert r"R1-ShareVL-7B & 74.0 (75.4 ($\Delta$ -1.4)) & 66.0 (not recovered)" in tex
    assert r"mine & 60.0 & 50.0 & 40.0 & 30.0 & 20.0 & 10.0 & 35.0 \\" in tex
    assert r"\begin{tabular}{lccccccc}" in tex and r"0-100" in tex


def test_a_missing_column_is_refused_then_shown_as_missing(tmp_path):
    work = scores_dir(tmp_path, "mine", {k: v for k, v in CKPT.items() if k != "MMStar"})
    with pytest.raises(TableError, match=r"mine: no score for MMStar \(VLMEvalKit datasets MMStar\)"):
        build_paper_table1([work], tmp_path / "t")
    assert not (tmp_path / "t.md").exists()
    md = build_paper_table1([work], tmp_path / "t", allow_partial=True)[0].read_text()
    assert "| mine | 60.0 | missing | 40.0 | 30.0 | 20.0 | 10.0 | missing |" in md
    with pytest.raises(TableError, match=r"mine: no score for MMStar$"):
        build_dataset_table([work], tmp_path / "d", ["MathVista_MINI", "MMStar"])
    md = build_dataset_table([work], tmp_path / "d", ["MathVista_MINI", "MMStar"], allow_partial=True)[0].read_text()
    assert "| mine | 60.0 | missing | missing |" in md


def test_mixed_protocols_are_refused_unless_asked(tmp_path):
    work = scores_dir(tmp_path, "a", PAPER_MODEL, mode="default")
    scores_dir(tmp_path, "b", CKPT, mode="paper")
    for build in (lambda partial: build_paper_table1([work], tmp_path / "t", partial),
                  lambda partial: build_dataset_table([work], tmp_path / "d", ["MMStar"], partial)):
        with pytest.raises(TableError, match=r"different protocols \(default, paper\)"):
            build(False)
        assert build(True)[0].read_text().count("| ") >= 4


def test_dataset_table_by_hand_with_its_caption(tmp_path):
    work = scores_dir(tmp_path, "b", {"X": 20.0, "Y": 30.0})
    scores_dir(tmp_path, "a", {"X": 50.0, "Y": 100.0})
    md = build_dataset_table([work], tmp_path / "d", ["X", "Y"])[0].read_text().splitlines()
    assert md[2:] == ["| Model | X | Y | Average |", "|---|---|---|---|", "| a | 50.0 | 100.0 | 75.0 |",
                      "| b | 20.0 | 30.0 | 25.0 |"]
    assert md[0] == f"**Accuracy 0-100 on X, Y, scored by bench.score (verifier mode: default) from {work}.**"
    assert build_dataset_table([work], tmp_path / "e", ["X"], caption="C")[0].read_text().startswith("**C**")


def test_standard_error_by_hand():
    """[60, 70] on 100 items: p = 0.65, binomial 100 sqrt(0.65 * 0.35 / 200) = 3.373, runs
    stdev / sqrt(2) = 5.0, combined sqrt(3.373^2 + 5^2) = 6.031; over 2 columns the binomial
    part is 100 sqrt(0.2275 / 400) = 2.385."""
    assert standard_error([60.0, 70.0], 100) == pytest.approx(math.hypot(100 * math.sqrt(0.2275 / 200), 5.0))
    assert standard_error([60.0, 70.0], 100) == pytest.approx(6.031, abs=1e-3)
    assert standard_error([60.0, 70.0], 100, columns=2) == pytest.approx(math.hypot(100 * math.sqrt(0.2275 / 400), 5.0))
    assert standard_error([50.0], 400) == pytest.approx(2.5)  # one run: binomial only


def test_cells_with_runs_standard_errors_and_paper_values():
    assert fmt_cell(None, None) == ("missing", "")
    assert fmt_cell([], PaperCell(52.8, "s")) == ("missing", "52.8")
    assert fmt_cell([50.0], PaperCell(None, "not recovered")) == ("50.0", "not recovered")
    assert fmt_cell([54.0], PaperCell(52.8, "s")) == ("54.0", "52.8 (Δ +1.2)")
    assert fmt_cell([60.0, 70.0], None) == ("65.0 ± 7.1", "")  # std over runs
    assert fmt_cell([60.0, 70.0], None, se=6.031) == ("65.0 ± 6.0", "")
    row = Row("m", {"X": [60.0, 70.0], "Y": [40.0, 50.0]}, items=100)
    assert average(row, ["X", "Y"]) == [50.0, 60.0]
    assert average(Row("m", {"X": [60.0, 70.0], "Y": [40.0]}), ["X", "Y"]) is None  # runs differ: no average
    assert average(Row("m", {"X": [60.0]}), ["X", "Y"]) is None
    md = render([row], ["X", "Y"], "cap", with_paper=False)["md"]
    se_avg = standard_error([50.0, 60.0], 100, columns=2)
    assert f"| m | 65.0 ± 6.0 | 45.0 ± {standard_error([40.0, 50.0], 100):.1f} | 55.0 ± {se_avg:.1f} |" in md


@pytest.mark.parametrize("content, message", [
    ("[]", "not a scores file"),
    ('{"datasets": [1]}', "'datasets' is not an object"),
    ('{"datasets": {"X": 5}}', "'datasets' is not an object"),
    ('{"datasets": {"X": {"accuracy": NaN}}}', "X accuracy nan is not a number on the 0-100 scale"),
    ('{"datasets": {"X": {"accuracy": 100.001}}}', "is not a number on the 0-100 scale"),
    ('{"datasets": {"X": {"accuracy": "50"}}}', "is not a number on the 0-100 scale"),
])
def test_broken_scores_files_are_named(tmp_path, content, message):
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "r1_scores.json").write_text(content)
    with pytest.raises(TableError, match="r1_scores.json") as err:
        collect_scores([tmp_path], allow_unverified=True)
    assert message in str(err.value)


def test_scores_are_read_by_model_with_their_protocols(tmp_path):
    work = scores_dir(tmp_path, "a", {"X": 0.0, "Y": 100.0}, mode="paper")
    (work / "b").mkdir()
    (work / "b" / "r1_scores.json").write_text(json.dumps({"datasets": {"X": {"accuracy": 5}}}))  # no record, no mode
    with pytest.raises(TableError, match="b/r1_scores.json: X was scored from a file with no bench.run record"):
        collect_scores([work])
    scores, protocols = collect_scores([work], allow_unverified=True)
    assert {m: {d: v["accuracy"] for d, v in ds.items()} for m, ds in scores.items()} == \
        {"a": {"X": 0.0, "Y": 100.0}, "b": {"X": 5}}
    assert scores["a"]["X"]["verified"] is True and protocols == {"paper", "unknown"}
    with pytest.raises(TableError, match=r"no \*/r1_scores.json \(run `python -m bench.score --work-dir"):
        collect_scores([tmp_path / "empty"])
    other = scores_dir(tmp_path / "o", "a", {"X": 1.0})
    with pytest.raises(TableError, match="model a is scored in both"):
        collect_scores([work, other], allow_unverified=True)


def test_a_table_uses_only_scores_of_the_recorded_predictions_or_says_unverified(tmp_path):
    """Every score is re-checked against bench.run's record when the table is built: predictions
    changed after scoring, a re-run that did not finish, or a score of another file than the one
    recorded are refused with the file named; a score of an unrecorded file needs
    --allow-unverified, and its row then says so in every output."""
    work = scores_dir(tmp_path, "a", {"X": 50.0})
    assert "| a | 50.0 |" in build_dataset_table([work], tmp_path / "t", ["X"])[0].read_text()
    predictions = work / "a" / "a_X.csv"
    kept = predictions.read_text()
    predictions.write_text(kept.replace(",A\n", ",B\n"))  # the answer rewritten after scoring
    with pytest.raises(TableError, match="a_X.csv: changed since bench.run wrote it"):
        build_dataset_table([work], tmp_path / "t", ["X"])
    predictions.write_text(kept)
    update_record(work / "a", status="running")  # a re-run killed before its end
    with pytest.raises(TableError, match="its last bench.run did not finish"):
        build_dataset_table([work], tmp_path / "t", ["X"])
    update_record(work / "a", status="finished", predictions={})  # the record no longer holds what was scored
    with pytest.raises(TableError, match="X's score is not of the predictions bench.run recorded last"):
        build_dataset_table([work], tmp_path / "t", ["X"])
    scores = json.loads((work / "a" / "r1_scores.json").read_text())
    scores["datasets"]["X"].update(verified=False, predictions=None)
    (work / "a" / "r1_scores.json").write_text(json.dumps(scores))
    with pytest.raises(TableError, match="unverified"):
        build_dataset_table([work], tmp_path / "t", ["X"])
    paths = build_dataset_table([work], tmp_path / "t", ["X"], allow_unverified=True)
    assert all("a (unverified)" in p.read_text() for p in paths)


def test_paper_rows_captions_and_messages_in_full(tmp_path):
    """The base row is filed as Qwen2.5-VL-7B-Instruct-R1 and compared with the paper's
    Qwen2.5-VL-7B-Instruct row; the caption names the protocols, the work dirs and VLMEvalKit's
    exact matching per model; the refusals list every problem, one per line."""
    work = scores_dir(tmp_path, "Qwen2.5-VL-7B-Instruct-R1", PAPER_MODEL)
    scores_dir(tmp_path, "mine", CKPT)
    for name in ("Qwen2.5-VL-7B-Instruct-R1", "mine"):
        f = work / name / "r1_scores.json"
        data = json.loads(f.read_text())
        data["datasets"]["MMStar"]["exact_match"] = 70.0
        data["datasets"]["AI2D_TEST"]["exact_match"] = 80.25
        f.write_text(json.dumps(data))
    md = build_paper_table1([work], tmp_path / "t")[0].read_text()
    base_row = next(line for line in md.splitlines() if line.startswith("| Qwen2.5-VL-7B-Instruct-R1 |"))
    assert base_row.count("[paper") == 7
    assert md.splitlines()[0] == (
        f"**Table 1 (paper scale), accuracy 0-100, scored by bench.score (verifier mode: default) from {work}: the "
        "boxed answer against the gold, so an answer without a box scores 0. VLMEvalKit's own exact matching of "
        "multiple-choice answers (judge-free, no box needed): Qwen2.5-VL-7B-Instruct-R1 MMStar 70.0, AI2D 80.2; "
        "mine MMStar 70.0, AI2D 80.2. Paper values with their sources are in results/paper/table1.json; "
        "'not recovered' means unknown.**")
    plain = build_paper_table1([scores_dir(tmp_path / "p", "mine", CKPT)], tmp_path / "u")[0].read_text()
    assert "exact matching" not in plain and "scores 0. Paper values" in plain
    other = scores_dir(tmp_path / "o", "x", {"MMStar": 1.0}, mode="paper")
    scores_dir(tmp_path / "o", "y", {"MathVision": 1.0}, mode="paper")
    with pytest.raises(TableError) as err:
        build_paper_table1([work, other], tmp_path / "v")
    assert str(err.value) == ("scores come from different protocols (default, paper); re-score with one --mode, "
                              "or pass --allow-partial")
    with pytest.raises(TableError) as err:
        build_paper_table1([other], tmp_path / "v")
    assert str(err.value) == (
        "incomplete inputs (pass --allow-partial to build the table anyway):\n"
        "  x: no score for MathVista, MMMU, MathVerse, MathVision, AI2D (VLMEvalKit datasets MathVista_MINI, "
        "MMMU_DEV_VAL, MathVerse_MINI, MathVision, AI2D_TEST)\n"
        "  y: no score for MathVista, MMStar, MMMU, MathVerse, AI2D (VLMEvalKit datasets MathVista_MINI, MMStar, "
        "MMMU_DEV_VAL, MathVerse_MINI, AI2D_TEST)")
    two = scores_dir(tmp_path / "two", "z", {"X": 1.0})
    scores_dir(tmp_path / "two2", "w", {"X": 2.0}, mode="paper")
    with pytest.raises(TableError) as err:
        build_dataset_table([two, tmp_path / "two2" / "work"], tmp_path / "d", ["X"])
    assert str(err.value).startswith("scores come from different protocols (default, paper); re-score")
    caption = build_dataset_table([two, tmp_path / "two2" / "work"], tmp_path / "d", ["X", "Y"], allow_partial=True)
    assert caption[0].read_text().splitlines()[0] == (
        f"**Accuracy 0-100 on X, Y, scored by bench.score (verifier mode: default, paper) from {two}, "
        f"{tmp_path / 'two2' / 'work'}.**")


def test_latex_and_csv_of_a_small_table_in_full():
    rows = [Row("a_b", {"X": [60.0, 70.0]}), Row("c", {"X": [50.0, 50.0, 53.0]}, {"X": PaperCell(55.0, "src")})]
    out = render(rows, ["X"], "50% of a_b", with_paper=True)
    assert out["tex"] == "\n".join([
        r"\begin{table}[t]", r"\centering", r"\small", r"\begin{tabular}{lcc}", r"\toprule",
        r"Model & X & Average \\", r"\midrule",
        r"a_b & 65.0 $\pm$ 7.1 & 65.0 $\pm$ 7.1 \\",
        r"c & 51.0 $\pm$ 1.7 (55.0 ($\Delta$ -4.0)) & 51.0 $\pm$ 1.7 \\",
        r"\bottomrule", r"\end{tabular}", r"\caption{50\% of a\_b}", r"\end{table}"]) + "\n"
    assert out["md"].splitlines()[:2] == ["**50% of a_b**", ""]
    rows_csv = list(csv.reader(io.StringIO(out["csv"])))
    assert rows_csv[1] == ["a_b", "X", "65.0", str(statistics.stdev([60.0, 70.0])), "2", "", "", "", ""]
    assert rows_csv[3][:7] == ["c", "X", "51.0", str(statistics.stdev([50.0, 50.0, 53.0])), "3", "55.0", "src"]
    assert float(rows_csv[3][7]) == pytest.approx(-4.0)
    one = list(csv.reader(io.StringIO(render([Row("d", {"X": [50.0]})], ["X"], "c", False)["csv"])))
    assert one[1] == ["d", "X", "50.0", "", "1", "", "", "", ""]
    hidden = render([Row("e", {"X": [50.0]}, {"X": PaperCell(55.0, "src")})], ["X"], "c", with_paper=False)
    assert "paper" not in hidden["md"].split("\n", 2)[2] and "55.0" not in hidden["csv"]
