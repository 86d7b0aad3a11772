"""The Share-GRPO training loop: rollout -> reward -> advantage -> share -> update -> log -> checkpoint.

    python -m train --config reproduce/configs/tiny_cpu.yaml trainer.max_steps=10
    deepspeed --module train --config ...      torchrun -m train --config ...

Each step, on each rank: sample B/world questions; expand each into Q variants (text rewrites and
image transforms); generate n responses per variant prompt; grade every unique response once;
compute hierarchical advantages over the (B, Q, n) rewards; build the B*Q*Q*n shared training rows
(response of variant b under the prompt of variant a); optionally drop uniform question groups;
compute old log-probs; take rollout_batch_size / global_batch_size PPO updates through DeepSpeed;
log; checkpoint. GRPO and Dr. GRPO are the Q = 1 case with their own advantage estimator.

Where this differs from the released code (EasyR1-based), and why:
- The global std defaults to the Q*n responses; the released code takes it over the Q*Q*n rows,
  which counts each response Q times (`algorithm.global_std_over=rows` reproduces it).
- Image-transform instructions say what was done; the released ones swap the two rotations.
- Old log-probs are not recomputed when there is one update per rollout and one PPO epoch: they
  equal the detached current ones, so the ratio is exactly 1 (the released code recomputes them).
- Rollouts come from a lean sampling loop over the training model (`hf`, the tokens of transformers
  `generate` for a seed) or a colocated vLLM engine refreshed with the current weights every step
  (`vllm`, GPU, bf16; its sampling is seeded per rank but a resumed run does not replay it
  bit for bit). Log-probs always come from the training model's forward pass.
- Each distinct prompt of a micro-batch runs once and its rows' responses run on its KV cache
  (`worker.actor.share_prompt_prefix`); the released code runs every row's whole prompt.
- Every random choice is derived from (trainer.seed, step, rank), so a run replays exactly and a
  resumed run continues exactly as an uninterrupted one.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import random
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist
import yaml

from bench.fileio import write_text_atomic
from bench.verify import grade_many

from . import algos
from .checkpoint import find_resume, load_checkpoint, save_checkpoint
from .config import Config, config_to_dict
from .data import Row, build_messages, load_rows
from .expand import draw_image_variant, draw_text_variants
from .processing import load_processor
from .rollout import SamplingParams, collate, encode_prompts, make_rollout, model_device, response_log_probs

AGGREGATION_UNIT = {"token-mean": "tokens", "seq-mean-token-mean": "rows", "seq-mean-token-sum-norm": "rows"}


# ---------------------------------------------------------------- set-up
def init_distributed() -> tuple[int, int]:
    """(rank, world size); single-process runs get a one-rank gloo group on 127.0.0.1."""
    os.environ.setdefault("RANK", "0")
    os.environ.setdefault("WORLD_SIZE", "1")
    os.environ.setdefault("LOCAL_RANK", "0")
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    os.environ.setdefault("MASTER_PORT", str(29500 + os.getpid() % 1000))
    import deepspeed

    if not torch.cuda.is_available():
        # DeepSpeed compiles a shared-memory all-reduce op for CPU inference on first use (~1 min);
        # training over gloo does not need it.
        from deepspeed.accelerator import get_accelerator

        builder = get_accelerator().create_op_builder("ShareMemCommBuilder")
        if builder is not None:
            deepspeed.ops.__compatible_ops__[builder.NAME] = False
    if not dist.is_initialized():
        deepspeed.init_distributed(dist_backend="nccl" if torch.cuda.is_available() else "gloo")
    return dist.get_rank(), dist.get_world_size()


def deepspeed_config(cfg: Config, world: int) -> dict:
    actor = cfg.worker.actor
    zero: dict = {"stage": actor.zero_stage}
    if actor.offload:  # the config allows it at stage 2 or 3 only
        zero["offload_optimizer"] = {"device": "cpu"}
        if actor.zero_stage == 3:
            zero["offload_param"] = {"device": "cpu"}
    config = {
        # Accumulation is driven by the loop (set_gradient_accumulation_boundary): the number of
        # rows per update varies with dynamic sampling, so DeepSpeed's own count is kept at 1.
        "train_micro_batch_size_per_gpu": actor.micro_batch_size_per_device_for_update,
        "gradient_accumulation_steps": 1,
        "train_batch_size": actor.micro_batch_size_per_device_for_update * world,
        "gradient_clipping": actor.max_grad_norm,
        "zero_optimization": zero,
        "bf16": {"enabled": actor.bf16},
        "steps_per_print": 10**9,
        "wall_clock_breakdown": False,
    }
    if actor.offload and not torch.cuda.is_available():
        # on a CPU-only machine the "offloaded" state stays where it is: torch's AdamW is fine
        config["zero_force_ds_cpu_optimizer"] = False
    return config


def build_engine(model, cfg: Config, world: int):
    import deepspeed

    actor = cfg.worker.actor
    if actor.model.freeze_vision_tower:
        for p in model.model.visual.parameters():
            p.requires_grad_(False)
    if actor.model.enable_gradient_checkpointing:
        model.gradient_checkpointing_enable()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = actor.optim
    if actor.offload and torch.cuda.is_available():
        # ZeRO-Offload steps the optimizer on the CPU: DeepSpeed's vectorised Adam (JIT-built once)
        from deepspeed.ops.adam import DeepSpeedCPUAdam

        optimizer = DeepSpeedCPUAdam(params, lr=opt.lr, weight_decay=opt.weight_decay, betas=tuple(opt.betas),
                                     adamw_mode=True)
    else:
        optimizer = torch.optim.AdamW(params, lr=opt.lr, weight_decay=opt.weight_decay, betas=tuple(opt.betas))
    warmup = max(0, opt.lr_warmup_steps)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min(1.0, (s + 1) / warmup) if warmup else 1.0)
    engine, optimizer, _, scheduler = deepspeed.initialize(
        model=model, optimizer=optimizer, lr_scheduler=scheduler, config=deepspeed_config(cfg, world)
    )
    return engine, scheduler


# ---------------------------------------------------------------- data order
@dataclass
class DataOrder:
    """Seeded epoch permutations; `position` counts questions drawn so far by this rank."""

    n_rows: int
    seed: int
    shuffle: bool
    rank: int
    world: int
    position: int = 0

    def take(self, k: int) -> list[int]:
        out = []
        for _ in range(k):
            # ranks take interleaved entries of one shared sequence of epoch permutations
            epoch, offset = divmod(self.position * self.world + self.rank, self.n_rows)
            order = list(range(self.n_rows))
            if self.shuffle:
                random.Random(f"{self.seed}/{epoch}").shuffle(order)
            out.append(order[offset])
            self.position += 1
        return out


# ---------------------------------------------------------------- one step's pieces
def expand_questions(rows: list[Row], cfg: Config, rng: random.Random) -> tuple[list[list], list[list], Counter]:
    """B rows -> B*Q variant prompts ([i, a] order): chat messages and their images."""
    a, d = cfg.algorithm, cfg.data
    messages, images, counts = [], [], Counter()
    for row in rows:
        rewrites = row.rewrites if a.text_variants else []
        variants = draw_text_variants(row.question, rewrites, a.num_variants, rng, a.keep_original, "repeat")
        counts["short_variants"] += len({row.question, *rewrites}) < a.num_variants
        base = row.load_images(d.min_pixels, d.max_pixels)
        for question in variants:
            variant = draw_image_variant(base, rng, a.image_transform_prob, a.image_transforms)
            counts["image_transformed"] += variant.transform is not None
            messages.append(build_messages(question, len(base), variant.instruction))
            images.append(variant.images)
    return messages, images, counts


def compute_advantages(rewards: torch.Tensor, cfg: Config) -> torch.Tensor:
    """rewards (B, Q, n) -> advantages (B, Q, Q, n) for share_grpo, (B, 1, 1, n) otherwise."""
    a = cfg.algorithm
    if a.adv_estimator == "share_grpo":
        return algos.share_grpo_advantages(rewards, global_std_over=a.global_std_over, terms=a.advantage_terms)
    B, _, n = rewards.shape
    fn = algos.lookup(algos.ADVANTAGE_ESTIMATORS, a.adv_estimator, "advantage estimator")
    return fn(rewards.reshape(B, n)).reshape(B, 1, 1, n)


def all_reduce_mean(metrics: dict[str, float], world: int) -> dict[str, float]:
    if world == 1:
        return metrics
    keys = sorted(metrics)
    t = torch.tensor([float(metrics[k]) for k in keys], dtype=torch.float64)
    dist.all_reduce(t)
    return {k: float(v) / world for k, v in zip(keys, t, strict=True)}


class MetricLogger:
    """JSONL always (rank 0), plus console, TensorBoard and W&B when configured."""

    def __init__(self, cfg: Config, rank: int, start_step: int) -> None:
        self.rank, self.cfg = rank, cfg
        self.path = Path(cfg.trainer.output_dir) / "metrics.jsonl"
        self.tb = self.wandb = None
        if rank != 0:
            return
        if self.path.exists():  # a resumed run drops the lines of steps it will redo
            kept = [line for line in self.path.read_text().splitlines() if line and json.loads(line)["step"] <= start_step]
            write_text_atomic(self.path, "".join(line + "\n" for line in kept))
        if "tensorboard" in cfg.trainer.logger:
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(str(Path(cfg.trainer.output_dir) / "tensorboard"))
        if "wandb" in cfg.trainer.logger:
            import wandb

            self.wandb = wandb.init(project=cfg.trainer.project_name, name=cfg.trainer.experiment_name,
                                    config=config_to_dict(cfg))

    def log(self, step: int, metrics: dict[str, float]) -> None:
        if self.rank != 0:
            return
        with self.path.open("a", encoding="utf-8") as f:
            f.write(json.dumps({"step": step, **metrics}) + "\n")
        if self.tb:
            for k, v in metrics.items():
                self.tb.add_scalar(k, v, step)
        if self.wandb:
            self.wandb.log(metrics, step=step)
        if "console" in self.cfg.trainer.logger and not self.cfg.trainer.progress_bar:
            keys = ("reward/mean", "reward/accuracy", "adv/zero_frac", "actor/pg_loss", "perf/step_time")
            print(f"step {step}: " + " ".join(f"{k}={metrics[k]:.4g}" for k in keys if k in metrics), flush=True)


# ---------------------------------------------------------------- the loop
def train(cfg: Config) -> dict:
    """Run training; returns the last step's metrics."""
    from transformers import Qwen2_5_VLForConditionalGeneration

    rank, world = init_distributed()
    a, d, actor, ro, tr = cfg.algorithm, cfg.data, cfg.worker.actor, cfg.worker.rollout, cfg.trainer
    if d.rollout_batch_size % world or actor.global_batch_size % world:
        raise ValueError(f"data.rollout_batch_size and worker.actor.global_batch_size must be multiples of the "
                         f"{world} processes")
    out_dir = Path(tr.output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(tr.seed)
    processor = load_processor(actor.model.model_path)
    model = Qwen2_5_VLForConditionalGeneration.from_pretrained(actor.model.model_path, dtype=torch.float32)
    log = print if rank == 0 else (lambda *args, **kwargs: None)
    rows, skipped = load_rows(d, processor, log=log)
    ref_model = None
    if not a.disable_kl:
        ref_model = Qwen2_5_VLForConditionalGeneration.from_pretrained(actor.model.model_path).eval()
        ref_model.requires_grad_(False)
    engine, scheduler = build_engine(model, cfg, world)
    if ref_model is not None:
        ref_model.to(model_device(engine))
    rollout = make_rollout(ro.name, processor, cfg)
    reward_fn = None
    if cfg.worker.reward.function:
        import importlib

        module, name = cfg.worker.reward.function.split(":")
        reward_fn = getattr(importlib.import_module(module), name)
    pad_id = processor.tokenizer.pad_token_id
    order = DataOrder(len(rows), tr.seed, d.shuffle, rank, world)
    if rank == 0:
        write_text_atomic(out_dir / "config.yaml", yaml.safe_dump(config_to_dict(cfg), sort_keys=False))

    start = 0
    resume_from = find_resume(out_dir, tr.resume)
    if resume_from is not None:
        state = load_checkpoint(engine, resume_from)
        start, order.position = state["step"], state["data_position"][rank]
        log(f"resumed from {resume_from} at step {start}")
    logger = MetricLogger(cfg, rank, start)

    B, Q, n = d.rollout_batch_size // world, a.num_variants, ro.n
    questions_per_update = actor.global_batch_size // world
    single_update = questions_per_update == B and actor.ppo_epochs == 1
    shared = actor.share_prompt_prefix and not actor.model.enable_gradient_checkpointing
    mode = "shared_prefix" if shared else "rows"
    params = SamplingParams(n, d.max_response_length, ro.temperature, ro.top_p, ro.top_k, ro.min_tokens)
    metrics: dict[str, float] = {}
    bar = None
    if tr.progress_bar and rank == 0:
        from tqdm import tqdm

        bar = tqdm(total=tr.max_steps, initial=start, desc="train", dynamic_ncols=True)

    for step in range(start + 1, tr.max_steps + 1):
        t0 = time.perf_counter()
        timings: dict[str, float] = {}
        rng = random.Random(f"{tr.seed}/{step}/{rank}")
        torch.manual_seed(hash((tr.seed, step, rank)) % 2**63)

        # 1. sample B questions and expand each into Q variants
        batch_rows = [rows[i] for i in order.take(B)]
        messages, images, expand_counts = expand_questions(batch_rows, cfg, rng)
        texts = [processor.apply_chat_template(m, add_generation_prompt=True, tokenize=False) for m in messages]
        prompts = encode_prompts(processor, texts, images)

        # 2. generate n responses per variant prompt: B*Q*n, [i, b, k] order
        t = time.perf_counter()
        responses = rollout.generate(engine.module, prompts, params)
        timings["generate"] = time.perf_counter() - t

        # 3. rewards once per unique response
        t = time.perf_counter()
        decoded = processor.tokenizer.batch_decode(responses, skip_special_tokens=True)
        golds = [row.answer for row in batch_rows for _ in range(Q * n)]
        grades = grade_many(decoded, golds, mode=cfg.worker.reward.mode, workers=cfg.worker.reward.workers,
                            timeout_s=cfg.worker.reward.timeout_s)
        scores = [g.overall for g in grades] if reward_fn is None else [float(x) for x in reward_fn(decoded, golds)]
        rewards = torch.tensor(scores, dtype=torch.float32).reshape(B, Q, n)
        timings["reward"] = time.perf_counter() - t

        # 4. advantages and 5. the shared training rows
        adv = compute_advantages(rewards, cfg)  # (B, Q, Q, n); the config holds Q = 1 for grpo/dr_grpo
        layout = algos.share_layout(B, Q, n)
        row_adv = adv.reshape(-1)
        vanish = algos.advantage_vanishing(rewards, adv)
        keep_q, dropped = (algos.dynamic_sampling_filter(rewards) if a.dynamic_sampling
                           else (torch.ones(B, dtype=torch.bool), torch.tensor(0)))
        row_keep = keep_q[layout.question_index]
        row_ids = torch.nonzero(row_keep).squeeze(-1)
        row_resp = [responses[int(layout.response_index[r])] for r in row_ids]
        row_prompt = [int(layout.prompt_index[r]) for r in row_ids]
        row_q = layout.question_index[row_ids]
        row_adv = row_adv[row_ids]
        width = max([len(x) for x in row_resp] + [1])

        # 6. old (and reference) log-probs, without gradients, in large micro-batches
        t = time.perf_counter()
        old_lp = ref_lp = None
        exp_mb = actor.micro_batch_size_per_device_for_experience
        if len(row_ids) and (not single_update or ref_model is not None):
            engine.eval()
            with torch.no_grad():
                parts, ref_parts = [], []
                for s in range(0, len(row_ids), exp_mb):
                    mb = collate(prompts, row_prompt[s : s + exp_mb], row_resp[s : s + exp_mb], pad_id)
                    if not single_update:
                        parts.append(response_log_probs(engine.module, prompts, mb, width, mode=mode)[0])
                    if ref_model is not None:
                        ref_parts.append(response_log_probs(ref_model, prompts, mb, width, mode=mode)[0])
                old_lp = torch.cat(parts) if parts else None
                ref_lp = torch.cat(ref_parts) if ref_parts else None
            engine.train()
        timings["old_log_prob"] = time.perf_counter() - t

        # 7. PPO updates: global_batch_size questions each, micro-batches accumulated by hand
        t = time.perf_counter()
        engine.train()
        upd = Counter()
        mb_size = actor.micro_batch_size_per_device_for_update
        kept_questions = torch.nonzero(keep_q).squeeze(-1).tolist()
        for _epoch in range(actor.ppo_epochs):
            for u in range(0, max(len(kept_questions), 1), questions_per_update):
                qs = set(kept_questions[u : u + questions_per_update])
                sel = [r for r in range(len(row_ids)) if int(row_q[r]) in qs]
                if not sel:
                    continue
                lengths = torch.tensor([len(row_resp[r]) for r in sel])
                total = float(lengths.sum()) if AGGREGATION_UNIT[actor.loss_agg_mode] == "tokens" else float(len(sel))
                for s in range(0, len(sel), mb_size):
                    chunk = sel[s : s + mb_size]
                    mb = collate(prompts, [row_prompt[r] for r in chunk], [row_resp[r] for r in chunk], pad_id)
                    lp, mask, ent = response_log_probs(engine, prompts, mb, width, with_entropy=True, mode=mode)
                    old = lp.detach() if old_lp is None else old_lp[chunk]
                    pg_loss, m = algos.ppo_policy_loss(
                        lp, old, row_adv[chunk].to(lp.device), mask, actor.clip_ratio_low, actor.clip_ratio_high,
                        actor.clip_ratio_dual or None, actor.loss_agg_mode, d.max_response_length,
                    )
                    loss = pg_loss
                    if ref_lp is not None:
                        kl = algos.aggregate(algos.kl_penalty(lp, ref_lp[chunk], a.kl_penalty), mask, actor.loss_agg_mode)
                        loss = loss + a.kl_coef * kl
                        upd["actor/kl_loss"] += float(kl.detach()) * len(chunk)
                    unit = float(mask.sum()) if AGGREGATION_UNIT[actor.loss_agg_mode] == "tokens" else float(len(chunk))
                    engine.set_gradient_accumulation_boundary(s + mb_size >= len(sel))
                    engine.backward(loss * (unit / total))
                    engine.step()
                    upd["actor/pg_loss"] += float(pg_loss.detach()) * len(chunk)
                    for k, v in m.items():
                        upd[f"actor/{k}"] += float(v) * len(chunk)
                    upd["actor/entropy"] += float((ent * mask).sum() / mask.sum().clamp(min=1)) * len(chunk)
                    upd["rows"] += len(chunk)
                upd["actor/grad_norm"] += float(engine.get_global_grad_norm() or 0.0)
                upd["updates"] += 1
        timings["update"] = time.perf_counter() - t

        # 8. metrics
        step_time = time.perf_counter() - t0
        gen_tokens = sum(len(r) for r in responses)
        n_rows = max(upd["rows"], 1)
        metrics = {
            "reward/mean": rewards.mean().item(),
            "reward/accuracy": sum(g.accuracy for g in grades) / len(grades),
            "reward/format": sum(g.format for g in grades) / len(grades),
            "reward/judge_timeouts": sum(g.status == "timeout" for g in grades),
            "adv/zero_frac": vanish["zero_adv_frac"].item(),
            "adv/uniform_global_frac": vanish["uniform_global_frac"].item(),
            "adv/uniform_local_frac": vanish["uniform_local_frac"].item(),
            "adv/abs_mean": adv.abs().mean().item(),
            "data/dynamic_dropped": float(dropped),
            "data/image_transformed_frac": expand_counts["image_transformed"] / (B * Q),
            "data/short_variants": float(expand_counts["short_variants"]),
            "response/length_mean": gen_tokens / len(responses),
            "response/truncated_frac": sum(len(r) >= d.max_response_length and int(r[-1]) != rollout.eos_id
                                           for r in responses) / len(responses),
            "train/rows": float(upd["rows"]),
            "train/rows_per_question": upd["rows"] / max(int(keep_q.sum()), 1),
            "actor/lr": scheduler.get_last_lr()[0],
            "actor/grad_norm": upd["actor/grad_norm"] / max(upd["updates"], 1),
            **{k: upd[k] / n_rows for k in upd if k.startswith("actor/") and k != "actor/grad_norm"},
            "perf/step_time": step_time,
            "perf/tokens_per_s": gen_tokens / step_time,
            **{f"perf/{k}_time": v for k, v in timings.items()},
        }
        metrics = all_reduce_mean(metrics, world)
        logger.log(step, metrics)
        if bar is not None:
            bar.set_postfix(reward=f"{metrics['reward/mean']:.3f}", acc=f"{metrics['reward/accuracy']:.3f}")
            bar.update(1)

        # 9. checkpoint
        if step == tr.max_steps or (tr.save_freq and step % tr.save_freq == 0):
            positions = [order.position] * world
            if world > 1:
                t_pos = torch.tensor([order.position if r == rank else 0 for r in range(world)])
                dist.all_reduce(t_pos)
                positions = t_pos.tolist()
            state = {"data_position": positions, "skipped_rows": dict(skipped), "metrics": metrics}
            save_checkpoint(engine, out_dir, step, state, config_to_dict(cfg), tr.save_limit)
    if bar is not None:
        bar.close()
    summary = {"steps": tr.max_steps, "skipped_rows": dict(skipped), "rows": len(rows), "last": metrics}
    if rank == 0:
        write_text_atomic(out_dir / "summary.json", json.dumps(summary, indent=2))
    return metrics


def _finite(metrics: dict[str, float]) -> bool:
    return all(math.isfinite(v) for v in metrics.values())


def main(argv: list[str] | None = None) -> int:
    import argparse

    from .config import load_config

    parser = argparse.ArgumentParser(prog="python -m train", description="Share-GRPO / GRPO training.")
    parser.add_argument("--config", required=True, action="append",
                        help="YAML config (see reproduce/configs/); repeat to layer files, later ones win")
    parser.add_argument("--local_rank", "--local-rank", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("overrides", nargs="*", help="dotted key=value overrides, e.g. trainer.max_steps=5")
    args = parser.parse_args(argv)
    cfg = load_config(args.config, args.overrides)
    with contextlib.suppress(KeyboardInterrupt):
        metrics = train(cfg)
        return 0 if _finite(metrics) else 1
    print("interrupted; resume with trainer.resume=auto", file=sys.stderr)
    return 130
