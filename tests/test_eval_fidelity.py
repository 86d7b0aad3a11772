"""Judge-free scores comparable with VLMEvalKit's: each benchmark's gold in the layout of its
VLMEvalKit TSV (fixtures made here with the real column layouts), MMMU's validation split, and the
checks of the Table 1 builder."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from bench.score import normalise, score_file
from reproduce.table1 import TableError, build_dataset_table, build_paper_table1
from tests.helpers.scores import scores_dir


def boxed(answer: str) -> str:
    return f"<think>working</think> The answer is \\boxed{{{answer}}}."


def predictions(tmp_path: Path, dataset: str, rows: list[dict]) -> Path:
    path = tmp_path / f"m_{dataset}.xlsx"
    frame = pd.DataFrame(rows)
    frame.insert(0, "index", range(len(frame)))
    frame.to_excel(path, index=False)
    return path


def test_mathvista_accepts_the_letter_or_the_option_text(tmp_path):
    """VLMEvalKit's MathVista keeps the option text in `answer`, the letter in `answer_option` and
    the options in `choices` (vlmeval/dataset/utils/mathvista.py)."""
    mc = {"question": "What is the angle?", "answer": "145°", "question_type": "multi_choice",
          "answer_type": "text", "choices": "['35°', '145°', '55°', '125°']", "answer_option": "B", "precision": None}
    free = {"question": "How many?", "answer": "7", "question_type": "free_form", "answer_type": "integer",
            "choices": None, "answer_option": None, "precision": None}
    rows = [{**mc, "prediction": boxed("B")}, {**mc, "prediction": boxed("145°")}, {**mc, "prediction": boxed("C")},
            {**free, "prediction": boxed("7")}]
    assert score_file(predictions(tmp_path, "MathVista_MINI", rows), dataset="MathVista_MINI")["accuracy"] == 75.0


def test_mathvision_and_mathverse_count_a_boxed_option_value_as_its_letter(tmp_path):
    vision = {"question": "Which?", "answer": "C", "choices": "['1', '2', '3', '4', '5']"}
    rows = [{**vision, "prediction": boxed("3")}, {**vision, "prediction": boxed("C")},
            {**vision, "prediction": boxed("2")}, {"question": "Sum?", "answer": "12", "choices": "[]",
                                                   "prediction": boxed("12")}]
    assert score_file(predictions(tmp_path, "MathVision", rows), dataset="MathVision")["accuracy"] == 75.0
    verse = {"question": "Find the angle.", "answer": "B",
             "question_for_eval": "As shown in the figure, find the angle.\nChoices:\nA:30°\nB:45°\nC:60°\nD:90°"}
    rows = [{**verse, "prediction": boxed("45°")}, {**verse, "prediction": boxed("B")},
            {**verse, "prediction": boxed("60°")}]
    score = score_file(predictions(tmp_path, "MathVerse_MINI_Vision_Only", rows), dataset="MathVerse_MINI_Vision_Only")
    assert score["accuracy"] == pytest.approx(200 / 3)


def test_mmmu_is_scored_on_validation_with_options_up_to_i(tmp_path):
    options = {c: f"option {c.lower()}" for c in "ABCDEFGHI"}
    rows = [{"question": "q", **options, "answer": "I", "split": "validation", "prediction": boxed("option i")},
            {"question": "q", **options, "answer": "I", "split": "validation", "prediction": boxed("I")},
            {"question": "q", **options, "answer": "A", "split": "validation", "prediction": boxed("B")},
            {"question": "q", **options, "answer": "A", "split": "dev", "prediction": boxed("B")},
            {"question": "q", **options, "answer": "A", "split": "dev", "prediction": boxed("B")}]
    score = score_file(predictions(tmp_path, "MMMU_DEV_VAL", rows), dataset="MMMU_DEV_VAL")
    assert score["n"] == 3 and score["split"] == "validation"
    assert score["accuracy"] == pytest.approx(200 / 3)


def test_normalise_puts_fractions_including_1_on_0_100():
    assert normalise(1.0) == 100.0 and normalise(0.5) == 50.0 and normalise(75.0) == 75.0
    assert normalise(1.5) == 1.5 and normalise(0.0) == 0.0  # above 1: already on 0-100


@pytest.mark.parametrize("value", [150.0, -3.0])
def test_table1_refuses_scores_off_the_0_100_scale(tmp_path, value):
    work = scores_dir(tmp_path, "A", {"MMStar": value})
    with pytest.raises(TableError, match="not a number on the 0-100 scale"):
        build_dataset_table([work], tmp_path / "t", ["MMStar"])
    with pytest.raises(TableError, match="not a number on the 0-100 scale"):
        build_paper_table1([work], tmp_path / "t", allow_partial=True)


def test_dataset_table_refuses_mixed_verifier_modes(tmp_path):
    work = scores_dir(tmp_path, "A", {"SynthCount": 50.0}, mode="default")
    scores_dir(tmp_path, "B", {"SynthCount": 60.0}, mode="paper")
    with pytest.raises(TableError, match="different protocols"):
        build_dataset_table([work], tmp_path / "t", ["SynthCount"])


def test_paper_scale_preflight_checks_flash_attention(monkeypatch):
    import importlib.util

    from reproduce.paper_scale import preflight

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "flash_attn" else real(name, *a))
    monkeypatch.delenv("ATTN_IMPLEMENTATION", raising=False)
    text = "\n".join(preflight([], None, cuda=True))
    assert "flash-attn is not installed" in text and "ATTN_IMPLEMENTATION=sdpa" in text
    monkeypatch.setenv("ATTN_IMPLEMENTATION", "sdpa")
    assert "flash-attn" not in "\n".join(preflight([], None, cuda=True))


def test_attention_override_reaches_from_pretrained(tmp_path):
    from transformers import Qwen2_5_VLForConditionalGeneration

    from bench.adapter import _attention
    from train.tiny import build_tiny

    path = build_tiny(tmp_path / "m")
    with _attention("eager"):
        model = Qwen2_5_VLForConditionalGeneration.from_pretrained(path, attn_implementation="flash_attention_2")
    assert model.config._attn_implementation == "eager"
    assert Qwen2_5_VLForConditionalGeneration.from_pretrained(path).config._attn_implementation != "eager"


def test_mmstar_reports_vlmeval_exact_matching_beside_the_boxed_score(tmp_path):
    """An answer without a box scores 0 on the boxed accuracy; VLMEvalKit's exact matching (its
    can_infer on the text after </think>) still reads "The answer is B"."""
    options = {"A": "a cat", "B": "a dog", "C": "a bird", "D": "a fish"}
    rows = [{"question": "What animal?", **options, "answer": "B", "prediction": "The answer is B.",
             "extra_records": str({"full_response": "<think>looks like a dog</think>The answer is B."})},
            {"question": "What animal?", **options, "answer": "B", "prediction": "\\boxed{B}",
             "extra_records": str({"full_response": "<think>dog</think>\\boxed{B}"})},
            {"question": "What animal?", **options, "answer": "A", "prediction": "It is C.",
             "extra_records": str({"full_response": "<think>hm</think>It is C."})}]
    score = score_file(predictions(tmp_path, "MMStar", rows), dataset="MMStar")
    assert score["accuracy"] == pytest.approx(100 / 3)
    assert score["exact_match"] == pytest.approx(200 / 3)
    free = [{"question": "How many?", "answer": "7", "prediction": boxed("7")}]
    assert score_file(predictions(tmp_path, "MathVision", free), dataset="MathVision")["exact_match"] is None


def test_paper_table_says_which_number_is_which(tmp_path):
    work = scores_dir(tmp_path, "R1-ShareVL-7B", {"MathVista_MINI": 74.0, "MMStar": 66.0, "MMMU_DEV_VAL": 55.0,
                                              "MathVerse_MINI_Vision_Only": 50.0, "MathVision": 28.0, "AI2D_TEST": 83.0})
    f = work / "R1-ShareVL-7B" / "r1_scores.json"
    data = json.loads(f.read_text())
    data["datasets"]["MMStar"]["exact_match"] = 68.5
    f.write_text(json.dumps(data))
    md = build_paper_table1([work], tmp_path / "t", allow_partial=True)[0].read_text()
    assert "an answer without a box scores 0" in md
    assert "VLMEvalKit's own exact matching of multiple-choice answers (judge-free, no box needed): " \
           "R1-ShareVL-7B MMStar 68.5" in md


def test_submission_pull_request_keeps_the_prompt_and_the_models_own_weights(tmp_path):
    from functools import partial
    from types import SimpleNamespace

    from bench.prompts import R1_PROMPT
    from reproduce.submit import CONFIG_MARKER, SubmissionError, submit
    from tests.helpers.scores import mmbench_server_tables, scored_work_dir

    four = ["MMStar", "MMMU_DEV_VAL", "MathVista_MINI", "AI2D_TEST"]
    work = scored_work_dir(tmp_path / "work", "my-ckpt", model="/data/ckpts/my-ckpt", datasets=four,
                           prompt_placement="every_text", argv=["vlmeval", "--data", *four, "--model", "my-ckpt"],
                           versions={"ms-vlmeval": "0.0.20"})
    server = mmbench_server_tables(tmp_path / "server")
    meta = {"Method": ["my-ckpt", "https://example.org/my-ckpt"], "Parameters": "8.3B", "Language Model": "Qwen2.5-7B",
            "Vision Model": "QwenViT", "OpenSource": "Yes"}
    with pytest.raises(SubmissionError, match="the evaluated weights are /data/ckpts/my-ckpt, not a hub id"):
        submit(work, "my-ckpt", tmp_path / "sub.json", meta, mmbench=server)  # a local folder: which hub id?
    _, entry, pr = submit(work, "my-ckpt", tmp_path / "sub.json", meta, model_path="org/my-ckpt", mmbench=server)
    code = entry.read_text()
    assert 'model_path="org/my-ckpt"' in code  # the evaluated weights' id, not R1-ShareVL-7B's

    class Qwen2VLChat:  # VLMEvalKit's class, reduced to what the subclass calls
        def __init__(self, **kwargs):
            pass

        def generate_inner(self, message, dataset=None):
            return message

    namespace = {"Qwen2VLChat": Qwen2VLChat, "partial": partial}
    classes, config = code.split(CONFIG_MARKER)
    exec(compile(classes, "classes", "exec"), namespace)
    namespace["vlm"] = SimpleNamespace(Qwen2VLChatR1=namespace["Qwen2VLChatR1"])  # config.py's `import vlmeval.vlm as vlm`
    exec(compile(config.replace('"my-ckpt": partial(', "entry = partial(", 1).rstrip().rstrip(","), "entry", "exec"),
         namespace)
    model = namespace["entry"]()
    out = model.generate_inner([{"type": "text", "value": "Look:"}, {"type": "image", "value": "a.png"},
                                {"type": "text", "value": "How many?"}])
    assert [m["value"] for m in out if m["type"] == "text"] == ["Look: " + R1_PROMPT, "How many? " + R1_PROMPT]
    text = pr.read_text()
    assert "python -m bench.run --model /data/ckpts/my-ckpt --data MMStar MMMU_DEV_VAL" in text
    assert "| MMStar | 66.7 |" in text and "ms-vlmeval 0.0.20" in text


LAYOUT = Path(__file__).parent / "data" / "leaderboard_file_layout.json"
"""A data file in the layout the OpenVLM app reads, its first model real-looking: META with Org and
Time, MMBench v1.1 in both languages, every benchmark with its full set of sub-scores under the
app's names, MME and OCRBench on their own scales."""


