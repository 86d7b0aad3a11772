"""The symbolic judges in process, the worker process they run in, the pool's size, and the
decision cache: each worked by hand, so that a judge that returns the wrong status, a worker
started wrongly or a cache that evicts the wrong entry fails here. (Load and faults:
test_judge_reliability.py.)"""

from __future__ import annotations

import importlib
import os
import threading

import psutil
import pytest

from bench.verify.grade import _LRU, answers_match
from bench.verify.judge import (
    BoundedJudge,
    _for_math_verify,
    _trig_degrees,
    _Worker,
    math_verify_judge,
    mathruler_judge,
    plain_math_verify_judge,
)


@pytest.mark.parametrize(
    "latex, rewritten",
    [
        ("\\sin 30^\\circ", "\\sin \\frac{30\\pi}{180}"),
        ("\\cos(45.5^{\\circ})", "\\cos(\\frac{45.5\\pi}{180})"),
        ("30^\\circ", "30^\\circ"),  # a bare angle keeps its mark: math-verify drops it, rightly
        ("\\tan x", "\\tan x"),
    ],
)
def test_trig_arguments_in_degrees_become_radians(latex, rewritten):
    assert _trig_degrees(latex) == rewritten


@pytest.mark.parametrize(
    "latex, rewritten",
    [("7\\mathrm{e}^2", "7e^2"), ("\\text{ e }", "e"), ("\\mathrm e^x", "e^x"), ("\\mathrm{E}", "\\mathrm{E}"),
     ("\\cos 60^\\circ + \\mathrm{e}", "\\cos \\frac{60\\pi}{180}+ e")],  # the space after the mark goes with it
)
def test_what_math_verify_misreads_is_rewritten(latex, rewritten):
    assert _for_math_verify(latex) == rewritten


JUDGE_CASES = [
    (math_verify_judge, "\\frac{1}{2}", "0.5", (True, "ok")),
    (math_verify_judge, "\\sin 30^\\circ", "\\frac{1}{2}", (True, "ok")),
    (math_verify_judge, "7\\mathrm{e}^2", "7e^2", (True, "ok")),
    (math_verify_judge, "3", "4", (False, "ok")),
    (math_verify_judge, "", "4", (False, "ok")),  # an answer that does not parse is wrong, not an error
    (math_verify_judge, "4", "\\\\", (False, "gold_unparseable")),
    (plain_math_verify_judge, "so the answer is $\\frac{1}{2}$", "0.5", (True, "ok")),
    (plain_math_verify_judge, "so the answer is $3$", "4", (False, "ok")),
    (plain_math_verify_judge, "4", "\\\\", (False, "gold_unparseable")),
    (mathruler_judge, "\\frac{1}{2}", "\\dfrac{1}{2}", (True, "ok")),
    (mathruler_judge, "3", "4", (False, "ok")),
]


@pytest.mark.parametrize("judge, pred, gold, expected", JUDGE_CASES)
def test_each_judge_off_the_main_thread(judge, pred, gold, expected):
    """The worker bounds each decision itself, so the judges run with math-verify's own timeouts
    off: they use signal.alarm, which fails anywhere but the main thread. Run here on another one."""
    result = []
    thread = threading.Thread(target=lambda: result.append(judge(pred, gold)))
    thread.start()
    thread.join()
    assert result == [expected]


def test_a_worker_is_started_as_a_module_with_its_parent_named_and_warnings_off():
    worker = _Worker()
    try:
        assert worker.ready is False and worker.task is None
        assert worker.receive() == "ready"  # the module ran (and the process has exec'd: its environment is its own)
        env = psutil.Process(worker.proc.pid).environ()
        assert env["BENCH_VERIFY_PARENT"] == str(os.getpid()) and env["PYTHONWARNINGS"] == "ignore"
        assert env["PATH"] == os.environ["PATH"]  # the rest of the caller's environment is kept
    finally:
        worker.kill()


def test_the_pool_size_is_the_workers_asked_for_else_the_cores():
    cores = os.cpu_count() or 1
    for workers, size in ((1, 1), (cores + 1, cores + 1), (None, cores), (0, cores)):
        judge = BoundedJudge(workers)
        try:
            assert judge.size == len(judge.workers) == size
        finally:
            judge.close()


def test_a_bound_shorter_than_the_start_up_still_decides():
    """Start-up (~1 s of CPU: sympy, math-verify, a first call of each judge) happens before the
    worker says ready and is outside the bound, so a fresh pool decides within 0.3 s of CPU."""
    judge = BoundedJudge(1)
    try:
        assert judge.run("math_verify", [("\\sqrt{2}/2", "\\frac{1}{\\sqrt{2}}")], 0.3) == [(True, "ok")]
        assert judge.workers[0].cpu_seconds() > 0.3  # the start-up did cost more than the bound
    finally:
        judge.close()


