"""Batched generation inside VLMEvalKit's one-item loop (`bench.batching.LookAhead`): the batches
it forms, and, through `bench.run` on the tiny model, greedy predictions equal to one at a time."""

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from bench.batching import LookAhead, message_key
from bench.data import write
from train.tiny import build_tiny

REPO = Path(__file__).resolve().parents[1]


def _messages(n):
    return [[{"type": "text", "value": f"question {i}"}] for i in range(n)]


def test_lookahead_batches_the_upcoming_items_in_the_loops_order():
    messages = _messages(7)
    batches = []

    def generate_many(batch, dataset):
        batches.append([m[0]["value"] for m in batch])
        return [f"answer to {m[0]['value']}" for m in batch]

    ahead = LookAhead(3)
    ahead.orders["D"] = ([message_key(m) for m in messages], messages)
    answers = [ahead.answer(None, m, "D", generate_many) for m in messages]
    assert answers == [f"answer to question {i}" for i in range(7)]
    assert batches == [["question 0", "question 1", "question 2"], ["question 3", "question 4", "question 5"],
                       ["question 6"]]
    assert ahead.calls == 3
    # a resumed loop starts where it left off; a message the order does not know is answered alone
    batches.clear()
    ahead = LookAhead(3)
    ahead.orders["D"] = ([message_key(m) for m in messages], messages)
    assert ahead.answer(None, messages[4], "D", generate_many) == "answer to question 4"
    assert ahead.answer(None, [{"type": "text", "value": "other"}], "D", generate_many) == "answer to other"
    assert ahead.answer(None, messages[5], "D", generate_many) == "answer to question 5"
    assert batches == [["question 4", "question 5", "question 6"], ["other"]]
    # batch size 1 is VLMEvalKit's own one at a time, with no order built
    one = LookAhead(1)
    assert one.answer(None, messages[0], "D", generate_many) == "answer to question 0" and not one.orders
    with pytest.raises(ValueError, match="must be >= 1"):
        LookAhead(0)


def test_a_repeated_message_gets_each_of_its_answers_once():
    messages = _messages(2) + _messages(1)  # question 0 twice
    ahead = LookAhead(2)
    ahead.orders["D"] = ([message_key(m) for m in messages], messages)
    calls = []

    def generate_many(batch, dataset):
        calls.append(len(batch))
        return [f"{m[0]['value']} #{len(calls)}.{i}" for i, m in enumerate(batch)]

    assert [ahead.answer(None, m, "D", generate_many) for m in messages] == [
        "question 0 #1.0", "question 1 #1.1", "question 0 #2.0"]


def _predictions(work: Path, model: str, dataset: str) -> list[str]:
    frame = pd.read_excel(work / model / f"{model}_{dataset}.xlsx", keep_default_na=False, dtype=str)
    return list(frame["prediction"])


@pytest.mark.slow
def test_batched_greedy_predictions_equal_one_at_a_time_through_vlmevalkit(tmp_path):
    """bench.run --batch-size 3 on the tiny model: VLMEvalKit's own loop and files, the same greedy
    predictions as --batch-size 1, from 2 batched generations per dataset of 5 items instead of 5."""
    write(tmp_path / "lmu", n=5, seed=0, side=56)
    model = build_tiny(tmp_path / "tiny", seed=0)
    runs = {}
    for batch in (1, 3):
        work = tmp_path / f"work{batch}"
        cmd = [sys.executable, "-m", "bench.run", "--model", str(model), "--data", "SynthCount", "SynthCompare",
               "--work-dir", str(work), "--lmudata", str(tmp_path / "lmu"), "--max-new-tokens", "12",
               "--batch-size", str(batch)]
        proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=900)
        assert proc.returncode == 0, proc.stderr[-3000:]
        runs[batch] = work
    for dataset in ("SynthCount", "SynthCompare"):
        one, batched = _predictions(runs[1], "tiny", dataset), _predictions(runs[3], "tiny", dataset)
        assert len(one) == 5 and len(set(one)) > 1 and batched == one, dataset
    record = json.loads((runs[3] / "tiny" / "bench_run.json").read_text())
    assert record["generation"]["items"] == 10 and record["generation"]["generate_calls"] == 4
    assert record["settings"]["batch_size"] == 3
    # what bench.run recorded is what bench.score then trusts
    from bench.provenance import file_sha256, index_digest
    from bench.run import file_md5
    from bench.score import score_work_dir

    assert record["status"] == "finished" and set(record["predictions"]) == {"SynthCount", "SynthCompare"}
    assert record["predictions"]["SynthCount"] == {
        "file": "tiny_SynthCount.xlsx", "sha256": file_sha256(runs[3] / "tiny" / "tiny_SynthCount.xlsx"), "rows": 5,
        "indices_sha256": index_digest(str(i) for i in range(5)), "tsv_md5": file_md5(tmp_path / "lmu" / "SynthCount.tsv")}
    assert score_work_dir(runs[3])["verified"].tolist() == [True, True]
    assert json.loads((runs[1] / "tiny" / "bench_run.json").read_text())["settings"]["batch_size"] == 1


