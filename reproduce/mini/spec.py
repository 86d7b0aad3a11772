"""What the miniature is: its sizes (`MiniSpec`), the regimes `make reproduce-table1 REGIME=` runs,
the methods and their runs, and the code each stage's outputs depend on (`STAGE_CODE`), so that a
changed generator, trainer or scorer never reuses old results."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from bench.data import MINIATURE_TASKS

REPO = Path(__file__).resolve().parents[2]


CONFIGS = REPO / "reproduce" / "configs"


DATA_GENERATOR = REPO / "bench" / "data.py"


WARMUP_CODE = REPO / "train" / "warmup.py"


_REWARD_CODE = (*sorted((REPO / "bench" / "verify").glob("*.py")), REPO / "bench" / "prompts.py")


STAGE_CODE = {  # code whose every change redoes a stage: the trainer and its reward; the evaluation path
    "rl": (*sorted((REPO / "train").glob("*.py")), *_REWARD_CODE, REPO / "bench" / "processing.py"),
    "eval": (*_REWARD_CODE, *(REPO / "bench" / f for f in ("adapter.py", "run.py", "score.py", "vlmeval_compat.py"))),
}


TASKS = MINIATURE_TASKS  # bench.data.TASKS says which tasks the miniature uses, and why


METHODS = {"GRPO": "mini_grpo.yaml", "Share-GRPO": "mini_sharegrpo.yaml"}


EQUAL_COST = "Share-GRPO, half the steps"


"""The row of Share-GRPO's checkpoint at half its steps: about GRPO's cost (a Share-GRPO step trains
twice the rows)."""


@dataclass(frozen=True)
class MiniSpec:
    seeds: tuple[int, ...] = (1, 2, 3)
    tasks: tuple[str, ...] = TASKS
    bench_items: int = 200  # per benchmark task: a standard error of at most 3.5 points
    train_rows: int = 3000
    warm_eval_items: int = 256  # held-out training questions that choose the warm start
    side: int = 84
    model_size: str = "mini"
    vision_steps: int = 400
    warmup_steps: int = 125
    """Supervised warm-up steps, fixed. Chosen once from the warm-ups the earlier stop rule ran
    (results/mini/run.json before the pin: sampled held-out accuracy 48% at step 125, 52% at 150,
    64% at 175, where that rule stopped and left RL +1.8 points): a Base that leaves RL room."""
    warmup_eval_every: int = 25
    rl_steps: int = 300
    rl_save_freq: int = 50
    curve_steps: tuple[int, ...] = (150, 300)
    """Steps at which both methods' checkpoints are evaluated (held-out learning curves); half of
    rl_steps among them is Share-GRPO's equal-cost row. Each is a multiple of rl_save_freq.
    `make reproduce-table1 CURVES=1` evaluates FULL_CURVE (15 more models, about 6 minutes more)."""
    parallel: int = 2
    eval_max_new_tokens: int = 32
    extra_overrides: tuple[str, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        """curve_steps always holds rl_steps and its half, and only steps a checkpoint is saved at."""
        if (self.rl_steps // 2) % self.rl_save_freq:
            raise ValueError(f"rl_save_freq={self.rl_save_freq} must divide half of rl_steps={self.rl_steps} "
                             "(Share-GRPO's equal-cost checkpoint)")
        kept = {x for x in self.curve_steps if x % self.rl_save_freq == 0 and 0 < x <= self.rl_steps}
        object.__setattr__(self, "curve_steps", tuple(sorted(kept | {self.rl_steps, self.rl_steps // 2})))

    def digest(self, stage: str, *parts: str) -> str:
        """What a stage's outputs depend on: its own fields and those of the stages before it
        (so the ablations, with other RL settings, reuse the data and warm start), the code of
        the data generator, which every stage depends on (a changed task never reuses old data),
        and the code each stage runs (`STAGE_CODE`: a changed trainer or scorer never reuses old
        results)."""
        fields = {"data": ("tasks", "bench_items", "train_rows", "warm_eval_items", "side")}
        fields["warm"] = (*fields["data"], "model_size", "vision_steps", "warmup_steps", "warmup_eval_every")
        fields["rl"] = (*fields["warm"], "rl_steps", "rl_save_freq", "extra_overrides")
        fields["eval"] = (*fields["data"], "eval_max_new_tokens", "curve_steps")
        spec = asdict(self)
        text = json.dumps([stage, {k: spec[k] for k in fields[stage]}, *parts], sort_keys=True)
        text += DATA_GENERATOR.read_text(encoding="utf-8")
        if stage in ("warm", "rl"):
            text += WARMUP_CODE.read_text(encoding="utf-8")
        if stage == "rl":
            text += "".join(p.read_text() for p in sorted(CONFIGS.glob("mini_*.yaml")))
        text += "".join(p.read_text(encoding="utf-8") for p in STAGE_CODE.get(stage, ()))
        return hashlib.sha256(text.encode()).hexdigest()[:16]


FULL_CURVE = (50, 100, 150, 300)


"""CURVES=1: the held-out curve's steps (results/mini/ was made with them)."""


REGIMES = {
    "main": (MiniSpec(), "mini", "mini"),
    # Share-GRPO targets sparse rewards: groups whose every response is wrong. This regime starts RL
    # from an earlier warm start on the two tasks the main warm start mostly fails, so more groups are
    # all wrong: 75 steps, where the earlier stop rule (20% sampled accuracy) stopped it (22%).
    "sparse": (MiniSpec(tasks=("SynthCount", "SynthChart"), warmup_steps=75), "mini_sparse", "mini/sparse"),
}


"""REGIME= of `make reproduce-table1`: name -> (spec, runs/ folder, results/ folder)."""


# The smoke version run by `make test`: tiny sizes, one seed, a couple of steps.
SMOKE = MiniSpec(seeds=(1,), bench_items=3, train_rows=32, warm_eval_items=4, side=56, model_size="tiny",
                 vision_steps=2, warmup_steps=2, warmup_eval_every=2, rl_steps=2, rl_save_freq=1, curve_steps=(1, 2),
                 parallel=2, eval_max_new_tokens=8,
                 extra_overrides=("data.min_pixels=3136", "data.max_pixels=3136", "data.max_response_length=8"))


@dataclass(frozen=True)
class RLRun:
    name: str  # also the model's name in the evaluation
    seed: int
    configs: tuple[str, ...]  # files under reproduce/configs/, layered in order
    overrides: tuple[str, ...] = ()


def method_runs(spec: MiniSpec) -> list[RLRun]:
    """Seed by seed, Share-GRPO before GRPO, so that a Share-GRPO run mostly shares the cores with a
    GRPO run. Two Share-GRPO runs side by side slow each other: 1.75 s a step against 1.30 beside
    GRPO (`REGIME=sparse`, 2 cores), while GRPO's 0.71 s hardly moves. A model of those step
    times puts this order at 1,054 s for the six runs, against 1,123 s for Share-GRPO runs first."""
    return [RLRun(f"{m}-s{seed}", seed, ("mini_base.yaml", cfg)) for seed in spec.seeds
            for m, cfg in reversed(METHODS.items())]


def step_name(name: str, step: int) -> str:
    """The model name of run `name`'s checkpoint at `step` (its last one is the run's own name)."""
    return f"{name}-step{step}"
