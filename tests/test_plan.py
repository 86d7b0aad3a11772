"""`train/plan.py` against hand-worked figures: the published architectures, the vision tower's
parameters counted by hand, DeepSpeed's memory formulas with and without offload, the process
divisibility check and the dry-run report, line by line."""

from __future__ import annotations

import pytest

from train.config import ConfigError, load_config
from train.plan import (
    BatchPlan,
    ParamCounts,
    count_parameters,
    model_config,
    model_state_memory,
    published_config,
    report,
)

SEVEN_B, THREE_B = "Qwen/Qwen2.5-VL-7B-Instruct", "Qwen/Qwen2.5-VL-3B-Instruct"


def vision_tower_parameters(out_hidden: int) -> int:
    """Qwen2.5-VL's ViT by hand (modeling_qwen2_5_vl): a bias-free 3-D patch embedding of 3×2×14×14
    inputs to 1280; 32 blocks of two RMSNorms, qkv and proj (with bias) and a gated MLP to 3420
    (with bias); the merger's RMSNorm and its MLP from 4×1280 to 4×1280 to the LM's width."""
    width, mlp, merged = 1280, 3420, 4 * 1280
    patch = 3 * 2 * 14 * 14 * width
    block = 2 * width + (width * 3 * width + 3 * width) + (width * width + width) + 2 * (width * mlp + mlp) + (
        mlp * width + width)
    merger = width + (merged * merged + merged) + (merged * out_hidden + out_hidden)
    return patch + 32 * block + merger


@pytest.mark.parametrize("hub_id, total, embedding_rows, width", [
    (SEVEN_B, 8_292_166_656, 152_064, 3584), (THREE_B, 3_754_622_976, 151_936, 2048)])
def test_published_counts_the_frozen_tower_and_the_largest_layer(hub_id, total, embedding_rows, width):
    config = published_config(hub_id)
    counts, frozen = count_parameters(config), count_parameters(config, freeze_vision_tower=True)
    assert counts == ParamCounts(total, total, embedding_rows * width, vision_tower_parameters(width))  # the largest module is the embedding
    assert frozen == ParamCounts(total, total - vision_tower_parameters(width), embedding_rows * width,
                                 vision_tower_parameters(width))


@pytest.mark.parametrize("hub_id, width, tied", [(SEVEN_B, 3584, False), (THREE_B, 2048, True)])
def test_published_config_has_the_published_architecture(hub_id, width, tied):
    """The fields of the checkpoints' config.json (huggingface.co/Qwen/Qwen2.5-VL-{3B,7B}-Instruct)
    that change the computation but not the parameter count."""
    config = published_config(hub_id)
    vision, text = config.vision_config, config.text_config
    assert (vision.patch_size, vision.spatial_merge_size, vision.temporal_patch_size) == (14, 2, 2)
    assert (vision.window_size, vision.fullatt_block_indexes, vision.out_hidden_size) == (112, [7, 15, 23, 31], width)
    assert (vision.depth, vision.hidden_size, vision.intermediate_size, vision.num_heads) == (32, 1280, 3420, 16)
    assert text.rope_parameters == {"rope_type": "default", "rope_theta": 1_000_000.0, "mrope_section": [16, 24, 24]}
    assert config.tie_word_embeddings is tied and text.hidden_size == width


def test_model_config_reads_a_folder_then_the_published_shapes_and_names_what_it_knows(tmp_path):
    from transformers import Qwen2_5_VLConfig

    Qwen2_5_VLConfig(text_config={"hidden_size": 64, "num_hidden_layers": 1}).save_pretrained(tmp_path)
    assert model_config(str(tmp_path)).text_config.hidden_size == 64
    assert model_config(SEVEN_B).text_config.hidden_size == 3584
    with pytest.raises(ConfigError) as err:
        model_config(str(tmp_path / "missing"))
    assert str(err.value).startswith(f"worker.actor.model.model_path={str(tmp_path / 'missing')!r}: no config.json "
                                     f"there and not a known published checkpoint ({SEVEN_B.replace('7B', '3B')}, "
                                     f"{SEVEN_B}): ")


