"""What a config does with its rows, without training: `python -m train --config FILE --dry-run`.

    python -m train --config reproduce/configs/qwen2_5_vl_7b_sharegrpo.yaml --dry-run --world-size 8

prints the rows of a step, the rows and questions of an optimizer update, the updates per rollout,
the micro-batches per update on each device, and DeepSpeed's own estimate of the per-GPU memory
that the model states (parameters, gradients, Adam moments) take at the configured ZeRO stage.
Nothing is downloaded: the parameter count comes from the checkpoint's config.json, or, for the
published Qwen2.5-VL checkpoints, from their architecture sizes below, with the model built on
PyTorch's meta device (no memory, no weights).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from .config import Config, ConfigError


@dataclass(frozen=True)
class BatchPlan:
    """The nominal row counts of one training step (before dynamic sampling drops any question)."""

    questions_per_step: int  # B = data.rollout_batch_size
    rows_per_question: int  # Q*Q*n shared rows (n for GRPO)
    rows_per_update: int  # global_batch_size * n * Q: the released unit
    questions_per_update: int  # global_batch_size / Q, kept whole
    world: int
    micro_batch_size: int  # rows per forward/backward on one device

    @classmethod
    def from_config(cls, cfg: Config, world: int = 1) -> BatchPlan:
        q, n = cfg.algorithm.num_variants, cfg.worker.rollout.n
        actor = cfg.worker.actor
        plan = cls(cfg.data.rollout_batch_size, q * q * n, actor.global_batch_size * n * q, actor.global_batch_size // q,
                   world, actor.micro_batch_size_per_device_for_update)
        # data.rollout_batch_size is a multiple of the questions per update (checked at load), so
        # the questions of a step split over the processes whenever those of an update do.
        if plan.questions_per_update % world:
            raise ConfigError(f"the questions per update (worker.actor.global_batch_size/num_variants="
                             f"{plan.questions_per_update}) must be a multiple of the {world} processes")
        return plan

    @property
    def rows_per_step(self) -> int:
        return self.questions_per_step * self.rows_per_question

    @property
    def updates_per_rollout(self) -> int:
        return self.questions_per_step // self.questions_per_update

    @property
    def questions_per_update_per_device(self) -> int:
        return self.questions_per_update // self.world

    @property
    def rows_per_update_per_device(self) -> int:
        return self.rows_per_update // self.world

    @property
    def micro_batches_per_update(self) -> int:
        """Forward/backward passes per update on each device."""
        return math.ceil(self.rows_per_update_per_device / self.micro_batch_size)


# Architecture sizes of the published Qwen2.5-VL-Instruct checkpoints (their config.json files), so
# that a dry run can count parameters where the checkpoint is not on disk.
PUBLISHED_SHAPES: dict[str, dict] = {
    "Qwen/Qwen2.5-VL-3B-Instruct": {
        "text": {"vocab_size": 151936, "hidden_size": 2048, "intermediate_size": 11008, "num_hidden_layers": 36,
                 "num_attention_heads": 16, "num_key_value_heads": 2, "tie_word_embeddings": True},
        "vision": {"depth": 32, "hidden_size": 1280, "intermediate_size": 3420, "num_heads": 16,
                   "out_hidden_size": 2048},
    },
    "Qwen/Qwen2.5-VL-7B-Instruct": {
        "text": {"vocab_size": 152064, "hidden_size": 3584, "intermediate_size": 18944, "num_hidden_layers": 28,
                 "num_attention_heads": 28, "num_key_value_heads": 4, "tie_word_embeddings": False},
        "vision": {"depth": 32, "hidden_size": 1280, "intermediate_size": 3420, "num_heads": 16,
                   "out_hidden_size": 3584},
    },
}


def published_config(hub_id: str):
    """A transformers Qwen2_5_VLConfig with the sizes of a published checkpoint."""
    from transformers import Qwen2_5_VLConfig

    shape = PUBLISHED_SHAPES[hub_id]
    text = {**shape["text"], "rope_parameters": {"rope_type": "default", "rope_theta": 1000000.0,
                                                 "mrope_section": [16, 24, 24]}}
    vision = {**shape["vision"], "patch_size": 14, "spatial_merge_size": 2, "temporal_patch_size": 2,
              "window_size": 112, "fullatt_block_indexes": [7, 15, 23, 31]}
    return Qwen2_5_VLConfig(text_config=text, vision_config=vision,
                            tie_word_embeddings=shape["text"]["tie_word_embeddings"])


def model_config(model_path: str):
    """The model's config: from a local checkpoint folder, the published sizes, or the hub cache."""
    from transformers import AutoConfig

    if (Path(model_path) / "config.json").is_file():
        return AutoConfig.from_pretrained(model_path)
    if model_path in PUBLISHED_SHAPES:
        return published_config(model_path)
    try:
        return AutoConfig.from_pretrained(model_path)
    except OSError as exc:
        raise ConfigError(f"worker.actor.model.model_path={model_path!r}: no config.json there and not a known "
                         f"published checkpoint ({', '.join(PUBLISHED_SHAPES)}): {exc}") from None


