"""Small plausible bugs that once passed every test (a mutation pass over scoring, planning,
checkpoint, judge and summary code): each test here fails on its bug class, against a hand-worked
case or a slow, obvious reference."""

from __future__ import annotations

import io
import json
import math
import random
from pathlib import Path

import pandas as pd
import pytest
import torch

from bench.verify.judge import _Worker as RealWorker

REPO = Path(__file__).resolve().parents[1]
TINY = REPO / "reproduce" / "configs" / "tiny_cpu.yaml"


# ---------------------------------------------------------------- scoring
def test_choices_are_lettered_from_a():
    from bench.score import options

    row = pd.Series({"question": "Which?", "answer": "B", "choices": "['3', '4', '5']"})
    assert options(row) == {"A": "3", "B": "4", "C": "5"}


def test_exact_match_divides_by_the_rows_it_scored_only():
    """Two rows with options in columns (one right), two free-form rows that exact matching
    cannot score: 50%, not 25%."""
    from bench.score import exact_match

    rows = [pd.Series({"A": "red", "B": "blue", "answer": "A", "prediction": "A"}),
            pd.Series({"A": "red", "B": "blue", "answer": "B", "prediction": "A"}),
            pd.Series({"answer": "7", "prediction": "7"}), pd.Series({"answer": "8", "prediction": "8"})]
    assert exact_match(rows) == pytest.approx(50.0)


@pytest.mark.parametrize(("scores", "ok"), [({"a": 1.0, "b": 0.5}, False), ({"a": 1.0, "b": 0.0}, False),
                                            ({"a": 1.5, "b": 40.0}, True), ({"a": 0.0, "b": 0.0}, True)])
def test_the_0_1_scale_check_includes_exactly_1(scores, ok):
    from reproduce.submit import SubmissionError, check_scores

    if ok:
        assert check_scores(scores) == scores
    else:
        with pytest.raises(SubmissionError, match="0-1 scale"):
            check_scores(scores)


@pytest.mark.parametrize(("value", "ok"), [("8.3B", True), ("72B", True), ("", True), ("8.3", False), ("8", False),
                                           ("8.3b", False), ("B", False), ("8.3B\n", False), ("\n", False)])
def test_the_parameters_field_needs_a_b(value, ok):
    """As JSON Schema defines `pattern` (ECMA-262: `$` is the end of the text), which Python's `$`
    is not: it matches before a final newline too, so "8.3B\n" passed until the validator used
    `ecma_pattern`."""
    from reproduce.submit import SchemaValidator

    schema = json.loads((REPO / "reproduce" / "schemas" / "leaderboard_file.schema.json").read_text())
    pattern = None
    stack = [schema]
    while stack and pattern is None:  # the Parameters property, wherever the schema nests it
        node = stack.pop()
        if isinstance(node, dict):
            if isinstance(node.get("Parameters"), dict) and "pattern" in node["Parameters"]:
                pattern = node["Parameters"]
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    assert pattern is not None
    errors = list(SchemaValidator(pattern).iter_errors(value))
    assert (not errors) == ok


# ---------------------------------------------------------------- the miniature's summary
def test_a_difference_within_two_standard_errors_is_not_a_verdict():
    from reproduce.mini import verdict

    assert verdict("A", "B", 3.0, 2.0).startswith("no difference between A and B is detectable")  # 1.5 SE
    assert verdict("A", "B", -4.0, 2.0).startswith("no difference")  # exactly 2 SE
    assert verdict("A", "B", 4.1, 2.0) == "A is ahead of B by 4.1 ± 2.0 points"
    assert verdict("A", "B", -4.1, 2.0) == "B is ahead of A by 4.1 ± 2.0 points"


def test_the_two_se_rule_at_its_edge():
    """One rule for every verdict: the table's sentences and `reproduce pool`'s pooled verdicts."""
    from reproduce.mini.analysis import two_se_rule

    words = ("up", "down", "none")
    assert [two_se_rule(d, 1.0, *words) for d in (2.0, 2.01, -2.0, -2.01, float("nan"))] == [
        "none", "up", "none", "down", "none"]


