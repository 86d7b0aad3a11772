"""The trainer's configuration: one dataclass tree, loaded from YAML, overridden by dotted keys.

Keys follow EasyR1's names where they mean the same thing (`data.rollout_batch_size`,
`worker.rollout.n`, `worker.actor.global_batch_size`, ...). Every field is documented once, here.
Invariants are checked when the config is built, with messages that say how to fix them.

    cfg = load_config("reproduce/configs/tiny_cpu.yaml", ["trainer.max_steps=2", "worker.rollout.n=4"])
"""

from __future__ import annotations

import dataclasses
import importlib
import math
import re
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any, get_type_hints

import yaml

from bench.errors import UsageError
from bench.registry import Registry
from bench.verify import MODES as VERIFIER_MODES

from .algos import (
    ADVANTAGE_ESTIMATORS,
    ADVANTAGE_TERMS,
    GLOBAL_STD_OVER,
    KL_ESTIMATORS,
    LOSS_AGGREGATIONS,
    LOSS_NORMALIZATIONS,
)
from .expand import IMAGE_TRANSFORMS, SHORT_POLICIES
from .rollout import ROLLOUT_ENGINES
from .sampling import SamplingConfig


class ConfigError(UsageError, ValueError):
    """A config that cannot run: unknown key, wrong type, broken invariant, unreadable file."""


LOGGERS: Registry[str] = Registry("logger")
"""Where step metrics go; metrics.jsonl is written whatever this says."""
LOGGERS.add("jsonl", "{output_dir}/metrics.jsonl (always written)")
LOGGERS.add("console", "one line per step when the progress bar is off")
LOGGERS.add("tensorboard", "{output_dir}/tensorboard (needs the tensorboard package)")
LOGGERS.add("wandb", "Weights & Biases (needs the wandb package and a login)")

REWARD_FUNCTION = re.compile(r"[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*:[A-Za-z_][\w]*")
MAX_CONFIG_VALUES = 100_000
"""A config tree larger than this, counting each use of a YAML alias, is refused at load: nine
nested aliases of ten items each would otherwise expand to 10^9 values when the config is saved."""


@dataclass
class DataConfig:
    train_files: str = ""
    """Training data: a parquet/JSONL/JSON file or a `datasets` folder (columns below)."""
    prompt_key: str = "problem"
    """Column with the question (may contain `<image>` placeholders)."""
    answer_key: str = "answer"
    """Column with the gold answer."""
    image_key: str = "images"
    """Column with the images (bytes, file paths, {"bytes"|"path"} dicts or PIL images)."""
    rewrites_key: str = "new_questions"
    """Column with offline text rewrites (a list, or the string form of one); optional."""
    max_prompt_length: int = 2048
    """Rows whose prompt (tokens, images included) is longer are skipped and counted."""
    max_response_length: int = 2048
    """New tokens generated per response."""
    rollout_batch_size: int = 512
    """Questions (B) sampled per training step."""
    shuffle: bool = True
    """Reshuffle the data every epoch (seeded by trainer.seed)."""
    min_pixels: int = 262144
    """Images smaller than this are scaled up (before the processor)."""
    max_pixels: int = 1048576
    """Images larger than this are scaled down (before the processor)."""


@dataclass
class AlgorithmConfig:
    adv_estimator: str = "share_grpo"
    """A name in `algos.ADVANTAGE_ESTIMATORS`: share_grpo (hierarchical advantages over Q variants),
    or a single-variant estimator such as grpo (then num_variants must be 1)."""
    num_variants: int = 2
    """Q: variants per question (Share-GRPO). 1 for GRPO."""
    keep_original: bool = False
    """Always use the original question as one of the Q text variants."""
    text_variants: bool = True
    """Draw variants from the offline rewrites; false: every variant keeps the original text
    (the "image variants only" ablation)."""
    short_variants: str = "repeat"
    """Fewer than Q distinct text variants: a policy in `expand.SHORT_POLICIES`."""
    image_transform_prob: float = 0.3
    """Probability that a variant's images are transformed (one of nine transforms)."""
    image_transforms: list[str] | None = None
    """Allowed names from `expand.IMAGE_TRANSFORMS` (None: all nine)."""
    global_std_over: str = "responses"
    """Share-GRPO global std (`algos.GLOBAL_STD_OVER`): over the Q*n "responses" (ours) or the
    Q*Q*n "rows" (the released code)."""
    advantage_terms: str = "both"
    """Share-GRPO advantage terms kept (`algos.ADVANTAGE_TERMS`; the ablations drop one)."""
    dynamic_sampling: bool = False
    """Drop question groups whose rewards are all equal before the update."""
    disable_kl: bool = True
    """No reference model and no KL term (the released setting)."""
    kl_penalty: str = "low_var_kl"
    """KL estimator (`algos.KL_ESTIMATORS`) when disable_kl is false."""
    kl_coef: float = 1e-2
    """Weight of the KL term in the loss."""


