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
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import Tensor

from bench.errors import UsageError, exit_on_usage_error
from bench.fileio import write_text_atomic
from bench.verify import Grade, grade_many

from . import algos
from .checkpoint import find_resume, load_checkpoint, save_checkpoint
from .config import AlgorithmConfig, Config, config_to_dict
from .data import Row, build_messages
from .encoding import Prompts, collate, encode_prompts
from .expand import draw_image_variant, draw_text_variants
from .logprobs import response_log_probs
from .metric_log import MetricLogger, all_reduce_mean
from .rollout import SamplingParams
from .setup import Run, set_up


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
    params = SamplingParams.of(run.cfg.worker.rollout, max_new_tokens=run.cfg.data.max_response_length)
    return run.rollout_engine.generate(run.policy.module, prompts, params)


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
    single_update = run.questions_per_update_per_rank == run.batch_shape[0] and run.cfg.worker.actor.ppo_epochs == 1
    if not len(rows) or (single_update and run.ref_model is None):
        return
    pad_id, size = run.processor.tokenizer.pad_token_id, run.cfg.worker.actor.micro_batch_size_per_device_for_experience
    old, ref = [], []
    run.policy.eval()
    with torch.no_grad():
        for s in range(0, len(rows), size):
            mb = rows.collate(prompts, list(range(s, min(s + size, len(rows)))), pad_id)
            if not single_update:
                old.append(response_log_probs(run.policy.module, prompts, mb, rows.width, mode=run.forward_mode)[0])
            if run.ref_model is not None:
                ref.append(response_log_probs(run.ref_model, prompts, mb, rows.width, mode=run.forward_mode)[0])
    run.policy.train()
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
    statistics (row-weighted `actor/*` values, `rows`, `trained_tokens` (prompt and response tokens
    of every row trained, per epoch), `updates`)."""
    cfg, engine = run.cfg, run.policy
    actor = cfg.worker.actor
    unit = algos.LOSS_AGGREGATIONS.info(actor.loss_agg_mode)["unit"]
    normalize = algos.LOSS_NORMALIZATIONS[actor.loss_normalization]
    size, pad_id = actor.micro_batch_size_per_device_for_update, run.processor.tokenizer.pad_token_id
    stats: Counter = Counter()
    on_device: dict[str, Tensor] = {}  # float64 sums kept on the device, read once at the end
    engine.train()
    for _epoch in range(actor.ppo_epochs):
        for group in update_groups(rows, run.questions_per_update_per_rank):
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
                m["entropy"] = (ent * mask).sum() / mask.sum().clamp(min=1)
                for k, v in m.items():
                    total = torch.as_tensor(v, device=lp.device).detach().double() * len(chunk)
                    on_device[f"actor/{k}"] = on_device.get(f"actor/{k}", 0.0) + total  # 0.0 + x is x exactly
                stats["rows"] += len(chunk)
                stats["trained_tokens"] += sum(len(prompts.input_ids[rows.prompt[r]]) + len(rows.response[r]) for r in chunk)
            stats["grad_norm"] += float(engine.get_global_grad_norm() if norm is None else norm)
            stats["updates"] += 1
    if on_device:  # one transfer per step: a float() per micro-batch would wait for the device each time
        stats.update(dict(zip(on_device, torch.stack(list(on_device.values())).tolist(), strict=True)))
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
    outcomes = algos.uniform_outcomes(torch.tensor([g.accuracy for g in grades], dtype=torch.float32).reshape(B, Q, -1))
    lengths = [len(r) for r in batch.responses]
    truncated = [len(r) >= d.max_response_length and int(r[-1]) != run.rollout_engine.eos_id for r in batch.responses]
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
        "adv/rescued_frac": vanish["rescued_frac"].item(),
        "adv/all_wrong_frac": outcomes["all_wrong_frac"].item(),
        "adv/all_correct_frac": outcomes["all_correct_frac"].item(),
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
        # the step's cost as a count that replays exactly (the equal-cost comparisons use it)
        "perf/generated_tokens": float(sum(lengths)),
        "perf/trained_tokens": float(stats["trained_tokens"]),
        "perf/tokens_per_s": sum(lengths) / step_time,
        **{f"perf/{k}_time": v for k, v in seconds.items()},
        **_graph_metrics(run.rollout_engine),
    }


def _graph_metrics(engine) -> dict[str, float]:
    """rollout/graph_captured and rollout/graph_failed (decoded eagerly instead), counted since the
    run began, where the engine tried CUDA graphs (the hf engine on a GPU); nothing elsewhere."""
    captures = getattr(engine, "graph_captures", {})
    return {f"rollout/graph_{k}": float(v) for k, v in captures.items()} if any(captures.values()) else {}


def resume(run: Run) -> tuple[int, dict[str, float]]:
    """Restore the latest checkpoint per trainer.resume; returns the last finished step (0: none)
    and that step's metrics."""
    path = find_resume(run.out_dir, run.cfg.trainer.resume)
    if path is None:
        return 0, {}
    state = load_checkpoint(run.policy, path, run.world)
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
    save_checkpoint(run.policy, run.out_dir, step, state, config_to_dict(run.cfg), tr.save_limit)


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
    parser.add_argument("--gpu-memory", type=float, default=None, metavar="GIB",
                        help="the dry run's GPU memory: refuse a plan whose per-GPU peak exceeds it")
    parser.add_argument("overrides", nargs="*", help="dotted key=value overrides, e.g. trainer.max_steps=5")
    args = parser.parse_args(argv)

    def run() -> int:
        cfg = load_config(args.config, args.overrides)
        if args.dry_run:
            from .plan import check_fits, dry_run, report

            plan = dry_run(cfg, planned_world_size(args.world_size), args.gpu_memory)
            print(report(plan))
            check_fits(plan)
            return 0
        planned_world_size(None)  # a malformed $WORLD_SIZE stops here, not inside torch.distributed
        with contextlib.suppress(KeyboardInterrupt):
            metrics = train(cfg)
            return 0 if _finite(metrics) else 1
        print("interrupted; resume with trainer.resume=auto", file=sys.stderr)
        return 130

    return exit_on_usage_error(run)
