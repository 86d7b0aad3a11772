"""The Share-GRPO training loop: rollout -> rewards -> advantages -> shared rows -> update ->
metrics -> checkpoint.

    python -m train --config reproduce/configs/tiny_cpu.yaml trainer.max_steps=10
    deepspeed --module train --config ...      torchrun -m train --config ...

`train()` reads top to bottom as the method; each stage is a function of its own below it:
- `expand`: sample B/world questions, expand each into Q variants (text rewrites, image
  transforms) and encode the B*Q prompts;
- `generate`: n responses per variant prompt (B*Q*n, [i, b, k] order);
- `rewards`: grade every unique response once -> rewards (B, Q, n);
- `advantages`: the configured estimator from `algos.ADVANTAGE_ESTIMATORS` -> (B, Q, Q, n);
- `shared_rows`: the B*Q*Q*n training rows (response of variant b under the prompt of variant a),
  question groups with uniform rewards dropped under dynamic sampling;
- `old_log_probs`: the old policy's (and reference model's) log-probs of those rows;
- `ppo_update`: rollout_batch_size*Q/global_batch_size PPO updates through DeepSpeed (an update
  is global_batch_size*n*Q rows, the released unit; `python -m train --dry-run` prints the counts);
- `step_metrics`, then `checkpoint` every trainer.save_freq steps (`resume` restores one).
GRPO and Dr. GRPO are the Q = 1 case with their own advantage estimator.

As in the released code (an EasyR1 fork): the update size counts n*Q rows per unit of
worker.actor.global_batch_size; prompts keep the question's text verbatim, images at their
`<image>` placeholders, the R1 prompt after a space, and the released image-transform sentences
(ending in a newline) before each text segment; worker.actor.loss_normalization=per_micro_batch
averages each micro-batch and divides by the number of micro-batches (the 7B configs use it).

Where this differs from the released code, and why:
- Image-transform sentences say what was done: the released ones swap the two 90-degree rotations.
- The global std defaults to the Q*n responses; the released code takes it over the Q*Q*n rows,
  which counts each response Q times (`algorithm.global_std_over=rows` reproduces it).
- With Q = 1 (GRPO) every response is one row with the plain GRPO advantage, counted once, not a
  global plus a local term over the same group.
- A question group whose rewards are all equal gets advantages of exactly 0, so it adds nothing to
  the loss; the released code divides the rounding error of (r - mean) by std + eps, which leaves
  values near 1e-10 instead.
- An update holds whole questions: all Q*Q*n rows of a question go into the same update (the
  released code cuts the rollout into equal slices of rows). With dynamic sampling the last update
  of a step may hold fewer questions.
- The default loss normalization is `whole_update`: the token-mean over every token of the update,
  so the gradient does not depend on the micro-batch size; `per_micro_batch` is the released one.
- Prompts over data.max_prompt_length are skipped at load, with a message naming the row, and
  counted (the released loader stops or truncates, per its `truncation` setting); rows with fewer than Q distinct texts are kept
  and repeat a text (`algorithm.short_variants=repeat`) or are skipped (`skip`).
- `new_questions` strings are parsed as JSON or Python literals, never executed.
- Old log-probs are not recomputed when there is one update per rollout and one PPO epoch: they
  equal the detached current ones, so the ratio is exactly 1 (the released code recomputes them).
- Rollouts come from a lean sampling loop over the training model (`hf`, the tokens of transformers
  `generate` for a seed) or a colocated vLLM engine refreshed with the current weights every step
  (`vllm`, GPU, bf16; its sampling is seeded per rank but a resumed run does not replay it
  bit for bit). Log-probs always come from the training model's forward pass.
- Each distinct prompt of a micro-batch runs once and its rows' responses run on its KV cache
  (`worker.actor.share_prompt_prefix`); the released code runs every row's whole prompt.
- DeepSpeed ZeRO replaces FSDP; every random choice is derived from (trainer.seed, step, rank),
  so a run replays exactly and a resumed run continues exactly as an uninterrupted one.
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
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.distributed as dist
import yaml
from torch import Tensor

from bench.errors import UsageError, exit_on_usage_error
from bench.fileio import write_text_atomic
from bench.lock import hold_folder_lock
from bench.processing import load_processor
from bench.verify import Grade, grade_many

from . import algos
from .checkpoint import find_resume, load_checkpoint, save_checkpoint
from .config import AlgorithmConfig, Config, config_to_dict, reward_function
from .data import Row, build_messages, load_rows
from .encoding import Prompts, collate, encode_prompts, model_device
from .expand import draw_image_variant, draw_text_variants
from .logprobs import response_log_probs
from .plan import BatchPlan
from .rollout import SamplingParams, make_rollout


# ---------------------------------------------------------------- set-up
def init_distributed() -> tuple[int, int]:
    """(rank, world size); single-process runs get a one-rank gloo group on 127.0.0.1."""
    os.environ.setdefault("RANK", "0")
    os.environ.setdefault("WORLD_SIZE", "1")
    os.environ.setdefault("LOCAL_RANK", "0")
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    if "MASTER_PORT" not in os.environ:  # a launcher sets it; alone, any free port (a fixed one may be taken)
        os.environ["MASTER_PORT"] = str(free_port())
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


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


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
        # fused: one kernel over all parameters (on a CPU, 8x faster than the per-tensor loop)
        optimizer = torch.optim.AdamW(params, lr=opt.lr, weight_decay=opt.weight_decay, betas=tuple(opt.betas),
                                      fused=True)
    warmup = max(0, opt.lr_warmup_steps)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min(1.0, (s + 1) / warmup) if warmup else 1.0)
    engine, optimizer, _, scheduler = deepspeed.initialize(
        model=model, optimizer=optimizer, lr_scheduler=scheduler, config=deepspeed_config(cfg, world)
    )
    return engine, scheduler


def build_reference(cfg: Config, world: int, device: torch.device):
    """The frozen reference policy for the KL term, in the policy's dtype (bf16 when
    worker.actor.bf16). Under ZeRO-3 it is sharded like the policy (a DeepSpeed inference engine
    with no optimizer), so no GPU holds a whole second copy of a 7B model."""
    from transformers import Qwen2_5_VLForConditionalGeneration

    actor = cfg.worker.actor
    dtype = torch.bfloat16 if actor.bf16 else torch.float32
    ref = Qwen2_5_VLForConditionalGeneration.from_pretrained(actor.model.model_path, dtype=dtype).eval()
    ref.requires_grad_(False)
    if actor.zero_stage != 3:
        return ref.to(device)
    import deepspeed

    config = {"train_micro_batch_size_per_gpu": 1, "train_batch_size": world, "zero_optimization": {"stage": 3},
              "bf16": {"enabled": actor.bf16}, "steps_per_print": 10**9}
    if actor.offload:
        config["zero_optimization"]["offload_param"] = {"device": "cpu"}
    engine, *_ = deepspeed.initialize(model=ref, config=config)
    engine.eval()
    return engine


def reward_workers(configured: int | None, cores: int | None = None, local_ranks: int | None = None,
                   cap: int = 16) -> int:
    """Verifier processes for this rank: the configured count, else this rank's share of the
    machine's cores (every rank of a node starts its own pool), at most `cap`."""
    if configured is not None:
        return configured
    cores = cores or os.cpu_count() or 1
    local_ranks = local_ranks or int(os.environ.get("LOCAL_WORLD_SIZE", "1") or 1)
    return max(1, min(cap, cores // max(1, local_ranks)))


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
    _cached: tuple[int, list[int]] | None = field(default=None, init=False, repr=False, compare=False)

    def take(self, k: int) -> list[int]:
        out = []
        for _ in range(k):
            # ranks take interleaved entries of one shared sequence of epoch permutations
            epoch, offset = divmod(self.position * self.world + self.rank, self.n_rows)
            out.append(self._permutation(epoch)[offset])
            self.position += 1
        return out

    def _permutation(self, epoch: int) -> list[int]:
        """Epoch `epoch`'s order, shuffled once and kept until the next epoch (reshuffling 52K
        rows for every question drawn cost seconds per step)."""
        if self._cached is None or self._cached[0] != epoch:
            order = list(range(self.n_rows))
            if self.shuffle:
                random.Random(f"{self.seed}/{epoch}").shuffle(order)
            self._cached = (epoch, order)
        return self._cached[1]


# ---------------------------------------------------------------- a run's parts
@dataclass
class Run:
    """What every stage of a run reads: the config, this rank, the models and engines, the data."""

    cfg: Config
    rank: int
    world: int
    processor: object
    engine: object  # the DeepSpeed engine around the policy
    scheduler: torch.optim.lr_scheduler.LRScheduler
    ref_model: torch.nn.Module | None
    sampler: object  # a rollout engine (train.rollout)
    reward_fn: Callable[[list[str], list[str]], list[float]] | None
    reward_workers: int  # verifier processes on this rank (worker.reward.workers, or its share of the cores)
    rows: list[Row]
    skipped: Counter
    order: DataOrder
    out_dir: Path
    lock: object = None  # rank 0 holds the output folder's lock while this object lives

    @property
    def forward_mode(self) -> str:
        actor = self.cfg.worker.actor
        shared = actor.share_prompt_prefix and not actor.model.enable_gradient_checkpointing
        return "auto" if shared else "rows"

    @property
    def questions_per_update(self) -> int:
        """On this rank: global_batch_size / Q questions per update, split over the ranks."""
        return BatchPlan.from_config(self.cfg, self.world).questions_per_update_per_device

    @property
    def batch_shape(self) -> tuple[int, int, int]:
        """(B per rank, Q, n)."""
        return self.cfg.data.rollout_batch_size // self.world, self.cfg.algorithm.num_variants, self.cfg.worker.rollout.n


def set_up(cfg: Config) -> Run:
    from transformers import Qwen2_5_VLForConditionalGeneration

    rank, world = init_distributed()
    a, d, actor, tr = cfg.algorithm, cfg.data, cfg.worker.actor, cfg.trainer
    BatchPlan.from_config(cfg, world)  # checks that questions divide over the ranks
    out_dir = Path(tr.output_dir)
    check_model_path(actor.model.model_path)
    lock = hold_folder_lock(out_dir, "trainer.output_dir", "training") if rank == 0 else None
    try:
        processor = load_processor(actor.model.model_path)
    except OSError as exc:
        first = next((line for line in str(exc).splitlines() if line.strip()), type(exc).__name__)
        raise UsageError(f"worker.actor.model.model_path={actor.model.model_path}: cannot load it ({first})") from None
    min_variants = a.num_variants if a.short_variants == "skip" and a.text_variants else 1
    rows, skipped = load_rows(d, processor, log=print if rank == 0 else (lambda *args, **kwargs: None),
                              min_variants=min_variants)  # data errors stop the run before the model loads
    torch.manual_seed(tr.seed)
    model = Qwen2_5_VLForConditionalGeneration.from_pretrained(actor.model.model_path, dtype=torch.float32)
    engine, scheduler = build_engine(model, cfg, world)
    ref_model = None if a.disable_kl else build_reference(cfg, world, model_device(engine))
    reward_fn = reward_function(cfg)
    if rank == 0:
        write_text_atomic(out_dir / "config.yaml", yaml.safe_dump(config_to_dict(cfg), sort_keys=False))
    return Run(cfg, rank, world, processor, engine, scheduler, ref_model, make_rollout(cfg.worker.rollout.name, processor, cfg),
               reward_fn, reward_workers(cfg.worker.reward.workers), rows, skipped, DataOrder(len(rows), tr.seed, d.shuffle, rank, world), out_dir, lock)


def check_model_path(path: str) -> None:
    """A local folder must hold a checkpoint; anything else must look like a hub id (org/name) whose
    first part is not a local folder (`runs/model` that does not exist is a missing folder)."""
    local = Path(path)
    if local.is_dir():
        if not (local / "config.json").is_file():
            raise UsageError(f"worker.actor.model.model_path={path}: the folder has no config.json")
        return
    looks_local = path.startswith((".", "/", "~")) or local.suffix or Path(local.parts[0] if local.parts else "").is_dir()
    if not path or path.count("/") != 1 or looks_local:
        raise UsageError(f"worker.actor.model.model_path={path!r}: no such folder, and not a hub id (org/name)")


class StageTimer:
    """`with timer("generate"): ...` adds the block's wall time to timer.seconds["generate"]."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextlib.contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        t = time.perf_counter()
        yield
        self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - t


# ---------------------------------------------------------------- the stages of a step
@dataclass
class Rollout:
    """One step's questions, their B*Q variant prompts ([i, a] order) and the B*Q*n responses
    generated from them ([i, b, k] order; empty until `generate`)."""

    questions: list[Row]
    prompts: Prompts
    responses: list[Tensor]
    expand_counts: Counter


@dataclass
class TrainingRows:
    """The rows an update trains on, one entry per row: response `response[r]` under variant
    prompt `prompt[r]`, of question `question[r]`, with advantage `advantage[r]`. Log-probs are
    (R, width), width the longest response of the step."""

    prompt: list[int]
    response: list[Tensor]
    question: Tensor
    advantage: Tensor
    width: int
    old_log_probs: Tensor | None = None
    ref_log_probs: Tensor | None = None

    def __len__(self) -> int:
        return len(self.prompt)

    def collate(self, prompts: Prompts, index: list[int], pad_id: int) -> dict[str, Tensor]:
        return collate(prompts, [self.prompt[r] for r in index], [self.response[r] for r in index], pad_id)


def expand_questions(questions: list[Row], cfg: Config, rng: random.Random) -> tuple[list[list], list[list], Counter]:
    """B rows -> B*Q variant prompts ([i, a] order): chat messages and their images."""
    a, d = cfg.algorithm, cfg.data
    messages, images, counts = [], [], Counter()
    for row in questions:
        rewrites = row.rewrites if a.text_variants else []
        variants = draw_text_variants(row.question, rewrites, a.num_variants, rng, a.keep_original, a.short_variants)
        assert variants is not None, "rows with too few variants are skipped at load under short_variants=skip"
        counts["short_variants"] += len({row.question, *rewrites}) < a.num_variants
        base = row.load_images(d.min_pixels, d.max_pixels)
        for question in variants:
            variant = draw_image_variant(base, rng, a.image_transform_prob, a.image_transforms)
            counts["image_transformed"] += variant.transform is not None
            messages.append(build_messages(question, len(base), variant.instruction))
            images.append(variant.images)
    return messages, images, counts


def expand(run: Run, rng: random.Random) -> Rollout:
    """Sample B questions and expand each into Q encoded variant prompts (no responses yet)."""
    questions = [run.rows[i] for i in run.order.take(run.batch_shape[0])]
    messages, images, counts = expand_questions(questions, run.cfg, rng)
    texts = [run.processor.apply_chat_template(m, add_generation_prompt=True, tokenize=False) for m in messages]
    return Rollout(questions, encode_prompts(run.processor, texts, images), [], counts)


def generate(run: Run, prompts: Prompts) -> list[Tensor]:
    """n responses per variant prompt from the current policy: B*Q*n, [i, b, k] order."""
    ro, d = run.cfg.worker.rollout, run.cfg.data
    params = SamplingParams(ro.n, d.max_response_length, ro.temperature, ro.top_p, ro.top_k, ro.min_tokens)
    return run.sampler.generate(run.engine.module, prompts, params)


def rewards(run: Run, batch: Rollout) -> tuple[list[Grade], Tensor]:
    """The responses' grades and rewards (B, Q, n): one judgement per unique response.
    The reward is the verifier's 0.9 accuracy + 0.1 format unless worker.reward.function is set."""
    B, Q, n = run.batch_shape
    reward = run.cfg.worker.reward
    decoded = run.processor.tokenizer.batch_decode(batch.responses, skip_special_tokens=True)
    golds = [row.answer for row in batch.questions for _ in range(Q * n)]
    grades = grade_many(decoded, golds, mode=reward.mode, workers=run.reward_workers,
                        timeout_s=reward.timeout_s)
    scores = [g.overall for g in grades] if run.reward_fn is None else [float(x) for x in run.reward_fn(decoded, golds)]
    return grades, torch.tensor(scores, dtype=torch.float32).reshape(B, Q, n)


def advantages(rewards: Tensor, a: AlgorithmConfig) -> Tensor:
    """rewards (B, Q, n) -> advantages (B, Q, Q, n) by the configured estimator (Q = 1 for grpo)."""
    estimator = algos.ADVANTAGE_ESTIMATORS[a.adv_estimator]
    return estimator(rewards, global_std_over=a.global_std_over, terms=a.advantage_terms)


def shared_rows(batch: Rollout, adv: Tensor, keep: Tensor) -> TrainingRows:
    """The B*Q*Q*n rows of `algos.share_layout`, for the questions where keep (B,) is true."""
    B, Q, _, n = adv.shape
    layout = algos.share_layout(B, Q, n)
    ids = torch.nonzero(keep[layout.question_index]).squeeze(-1)
    response = [batch.responses[int(layout.response_index[r])] for r in ids]
    return TrainingRows(
        prompt=layout.prompt_index[ids].tolist(), response=response, question=layout.question_index[ids],
        advantage=adv.reshape(-1)[ids], width=max([len(x) for x in response] + [1]),
    )


def old_log_probs(run: Run, prompts: Prompts, rows: TrainingRows) -> None:
    """Fill rows.old_log_probs (only when the policy moves within a step: several updates or
    epochs) and rows.ref_log_probs (with a reference model), without gradients."""
    single_update = run.questions_per_update == run.batch_shape[0] and run.cfg.worker.actor.ppo_epochs == 1
    if not len(rows) or (single_update and run.ref_model is None):
        return
    pad_id, size = run.processor.tokenizer.pad_token_id, run.cfg.worker.actor.micro_batch_size_per_device_for_experience
    old, ref = [], []
    run.engine.eval()
    with torch.no_grad():
        for s in range(0, len(rows), size):
            mb = rows.collate(prompts, list(range(s, min(s + size, len(rows)))), pad_id)
            if not single_update:
                old.append(response_log_probs(run.engine.module, prompts, mb, rows.width, mode=run.forward_mode)[0])
            if run.ref_model is not None:
                ref.append(response_log_probs(run.ref_model, prompts, mb, rows.width, mode=run.forward_mode)[0])
    run.engine.train()
    rows.old_log_probs = torch.cat(old) if old else None
    rows.ref_log_probs = torch.cat(ref) if ref else None


def update_groups(rows: TrainingRows, questions_per_update: int) -> list[list[int]]:
    """Row indices of each update: the rows of `questions_per_update` consecutive kept questions
    (a question's rows are never split across updates)."""
    question = rows.question.tolist()
    group_of = {q: i // questions_per_update for i, q in enumerate(dict.fromkeys(question))}
    groups: list[list[int]] = [[] for _ in range(math.ceil(len(group_of) / questions_per_update))]
    for r, q in enumerate(question):
        groups[group_of[q]].append(r)
    return groups


def micro_batch_loss(log_probs: Tensor, old_log_probs: Tensor, ref_log_probs: Tensor | None, advantages: Tensor,
                     mask: Tensor, cfg: Config) -> tuple[Tensor, dict[str, Tensor]]:
    """One micro-batch's loss: the PPO surrogate, plus kl_coef x the KL estimate of the policy
    against the reference (log-probs (R, T), advantages (R,)). Returns (loss, detached metrics
    `pg_loss`, `clip_frac`, `dual_clip_frac`, `approx_kl` and, with a reference, `kl_loss`)."""
    actor, a = cfg.worker.actor, cfg.algorithm
    pg_loss, metrics = algos.ppo_policy_loss(
        log_probs, old_log_probs, advantages, mask, actor.clip_ratio_low, actor.clip_ratio_high,
        actor.clip_ratio_dual or None, actor.loss_agg_mode, cfg.data.max_response_length,
    )
    metrics["pg_loss"] = pg_loss.detach()
    if ref_log_probs is None:
        return pg_loss, metrics
    kl = algos.aggregate(algos.kl_penalty(log_probs, ref_log_probs, a.kl_penalty), mask, actor.loss_agg_mode)
    metrics["kl_loss"] = kl.detach()
    return pg_loss + a.kl_coef * kl, metrics


def ppo_update(run: Run, prompts: Prompts, rows: TrainingRows) -> Counter:
    """PPO epochs over the rows, one optimizer step per update group, micro-batches accumulated by
    hand with the weights of worker.actor.loss_normalization. Returns sums of the update
    statistics (row-weighted `actor/*` values, `rows`, `updates`)."""
    cfg, engine = run.cfg, run.engine
    actor = cfg.worker.actor
    unit = algos.LOSS_AGGREGATIONS.info(actor.loss_agg_mode)["unit"]
    normalize = algos.LOSS_NORMALIZATIONS[actor.loss_normalization]
    size, pad_id = actor.micro_batch_size_per_device_for_update, run.processor.tokenizer.pad_token_id
    stats: Counter = Counter()
    engine.train()
    for _epoch in range(actor.ppo_epochs):
        for group in update_groups(rows, run.questions_per_update):
            chunks = [group[s : s + size] for s in range(0, len(group), size)]
            shares = torch.tensor([float(sum(len(rows.response[r]) for r in c)) if unit == "tokens" else float(len(c))
                                   for c in chunks], dtype=torch.float64)
            weights = normalize(shares).tolist()
            for j, chunk in enumerate(chunks):
                mb = rows.collate(prompts, chunk, pad_id)
                lp, mask, ent = response_log_probs(engine, prompts, mb, rows.width, with_entropy=True, mode=run.forward_mode)
                old = lp.detach() if rows.old_log_probs is None else rows.old_log_probs[chunk]
                ref = None if rows.ref_log_probs is None else rows.ref_log_probs[chunk]
                loss, m = micro_batch_loss(lp, old, ref, rows.advantage[chunk].to(lp.device), mask, cfg)
                boundary = j == len(chunks) - 1
                engine.set_gradient_accumulation_boundary(boundary)
                engine.backward(loss * weights[j])
                norm = _grad_norm_before_step(engine) if boundary else None
                engine.step()
                for k, v in m.items():
                    stats[f"actor/{k}"] += float(v) * len(chunk)
                stats["actor/entropy"] += float((ent * mask).sum() / mask.sum().clamp(min=1)) * len(chunk)
                stats["rows"] += len(chunk)
            stats["grad_norm"] += float(engine.get_global_grad_norm() if norm is None else norm)
            stats["updates"] += 1
    return stats


def _grad_norm_before_step(engine) -> float | None:
    """The gradient norm before clipping, where DeepSpeed does not report it: with plain fp32
    training and no ZeRO it clips the gradients but keeps no norm (`get_global_grad_norm()` is
    None). Its gradients are already averaged over ranks here, so every rank gets the same norm."""
    if engine.zero_optimization() or engine.bfloat16_enabled() or engine.fp16_enabled():
        return None
    grads = [p.grad for p in engine.module.parameters() if p.grad is not None]
    return float(torch.nn.utils.get_total_norm(grads)) if grads else 0.0


def step_metrics(run: Run, batch: Rollout, grades: list[Grade], rewards: Tensor, adv: Tensor, keep: Tensor,
                 stats: Counter, seconds: dict[str, float]) -> dict[str, float]:
    """This rank's metrics of one step, namespaced (reward/, adv/, data/, prompt/, response/, train/, actor/, perf/)."""
    d = run.cfg.data
    B, Q, _ = run.batch_shape
    vanish = algos.advantage_vanishing(rewards, adv)
    lengths = [len(r) for r in batch.responses]
    truncated = [len(r) >= d.max_response_length and int(r[-1]) != run.sampler.eos_id for r in batch.responses]
    rows = max(stats["rows"], 1)
    step_time = sum(seconds.values())
    return {
        "reward/mean": rewards.mean().item(),
        "reward/accuracy": sum(g.accuracy for g in grades) / len(grades),
        "reward/format": sum(g.format for g in grades) / len(grades),
        "reward/judge_timeouts": sum(g.status == "timeout" for g in grades),
        "adv/zero_frac": vanish["zero_adv_frac"].item(),
        "adv/uniform_global_frac": vanish["uniform_global_frac"].item(),
        "adv/uniform_local_frac": vanish["uniform_local_frac"].item(),
        "adv/abs_mean": adv.abs().mean().item(),
        "data/dynamic_dropped": float(B - int(keep.sum())),
        "data/image_transformed_frac": batch.expand_counts["image_transformed"] / (B * Q),
        "data/short_variants": float(batch.expand_counts["short_variants"]),
        "response/length_mean": sum(lengths) / len(lengths),
        "prompt/length_mean": sum(len(x) for x in batch.prompts.input_ids) / len(batch.prompts.input_ids),
        "response/truncated_frac": sum(truncated) / len(truncated),
        "train/rows": float(stats["rows"]),
        "train/rows_per_question": stats["rows"] / max(int(keep.sum()), 1),
        "train/updates": float(stats["updates"]),
        "actor/lr": run.scheduler.get_last_lr()[0],
        "actor/grad_norm": stats["grad_norm"] / max(stats["updates"], 1),
        **{k: stats[k] / rows for k in stats if k.startswith("actor/")},
        "perf/step_time": step_time,
        "perf/tokens_per_s": sum(lengths) / step_time,
        **{f"perf/{k}_time": v for k, v in seconds.items()},
    }


def resume(run: Run) -> tuple[int, dict[str, float]]:
    """Restore the latest checkpoint per trainer.resume; returns the last finished step (0: none)
    and that step's metrics."""
    path = find_resume(run.out_dir, run.cfg.trainer.resume)
    if path is None:
        return 0, {}
    state = load_checkpoint(run.engine, path)
    run.order.position = state["data_position"][run.rank]
    if run.rank == 0:
        print(f"resumed from {path} at step {state['step']}")
    return state["step"], state.get("metrics", {})


def checkpoint(run: Run, step: int, metrics: dict[str, float]) -> None:
    """Collective: the model, optimizer and every rank's data position."""
    positions = [run.order.position] * run.world
    if run.world > 1:
        t = torch.tensor([run.order.position if r == run.rank else 0 for r in range(run.world)])
        dist.all_reduce(t)
        positions = t.tolist()
    state = {"data_position": positions, "skipped_rows": dict(run.skipped), "metrics": metrics}
    tr = run.cfg.trainer
    save_checkpoint(run.engine, run.out_dir, step, state, config_to_dict(run.cfg), tr.save_limit)


def all_reduce_mean(metrics: dict[str, float], world: int) -> dict[str, float]:
    if world == 1:
        return metrics
    keys = sorted(metrics)
    t = torch.tensor([float(metrics[k]) for k in keys], dtype=torch.float64)
    dist.all_reduce(t)
    return {k: float(v) / world for k, v in zip(keys, t, strict=True)}


def read_metric_lines(path: Path) -> list[str]:
    """The complete lines of a metrics.jsonl. A cut-off last line (a kill or a full disk during a
    write) is dropped with a message; a broken line anywhere else stops with its line number."""
    lines = [line for line in path.read_text(encoding="utf-8", errors="replace").split("\n") if line.strip()]
    good = []
    for n, line in enumerate(lines, 1):
        try:
            if not isinstance(json.loads(line).get("step"), int):
                raise ValueError
        except (ValueError, AttributeError):
            if n == len(lines):
                print(f"{path}: dropped a cut-off last line ({len(line)} characters)", file=sys.stderr)
                break
            raise UsageError(f"{path} line {n}: not a metrics record; move the file away to start afresh") from None
        good.append(line)
    return good


class MetricLogger:
    """JSONL always (rank 0), plus console, TensorBoard and W&B when configured."""

    def __init__(self, cfg: Config, rank: int, start_step: int) -> None:
        self.rank, self.cfg = rank, cfg
        self.path = Path(cfg.trainer.output_dir) / "metrics.jsonl"
        self.tb = self.wandb = None
        if rank != 0:
            return
        if self.path.exists():  # a resumed run drops the lines of steps it will redo
            kept = [line for line in read_metric_lines(self.path) if json.loads(line)["step"] <= start_step]
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
    run = set_up(cfg)
    tr, a = cfg.trainer, cfg.algorithm
    start, metrics = resume(run)  # a finished run resumed at its end keeps its last metrics
    logger = MetricLogger(cfg, run.rank, start)
    bar = None
    if tr.progress_bar and run.rank == 0:
        from tqdm import tqdm

        bar = tqdm(total=tr.max_steps, initial=start, desc="train", dynamic_ncols=True)
    for step in range(start + 1, tr.max_steps + 1):
        timer = StageTimer()
        rng = random.Random(f"{tr.seed}/{step}/{run.rank}")
        torch.manual_seed(hash((tr.seed, step, run.rank)) % 2**63)
        with timer("expand"):
            batch = expand(run, rng)
        with timer("generate"):
            batch.responses = generate(run, batch.prompts)
        with timer("reward"):
            grades, reward = rewards(run, batch)
        with timer("advantage"):
            adv = advantages(reward, a)
            keep = algos.dynamic_sampling_filter(reward)[0] if a.dynamic_sampling else torch.ones(len(reward), dtype=torch.bool)
            rows = shared_rows(batch, adv, keep)
        with timer("old_log_prob"):
            old_log_probs(run, batch.prompts, rows)
        with timer("update"):
            stats = ppo_update(run, batch.prompts, rows)
        metrics = all_reduce_mean(step_metrics(run, batch, grades, reward, adv, keep, stats, timer.seconds), run.world)
        logger.log(step, metrics)
        if bar is not None:
            bar.set_postfix(reward=f"{metrics['reward/mean']:.3f}", acc=f"{metrics['reward/accuracy']:.3f}")
            bar.update(1)
        if tr.save_freq >= 0 and (step == tr.max_steps or (tr.save_freq and step % tr.save_freq == 0)):
            checkpoint(run, step, metrics)
    if bar is not None:
        bar.close()
    summary = {"steps": tr.max_steps, "skipped_rows": dict(run.skipped), "rows": len(run.rows), "last": metrics}
    if run.rank == 0:
        write_text_atomic(run.out_dir / "summary.json", json.dumps(summary, indent=2))
    return metrics


def planned_world_size(given: int | None) -> int:
    """--world-size, else $WORLD_SIZE, else 1; each must be a whole number >= 1."""
    if given is not None:
        if given < 1:
            raise UsageError(f"--world-size {given}: must be >= 1")
        return given
    raw = os.environ.get("WORLD_SIZE", "1")
    if not raw.strip().isdigit() or int(raw) < 1:
        raise UsageError(f"WORLD_SIZE={raw!r}: must be a whole number >= 1")
    return int(raw)


def _finite(metrics: dict[str, float]) -> bool:
    return all(math.isfinite(v) for v in metrics.values())


def main(argv: list[str] | None = None) -> int:
    import argparse

    from .config import load_config

    parser = argparse.ArgumentParser(prog="python -m train", description="Share-GRPO / GRPO training.")
    parser.add_argument("--config", required=True, action="append",
                        help="YAML config (see reproduce/configs/); repeat to layer files, later ones win")
    parser.add_argument("--local_rank", "--local-rank", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--dry-run", action="store_true",
                        help="validate the config and print the rows per step and update, the updates per rollout, "
                             "the micro-batches per update and DeepSpeed's memory estimate; no training")
    parser.add_argument("--world-size", type=int, default=None,
                        help="GPUs the dry run plans for (default: $WORLD_SIZE or 1)")
    parser.add_argument("overrides", nargs="*", help="dotted key=value overrides, e.g. trainer.max_steps=5")
    args = parser.parse_args(argv)

    def run() -> int:
        cfg = load_config(args.config, args.overrides)
        if args.dry_run:
            from .plan import dry_run, report

            print(report(dry_run(cfg, planned_world_size(args.world_size))))
            return 0
        planned_world_size(None)  # a malformed $WORLD_SIZE stops here, not inside torch.distributed
        with contextlib.suppress(KeyboardInterrupt):
            metrics = train(cfg)
            return 0 if _finite(metrics) else 1
        print("interrupted; resume with trainer.resume=auto", file=sys.stderr)
        return 130

    return exit_on_usage_error(run)