@dataclass
class OptimConfig:
    lr: float = 1e-6
    """AdamW learning rate."""
    weight_decay: float = 1e-2
    """AdamW weight decay."""
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    """AdamW betas."""
    lr_warmup_steps: int = 0
    """Linear warm-up steps (then constant)."""


@dataclass
class ModelConfig:
    model_path: str = ""
    """A Hugging Face checkpoint folder or hub id (hub ids download only when named)."""
    freeze_vision_tower: bool = False
    """Train only the language model (the released run trains the vision tower)."""
    enable_gradient_checkpointing: bool = False
    """Recompute activations in the backward pass."""


@dataclass
class ActorConfig:
    global_batch_size: int = 128
    """Update size in the released code's unit, n*Q rows (worker.rollout.n x algorithm.num_variants):
    an optimizer update trains on global_batch_size*n*Q rows, which are global_batch_size/Q whole
    questions of Q*Q*n shared rows each (for GRPO, Q = 1: global_batch_size questions). A step
    makes rollout_batch_size*Q/global_batch_size updates; `python -m train --dry-run` prints them."""
    micro_batch_size_per_device_for_update: int = 4
    """Training rows per forward/backward (gradient accumulation inside an update)."""
    micro_batch_size_per_device_for_experience: int = 16
    """Rows per no-grad forward when computing old log-probs."""
    share_prompt_prefix: bool = True
    """Where it is estimated cheaper (prompts long next to responses), run each distinct prompt
    of a micro-batch once and its rows' responses on its KV cache (same log-probs, fewer tokens:
    Share-GRPO trains Q*n rows per prompt); otherwise whole rows under causal attention. Gradient
    checkpointing turns the cache off, so under it every row runs its whole prompt."""
    ppo_epochs: int = 1
    """Passes over the rollout per step."""
    clip_ratio_low: float = 0.2
    """PPO clip below 1."""
    clip_ratio_high: float = 0.3
    """PPO clip above 1."""
    clip_ratio_dual: float = 3.0
    """Dual-clip constant for negative advantages (0 disables)."""
    loss_agg_mode: str = "token-mean"
    """How token losses become one number (`algos.LOSS_AGGREGATIONS`)."""
    loss_normalization: str = "whole_update"
    """How the micro-batches of an update are weighted (`algos.LOSS_NORMALIZATIONS`): whole_update
    (the aggregation over all rows of the update; independent of the micro-batch size) or
    per_micro_batch (each micro-batch's aggregate divided by the number of micro-batches: the
    released code)."""
    max_grad_norm: float = 1.0
    """Gradient-norm clip."""
    zero_stage: int = 2
    """DeepSpeed ZeRO stage 0-3."""
    bf16: bool = False
    """bf16 training (GPU)."""
    offload: bool = False
    """ZeRO CPU offload of optimizer state (and parameters at stage 3)."""
    optim: OptimConfig = field(default_factory=OptimConfig)
    model: ModelConfig = field(default_factory=ModelConfig)


@dataclass
class RolloutConfig(SamplingConfig):
    name: str = "hf"
    """Generation engine (`rollout.ROLLOUT_ENGINES`): hf (a sampling loop over the training model)
    or vllm (GPU)."""
    micro_batch_size: int = 64
    """Prompts per generate call (hf engine)."""
    cuda_graph: bool = True
    """hf engine on a GPU: replay the fixed-shape decoding step as a CUDA graph (false: the same
    step, run eagerly, kernel by kernel)."""
    gpu_memory_utilization: float = 0.6
    """vllm engine only."""