def _metrics_run(path: Path, steps: int, seconds: float, tokens: float) -> Path:
    path.mkdir()
    rows = [{"step": s, "reward/accuracy": s / 100, "adv/uniform_global_frac": 0.0, "adv/zero_frac": 0.0,
             "adv/all_wrong_frac": 0.0, "adv/all_correct_frac": 0.0, "adv/rescued_frac": 0.0,
             "perf/step_time": seconds, "perf/generated_tokens": tokens / 2, "perf/trained_tokens": tokens / 2}
            for s in range(1, steps + 1)]
    (path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_the_training_summary_takes_the_last_fifth_of_the_steps(tmp_path):
    from reproduce.mini import load_metrics, training_summary

    rl = {name: _metrics_run(tmp_path / name, 100, 1.0, 100.0) for name in ("GRPO-s1", "Share-GRPO-s1")}
    summary = training_summary({name: load_metrics(path) for name, path in rl.items()})
    assert summary["GRPO"]["train_acc_equal_steps"] == [pytest.approx(sum(range(81, 101)) / 20 / 100)]
    assert summary["GRPO"]["train_acc_start"] == [pytest.approx(sum(range(1, 11)) / 10 / 100)]


def test_equal_cost_and_time_windows_are_the_last_fifth_of_what_fits(tmp_path):
    """Share-GRPO's steps cost twice GRPO's: within GRPO's budget it runs 50 of its 100 steps, and
    its window is the last 10 of those 50 (steps 41-50), not the last 20 (steps 31-50: the last 20%
    of the whole run's length, which mixes in earlier, lower-accuracy steps)."""
    from reproduce.mini import load_metrics, training_summary

    rl = {"GRPO-s1": _metrics_run(tmp_path / "GRPO-s1", 100, 1.0, 100.0),
          "Share-GRPO-s1": _metrics_run(tmp_path / "Share-GRPO-s1", 100, 2.0, 200.0)}
    summary = training_summary({name: load_metrics(path) for name, path in rl.items()})
    assert summary["equal_cost_tokens"] == 100 * 100.0 and summary["equal_wall_clock_s"] == 100.0
    last_ten = pytest.approx(sum(range(41, 51)) / 10 / 100)
    assert summary["Share-GRPO"]["train_acc_equal_cost"] == [last_ten]
    assert summary["Share-GRPO"]["train_acc_equal_time"] == [last_ten]
    assert summary["GRPO"]["train_acc_equal_cost"] == summary["GRPO"]["train_acc_equal_steps"]
    assert summary["Share-GRPO"]["tokens_per_step"] == [200.0]


def test_power_hand_worked():
    from reproduce.mini import power

    p = power(se_diff=3.6, seeds=3, gap=3.0)
    assert p["detectable"] == pytest.approx(7.2) and p["detected_80pct"] == pytest.approx(10.08)
    assert p["seeds_to_show_gap"] == 18  # 3 * (7.2 / 3)^2 = 17.28
    assert p["seeds_to_detect_gap_80pct"] == 34  # 3 * (10.08 / 3)^2 = 33.87


def test_the_rl_stage_digest_covers_the_warm_up_code(tmp_path, monkeypatch):
    """A changed warm-up makes another base model, so every RL run made from the old one is stale."""
    import reproduce.mini.spec as mini

    spec = mini.MiniSpec()
    before = {stage: spec.digest(stage) for stage in ("data", "warm", "rl")}
    changed = tmp_path / "warmup.py"
    changed.write_text(mini.WARMUP_CODE.read_text() + "\n# changed\n")
    monkeypatch.setattr(mini, "WARMUP_CODE", changed)
    after = {stage: spec.digest(stage) for stage in ("data", "warm", "rl")}
    assert after["data"] == before["data"] and after["warm"] != before["warm"] and after["rl"] != before["rl"]


# ---------------------------------------------------------------- planning and data order
def test_an_update_is_split_over_the_ranks():
    from train.config import load_config
    from train.plan import BatchPlan

    cfg = load_config(TINY, ["data.rollout_batch_size=8", "worker.actor.global_batch_size=8"])
    one, two = BatchPlan.from_config(cfg, 1), BatchPlan.from_config(cfg, 2)
    assert one.questions_per_update == two.questions_per_update == 4
    assert one.questions_per_update_per_device == 4 and two.questions_per_update_per_device == 2


def reference_order(n_rows: int, seed: int, world: int, rank: int, draws: int) -> list[int]:
    """The slow, obvious order: one long sequence of seeded epoch permutations, dealt to the ranks
    like cards (rank r takes entries r, r + world, r + 2 world, ...)."""
    sequence = []
    for epoch in range((draws * world) // n_rows + 2):
        order = list(range(n_rows))
        random.Random(f"{seed}/{epoch}").shuffle(order)
        sequence += order
    return sequence[rank::world][:draws]


@pytest.mark.parametrize("world", [1, 2, 3])
def test_ranks_draw_disjoint_questions_that_cover_each_epoch(world):
    from train.setup import DataOrder

    n_rows, draws = 12, 12
    orders = [DataOrder(n_rows, seed=5, shuffle=True, rank=r, world=world) for r in range(world)]
    taken = [o.take(4) + o.take(draws - 4) for o in orders]  # two steps
    for r in range(world):
        assert taken[r] == reference_order(n_rows, 5, world, r, draws)
    first_epoch = [q for r in range(world) for q in taken[r][: n_rows // world]]
    assert sorted(first_epoch) == list(range(n_rows))  # no overlap between ranks, nothing missed


# ---------------------------------------------------------------- algorithms
def test_clip_frac_counts_the_tokens_whose_ratio_was_clipped():
    from train.algos import ppo_policy_loss

    old = torch.zeros(1, 4)
    new = torch.log(torch.tensor([[1.5, 1.6, 0.5, 1.1]]))  # two ratios over 1 + 0.3, one under 1 - 0.2
    _, m = ppo_policy_loss(new, old, torch.tensor([1.0]), torch.ones(1, 4), clip_low=0.2, clip_high=0.3)
    assert m["clip_frac"].item() == pytest.approx(0.5)  # A > 0: only the ratios above 1.3 are clipped
    _, m = ppo_policy_loss(new, old, torch.tensor([-1.0]), torch.ones(1, 4), clip_low=0.2, clip_high=0.3,
                           dual_clip=None)
    assert m["clip_frac"].item() == pytest.approx(0.25)  # A < 0: only the ratio below 0.8 is clipped


def test_one_variant_with_the_local_term_only_is_grpo():
    from train.algos import grpo_advantages, share_grpo_advantages

    rewards = torch.tensor([[[1.0, 0.0, 0.0, 1.0, 1.0]]])
    expected = grpo_advantages(rewards.reshape(1, 5)).reshape(1, 1, 1, 5)
    for terms in ("local", "global", "both"):
        torch.testing.assert_close(share_grpo_advantages(rewards, terms=terms), expected)


# ---------------------------------------------------------------- the judge's bounds
class FakeHandle:
    def __init__(self) -> None:
        self.cpu = 0.0

    def cpu_times(self):
        return type("T", (), {"user": self.cpu, "system": 0.0})()


def idle_worker():
    """A judge worker with no process: its CPU time is whatever the test sets."""
    worker = RealWorker.__new__(RealWorker)
    worker.handle, worker.proc = FakeHandle(), type("P", (), {"stdin": io.BytesIO()})()
    worker.task, worker.ready, worker.cpu_at_send, worker.wall_deadline = None, True, 0.0, 0.0
    return worker


def test_the_cpu_bound_counts_from_the_decision_not_from_start_up():
    worker = idle_worker()
    worker.handle.cpu = 5.0  # start-up and earlier decisions
    worker.send(0, ("default", "1", "1"), timeout_s=1.0)
    worker.handle.cpu = 5.9
    assert not worker.overran(1.0)
    worker.handle.cpu = 6.0
    assert worker.overran(1.0)


def test_a_decision_is_retried_once_then_fails(monkeypatch):
    import bench.verify.judge as judge

    monkeypatch.setattr(judge, "_Worker", idle_worker)
    pool = judge.BoundedJudge.__new__(judge.BoundedJudge)
    pool.workers = [idle_worker()]
    killed = []
    for w in pool.workers:
        w.kill = lambda w=w: killed.append(w)
    queue, retried, results = [], set(), [None] * 4
    first = pool.workers[0]
    first.task = 2
    pool._retry_or_fail(first, queue, retried, results, "timeout")
    assert queue == [2] and results[2] is None and killed == [first] and pool.workers[0] is not first
    second = pool.workers[0]
    second.kill = lambda: killed.append(second)
    second.task = 2
    pool._retry_or_fail(second, queue := [], retried, results, "timeout")
    assert queue == [] and results[2] == (False, "timeout") and killed == [first, second]


def test_the_mutation_report_counts_no_tests_against_a_module():
    from tests.helpers.mutation_report import kill_rates, summarise

    text = ("    train.plan.x_dry_run__mutmut_1: killed\n    train.plan.xǁBatchPlanǁfrom_config__mutmut_2: survived\n"
            "    train.plan.x_report__mutmut_3: no tests\n    train.plan.x_report__mutmut_4: timeout\n"
            "    bench.score.x_normalise__mutmut_1: not checked\n")
    counts = summarise(text)
    assert set(counts) == {"train.plan", "bench.score"}
    assert kill_rates(counts["train.plan"]) == (pytest.approx(200 / 3), 50.0)
    assert kill_rates(counts["bench.score"]) == (None, None)


def test_learning_curve_areas_hand_worked(tmp_path):
    """Base 40, GRPO 50 at step 1 and 60 at step 2, Share-GRPO 60 at both: trapezoid areas over 2
    steps are 50 and 55, and each point's cost is the tokens spent up to it."""
    from dataclasses import replace

    from reproduce.mini import SMOKE, learning_curves, load_metrics, step_name

    spec = replace(SMOKE, seeds=(1,))
    tasks = spec.tasks
    at = {"Base": 40.0, step_name("GRPO-s1", 1): 50.0, "GRPO-s1": 60.0, step_name("Share-GRPO-s1", 1): 60.0,
          "Share-GRPO-s1": 60.0}
    scores = {model: {t: {"accuracy": v} for t in tasks} for model, v in at.items()}
    rl = {"GRPO-s1": _metrics_run(tmp_path / "GRPO-s1", 2, 1.0, 100.0),
          "Share-GRPO-s1": _metrics_run(tmp_path / "Share-GRPO-s1", 2, 2.0, 200.0)}
    curves = learning_curves(spec, scores, {name: load_metrics(path) for name, path in rl.items()})
    assert curves["steps"] == [0, 1, 2]
    assert curves["GRPO"]["accuracy"] == [[40.0, 50.0, 60.0]] and curves["GRPO"]["auc"] == [50.0]
    assert curves["Share-GRPO"]["auc"] == [55.0] and curves["Share-GRPO"]["cost"] == [[0.0, 200.0, 400.0]]
    # each area's error: the binomial error over items x tasks x points x seeds answers (3 x 3 x 3 x 1 = 27),
    # no seed-to-seed term with one seed; counted over one benchmark's items (9) it would be sqrt(3)x larger
    assert len(tasks) == 3 and spec.bench_items == 3
    assert curves["GRPO"]["auc_se"] == pytest.approx(100 * math.sqrt(0.50 * 0.50 / 27))  # 9.62
    assert curves["Share-GRPO"]["auc_se"] == pytest.approx(100 * math.sqrt(0.55 * 0.45 / 27))  # 9.57
    assert curves["auc_diff"]["diff"] == pytest.approx(5.0)
    assert curves["auc_diff"]["se"] == pytest.approx(math.hypot(100 * math.sqrt(0.25 / 27), 100 * math.sqrt(0.2475 / 27)))


def test_learning_curve_area_error_with_seeds_hand_worked(tmp_path):
    """Two seeds, GRPO areas 50 and 60 (mean 55): binomial sqrt(.55 x .45 / (3 x 3 x 3 x 2)) x 100 = 6.77
    and seed-to-seed std / sqrt(2) = 7.07 / 1.414 = 5.0, combined 8.42."""
    from dataclasses import replace

    from reproduce.mini import SMOKE, learning_curves, load_metrics, step_name

    spec = replace(SMOKE, seeds=(1, 2))
    at = {"Base": 40.0}
    for seed, last in ((1, 60.0), (2, 100.0)):  # areas (40 + 50) / 2 / 2 + (50 + last) / 2 / 2 = 50, 60
        at |= {step_name(f"GRPO-s{seed}", 1): 50.0, f"GRPO-s{seed}": last,
               step_name(f"Share-GRPO-s{seed}", 1): 50.0, f"Share-GRPO-s{seed}": last}
    scores = {model: {t: {"accuracy": v} for t in spec.tasks} for model, v in at.items()}
    rl = {f"{m}-s{s}": _metrics_run(tmp_path / f"{m}-s{s}", 2, 1.0, 100.0) for m in ("GRPO", "Share-GRPO") for s in (1, 2)}
    curves = learning_curves(spec, scores, {name: load_metrics(path) for name, path in rl.items()})
    assert curves["GRPO"]["auc"] == [50.0, 60.0]
    binomial, runs = 100 * math.sqrt(0.55 * 0.45 / 54), math.sqrt(50.0) / math.sqrt(2)
    assert runs == pytest.approx(5.0)
    assert curves["GRPO"]["auc_se"] == pytest.approx(math.hypot(binomial, runs))  # 8.42


@pytest.mark.parametrize(("diff", "se", "expected"), [
    (2.01, 1.0, "Share-GRPO learns faster"), (-2.01, 1.0, "GRPO learns faster"),
    (1.5, 1.0, "neither learns detectably faster"), (-1.9, 1.0, "neither learns detectably faster"),
    (2.0, 1.0, "neither learns detectably faster"), (0.0, 0.0, "neither learns detectably faster"),
])
def test_the_learning_speed_verdict_claims_only_beyond_two_standard_errors(diff, se, expected):
    from reproduce.mini import speed_verdict

    assert speed_verdict(diff, se) == expected


@pytest.mark.parametrize(("diff", "se", "start"), [
    (1.8, 2.4, "RL: no gain over the warm start is detectable at this size (GRPO +1.8 ± 2.4 points; 2 of 3 seeds"),
    (10.9, 2.4, "RL learns: GRPO is +10.9 ± 2.4 points above the warm start on average (2 of 3 seeds above it)."),
    (-6.0, 2.0, "RL loses ground: GRPO is -6.0 ± 2.0 points below the warm start"),
    (4.8, 2.4, "RL: no gain over the warm start is detectable"),
])
def test_the_rl_gain_sentence_is_computed_by_the_two_se_rule(diff, se, start):
    """The committed table once opened with "RL learns: GRPO is +1.8 ± 2.4 points above the warm
    start", fixed text, for a gain no larger than its error."""
    from reproduce.mini import rl_gain

    assert rl_gain(diff, se, 2, 3).startswith(start)


def test_the_rl_gain_sentence_counts_its_seeds_in_words():
    from reproduce.mini import rl_gain

    assert rl_gain(10.0, 2.0, 1, 1).endswith("(1 of 1 seed above it).")
    assert rl_gain(10.0, 2.0, 2, 2).endswith("(2 of 2 seeds above it).")


def test_the_comparisons_the_conclusions_rest_on_hand_worked():
    """One task, 100 items. Base 50 (one run), GRPO 60 and 70, Share-GRPO 55 and 65, Share-GRPO at
    half the steps 40 and 60: differences 15, 10, -5 and -15, each with the two rows' errors combined."""
    import math

    from reproduce.mini import EQUAL_COST, compare
    from reproduce.table1 import Row, standard_error

    values = {"Base (warm start)": [50.0], "GRPO": [60.0, 70.0], "Share-GRPO": [55.0, 65.0], EQUAL_COST: [40.0, 60.0]}
    result = compare({label: Row(label, {"X": v}, items=100) for label, v in values.items()}, ("X",), 100)
    se = {label: standard_error(v, 100) for label, v in values.items()}
    assert se["Base (warm start)"] == pytest.approx(5.0)
    assert result["average"] == {"Base (warm start)": 50.0, "GRPO": 65.0, "Share-GRPO": 60.0, EQUAL_COST: 50.0}
    assert result["average_se"] == pytest.approx(se)
    assert result["per_run_average"]["GRPO"] == [60.0, 70.0]
    for key, (a, b, diff) in {"grpo_vs_base": ("GRPO", "Base (warm start)", 15.0),
                              "share_vs_base": ("Share-GRPO", "Base (warm start)", 10.0),
                              "equal_responses": ("Share-GRPO", "GRPO", -5.0),
                              "equal_cost": (EQUAL_COST, "GRPO", -15.0)}.items():
        assert result[key]["diff"] == pytest.approx(diff), key
        assert result[key]["se"] == pytest.approx(math.hypot(se[a], se[b])), key
    assert result["grpo_runs_above_base"] == 2


@pytest.mark.parametrize(("pattern", "expected"), [("^a$", "^a\\Z"), ("a\\$", "a\\$"), ("[$]$", "[$]\\Z"),
                                                   ("(a|b)$|c$", "(a|b)\\Z|c\\Z"), ("^https?://", "^https?://")])
def test_ecma_patterns_end_only_at_the_end_of_the_text(pattern, expected):
    from reproduce.submit import ecma_pattern

    assert ecma_pattern(pattern) == expected


def test_a_mutants_tests_run_fastest_first_and_other_runs_keep_their_order(tmp_path, monkeypatch):
    from types import SimpleNamespace

    from tests.helpers.mutation_order import fastest_first

    collected = [SimpleNamespace(nodeid=n) for n in ("t::slow", "t::unknown", "t::fast", "t::middle")]
    (tmp_path / "mutmut-stats.json").write_text(json.dumps(
        {"duration_by_test": {"t::slow": 33.0, "t::fast": 0.1, "t::middle": 2.0}}))
    monkeypatch.chdir(tmp_path)
    for under_test in ("", "stats", "mutant_generation"):  # the clean run, stats, and outside mutmut
        monkeypatch.setenv("MUTANT_UNDER_TEST", under_test)
        items = list(collected)
        fastest_first(items)
        assert items == collected
    monkeypatch.setenv("MUTANT_UNDER_TEST", "bench.score.x_normalise__mutmut_1")
    items = list(collected)
    fastest_first(items)
    assert [i.nodeid for i in items] == ["t::fast", "t::middle", "t::slow", "t::unknown"]
    (tmp_path / "mutmut-stats.json").write_text("{")  # unreadable stats: as collected
    items = list(collected)
    fastest_first(items)
    assert items == collected