def test_old_records_fail_in_the_app_and_a_users_record_loads_wherever_it_stands(tmp_path):
    """Read by the app's rules (reproduce.openvlm_app): a record with only Overall per benchmark and
    no MMBench v1.1 (what submit wrote two rounds ago) fails on the MMBench assertion, and with
    MMBench on the sub-score columns the tabs take from the first model. The record submit writes
    from a user's bench.score output loads after a real-looking first model and first."""
    from reproduce import openvlm_app
    from reproduce.submit import submit
    from tests.helpers.scores import mmbench_server_tables, scored_work_dir

    layout = json.loads(LAYOUT.read_text())
    old = {"META": {**next(iter(layout["results"].values()))["META"], "Method": ["Old", "https://x"]},
           "MMStar": {"Overall": 66.0}, "MMMU_VAL": {"Overall": 55.0}, "MathVista": {"Overall": 74.0},
           "AI2D": {"Overall": 83.0}}
    with pytest.raises(openvlm_app.AppError, match="Old: no MMBench_TEST_EN_V11 or MMBench_TEST_CN_V11"):
        openvlm_app.load({**layout, "results": {**layout["results"], "Old": old}})
    old |= {k: {"Overall": 80.0, "AR": 70.0} for k in ("MMBench_TEST_EN_V11", "MMBench_TEST_CN_V11")}
    with pytest.raises(openvlm_app.AppError, match="Old: MMBench_TEST_EN_V11 has no 'CP'.*first model"):
        openvlm_app.load({**layout, "results": {**layout["results"], "Old": old}})

    work = scored_work_dir(tmp_path / "work", "R1-ShareVL-7B")
    openvlm_path, *_ = submit(work, "R1-ShareVL-7B", tmp_path / "sub.json",
                              mmbench=mmbench_server_tables(tmp_path / "server"))
    ours = json.loads(openvlm_path.read_text())
    assert len(ours["time"]) == 14
    for results in ({**layout["results"], **ours["results"]}, {**ours["results"], **layout["results"]}):
        app = openvlm_app.load({**layout, "results": results})  # how the entry joins the file, at its end or first
        row = app["main"]["R1-ShareVL-7B"]
        assert row["Method"] == ("R1-ShareVL-7B", "https://huggingface.co/HuanjinYao/R1-ShareVL-7B")
        assert row["Param (B)"] == 8.3 and row["MMBench_V11"] == 81.2 and row["MMStar"] == 66.7
        assert row["Avg Score"] is None  # the main table's other benchmarks (MME, OCRBench, ...) are not ours
        assert app["tabs"]["MMStar"]["R1-ShareVL-7B"]["image emotion"] == 0.0
        assert app["tabs"]["MathVista"]["R1-ShareVL-7B"]["STA"] == 100.0
        assert app["tabs"]["MMBench_TEST_CN_V11"]["R1-ShareVL-7B"]["LR"] == 75.0
        assert app["time"] == "2025.06.12 18:30:00"
        # the tabs are those of the file's first model's benchmarks (the app's LLaVA-v1.5-7B stands in)
        assert ("MME" in app["tabs"]) == (next(iter(results)) != "R1-ShareVL-7B")