@dataclass
class RewardConfig:
    mode: str = "default"
    """Verifier mode (`bench.verify.MODES`): default (ours) or paper (the released grader)."""
    workers: int | None = None
    """Verifier worker processes per rank (None: the rank's share of the node's cores, at most 16)."""
    timeout_s: float = 2.0
    """Bound on one symbolic answer check."""
    function: str | None = None
    """Optional custom reward "module:function", called as fn(responses, golds) -> list[float];
    the verifier still reports accuracy and format. None: the verifier's 0.9 acc + 0.1 format."""


@dataclass
class WorkerConfig:
    actor: ActorConfig = field(default_factory=ActorConfig)
    rollout: RolloutConfig = field(default_factory=RolloutConfig)
    reward: RewardConfig = field(default_factory=RewardConfig)


@dataclass
class TrainerConfig:
    output_dir: str = "runs/default"
    """Checkpoints, metrics.jsonl and the saved config go here."""
    max_steps: int = 100
    """Training steps (one rollout batch each)."""
    save_freq: int = 50
    """Save a checkpoint every this many steps (and at the end); 0: only at the end; -1: never
    (benchmarks: a 3B model's checkpoint with optimizer state is 38.6 GB)."""
    save_limit: int = 2
    """Keep this many most recent checkpoints."""
    resume: str = "auto"
    """auto (latest checkpoint in output_dir, if any), none, or a checkpoint folder."""
    seed: int = 1
    """Seeds data order, expansion and sampling."""
    logger: list[str] = field(default_factory=lambda: ["jsonl", "console"])
    """Any of jsonl (always on), console, tensorboard, wandb."""
    project_name: str = "r1-sharevl"
    experiment_name: str = "run"
    progress_bar: bool = True


