"""The judge under load and under faults: its bound is CPU time (a busy machine grades exactly as
an idle one), start-up is outside it, timeouts are never cached, and workers die with their parent."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psutil
import pytest

from bench.verify import grade, grade_many
from bench.verify.grade import _cache, clear_cache
from bench.verify.judge import BoundedJudge  # noqa
from bench.verify.table import load_table

REPO = Path(__file__).resolve().parents[1]


def test_regression_table_grades_fully_with_every_core_saturated():
    burners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(2 * (os.cpu_count() or 1))]
    try:
        clear_cache()
        cases = load_table()
        grades = grade_many([c.response for c in cases], [c.gold for c in cases], workers=2)
    finally:
        for b in burners:
            b.kill()
            b.wait()
    assert [g.status for g in grades if g.status == "timeout"] == []
    wrong = [c.line for c, g in zip(cases, grades, strict=True) if (g.accuracy == 1.0) is not c.expected]
    assert wrong == []


def test_first_decision_does_not_pay_for_start_up():
    """A fresh worker has imported and run every judge before it says ready: its first symbolic
    decision costs a small fraction of the ~1 s of CPU that importing math-verify and sympy takes."""
    judge = BoundedJudge(1)
    try:
        assert judge.run("math_verify", [("1", "1")], 60.0) == [(True, "ok")]  # waits until ready
        worker = judge.workers[0]
        before = worker.cpu_seconds()
        assert judge.run("math_verify", [("2\\sqrt{2} + (y-1)^2", "\\sqrt{8} + y^2 - 2y + 1")], 60.0) == [(True, "ok")]
        assert worker.cpu_seconds() - before < 0.3
        assert judge.workers[0] is worker  # not replaced
    finally:
        judge.close()


def test_a_timeout_is_retried_and_never_cached():
    pred, gold = "10^{10^{10^{10}}}", "7"
    g = grade(f"<think>a</think>\\boxed{{{pred}}}", gold, timeout_s=0.5)
    assert (g.accuracy, g.status) == (0.0, "timeout")
    assert _cache.get(("default", pred, gold)) is None
    g = grade("<think>a</think>\\boxed{(x+1)^2}", "x^2+2x+1")
    assert g.accuracy == 1.0 and _cache.get(("default", "(x+1)^2", "x^2+2x+1")) == (True, "ok")


def test_grade_many_normalises_tag_spacing():
    [g] = grade_many(["< think >a</ think > \\boxed{5}"], ["5"])
    assert (g.format, g.accuracy) == (1.0, 1.0)


PARENT = textwrap.dedent("""
    import sys
    from bench.verify import grade
    print("start", flush=True)
    grade("<think>a</think>\\\\boxed{10^{10^{10^{10}}}}", "7", timeout_s=300)
""")


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_workers_die_with_their_parent(sig):
    parent = subprocess.Popen([sys.executable, "-c", PARENT], cwd=REPO, stdout=subprocess.PIPE, text=True,
                              env={**os.environ, "PYTHONPATH": str(REPO)})
    try:
        assert parent.stdout.readline().strip() == "start"
        handle = psutil.Process(parent.pid)
        busy = []
        for _ in range(600):  # until a worker is computing the huge power
            busy = [c for c in handle.children() if sum(c.cpu_times()[:2]) > 1.0]
            if busy:
                break
            time.sleep(0.1)
        assert busy, "no worker started computing"
        workers = handle.children()
        parent.send_signal(sig)
        parent.wait(60)
        _, alive = psutil.wait_procs(workers, timeout=60)
        assert alive == []
    finally:
        parent.kill()
        parent.wait()


def test_a_forked_child_starts_its_own_pool_and_leaves_the_parents_alone():
    """A process forked after the pool started (mutmut's runner, a fork-based data loader) must not
    talk to the parent's workers over the shared pipes: it gets its own, which are its children."""
    import json

    from bench.verify.judge import get_judge

    parent_pool = get_judge(1)
    assert parent_pool.run("math_verify", [("\\frac{1}{2}", "0.5")], 5.0) == [(True, "ok")]
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report, then leave without running the parent's atexit hooks
        try:
            pool = get_judge(1)
            decided = pool.run("math_verify", [("2", "3")], 5.0)
            report = {"new": pool is not parent_pool, "ppid": pool.workers[0].handle.ppid(), "me": os.getpid(),
                      "decided": decided}
        except BaseException as exc:  # noqa: BLE001 - whatever happens goes back to the parent
            report = {"error": repr(exc)}
        os.write(write, json.dumps(report).encode())
        pool = None
        os._exit(0)
    os.close(write)
    os.waitpid(pid, 0)
    with os.fdopen(read) as pipe:
        report = json.loads(pipe.read())
    assert report["new"] and report["ppid"] == report["me"] and report["decided"] == [[False, "ok"]], report
    assert all(w.proc.poll() is None for w in parent_pool.workers)  # the child killed none of them
    assert parent_pool.run("math_verify", [("0.25", "\\frac{1}{4}")], 5.0) == [(True, "ok")]


def test_a_worker_that_dies_mid_decision_is_replaced_and_the_decision_retried_once():
    """The worker holding the long decision is killed twice (as the kernel's OOM killer might):
    the first death sends the decision to a fresh worker, the second ends it as a non-match named
    WorkerDied. The other decision in the batch is unaffected."""
    import threading

    judge = BoundedJudge(1)
    killed = []

    def kill_the_busy_worker_twice():
        while len(killed) < 2:
            worker = judge.workers[0]
            if worker.task == 0 and worker.proc.pid not in killed:
                killed.append(worker.proc.pid)
                worker.proc.kill()
            time.sleep(0.01)

    try:
        assert judge.run("math_verify", [("1", "1")], 60.0) == [(True, "ok")]  # ready
        killer = threading.Thread(target=kill_the_busy_worker_twice, daemon=True)
        killer.start()
        results = judge.run("math_verify", [("10^{10^{10^{10}}}", "7"), ("\\frac{1}{2}", "0.5")], 60.0)
        killer.join(timeout=60)
        assert results == [(False, "judge_error:WorkerDied"), (True, "ok")] and len(set(killed)) == 2
        assert judge.workers[0].proc.pid not in killed and judge.run("math_verify", [("2", "2")], 60.0) == [(True, "ok")]
    finally:
        judge.close()


def test_a_worker_that_died_while_idle_costs_its_next_decision_nothing():
    """The request cannot be written to a dead worker: the worker is replaced and the decision runs
    in the new one, with its retry unspent."""
    judge = BoundedJudge(1)
    try:
        assert judge.run("math_verify", [("1", "1")], 60.0) == [(True, "ok")]
        dead = judge.workers[0]
        dead.kill()
        assert judge.run("math_verify", [("\\frac{1}{2}", "0.5")], 60.0) == [(True, "ok")]
        assert judge.workers[0] is not dead
    finally:
        judge.close()
