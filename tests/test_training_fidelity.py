"""The paths the paper's configs use, against the released code's semantics: update sizes in the
released unit, several updates and epochs per rollout, micro-batch loss normalisation, the KL term,
verbatim prompts with the released instruction sentences, and `short_variants=skip`."""

from __future__ import annotations

import json
import os
import random
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch

from bench.data import training_rows
from bench.processing import load_processor
from bench.prompts import R1_PROMPT
from train import algos
from train.config import DataConfig, load_config
from train.data import build_messages, load_rows
from train.export import consolidated_state_dict
from train.plan import BatchPlan, count_parameters, published_config
from train.tiny import build_tiny
from train.trainer import micro_batch_loss

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "reproduce" / "configs"
TINY_CONFIG = CONFIGS / "tiny_cpu.yaml"
REWARD = "tests.helpers.rewards:length_parity"


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    root = tmp_path_factory.mktemp("fidelity")
    model = build_tiny(root / "model", seed=0)
    rows = training_rows(12, seed=0, tasks=["SynthCount"])
    for r in rows[:3]:  # three rows with no rewrite: one distinct text only
        r["new_questions"] = []
    data = root / "train.parquet"
    pd.DataFrame(rows).to_parquet(data)
    return root, model, data


def run_train(assets, out: Path, *overrides: str) -> list[dict]:
    _, model, data = assets
    cmd = [sys.executable, "-m", "train", "--config", str(TINY_CONFIG), f"worker.actor.model.model_path={model}",
           f"data.train_files={data}", f"trainer.output_dir={out}", "trainer.progress_bar=false",
           f"worker.reward.function={REWARD}", "trainer.save_freq=0", "worker.actor.zero_stage=0", *overrides]
    env = {k: v for k, v in os.environ.items() if k != "MASTER_PORT"}  # each trainer picks a free port
    result = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, env=env, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


# ---------------------------------------------------------------- update size (released unit)
@pytest.mark.parametrize(("name", "rows_per_step", "questions", "updates"),
                         [("qwen2_5_vl_7b_sharegrpo.yaml", "12,288", 64, 8), ("qwen2_5_vl_7b_grpo.yaml", "6,144", 128, 4)])
