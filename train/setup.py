"""A training run's set-up: the process group, the DeepSpeed engine around the policy, the
reference model, the verifier's worker count, the data order, and `Run`, which every stage of the
loop (train/trainer.py) reads."""

from __future__ import annotations

import contextlib
import json
import os
import random
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.distributed as dist
import yaml

from bench.errors import UsageError
from bench.fileio import write_text_atomic
from bench.lock import hold_folder_lock
from bench.processing import load_processor

from .config import Config, config_to_dict, reward_function
from .data import Row, load_rows
from .encoding import model_device
from .launcher import launcher_env_defaults
from .plan import BatchPlan
from .rollout import RolloutEngine, make_rollout


def init_distributed() -> tuple[int, int]:
    """(rank, world size); single-process runs get a one-rank gloo group on 127.0.0.1."""
    launcher_env_defaults()
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


@contextlib.contextmanager
def policy_loading(cfg: Config, world: int):
    """`from_pretrained` keyword arguments that load the policy as DeepSpeed will train it: in the
    training dtype (bf16 under worker.actor.bf16, which DeepSpeed would cast it to anyway, so the
    weights are the same), on this rank's GPU, and under ZeRO-3 partitioned as it is built
    (transformers' `HfDeepSpeedConfig` makes `from_pretrained` build it inside
    `deepspeed.zero.Init`, transformers/modeling_utils.py `needs_zero3_init`). Loading the whole
    model in float32 on the host first took 4 bytes a parameter in every rank's memory (about 33 GB
    a rank at 7B) and its time. On a CPU, float32 checkpoints load as before."""
    actor = cfg.worker.actor
    load: dict = {"dtype": torch.bfloat16 if actor.bf16 else torch.float32}
    if actor.zero_stage == 3:
        with built_partitioned(deepspeed_config(cfg, world)):
            yield load
        return
    if torch.cuda.is_available():
        load["device_map"] = {"": torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))}
    yield load


@contextlib.contextmanager
def built_partitioned(config: dict):
    """Within it, `from_pretrained` builds a model inside `deepspeed.zero.Init` with this ZeRO-3
    config (transformers reads it through a weak reference to an `HfDeepSpeedConfig`)."""
    from transformers.integrations import HfDeepSpeedConfig

    zero3 = HfDeepSpeedConfig(config)
    try:
        yield
    finally:
        del zero3


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
    if actor.zero_stage != 3:
        ref = Qwen2_5_VLForConditionalGeneration.from_pretrained(actor.model.model_path, dtype=dtype).eval()
        return ref.requires_grad_(False).to(device)
    import deepspeed
    config = {"train_micro_batch_size_per_gpu": 1, "train_batch_size": world, "zero_optimization": {"stage": 3},
              "bf16": {"enabled": actor.bf16}, "steps_per_print": 10**9}
    if actor.offload:
        config["zero_optimization"]["offload_param"] = {"device": "cpu"}
    with built_partitioned(config):  # as the policy (`policy_loading`)
        ref = Qwen2_5_VLForConditionalGeneration.from_pretrained(actor.model.model_path, dtype=dtype).eval()
    ref.requires_grad_(False)
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
    policy: object  # the DeepSpeed engine around the policy model (its `.module`)
    scheduler: torch.optim.lr_scheduler.LRScheduler
    ref_model: torch.nn.Module | None
    rollout_engine: RolloutEngine  # generates the responses (train.rollout.ROLLOUT_ENGINES)
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
    def questions_per_update_per_rank(self) -> int:
        """This rank's share of an update: global_batch_size / Q questions split over the ranks
        (`BatchPlan.questions_per_update` is the global count)."""
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
    with policy_loading(cfg, world) as load:
        model = Qwen2_5_VLForConditionalGeneration.from_pretrained(actor.model.model_path, **load)
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
        from bench.preflight import architecture_problem

        try:
            data = json.loads((local / "config.json").read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
            raise UsageError(f"worker.actor.model.model_path={path}: config.json is not valid JSON ({exc})") from None
        problem = architecture_problem(local / "config.json", data)
        if problem:
            raise UsageError(f"worker.actor.model.model_path={path}: {problem}")
        return
    looks_local = path.startswith((".", "/", "~")) or local.suffix or Path(local.parts[0] if local.parts else "").is_dir()
    if not path or path.count("/") != 1 or looks_local:
        raise UsageError(f"worker.actor.model.model_path={path!r}: no such folder, and not a hub id (org/name)")