def test_paper_scale_evaluation_passes_the_batch_size(monkeypatch, tmp_path):
    """EVAL_BATCH_SIZE=8 make reproduce-table1 SCALE=paper ...: bench.run gets --batch-size 8."""
    from reproduce.paper_scale import evaluation_steps

    monkeypatch.delenv("EVAL_BATCH_SIZE", raising=False)
    assert "--batch-size" not in evaluation_steps(["m"], ["MMStar"], tmp_path / "w", tmp_path / "o")[0]
    monkeypatch.setenv("EVAL_BATCH_SIZE", "8")
    run = evaluation_steps(["m"], ["MMStar"], tmp_path / "w", tmp_path / "o")[0]
    assert run[run.index("--batch-size") + 1] == "8" and "bench.run" in run


def test_the_gpu_model_class_batches_with_vlmevalkits_own_inputs_and_decoding(tmp_path, monkeypatch):
    """R1Qwen2VLChat (VLMEvalKit's Qwen2VLChat, GPU-only to construct) on the tiny model on the CPU:
    the batched path's responses equal Qwen2VLChat's own one-at-a-time `generate_inner_transformers`
    with the R1 prompt (greedy: its default top_k=1), images and text-only items mixed."""
    import torch
    from PIL import Image
    from transformers import BatchFeature, Qwen2_5_VLForConditionalGeneration

    from bench.adapter import _classes, add_r1_prompt
    from bench.processing import load_processor

    _, R1Qwen2VLChat, _ = _classes()
    from vlmeval.vlm.qwen2_vl import Qwen2VLChat

    path = build_tiny(tmp_path / "tiny", seed=0)
    model = R1Qwen2VLChat.__new__(R1Qwen2VLChat)  # its __init__ asks for a GPU and flash-attention
    model.__dict__.update(
        min_pixels=None, max_pixels=56 * 56, total_pixels=None, fps=2, nframe=128, system_prompt=None, verbose=False,
        post_process=False, model_path=str(path), processor=load_processor(path), use_vllm=False,
        model=Qwen2_5_VLForConditionalGeneration.from_pretrained(path).eval(), prompt_placement="every_text",
        generate_kwargs={"max_new_tokens": 10, "top_p": 0.001, "top_k": 1, "temperature": 0.01,
                         "repetition_penalty": 1.0, "do_sample": True})
    with torch.no_grad():  # sharp attention: each response depends on its whole prompt
        for layer in model.model.model.language_model.layers:
            layer.self_attn.q_proj.weight *= 6
            layer.self_attn.k_proj.weight *= 6
    monkeypatch.setattr(BatchFeature, "to", lambda self, *a, **k: self)  # its `.to('cuda')`, on the CPU
    images = []
    for i, colour in enumerate([(200, 30, 30), (30, 200, 30)]):
        images.append(tmp_path / f"{i}.png")
        Image.new("RGB", (56, 56), colour).save(images[-1])
    messages = [[{"type": "image", "value": str(images[0])}, {"type": "text", "value": "How many shapes?"}],
                [{"type": "text", "value": "What is 2+2? Think first."}],
                [{"type": "image", "value": str(images[1])}, {"type": "text", "value": "Which colour?"}]]
    with torch.no_grad():
        one = [Qwen2VLChat.generate_inner_transformers(model, add_r1_prompt(m), None) for m in messages]
        batched = model._generate_many(messages, None)
    assert batched == one and len(set(one)) > 1
