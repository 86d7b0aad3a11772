"""The symbolic judges and the bounded process pool they run in.

math-verify and mathruler call into sympy, which can run for minutes on inputs like
`10^{10^{10^{10}}}` (much of it inside C integer arithmetic, where no signal handler runs), and
math-verify's own timeouts use `signal.alarm`, which only works on a process's main thread. So
every symbolic decision runs in a worker process, and a decision that outlives its bound kills
that worker (a fresh one replaces it) and counts as "no match, timed out"."""

from __future__ import annotations

import atexit
import os
import pickle
import re
import select
import struct
import subprocess
import sys
import threading
import time

from ..registry import Registry

MAX_JUDGE_LEN = 1000  # answers longer than this are not handed to sympy at all


_TRIG = re.compile(r"\\(?:sin|cos|tan|cot|sec|csc)")
_DEGREES = re.compile(r"(\d+(?:\.\d+)?)\s*\^\s*\{?\s*\\circ\s*\}?")


def _trig_degrees(latex: str) -> str:
    """`\\sin 30^\\circ` -> `\\sin \\frac{30\\pi}{180}`: math-verify drops degree marks, which
    is right for a bare angle but turns trig arguments into radians."""
    return _DEGREES.sub(r"\\frac{\1\\pi}{180}", latex) if _TRIG.search(latex) else latex


# Euler's number set upright (\mathrm{e}, \text{e}, \operatorname{e}, \mathrm e): math-verify drops the
# wrapped letter, which turns `7 \mathrm{e}^2` into 7.
_EULER = re.compile(r"\\(?:mathrm|text|textrm|mathit|operatorname)\s*(?:\{\s*e\s*\}|\s+e(?![A-Za-z]))")


def _for_math_verify(latex: str) -> str:
    """What math-verify misreads, rewritten: degree marks in trig arguments, upright Euler e."""
    return _EULER.sub("e", _trig_degrees(latex))


def math_verify_judge(pred: str, gold: str) -> tuple[bool, str]:
    """math-verify with the gold first. Returns (match, status); status says when the gold
    answer could not be parsed, so that it is counted rather than silently scored."""
    from math_verify import parse, verify

    pred, gold = _for_math_verify(pred), _for_math_verify(gold)
    gold_parsed = parse(f"${gold}$", parsing_timeout=None)
    if not gold_parsed:
        return False, "gold_unparseable"
    pred_parsed = parse(f"${pred}$", parsing_timeout=None)
    if not pred_parsed:
        return False, "ok"
    return bool(verify(gold_parsed, pred_parsed, timeout_seconds=None)), "ok"


def plain_math_verify_judge(response: str, gold: str) -> tuple[bool, str]:
    """math-verify alone on the whole response (its own extraction), for the agreement table."""
    from math_verify import parse, verify

    gold_parsed = parse(f"${gold}$", parsing_timeout=None)
    if not gold_parsed:
        return False, "gold_unparseable"
    return bool(verify(gold_parsed, parse(response, parsing_timeout=None), timeout_seconds=None)), "ok"


def mathruler_judge(pred: str, gold: str) -> tuple[bool, str]:
    """The released grader's `grade_answer` on mathruler's own extraction `pred`."""
    from mathruler.grader import grade_answer

    return bool(grade_answer(pred, gold)), "ok"


JUDGES: Registry = Registry("judge")
JUDGES.add("math_verify", math_verify_judge)
JUDGES.add("plain_math_verify", plain_math_verify_judge)
JUDGES.add("mathruler", mathruler_judge)


class _Worker:
    """One `python -m bench.verify.worker` process, fed pickled requests over a pipe. A plain
    subprocess (not multiprocessing) so that the caller's `__main__` is never re-imported and a
    trainer with many threads never forks itself."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bench.verify.worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env={**os.environ, "PYTHONWARNINGS": "ignore"},
        )
        self.ready = False  # set once the worker has imported the judges and said so
        self.task: int | None = None
        self.deadline = 0.0

    def fileno(self) -> int:
        return self.proc.stdout.fileno()

    def send(self, task: int, request: tuple, timeout_s: float) -> None:
        payload = pickle.dumps(request)
        self.proc.stdin.write(struct.pack("<I", len(payload)) + payload)
        self.proc.stdin.flush()
        self.task, self.deadline = task, time.monotonic() + timeout_s

    def receive(self):
        header = self.proc.stdout.read(4)
        if len(header) < 4:
            raise EOFError("verifier worker exited")
        return pickle.loads(self.proc.stdout.read(struct.unpack("<I", header)[0]))

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait()


class BoundedJudge:
    """A pool of worker processes; each judge call is bounded by its own `timeout_s`, counted
    from the moment a ready worker takes it (a queue does not eat into an answer's bound)."""

    def __init__(self, workers: int | None = None) -> None:
        self.size = max(1, workers or os.cpu_count() or 1)
        self.workers = [_Worker() for _ in range(self.size)]
        self.lock = threading.Lock()

    def run(self, judge: str, requests: list[tuple[str, str]], timeout_s: float) -> list[tuple[bool, str]]:
        """Results in order; (False, "timeout") for a call that overran (its worker is killed
        and replaced), (False, "judge_error:...") for one that raised."""
        JUDGES[judge]  # noqa: B018 - raises with the valid names
        results: list[tuple[bool, str] | None] = [None] * len(requests)
        queue = list(range(len(requests)))[::-1]
        with self.lock:
            while queue or any(w.task is not None for w in self.workers):
                for w in self.workers:
                    if w.ready and w.task is None and queue:
                        i = queue.pop()
                        w.send(i, (judge, *requests[i]), timeout_s)
                busy = [w for w in self.workers if w.task is not None]
                wait_s = min((w.deadline for w in busy), default=time.monotonic() + 1.0) - time.monotonic()
                readable = select.select(self.workers, [], [], max(0.0, wait_s))[0]
                for w in readable:
                    try:
                        message = w.receive()
                    except EOFError:  # died (out of memory, killed): restart, fail its task
                        self._replace(w, results, "judge_error:WorkerDied")
                        continue
                    if message == "ready":
                        w.ready = True
                    else:
                        results[w.task], w.task = message, None
                now = time.monotonic()
                for w in self.workers:
                    if w.task is not None and now >= w.deadline:
                        self._replace(w, results, "timeout")
        return results  # type: ignore[return-value]

    def _replace(self, worker: _Worker, results: list, status: str) -> None:
        if worker.task is not None:
            results[worker.task] = (False, status)
        worker.kill()
        self.workers[self.workers.index(worker)] = _Worker()

    def close(self) -> None:
        for w in self.workers:
            w.kill()


_lock = threading.Lock()
_judges: dict[int, BoundedJudge] = {}


def get_judge(workers: int | None = None) -> BoundedJudge:
    """One pool per worker count in this process, started on first use, stopped at exit."""
    key = max(1, workers or os.cpu_count() or 1)
    with _lock:
        if key not in _judges:
            _judges[key] = BoundedJudge(key)
        return _judges[key]


@atexit.register
def _close_all() -> None:
    for judge in _judges.values():
        judge.close()
    _judges.clear()