@dataclass
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    algorithm: AlgorithmConfig = field(default_factory=AlgorithmConfig)
    worker: WorkerConfig = field(default_factory=WorkerConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Every invariant the config must hold, checked at load: each problem named by its key, all
        at once. ConfigError otherwise."""
        nonfinite = [f"{key}={value} must be a finite number" for key, value in _numbers(self) if not math.isfinite(value)]
        problems = [*nonfinite, *self._name_problems(), *self._batch_problems(), *self._setting_problems(),
                    *self._bound_problems()]
        if problems:
            raise ConfigError("invalid config: " + "; ".join(problems))

    def _name_problems(self) -> list[str]:
        """Names that must be in their registry, and an estimator that takes one variant only."""
        a, actor, ro = self.algorithm, self.worker.actor, self.worker.rollout
        problems = []
        names = [("algorithm.adv_estimator", a.adv_estimator, ADVANTAGE_ESTIMATORS),
                 ("algorithm.global_std_over", a.global_std_over, GLOBAL_STD_OVER),
                 ("algorithm.advantage_terms", a.advantage_terms, ADVANTAGE_TERMS),
                 ("algorithm.short_variants", a.short_variants, SHORT_POLICIES),
                 ("algorithm.kl_penalty", a.kl_penalty, KL_ESTIMATORS),
                 ("worker.actor.loss_agg_mode", actor.loss_agg_mode, LOSS_AGGREGATIONS),
                 ("worker.actor.loss_normalization", actor.loss_normalization, LOSS_NORMALIZATIONS),
                 ("worker.rollout.name", ro.name, ROLLOUT_ENGINES),
                 ("worker.reward.mode", self.worker.reward.mode, VERIFIER_MODES),
                 *(("algorithm.image_transforms", t, IMAGE_TRANSFORMS) for t in a.image_transforms or [])]
        problems += [f"{key}: {registry.unknown(value)}" for key, value, registry in names if value not in registry]
        single = a.adv_estimator in ADVANTAGE_ESTIMATORS and ADVANTAGE_ESTIMATORS.info(a.adv_estimator)["variants"] == "one"
        if single and a.num_variants != 1:
            problems.append(f"algorithm.adv_estimator={a.adv_estimator} needs algorithm.num_variants=1 "
                            "(give the GRPO baseline worker.rollout.n = n*Q for the same budget)")
        return problems

    def _batch_problems(self) -> list[str]:
        """The counts that size a step and its updates: positive, and dividing each other."""
        a, d, actor, ro = self.algorithm, self.data, self.worker.actor, self.worker.rollout
        problems = []
        positive = {"data.rollout_batch_size": d.rollout_batch_size, "data.max_prompt_length": d.max_prompt_length,
                    "data.max_response_length": d.max_response_length, "algorithm.num_variants": a.num_variants,
                    "worker.rollout.n": ro.n, "worker.rollout.micro_batch_size": ro.micro_batch_size,
                    "worker.actor.global_batch_size": actor.global_batch_size, "worker.actor.ppo_epochs": actor.ppo_epochs,
                    "worker.actor.micro_batch_size_per_device_for_update": actor.micro_batch_size_per_device_for_update,
                    "worker.actor.micro_batch_size_per_device_for_experience":
                        actor.micro_batch_size_per_device_for_experience,
                    "trainer.max_steps": self.trainer.max_steps}
        problems += [f"{key}={value} must be >= 1" for key, value in positive.items() if value < 1]
        if self.trainer.save_freq < -1:
            problems.append(f"trainer.save_freq={self.trainer.save_freq} must be >= -1 (0: save only at the end, "
                            "-1: never)")
        if 1 <= ro.n * a.num_variants < 2:
            problems.append("a question needs at least 2 responses (worker.rollout.n * algorithm.num_variants >= 2)")
        if a.num_variants >= 1 and actor.global_batch_size >= 1:
            q = a.num_variants
            if actor.global_batch_size % q:
                problems.append(f"worker.actor.global_batch_size={actor.global_batch_size} must be a multiple of "
                                f"algorithm.num_variants={q}: an update holds global_batch_size/Q whole questions")
            elif d.rollout_batch_size % (actor.global_batch_size // q):
                problems.append(f"data.rollout_batch_size={d.rollout_batch_size} must be a multiple of "
                                f"worker.actor.global_batch_size/num_variants={actor.global_batch_size // q} "
                                "(the questions per update)")
        return problems

    def _setting_problems(self) -> list[str]:
        """Settings that depend on others: offload on ZeRO, pixel range, response length, the reward function."""
        a, d, actor, ro = self.algorithm, self.data, self.worker.actor, self.worker.rollout
        problems = []
        if actor.offload and actor.zero_stage < 2:
            problems.append("worker.actor.offload needs worker.actor.zero_stage 2 or 3 (ZeRO-Offload)")
        if not 0 <= actor.zero_stage <= 3:
            problems.append("worker.actor.zero_stage must be 0, 1, 2 or 3")
        if not 0.0 <= a.image_transform_prob <= 1.0:
            problems.append("algorithm.image_transform_prob must be in [0, 1]")
        if d.min_pixels > d.max_pixels:
            problems.append("data.min_pixels must not exceed data.max_pixels")
        if self.trainer.save_limit < 1:
            problems.append("trainer.save_limit must be >= 1")
        if not 0 <= ro.min_tokens <= d.max_response_length:
            problems.append(f"worker.rollout.min_tokens={ro.min_tokens} must be in [0, data.max_response_length="
                            f"{d.max_response_length}]")
        fn = self.worker.reward.function
        if isinstance(fn, str) and not REWARD_FUNCTION.fullmatch(fn):
            problems.append(f"worker.reward.function={fn!r} must look like package.module:function")
        return problems

    def _bound_problems(self) -> list[str]:
        """Numbers within their ranges (optimizer, sampling, reward, seed, clipping) and known logger names."""
        a, d, actor, ro = self.algorithm, self.data, self.worker.actor, self.worker.rollout
        problems = []
        optim, tr = actor.optim, self.trainer
        bounds = [("worker.actor.optim.lr", optim.lr, 0, None), ("worker.actor.optim.weight_decay", optim.weight_decay, 0, None),
                  ("worker.actor.optim.lr_warmup_steps", optim.lr_warmup_steps, 0, None),
                  ("worker.actor.max_grad_norm", actor.max_grad_norm, 0, None),
                  ("worker.actor.clip_ratio_low", actor.clip_ratio_low, 0, None),
                  ("worker.actor.clip_ratio_high", actor.clip_ratio_high, 0, None),
                  ("worker.actor.clip_ratio_dual", actor.clip_ratio_dual, 1, None), ("algorithm.kl_coef", a.kl_coef, 0, None),
                  ("worker.rollout.top_p", ro.top_p, 0, 1), ("worker.rollout.gpu_memory_utilization", ro.gpu_memory_utilization, 0, 1),
                  ("worker.reward.timeout_s", self.worker.reward.timeout_s, 0, None)]
        problems += [f"{key}={value} must be >= {lo}" + (f" and <= {hi}" if hi is not None else "")
                     for key, value, lo, hi in bounds if value < lo or (hi is not None and value > hi)]
        if not ro.temperature > 0:
            problems.append(f"worker.rollout.temperature={ro.temperature} must be > 0 (sampling)")
        if ro.top_k != -1 and ro.top_k < 1:
            problems.append(f"worker.rollout.top_k={ro.top_k} must be -1 (off) or >= 1")
        if self.worker.reward.workers is not None and self.worker.reward.workers < 1:
            problems.append(f"worker.reward.workers={self.worker.reward.workers} must be >= 1 (or null: one per core)")
        if len(optim.betas) != 2 or not all(0 <= b < 1 for b in optim.betas):
            problems.append(f"worker.actor.optim.betas={optim.betas} must be two numbers in [0, 1)")
        problems += [f"trainer.logger: {LOGGERS.unknown(name)}" for name in tr.logger if name not in LOGGERS]
        if not 0 <= tr.seed < 2**63:
            problems.append(f"trainer.seed={tr.seed} must be in [0, 2**63) (the range every generator here takes)")
        if not actor.clip_ratio_low < 1:
            problems.append(f"worker.actor.clip_ratio_low={actor.clip_ratio_low} must be < 1 (the ratio's lower "
                            "clip is 1 - clip_ratio_low)")
        problems += [f"data.{k}={getattr(d, k)} must be >= 1" for k in ("min_pixels", "max_pixels") if getattr(d, k) < 1]
        return problems


def _numbers(node, path: str = ""):
    """(dotted key, value) of every float in the config tree, lists' items included: each must be
    finite, since a NaN passes every comparison that bounds it (`nan < 0` is False)."""
    if is_dataclass(node):
        for f in fields(node):
            yield from _numbers(getattr(node, f.name), f"{path}{f.name}.")
    elif isinstance(node, list | tuple):
        for i, item in enumerate(node):
            yield from _numbers(item, f"{path[:-1]}[{i}].")
    elif isinstance(node, float):
        yield path[:-1], node


def _build(cls, values: dict[str, Any], path: str):
    """A dataclass from a nested dict, rejecting unknown keys by their dotted path."""
    hints = get_type_hints(cls)
    names = {f.name for f in fields(cls)}
    unknown = set(values) - names
    if unknown:
        raise ConfigError(f"unknown config key(s): {', '.join(sorted(f'{path}{k}' for k in unknown))}; "
                         f"valid under {path or 'the top level'}: {', '.join(sorted(names))}")
    kwargs = {}
    for name, value in values.items():
        hint = hints[name]
        if dataclasses.is_dataclass(hint):
            if not isinstance(value, dict):
                raise ConfigError(f"config key {path}{name} must be a mapping")
            kwargs[name] = _build(hint, value, f"{path}{name}.")
        else:
            kwargs[name] = value
    return cls(**kwargs) if cls is not Config else _without_validation(cls, kwargs)


def _without_validation(cls, kwargs):
    obj = cls.__new__(cls)
    for f in fields(cls):
        setattr(obj, f.name, kwargs.get(f.name, f.default_factory()))  # type: ignore[misc]
    return obj


def _set_dotted(tree: dict, dotted: str, value: Any) -> None:
    keys = dotted.split(".")
    node = tree
    for k in keys[:-1]:
        node = node.setdefault(k, {})
        if not isinstance(node, dict):
            raise ConfigError(f"override {dotted}: {k} is not a section")
    node[keys[-1]] = value


def _merge(base: dict, extra: dict) -> dict:
    out = dict(base)
    for key, value in extra.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def load_config(path: str | Path | list | None = None, overrides: list[str] | None = None) -> Config:
    """YAML file(s) (later files override earlier ones) plus `key=value` overrides (values parsed
    as YAML: 2, 1e-6, true, [a])."""
    tree: dict = {}
    for file in [] if path is None else (path if isinstance(path, list) else [path]):
        try:
            layer = yaml.safe_load(Path(file).read_text(encoding="utf-8")) or {}
        except OSError as exc:
            raise ConfigError(f"{file}: cannot read the config ({exc.strerror or exc})") from None
        except UnicodeDecodeError:
            raise ConfigError(f"{file}: the config is not UTF-8 text") from None
        except RecursionError:
            raise ConfigError(f"{file}: the config is nested too deeply to be read") from None
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" line {mark.line + 1}" if mark else ""
            raise ConfigError(f"{file}{where}: not valid YAML ({getattr(exc, 'problem', None) or exc})") from None
        if not isinstance(layer, dict):
            raise ConfigError(f"{file}: the config must be a mapping")
        _check_size(layer, str(file))
        tree = _merge(tree, layer)
    for item in overrides or []:
        if "=" not in item:
            raise ConfigError(f"override {item!r} must look like section.key=value")
        key, raw = item.split("=", 1)
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError:
            raise ConfigError(f"override {item[:60]!r}: the value is not valid YAML") from None
        except RecursionError:
            raise ConfigError(f"override {key.strip()!r}: the value is nested too deeply to be read") from None
        _check_size(value, f"override {key.strip()}")
        _set_dotted(tree, key.strip(), value)
    cfg = _build(Config, tree, "")
    _check_types(cfg, "")
    cfg.validate()
    reward_function(cfg)  # a custom reward that cannot be imported stops here, before any work
    return cfg


def _check_size(tree: Any, where: str) -> None:
    """Refuse a YAML value whose expansion (each alias counted every time it is used) exceeds
    MAX_CONFIG_VALUES; the walk stops as soon as it has counted that many."""
    count, stack = 0, [tree]
    while stack:
        node = stack.pop()
        count += 1
        if count > MAX_CONFIG_VALUES:
            raise ConfigError(f"{where}: the config expands to more than {MAX_CONFIG_VALUES:,} values "
                              "(nested YAML aliases?); write the values out")
        if isinstance(node, dict):
            stack.extend(node.keys())
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)


def reward_function(cfg: Config) -> Callable[[list[str], list[str]], list[float]] | None:
    """The custom reward `worker.reward.function` names, imported; None for the verifier's own."""
    spec = cfg.worker.reward.function
    if spec is None:
        return None
    module_name, name = spec.split(":")
    key = f"worker.reward.function={spec}"
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"{key}: cannot import {module_name} ({exc})") from None
    fn = getattr(module, name, None)
    if not callable(fn):
        raise ConfigError(f"{key}: {module_name} has no function {name}")
    return fn