@pytest.mark.parametrize(("change", "error"), [
    (lambda m: m["META"].update(Parameters="8.3 billion"), "META Parameters '8.3 billion' is not a number"),
    (lambda m: m["META"].update(Method="R1"), "META Method must be a \\[name, link\\] pair"),
    (lambda m: m["META"].pop("Vision Model"), "no 'Vision Model'"),
    (lambda m: m["MMStar"].pop("Overall"), "MMStar has no 'Overall'"),
    (lambda m: m["MMStar"].update(Overall="66"), "MMStar Overall = '66' is not a number"),
])
def test_the_app_reader_names_what_the_app_would_fail_on(change, error):
    from reproduce import openvlm_app

    layout = json.loads(LAYOUT.read_text())
    model = layout["results"]["Example-API-VLM"]
    change(model)
    with pytest.raises(openvlm_app.AppError, match=f"Example-API-VLM: {error}"):
        openvlm_app.load(layout)


def test_the_app_prints_12_and_14_digit_times():
    from reproduce.openvlm_app import AppError, format_timestamp

    assert format_timestamp("250120093000") == "25.01.20 09:30:00"
    assert format_timestamp("20250120093000") == "2025.01.20 09:30:00"
    for bad in ("2501200930", "2025012009300x", 20250120093000):
        with pytest.raises(AppError, match="12 or 14 digits"):
            format_timestamp(bad)


