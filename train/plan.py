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
from dataclasses import asdict, dataclass
from pathlib import Path

from .config import Config, ConfigError
from .rollout import kv_bytes_per_token


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


BF16 = 2
"""Bytes of a bf16 value (weights, activations and the KV cache under worker.actor.bf16)."""


def layer_activation_bytes(text, value_bytes: int = BF16) -> int:
    """Bytes one decoder layer keeps per token for the backward pass without checkpointing: its
    input, the two norms' inputs and outputs (and their float32 copies), the query, key and value
    (before and after the rotary embedding), the attention output, and the MLP's gate, up,
    activation and product. At the 3B shape, 135.5 KiB (the CPU measurement of
    reproduce.perf.memory, results/perf/memory.json, is about 128 KiB)."""
    h, i = text.hidden_size, text.intermediate_size
    kv = h * text.num_key_value_heads // text.num_attention_heads
    return (8 * h + 3 * kv + 4 * i) * value_bytes + 2 * 4 * h


@dataclass(frozen=True)
class MemoryPlan:
    """Bytes per GPU at each phase of a step, beside the model states held throughout."""

    model_states: int
    """Parameters, gradients and Adam states at the ZeRO stage (DeepSpeed's estimate at ZeRO-2/3;
    at ZeRO-0/1 with bf16: 2 + 2 + 4 + 8 bytes a parameter, float32 master weights and moments)."""
    rollout: int | None
    """The engine while it generates: vLLM's share of the card (gpu_memory_utilization; it sleeps
    otherwise; None where the card's memory is not given), or the hf engine's reserved KV cache for
    a chunk of rows, plus the whole model gathered under ZeRO-3."""
    refresh: int
    """vLLM's weight refresh: one parameter gathered at a time, the largest."""
    log_prob: int
    """The old-log-prob pass (no gradient): one layer's activations and the final hidden states of
    a micro-batch (for_experience rows of the longest length)."""
    update: int
    """The update's micro-batch: activations (each layer's input alone under gradient
    checkpointing, plus one layer recomputed), the head's logit slices, and at ZeRO-0/1 the float32
    gradients DeepSpeed makes at the step."""

    @property
    def peak(self) -> int:
        """The largest phase on top of the model states (vLLM's share counted as 0 where unknown)."""
        return self.model_states + max((self.rollout or 0) + self.refresh, self.log_prob, self.update)


def memory_plan(cfg: Config, world: int, config, counts: ParamCounts, gpu_bytes: int | None = None) -> MemoryPlan:
    """The per-GPU memory of `cfg` on `world` GPUs of `gpu_bytes` each (needed for vLLM's share)."""
    from .logprobs import LOGIT_CHUNK_BYTES

    actor, ro, d = cfg.worker.actor, cfg.worker.rollout, cfg.data
    text = config.text_config
    length = d.max_prompt_length + d.max_response_length
    value = BF16 if actor.bf16 else 4
    estimate = model_state_memory(counts, actor.zero_stage, world, actor.offload)
    if estimate is not None:
        states = estimate["gpu_bytes"]
    else:  # ZeRO-0/1: every GPU holds all of it
        states = counts.total * value + counts.trainable * (value + (4 + 8 if actor.bf16 else 8))
    if ro.name == "vllm":
        rollout = None if gpu_bytes is None else int(ro.gpu_memory_utilization * gpu_bytes)
        refresh = counts.largest_layer * BF16 if actor.zero_stage == 3 else 0
    else:
        rows = min(ro.micro_batch_size, d.rollout_batch_size * cfg.algorithm.num_variants // world) * ro.n
        gathered = counts.total * value if actor.zero_stage == 3 else 0
        rollout, refresh = rows * length * kv_bytes_per_token(text) * value // BF16 + gathered, 0
    layer = layer_activation_bytes(text, value)
    log_prob = actor.micro_batch_size_per_device_for_experience * length * (layer + text.hidden_size * value)
    tokens = actor.micro_batch_size_per_device_for_update * length
    if actor.model.enable_gradient_checkpointing:
        activations = tokens * (text.num_hidden_layers * text.hidden_size * value + layer)
    else:
        activations = tokens * text.num_hidden_layers * layer
    step_grads = counts.trainable * 4 if actor.zero_stage <= 1 and actor.bf16 else 0
    return MemoryPlan(states, rollout, refresh, log_prob, activations + LOGIT_CHUNK_BYTES + step_grads)


def dry_run(cfg: Config, world: int = 1, gpu_memory_gib: float | None = None) -> dict:
    """The plan and the memory estimate of `cfg` on `world` GPUs (of `gpu_memory_gib` each, where
    given), as a dict (printed by `report`)."""
    plan = BatchPlan.from_config(cfg, world)
    actor = cfg.worker.actor
    config = model_config(actor.model.model_path)
    counts = count_parameters(config, actor.model.freeze_vision_tower)
    gpu_bytes = None if gpu_memory_gib is None else int(gpu_memory_gib * 2**30)
    memory = memory_plan(cfg, world, config, counts, gpu_bytes)
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
        "memory_plan": {**asdict(memory), "peak": memory.peak},
        "gpu_memory_bytes": gpu_bytes,
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
    m, gpu = plan["memory_plan"], plan["gpu_memory_bytes"]
    lines += [
        "per-GPU memory plan (GiB)",
        f"  model states                  {m['model_states'] / gib:.1f}",
        "  rollout engine                " + (f"{m['rollout'] / gib:.1f}" if m["rollout"] is not None else
                                                 "vLLM's share of the card, not counted (give --gpu-memory GIB)"),
        f"  weight refresh                {m['refresh'] / gib:.1f}",
        f"  old-log-prob pass             {m['log_prob'] / gib:.1f}",
        f"  update micro-batch            {m['update'] / gib:.1f}",
        f"  peak                          {m['peak'] / gib:.1f}"
        + (f" of {gpu / gib:.0f} ({m['peak'] / gpu:.0%})" if gpu else " (--gpu-memory GIB compares it with a card)"),
    ]
    return "\n".join(lines)


def check_fits(plan: dict) -> None:
    """Refuse a plan whose peak exceeds the stated GPU memory, naming the largest phase."""
    m, gpu = plan["memory_plan"], plan["gpu_memory_bytes"]
    if gpu is not None and m["peak"] > gpu:
        phase = max(("rollout", "log_prob", "update"), key=lambda k: m[k] + (m["refresh"] if k == "rollout" else 0))
        raise ConfigError(f"the plan's peak, {m['peak'] / 2**30:.1f} GiB per GPU, exceeds --gpu-memory "
                          f"{gpu / 2**30:g} GiB (model states {m['model_states'] / 2**30:.1f} GiB + {phase} "
                          f"{m[phase] / 2**30:.1f} GiB): lower its micro-batch or lengths, raise zero_stage, or "
                          "turn on gradient checkpointing")