def _check_types(obj, path: str) -> None:
    """Coerce ints and numeric strings given for float fields (PyYAML reads `1e-6`, without a dot,
    as a string); reject values of the wrong type, and non-finite floats, with their key."""
    hints = get_type_hints(type(obj))
    for f in fields(obj):
        value, hint = getattr(obj, f.name), hints[f.name]
        if dataclasses.is_dataclass(value):
            _check_types(value, f"{path}{f.name}.")
            continue
        ok, coerced = _coerce(value, hint)
        if not ok:
            shown = repr(value) if len(repr(value)) <= 60 else repr(value)[:57] + "..."
            raise ConfigError(f"config key {path}{f.name} must be {_describe(hint)}, got {shown}")
        setattr(obj, f.name, coerced)


def _coerce(value: Any, hint: Any) -> tuple[bool, Any]:
    """(whether `value` is a `hint`, the value as one): scalars, `X | None` and `list[X]`."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        for arm in typing.get_args(hint):
            ok, coerced = _coerce(value, arm)
            if ok:
                return True, coerced
        return False, value
    if hint is type(None):
        return value is None, value
    if typing.get_origin(hint) is list:
        if not isinstance(value, list):
            return False, value
        items = [_coerce(v, typing.get_args(hint)[0]) for v in value]
        return all(ok for ok, _ in items), [v for _, v in items]
    if hint is float:
        if isinstance(value, int) and not isinstance(value, bool):
            return True, float(value)
        if isinstance(value, str) and _is_float(value):
            return True, float(value)
        return isinstance(value, float) and math.isfinite(value), value
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool), value
    return isinstance(value, hint), value


def _describe(hint: Any) -> str:
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return " or ".join(_describe(a) for a in typing.get_args(hint))
    if hint is type(None):
        return "null"
    if typing.get_origin(hint) is list:
        item = typing.get_args(hint)[0]
        return "a list of " + {float: "finite numbers", int: "whole numbers", str: "strings"}.get(item, _describe(item))
    return {float: "a finite number", int: "a whole number", bool: "true or false", str: "a string"}.get(hint, str(hint))


def _is_float(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return text.strip().lower() not in ("nan", "inf", "-inf", "+inf", "infinity", "-infinity")


def config_to_dict(cfg: Config) -> dict:
    return dataclasses.asdict(cfg)