def test_categories_are_grouped_as_vlmevalkits_result_tables_group_them(tmp_path):
    """Multiple choice: per `l2-category` and per `category` value (MMBench's abilities under
    VLMEvalKit's short names); MathVista: per task and per skill of its `skills` list literal, which
    is parsed, never run; rows outside the scored split are not counted."""
    rows = [
        {"question": "q", "A": "x", "B": "y", "answer": "A", "category": "math", "l2-category": "reasoning",
         "prediction": boxed("A")},
        {"question": "q", "A": "x", "B": "y", "answer": "B", "category": "math", "l2-category": "reasoning",
         "prediction": boxed("A")},
        {"question": "q", "A": "x", "B": "y", "answer": "A", "category": "coarse_perception", "l2-category": "perception",
         "prediction": boxed("A")},
    ]
    assert score_file(predictions(tmp_path, "MMStar", rows), dataset="MMStar")["categories"] == {
        "reasoning": 50.0, "math": 50.0, "perception": 100.0, "CP": 100.0}
    payload = tmp_path / "ran"
    vista = [
        {"question": "q", "answer": "3", "task": "math word problem", "skills": "['arithmetic reasoning', 'algebraic reasoning']",
         "prediction": boxed("3")},
        {"question": "q", "answer": "4", "task": "math word problem", "skills": "['arithmetic reasoning']",
         "prediction": boxed("5")},
        {"question": "q", "answer": "5", "task": "figure question answering",
         "skills": f"__import__('pathlib').Path({str(payload)!r}).touch()", "prediction": boxed("5")},
    ]
    categories = score_file(predictions(tmp_path, "MathVista_MINI", vista), dataset="MathVista_MINI")["categories"]
    assert categories["math word problem"] == 50.0 and categories["arithmetic reasoning"] == 50.0
    assert categories["algebraic reasoning"] == 100.0 and categories["figure question answering"] == 100.0
    assert not payload.exists()
    free = [{"question": "How many?", "answer": "7", "prediction": boxed("7")}]
    assert score_file(predictions(tmp_path, "MathVision", free), dataset="MathVision")["categories"] == {}