def test_answers_match_reaches_the_symbolic_judge_with_its_bound():
    assert answers_match("\\frac{\\sqrt{8}}{2}", "\\sqrt{2}")  # no cheap rule decides this pair
    assert not answers_match("\\frac{\\sqrt{8}}{3}", "\\sqrt{2}")


def test_the_cache_evicts_the_least_recently_used_entry():
    cache = _LRU(2)
    cache.put("a", 1)
    cache.put("b", 2)
    assert cache.get("a") == 1  # "a" is now the most recent
    cache.put("c", 3)  # over the size: "b" goes
    assert (cache.get("a"), cache.get("b"), cache.get("c")) == (1, None, 3)
    cache.put("d", 4)  # "a" was used before "c"
    assert (cache.get("a"), cache.get("c"), cache.get("d")) == (None, 3, 4) and len(cache.data) == 2


def test_get_judge_keeps_one_pool_per_worker_count():
    from bench.verify.judge import get_judge

    cores = os.cpu_count() or 1
    one, more = get_judge(1), get_judge(cores + 1)
    assert (one.size, more.size, get_judge(None).size, get_judge(0).size) == (1, cores + 1, cores, cores)
    assert get_judge(1) is one and get_judge(cores + 1) is more and get_judge(None) is get_judge(cores)


def test_grade_many_runs_the_symbolic_judge_in_the_pool_it_asks_for(monkeypatch):
    grading = importlib.import_module("bench.verify.grade")  # the module: the package exports a function of its name

    asked = []
    real = grading.get_judge
    monkeypatch.setattr(grading, "get_judge", lambda workers=None: asked.append(workers) or real(workers))
    g = grading.grade_many(["<think>a</think>\\boxed{\\sqrt{2}/2}"], ["\\frac{1}{\\sqrt{2}}"], workers=1)
    assert g[0].accuracy == 1.0 and asked == [1]


def test_settled_decisions_are_cached_and_reused(monkeypatch):
    grading = importlib.import_module("bench.verify.grade")  # the module: the package exports a function of its name

    right = grading.grade("<think>a</think>\\boxed{\\sqrt{2}/2}", "\\frac{1}{\\sqrt{2}}")
    bad_gold = grading.grade("<think>a</think>\\boxed{5}", "\\\\")
    assert grading._cache.get(("default", "5", "\\\\")) == (False, "gold_unparseable")

    def no_judge(workers=None):
        raise AssertionError("the judge was asked again")

    monkeypatch.setattr(grading, "get_judge", no_judge)
    assert grading.grade("<think>b</think> \\boxed{\\sqrt{2}/2}", "\\frac{1}{\\sqrt{2}}") == right
    assert grading.grade("<think>b</think>\\boxed{5}", "\\\\") == bad_gold


def test_the_cheap_rules_decide_before_math_verify():
    """Counting answers written out: math-verify alone says no, the cheap rules say yes."""
    from bench.verify.grade import grade

    assert math_verify_judge("six", "6") == (False, "ok")
    g = grade("<think>a</think>\\boxed{six}", "6")
    assert (g.accuracy, g.status) == (1.0, "ok")


def test_answers_longer_than_the_judge_takes_are_refused_at_the_bound():
    from bench.verify.grade import grade
    from bench.verify.judge import MAX_JUDGE_LEN

    at_bound = "1" * MAX_JUDGE_LEN
    assert grade(f"<think>a</think>\\boxed{{{at_bound}}}", at_bound).status == "ok"
    over = "1" * (MAX_JUDGE_LEN + 1)
    for pred, gold in ((over, "1"), ("1", over)):
        g = grade(f"<think>a</think>\\boxed{{{pred}}}", gold)
        assert (g.accuracy, g.status) == (0.0, "too_long")


def test_paper_mode_reads_a_literal_boxed_none_as_an_answer():
    """mathruler returns the string "None" for an unfinished box; a box that holds None is an answer."""
    from bench.verify.grade import grade

    g = grade("<think>a</think>\\boxed{None}", "None", mode="paper")
    assert (g.extracted, g.status) == ("None", "ok")
    assert grade("<think>a</think>\\boxed{None", "None", mode="paper").status == "no_box"


def test_warm_up_runs_every_judge_on_every_shape(monkeypatch):
    """What a worker does before it says ready (so that no decision pays for the first imports)."""
    from bench.verify import judge

    seen = []
    monkeypatch.setattr(judge, "JUDGES", {name: (lambda p, g, name=name: seen.append((name, p, g)))
                                          for name in ("a", "b")})
    judge.warm_up()
    assert seen == [(name, p, g) for name in ("a", "b") for p, g in judge.WARM_UP]
    assert len(judge.WARM_UP) == 4 and ("\\sin 30^\\circ", "\\frac{1}{2}") in judge.WARM_UP
