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

    from bench.prompts import R1_PROMPT
    from reproduce.submit import submit

    six = {"MathVista_MINI": 74.0, "MMStar": 66.0, "MMMU_DEV_VAL": 55.0, "MathVerse_MINI_Vision_Only": 50.0,
           "MathVision": 28.0, "AI2D_TEST": 83.0}
    work = scores_dir(tmp_path, "my-ckpt", six)
    (work / "my-ckpt" / "bench_run.json").write_text(json.dumps({
        "model": "/data/ckpts/my-ckpt", "datasets": list(six), "prompt_placement": "every_text",
        "argv": ["vlmeval", "--data", *six, "--model", "my-ckpt"], "versions": {"ms-vlmeval": "0.0.20"}}))
    meta = {"Method": ["my-ckpt", "https://example.org/my-ckpt"], "Parameters": "8.3B", "Language Model": "Qwen2.5-7B",
            "Vision Model": "QwenViT", "OpenSource": "Yes"}
    _, _, entry, pr = submit(work, "my-ckpt", tmp_path / "sub.json", meta)
    code = entry.read_text()
    assert 'model_path="/data/ckpts/my-ckpt"' in code  # the evaluated weights, not R1-ShareVL-7B's

    class Qwen2VLChat:  # VLMEvalKit's class, reduced to what the subclass calls
        def __init__(self, **kwargs):
            pass

        def generate_inner(self, message, dataset=None):
            return message

    namespace = {"Qwen2VLChat": Qwen2VLChat, "partial": partial}
    exec(compile(code.replace('"my-ckpt": partial(', "entry = partial(", 1).rstrip().rstrip(","), "entry", "exec"),
         namespace)
    model = namespace["entry"]()
    out = model.generate_inner([{"type": "text", "value": "Look:"}, {"type": "image", "value": "a.png"},
                                {"type": "text", "value": "How many?"}])
    assert [m["value"] for m in out if m["type"] == "text"] == ["Look: " + R1_PROMPT, "How many? " + R1_PROMPT]
    text = pr.read_text()
    assert "python -m bench.run --model /data/ckpts/my-ckpt --data MathVista_MINI" in text
    assert "| MMStar | 66.0 |" in text and "ms-vlmeval 0.0.20" in text


LAYOUT = Path(__file__).parent / "data" / "leaderboard_file_layout.json"


def read_like_the_leaderboard_app(data: dict, benchmarks: list[str]) -> dict[str, dict]:
    """What the OpenVLM leaderboard app takes from its data file, per model: the name and link of
    `Method`, `Parameters` as a float ("" = unknown), the model type from OpenSource / Verified,
    and `Overall` of each shown benchmark (a KeyError when one is missing)."""
    rows = {}
    for model, item in data["results"].items():
        meta = item["META"]
        name, url = meta["Method"]
        kind = "OpenSource" if meta["OpenSource"] == "Yes" else ("API" if meta["Verified"] == "Yes" else "Proprietary")
        rows[model] = {"name": name, "url": url, "kind": kind,
                       "params": float(meta["Parameters"].replace("B", "")) if meta["Parameters"] else None,
                       "language": meta["Language Model"], "vision": meta["Vision Model"],
                       **{b: item[b]["Overall"] for b in benchmarks}}
    assert len(data["time"]) == 12 and data["time"].isdigit()  # printed as YY.MM.DD HH:MM:SS
    return rows


def test_submission_files_have_the_leaderboard_data_file_layout(tmp_path):
    from reproduce.submit import LEADERBOARDS, submit

    scores = {"MathVista_MINI": 74.0, "MMStar": 66.0, "MMMU_DEV_VAL": 55.0, "MathVerse_MINI_Vision_Only": 50.0,
              "MathVision": 28.0, "AI2D_TEST": 83.0}
    work = scores_dir(tmp_path, "R1-ShareVL-7B", scores)
    openvlm_path, reasoning_path, *_ = submit(work, "R1-ShareVL-7B", tmp_path / "sub.json")
    ours, layout = json.loads(openvlm_path.read_text()), json.loads(LAYOUT.read_text())

    assert set(ours) == set(layout)
    entry, reference = ours["results"]["R1-ShareVL-7B"], next(iter(layout["results"].values()))
    assert {k: type(v) for k, v in entry["META"].items()} == {k: type(v) for k, v in reference["META"].items()}
    assert set(entry) - {"META"} <= set(reference)  # only benchmark keys the leaderboard itself uses
    merged = {**layout, "results": {**layout["results"], **ours["results"]}}  # how the entry joins the file
    shown = ["MMStar", "MMMU_VAL", "MathVista", "AI2D"]
    rows = read_like_the_leaderboard_app(merged, shown)
    assert rows["R1-ShareVL-7B"] == {"name": "R1-ShareVL-7B", "url": "https://huggingface.co/HuanjinYao/R1-ShareVL-7B",
                                     "kind": "OpenSource", "params": 8.3, "language": "Qwen2.5-7B",
                                     "vision": "QwenViT", "MMStar": 66.0, "MMMU_VAL": 55.0, "MathVista": 74.0,
                                     "AI2D": 83.0}
    assert rows["Example-API-VLM"]["params"] is None and rows["Example-API-VLM"]["kind"] == "API"

    reasoning = json.loads(reasoning_path.read_text())
    assert set(reasoning) == set(layout)
    assert read_like_the_leaderboard_app(reasoning, list(LEADERBOARDS["reasoning"].values()))["R1-ShareVL-7B"][
        "MathVerse_MINI_Vision_Only"] == 50.0