# DeepSpeed's estimators (runtime/zero/stage_1_and_2.py and stage3.py), 1.5 buffer factor, one node,
# worked by hand for 800 trained parameters of 1,000, a largest layer of 100, on 2 GPUs.
@pytest.mark.parametrize("stage, offload, gpu, cpu", [
    (2, False, 2 * 800 + 18 * 800 // 2, 800 * 4 * 2 * 1.5),  # 16-bit weights everywhere, the rest sharded
    (2, True, 2 * 800, 800 * 16 * 1.5),  # only the 16-bit weights stay on the GPU
    (3, False, 4 * 100 + 18 * 800 // 2, 100 * 4 * 2 * 1.5),  # everything sharded, one layer gathered
    (3, True, 4 * 100, 800 * 18 * 1.5),  # parameters and optimizer offloaded
])
def test_model_state_memory_hand_worked(stage, offload, gpu, cpu):
    counts = ParamCounts(total=1000, trainable=800, largest_layer=100)
    assert model_state_memory(counts, stage, 2, offload) == {"gpu_bytes": gpu, "cpu_bytes": int(cpu)}


@pytest.mark.parametrize("stage", [0, 1])
def test_no_estimate_below_zero_2(stage):
    assert model_state_memory(ParamCounts(1000, 800, 100), stage, 2, False) is None


def test_the_questions_of_an_update_must_split_over_the_processes():
    cfg = load_config(None, ["algorithm.adv_estimator=grpo", "algorithm.num_variants=1", "worker.rollout.n=4",
                             "worker.actor.global_batch_size=2", "data.rollout_batch_size=4"])
    assert BatchPlan.from_config(cfg, 2).questions_per_update_per_device == 1
    with pytest.raises(ConfigError) as err:
        BatchPlan.from_config(cfg, 4)  # 4 questions per step would split, 2 per update would not
    assert str(err.value) == ("the questions per update (worker.actor.global_batch_size/num_variants=2) must be a "
                              "multiple of the 4 processes")


def plan_dict(memory: dict | None, stage: int) -> dict:
    return {"world_size": 2, "rows_per_step": 12_288, "rows_per_question": 24, "rows_per_update": 1_536,
            "questions_per_update": 64, "updates_per_rollout": 8, "rows_per_update_per_device": 768,
            "micro_batches_per_update": 96, "micro_batch_size": 8, "loss_normalization": "token",
            "parameters": 8_292_166_656, "trainable_parameters": 7_615_616_512, "zero_stage": stage,
            "model_state_memory": memory,
            "memory_plan": {"model_states": 3 * 2**30, "rollout": None, "refresh": 2**29, "log_prob": 2**30,
                            "update": 2 * 2**30, "peak": 5 * 2**30},
            "gpu_memory_bytes": None}


PLAN = ("\nper-GPU memory plan (GiB)\n"
        "  model states                  3.0\n"
        "  rollout engine                vLLM's share of the card, not counted (give --gpu-memory GIB)\n"
        "  weight refresh                0.5\n"
        "  old-log-prob pass             1.0\n"
        "  update micro-batch            2.0\n"
        "  peak                          5.0 (--gpu-memory GIB compares it with a card)")


def test_report_line_by_line():
    head = ("world size                      2\n"
            "rows per step                   12,288 (24 per question)\n"
            "rows per update                 1,536 (64 questions)\n"
            "updates per rollout             8\n"
            "micro-batches per update        96 per device (768 rows per device, 8 per micro-batch)\n"
            "loss normalization              token\n"
            "parameters                      8.29 B (7.62 B trained)\n")
    memory = {"gpu_bytes": 3 * 2**30 + 2**29, "cpu_bytes": 2**31}
    assert report(plan_dict(memory, 2)) == head + (
        "model-state memory (ZeRO-2)    3.5 GiB per GPU, 2.0 GiB CPU (DeepSpeed's estimate; activations and the "
        "rollout engine come on top)") + PLAN
    assert report(plan_dict(None, 1)) == head + "model-state memory              no DeepSpeed estimator for ZeRO stage 1" + PLAN
    with_card = {**plan_dict(None, 1), "gpu_memory_bytes": 80 * 2**30}
    with_card["memory_plan"] = {**with_card["memory_plan"], "rollout": 40 * 2**30, "peak": 43.5 * 2**30}
    assert report(with_card).endswith("  rollout engine                40.0\n  weight refresh                0.5\n"
                                      "  old-log-prob pass             1.0\n  update micro-batch            2.0\n"
                                      "  peak                          43.5 of 80 (54%)")
