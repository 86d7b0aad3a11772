"""`make reproduce-table1` (SCALE=mini): the paper's experiment in miniature, on two CPU cores.

The package follows the pipeline: `spec` (what the miniature is), `stages` (data, warm start, RL,
export), `evaluation`, `analysis` (the numbers and verdicts), `report` (results/mini/) and
`pipeline` (`run_mini`, the stages in order); `probe` runs a cut-down pipeline under the
environment's numerics; `pooled` reads several runs' results and pools their verdicts.

Stages (each reused when its inputs are unchanged, redone with FORCE=1; an interrupted run picks up
at the last finished stage, and RL runs resume from their last checkpoint):
1. data: synthetic benchmarks (VLMEvalKit TSVs, `bench.data`) and a training split with no
   benchmark image; text variants come from paraphrase templates stored as `new_questions`.
   The tasks are `bench.data.MINIATURE_TASKS`: one the warm start solves and two it mostly fails,
   which a pilot showed RL can learn at this size (`bench.data.Task.in_miniature` says why the
   others are not used).
2. warm start: a tiny Qwen2.5-VL (`train.tiny`, size "mini"); its vision tower pretrained without
   answer labels; a supervised warm-up on think/boxed traces for a fixed number of steps, its
   sampled accuracy on held-out training questions logged (the "Base" row).
3. RL from the warm start, same steps and the same 8 generated responses per question:
   GRPO (n = 8 samples of the original) and Share-GRPO (Q = 2 variants x n = 4), several seeds
   (SEEDS=N), one learning rate for both (reproduce/configs/mini_base.yaml), checkpoints kept at
   the curve steps. A Share-GRPO step trains twice the rows, so its checkpoint at half the steps
   is the comparison at about equal cost (generated + trained tokens, which replay exactly).
4. evaluation of Base and every kept checkpoint through `bench.run` (VLMEvalKit) and
   `bench.score`, two evaluation processes at a time.
5. results/mini/: table1.md/.csv/.tex (mean ± standard error), the training statistics (training
   accuracy at equal steps, equal cost and equal wall-clock; uniform question groups, all wrong or
   all right; variants rescued by sharing), the held-out accuracy of both methods at the same
   steps with the area under each curve, the power of the design, closing sentences that follow
   from the numbers, curves.png, heldout_curves.png, the configs, versions and commit.

`python -m reproduce run --scale mini --bench-seed N` scores the same checkpoints on a fresh
benchmark drawn with seed N (no training image in it) and writes results/mini/bench_seed_N/.

Every task's answer (a count, a digit sum or difference, the tallest bar's height) survives the
expansion's rotations, flips and noise, so image transforms are on for every task.
"""

from .analysis import (
    compare,
    learning_curves,
    load_metrics,
    power,
    rl_gain,
    speed_verdict,
    training_summary,
    verdict,
)
from .evaluation import EVALUATED, EvalHead, Runner, eval_key, stage_eval
from .pipeline import run_mini
from .spec import (
    EQUAL_COST,
    FULL_CURVE,
    REGIMES,
    SMOKE,
    STAGE_CODE,
    TASKS,
    MiniSpec,
    RLRun,
    method_runs,
    step_name,
)
from .stages import Stage, stage_rl

__all__ = [
    "EQUAL_COST", "EVALUATED", "FULL_CURVE", "REGIMES", "SMOKE", "STAGE_CODE", "TASKS", "EvalHead", "MiniSpec",
    "RLRun", "Runner", "Stage", "compare", "eval_key", "learning_curves", "load_metrics", "method_runs", "power",
    "rl_gain", "run_mini", "speed_verdict", "stage_eval", "stage_rl", "step_name", "training_summary", "verdict",
]