def test_the_main_tables_average_score_and_rank_by_hand():
    """Two complete models: A scores 60 everywhere, B 50 except MMStar 70; both OCRBench 700 (/10
    in the average). A: score (7 x 60 + 70) / 8 = 61.25, ranks 1 but MMStar 2, 9 / 8 = 1.125;
    B: (6 x 50 + 70 + 70) / 8 = 55.0, ranks 2 but MMStar and OCRBench (a tie) 1, 14 / 8 = 1.75.
    The row as the table opens shows B's facts and "-" where the app shows nothing."""
    from reproduce import openvlm_app
    from reproduce.openvlm_keys import reference_model

    a, b = reference_model(60.0), reference_model(50.0)
    a["META"]["Method"], b["META"]["Method"] = ["A", "https://a"], ["B", "https://b"]
    b["MMStar"]["Overall"] = 70.0
    data = {"time": "20250101000000", "results": {"A": a, "B": b}}
    table = openvlm_app.load(data)["default"]
    assert (table["A"]["Avg Score"], table["A"]["Avg Rank"]) == (round(61.25, 1), round(1.125, 2))
    assert (table["B"]["Avg Score"], table["B"]["Avg Rank"]) == (55.0, 1.75)
    assert openvlm_app.row_markdown(openvlm_app.load(data), "B").splitlines()[2] == \
        "| [B](https://b) | 7.0 | LLM-7B | ViT | 55.0 | 1.75 | 50.0 | 70.0 | 50.0 | 50.0 | 700.0 | 50.0 | 50.0 | 50.0 |"
    del b["MMVet"]
    row = openvlm_app.load(data)["default"]["B"]
    assert row["Avg Score"] is None and row["Avg Rank"] is None and row["MMVet"] is None


def test_the_submission_pages_main_table_row_is_what_submit_renders(tmp_path):
    from reproduce.submit import submit
    from tests.helpers.scores import mmbench_server_tables, scored_work_dir

    work = scored_work_dir(tmp_path / "work", "R1-ShareVL-7B")
    *_, pr = submit(work, "R1-ShareVL-7B", tmp_path / "sub", mmbench=mmbench_server_tables(tmp_path / "server"))
    lines = pr.read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("| Method |"))
    page = (Path(__file__).resolve().parents[1] / "docs" / "submission.md").read_text()
    assert "\n" + "\n".join(lines[start : start + 3]) + "\n" in page