@dataclass(frozen=True)
class ParamCounts:
    total: int
    trainable: int
    largest_layer: int  # the most parameters held directly by one module (ZeRO-3's gathered unit)
    vision: int = 0  # the vision tower's (run once per prompt, not per decoded token)


def count_parameters(config, freeze_vision_tower: bool = False) -> ParamCounts:
    """Parameter counts of a Qwen2.5-VL built on the meta device (no memory is allocated)."""
    import torch
    from transformers import Qwen2_5_VLForConditionalGeneration

    with torch.device("meta"):
        model = Qwen2_5_VLForConditionalGeneration(config)
    total = sum(p.numel() for p in model.parameters())
    vision = sum(p.numel() for p in model.model.visual.parameters())
    largest = max(sum(p.numel() for p in m.parameters(recurse=False)) for m in model.modules())
    return ParamCounts(total, total - vision if freeze_vision_tower else total, largest, vision)


def model_state_memory(counts: ParamCounts, zero_stage: int, world: int, offload: bool) -> dict[str, int] | None:
    """DeepSpeed's estimate, in bytes per GPU and per node's CPU, of the memory the model states take
    (mixed-precision Adam); None at ZeRO 0/1, for which DeepSpeed has no estimator. Activations,
    the rollout engine's KV cache and a reference model come on top."""
    if zero_stage == 3:
        from deepspeed.runtime.zero.stage3 import estimate_zero3_model_states_mem_needs

        cpu, gpu, _ = estimate_zero3_model_states_mem_needs(
            counts.trainable, counts.largest_layer, num_gpus_per_node=world, num_nodes=1, cpu_offload=offload,
            cpu_offload_params=offload)
    elif zero_stage == 2:
        from deepspeed.runtime.zero.stage_1_and_2 import estimate_zero2_model_states_mem_needs

        cpu, gpu = estimate_zero2_model_states_mem_needs(counts.trainable, num_gpus_per_node=world, num_nodes=1,
                                                         cpu_offload=offload)
    else:
        return None
    return {"gpu_bytes": int(gpu), "cpu_bytes": int(cpu)}


def dry_run(cfg: Config, world: int = 1) -> dict:
    """The plan and the memory estimate of `cfg` on `world` GPUs, as a dict (printed by `report`)."""
    plan = BatchPlan.from_config(cfg, world)
    actor = cfg.worker.actor
    counts = count_parameters(model_config(actor.model.model_path), actor.model.freeze_vision_tower)
    return {
        "world_size": world,
        "rows_per_step": plan.rows_per_step,
        "rows_per_question": plan.rows_per_question,
        "rows_per_update": plan.rows_per_update,
        "questions_per_update": plan.questions_per_update,
        "updates_per_rollout": plan.updates_per_rollout,
        "rows_per_update_per_device": plan.rows_per_update_per_device,
        "micro_batches_per_update": plan.micro_batches_per_update,
        "micro_batch_size": plan.micro_batch_size,
        "loss_normalization": actor.loss_normalization,
        "parameters": counts.total,
        "trainable_parameters": counts.trainable,
        "zero_stage": actor.zero_stage,
        "model_state_memory": model_state_memory(counts, actor.zero_stage, world, actor.offload),
    }


def report(plan: dict) -> str:
    gib = 2**30
    lines = [
        f"world size                      {plan['world_size']}",
        f"rows per step                   {plan['rows_per_step']:,} ({plan['rows_per_question']} per question)",
        f"rows per update                 {plan['rows_per_update']:,} ({plan['questions_per_update']} questions)",
        f"updates per rollout             {plan['updates_per_rollout']}",
        f"micro-batches per update        {plan['micro_batches_per_update']} per device "
        f"({plan['rows_per_update_per_device']:,} rows per device, {plan['micro_batch_size']} per micro-batch)",
        f"loss normalization              {plan['loss_normalization']}",
        f"parameters                      {plan['parameters'] / 1e9:.2f} B ({plan['trainable_parameters'] / 1e9:.2f} B trained)",
    ]
    memory = plan["model_state_memory"]
    if memory is None:
        lines.append(f"model-state memory              no DeepSpeed estimator for ZeRO stage {plan['zero_stage']}")
    else:
        lines.append(f"model-state memory (ZeRO-{plan['zero_stage']})    {memory['gpu_bytes'] / gib:.1f} GiB per GPU, "
                     f"{memory['cpu_bytes'] / gib:.1f} GiB CPU (DeepSpeed's estimate; activations and the rollout "
                     "engine come on top)")
    return "\n".join(lines)