def test_dry_run_of_the_7b_configs_prints_the_released_counts(name, rows_per_step, questions, updates):
    """The release multiplies global_batch_size 128 by n*Q: 1,536 rows per update, on 8 GPUs with
    micro-batches of 8 rows that is 24 micro-batches per update on each."""
    result = subprocess.run([sys.executable, "-m", "train", "--config", str(CONFIGS / name), "--dry-run",
                             "--world-size", "8"], capture_output=True, text=True, cwd=REPO, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    out = result.stdout
    assert re.search(rf"rows per step\s+{rows_per_step} ", out), out
    assert re.search(rf"rows per update\s+1,536 \({questions} questions\)", out), out
    assert re.search(rf"updates per rollout\s+{updates}\n", out), out
    assert re.search(r"micro-batches per update\s+24 per device \(192 rows per device, 8 per micro-batch\)", out), out
    assert re.search(r"loss normalization\s+per_micro_batch", out), out
    assert re.search(r"parameters\s+8\.29 B", out), out
    assert re.search(r"model-state memory \(ZeRO-3\)\s+[\d.]+ GiB per GPU", out), out


def test_dry_run_plan_and_memory_of_the_7b_config_in_process():
    """The same counts as the command above, from the functions themselves, and DeepSpeed's ZeRO
    memory estimate against its formula (mixed-precision Adam, deepspeed/runtime/zero: ZeRO-2 keeps
    the 16-bit parameters, 2 bytes each, on every GPU and shards the other 18 bytes; ZeRO-3 shards
    all 18 and holds the largest layer's 16-bit parameters and gradients, 4 bytes each, once)."""
    from train.plan import count_parameters, dry_run, model_config, model_state_memory, report

    cfg = load_config(CONFIGS / "qwen2_5_vl_7b_sharegrpo.yaml")
    plan = dry_run(cfg, 8)
    assert {k: plan[k] for k in ("rows_per_step", "rows_per_question", "rows_per_update", "questions_per_update",
                                 "updates_per_rollout", "rows_per_update_per_device", "micro_batches_per_update",
                                 "micro_batch_size")} == {
        "rows_per_step": 12_288, "rows_per_question": 24, "rows_per_update": 1_536, "questions_per_update": 64,
        "updates_per_rollout": 8, "rows_per_update_per_device": 192, "micro_batches_per_update": 24,
        "micro_batch_size": 8}
    assert plan["parameters"] == plan["trainable_parameters"] and 8.28e9 < plan["parameters"] < 8.30e9
    counts = count_parameters(model_config(cfg.worker.actor.model.model_path))
    frozen = count_parameters(model_config(cfg.worker.actor.model.model_path), freeze_vision_tower=True)
    assert frozen.total == counts.total and 0.6e9 < counts.total - frozen.trainable < 0.7e9  # the ViT's ~676M
    p, world = counts.trainable, 8
    assert model_state_memory(counts, 2, world, False)["gpu_bytes"] == 2 * p + int(18 * p / world)
    assert model_state_memory(counts, 3, world, False)["gpu_bytes"] == 4 * counts.largest_layer + int(18 * p / world)
    assert model_state_memory(counts, 1, world, False) is None and model_state_memory(counts, 0, world, False) is None
    text = report(plan)
    assert "rows per update                 1,536 (64 questions)" in text
    assert f"{plan['model_state_memory']['gpu_bytes'] / 2**30:.1f} GiB per GPU" in text


def test_memory_plan_of_the_released_7b_config_on_8_x_80_gb_worked_by_hand(capsys):
    """Every phase of the per-GPU plan, worked from the 7B shape (hidden 3,584, 28 layers of 28 query
    and 4 KV heads, MLP 18,944, vocabulary 152,064, 8.29B parameters) and the released settings
    (ZeRO-3, bf16, gradient checkpointing, vLLM at 0.5 of the card, micro-batches of 16 and 8 rows of
    2,048 + 2,048 tokens)."""
    from train.plan import dry_run, kv_bytes_per_token, layer_activation_bytes, published_config
    from train.trainer import main

    cfg = load_config(CONFIGS / "qwen2_5_vl_7b_sharegrpo.yaml")
    plan = dry_run(cfg, 8, gpu_memory_gib=80)
    m, p = plan["memory_plan"], plan["parameters"]
    gib, tokens = 2**30, 2048 + 2048
    largest = 152_064 * 3_584  # the embedding, ZeRO-3's largest gathered unit
    assert m["model_states"] == 4 * largest + int(18 * p / 8)  # DeepSpeed's ZeRO-3 formula
    assert m["rollout"] == int(0.5 * 80 * gib)
    assert m["refresh"] == largest * 2  # one bf16 parameter at a time
    layer = (8 * 3_584 + 3 * 512 + 4 * 18_944) * 2 + 8 * 3_584  # KV hidden 3,584 * 4 / 28 = 512
    assert layer_activation_bytes(published_config("Qwen/Qwen2.5-VL-7B-Instruct").text_config) == layer == 240_640
    assert m["log_prob"] == 16 * tokens * (layer + 3_584 * 2)
    assert m["update"] == 8 * tokens * (28 * 3_584 * 2 + layer) + 512 * 2**20  # checkpointed inputs + one layer + logits
    assert m["peak"] == m["model_states"] + m["rollout"] + m["refresh"]  # the rollout is the largest phase
    assert round(m["peak"] / gib, 1) == 60.4
    assert kv_bytes_per_token(published_config("Qwen/Qwen2.5-VL-7B-Instruct").text_config) == 57_344
    # the hf engine instead: 64 prompts x n = 6 rows of 4,096 tokens of KV, plus the model gathered
    hf = dry_run(load_config(CONFIGS / "qwen2_5_vl_7b_sharegrpo.yaml", ["worker.rollout.name=hf"]), 8)
    assert hf["memory_plan"]["rollout"] == 64 * 6 * tokens * 57_344 + 2 * p
    # the command: the plan printed, and refused on a card it does not fit
    assert main(["--config", str(CONFIGS / "qwen2_5_vl_7b_sharegrpo.yaml"), "--dry-run", "--world-size", "8",
                 "--gpu-memory", "80"]) == 0
    assert "peak                          60.4 of 80 (76%)" in capsys.readouterr().out
    assert main(["--config", str(CONFIGS / "qwen2_5_vl_7b_sharegrpo.yaml"), "--dry-run", "--world-size", "8",
                 "--gpu-memory", "40"]) == 2
    err = capsys.readouterr().err
    assert "exceeds --gpu-memory 40 GiB" in err and "rollout" in err and len(err.strip().splitlines()) == 1


def test_batch_plan_matches_the_released_formula():
    for q, n, gbs, rollout, world in [(1, 12, 128, 512, 8), (2, 6, 128, 512, 8), (3, 2, 24, 8, 1), (2, 4, 16, 8, 2)]:
        cfg = load_config(None, [f"algorithm.adv_estimator={'grpo' if q == 1 else 'share_grpo'}",
                                 f"algorithm.num_variants={q}", f"worker.rollout.n={n}",
                                 f"worker.actor.global_batch_size={gbs}", f"data.rollout_batch_size={rollout}"])
        plan = BatchPlan.from_config(cfg, world)
        released_rows_per_update = gbs * n * q  # fsdp_workers: global_batch_size *= rollout.n * question_num
        assert plan.rows_per_update == released_rows_per_update
        assert plan.rows_per_step == rollout * q * q * n
        assert plan.updates_per_rollout == plan.rows_per_step // released_rows_per_update
        assert plan.questions_per_update * plan.rows_per_question == plan.rows_per_update


def test_published_shapes_give_the_published_parameter_counts():
    assert count_parameters(published_config("Qwen/Qwen2.5-VL-7B-Instruct")).total == 8_292_166_656
    assert count_parameters(published_config("Qwen/Qwen2.5-VL-3B-Instruct")).total == 3_754_622_976


def test_several_updates_and_epochs_at_lr_0_keep_the_ratio_at_1(assets, tmp_path):
    """Two updates per rollout and two PPO epochs, with a policy that cannot move: the recomputed
    old log-probs must be those of the same rows, so nothing is clipped and the approximate KL is
    0. Also: short_variants=skip drops the rows with one distinct text at load."""
    rows = run_train(assets, tmp_path / "lr0", "trainer.max_steps=2", "worker.actor.global_batch_size=2",
                     "worker.actor.ppo_epochs=2", "worker.actor.optim.lr=0", "algorithm.short_variants=skip",
                     "worker.actor.micro_batch_size_per_device_for_update=3")
    for r in rows:
        assert r["train/updates"] == 2 * 2  # 2 questions, 1 per update, 2 epochs
        assert r["actor/clip_frac"] == 0 and r["actor/dual_clip_frac"] == 0
        assert abs(r["actor/approx_kl"]) < 1e-6
    summary = json.loads((tmp_path / "lr0" / "summary.json").read_text())
    assert summary["skipped_rows"] == {"short_variants": 3} and summary["rows"] == 9


# ---------------------------------------------------------------- loss normalisation
def final_weights(out: Path) -> dict[str, torch.Tensor]:
    return consolidated_state_dict(out / "checkpoints" / "step_1")


def test_whole_update_loss_does_not_depend_on_the_micro_batch_size_and_the_released_one_does(assets, tmp_path):
    """16 rows in one update: micro-batches of 3 and of 16 give the same gradient and weights under
    whole_update; per_micro_batch (each micro-batch's mean / number of micro-batches) does not."""
    common = ("trainer.max_steps=1", "worker.actor.global_batch_size=4", "worker.actor.max_grad_norm=1000")
    small = run_train(assets, tmp_path / "w3", *common, "worker.actor.micro_batch_size_per_device_for_update=3")
    whole = run_train(assets, tmp_path / "w16", *common, "worker.actor.micro_batch_size_per_device_for_update=16")
    released = run_train(assets, tmp_path / "p3", *common, "worker.actor.micro_batch_size_per_device_for_update=3",
                         "worker.actor.loss_normalization=per_micro_batch")
    assert small[0]["train/rows"] == 16
    norm = whole[0]["actor/grad_norm"]
    assert abs(small[0]["actor/grad_norm"] - norm) < 1e-5 * norm
    assert abs(released[0]["actor/grad_norm"] - norm) > 1e-3 * norm
    w_small, w_whole, w_released = (final_weights(tmp_path / d) for d in ("w3", "w16", "p3"))
    total = sum(w.numel() for w in w_whole.values())

    def differing(other: dict[str, torch.Tensor]) -> int:  # entries that moved differently by > 1% of lr
        return sum(int((other[k] - w_whole[k]).abs().gt(1e-6).sum()) for k in w_whole)

    # Adam's first step is lr * g / (|g| + eps): an entry whose gradient is near zero can move by a
    # different amount for a rounding-level difference in g, so a handful may differ; a different
    # gradient moves thousands.
    assert differing(w_small) <= total // 10_000
    assert differing(w_released) >= total // 100


def test_loss_normalizations_by_hand():
    shares = torch.tensor([2.0, 6.0])
    assert algos.LOSS_NORMALIZATIONS["whole_update"](shares).tolist() == [0.25, 0.75]
    assert algos.LOSS_NORMALIZATIONS["per_micro_batch"](shares).tolist() == [0.5, 0.5]
    # whole_update: the weighted micro-batch token-means are the token-mean of the whole update
    x, mask = torch.randn(5, 4), torch.tensor([[1, 1, 0, 0], [1, 0, 0, 0], [1, 1, 1, 1], [1, 1, 1, 0], [1, 1, 0, 0]])
    chunks = [[0, 1], [2, 3, 4]]
    w = algos.LOSS_NORMALIZATIONS["whole_update"](torch.tensor([float(mask[c].sum()) for c in chunks]))
    total = sum(wj * algos.aggregate(x[c], mask[c]) for wj, c in zip(w, chunks, strict=True))
    assert torch.allclose(total, algos.aggregate(x, mask))
    with pytest.raises(ValueError, match="valid names: whole_update, per_micro_batch"):
        load_config(None, ["worker.actor.loss_normalization=mean"])


# ---------------------------------------------------------------- the KL term
def test_kl_term_is_the_estimator_of_policy_against_reference():
    cfg = load_config(None, ["algorithm.disable_kl=false", "algorithm.kl_penalty=low_var_kl", "algorithm.kl_coef=0.5"])
    lp = torch.tensor([[-0.2, -1.5, -3.0], [-0.7, -0.1, -2.0]], requires_grad=True)
    ref = torch.tensor([[-1.2, -0.5, -0.4], [-0.3, -2.6, -2.0]])
    mask = torch.tensor([[1, 1, 1], [1, 1, 0]])
    adv = torch.tensor([1.0, -1.0])
    loss, m = micro_batch_loss(lp, lp.detach(), ref, adv, mask, cfg)
    # k3 of the policy against the reference, written out: exp(ref - lp) - (ref - lp) - 1
    d = [(-1.2 + 0.2), (-0.5 + 1.5), (-0.4 + 3.0), (-0.3 + 0.7), (-2.6 + 0.1)]
    expected = sum(float(torch.tensor(x).exp()) - x - 1 for x in d) / 5
    assert abs(float(m["kl_loss"]) - expected) < 1e-5
    swapped = sum(float(torch.tensor(-x).exp()) + x - 1 for x in d) / 5
    assert abs(swapped - expected) > 0.1  # the values are asymmetric enough to tell the order
    assert torch.allclose(loss, m["pg_loss"] + 0.5 * m["kl_loss"])
    assert "kl_loss" not in micro_batch_loss(lp, lp.detach(), None, adv, mask, cfg)[1]


# ---------------------------------------------------------------- prompts
def test_messages_keep_the_text_verbatim_with_images_at_their_placeholders():
    question = "Look at <image> and <image>.\nWhich is larger?\nA. the first\nB. the second"
    instruction = "The image is vertically flipped. Please flip it back.\n"
    [turn] = build_messages(question, 2, instruction)
    assert turn["content"] == [
        {"type": "text", "text": instruction + "Look at "},
        {"type": "image"},
        {"type": "text", "text": instruction + " and "},
        {"type": "image"},
        {"type": "text", "text": instruction + ".\nWhich is larger?\nA. the first\nB. the second " + R1_PROMPT},
    ]
    # the usual layout: "<image>" first, then the question; no empty text segment before the image
    [turn] = build_messages("<image>How many?\nA. 1\nB. 2", 1)
    assert turn["content"] == [{"type": "image"}, {"type": "text", "text": "How many?\nA. 1\nB. 2 " + R1_PROMPT}]
    # a rewrite written without placeholders gets its images first
    assert build_messages("How many?", 1)[0]["content"][0] == {"type": "image"}
    with pytest.raises(ValueError, match="1 <image> placeholder"):
        build_messages("<image>How many?", 2)


def test_loaded_rows_keep_newlines_and_placeholders(assets, tmp_path):
    processor = load_processor(str(assets[1]))
    png = training_rows(1, seed=0, tasks=["SynthCount"])[0]["images"]
    rows = [{"problem": "<image>How many dots?\nA. 1\nB. 2", "answer": "A", "images": png,
             "new_questions": ["Count the dots.\nA. 1\nB. 2", "<image><image>wrong"]},
            {"problem": "<image>How many dots?\nA. 1\nB. 2", "answer": "A", "images": png,
             "new_questions": ["<image>Count the dots.\nA. 1\nB. 2"]}]
    path = tmp_path / "t.parquet"
    pd.DataFrame(rows).to_parquet(path)
    logged = []
    kept, skipped = load_rows(DataConfig(train_files=str(path), min_pixels=3136, max_pixels=3136), processor,
                              log=lambda *a, **k: logged.append(a[0]))
    assert skipped == {"bad_rewrites": 1} and "rewrite 1 has 2 <image> placeholder(s)" in logged[0]
    assert kept[0].question == "<image>How many dots?\nA. 1\nB. 2"
    assert kept[0].rewrites == ["<image>Count the dots.\nA. 1\nB. 2"]


def test_original_question_appears_in_q_over_1_plus_k_of_draws():
    from train.expand import draw_text_variants

    for q, k in [(2, 3), (2, 1), (3, 5)]:
        rewrites = [f"rewrite {j}" for j in range(k)]
        draws = [draw_text_variants("original", rewrites, q, random.Random(s)) for s in range(4000)]
        rate = sum("original" in d for d in draws) / len(draws)
        assert abs(rate - q / (1 + k)) < 0.03, (q, k, rate)
        assert all(len(set(d)) == q for d in draws)  # without replacement
