"""The symbolic judges and the bounded process pool they run in.

math-verify and mathruler call into sympy, which can run for minutes on inputs like
`10^{10^{10^{10}}}` (much of it inside C integer arithmetic, where no signal handler runs), and
math-verify's own timeouts use `signal.alarm`, which only works on a process's main thread. So
every symbolic decision runs in a worker process.

The bound is on the CPU time the worker spends on one decision, not on wall time, so a busy
machine grades exactly as an idle one: the worker's start-up (interpreter, sympy and math-verify
imports, a first call of each judge) happens before it reports ready and is never counted, and
waiting for a core costs nothing. A decision that uses more CPU time than its bound kills its
worker; it is retried once in a fresh worker, and only then counts as "no match, timed out".
Workers enforce a bound of their own too (RLIMIT_CPU) and exit when their parent dies."""

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


WARM_UP = [("\\frac{1}{2}", "0.5"), ("(x+1)^2", "x^2+2x+1"), ("\\sin 30^\\circ", "\\frac{1}{2}"), ("[1, 2)", "[1,2)")]


def warm_up() -> None:
    """Import everything the judges use, and the parts of sympy they load on first use (parsing,
    simplification, trigonometry, intervals), by running each on a few shapes of answer, so that
    no decision pays for it."""
    for judge in JUDGES.values():
        for pred, gold in WARM_UP:
            judge(pred, gold)


POLL_S = 0.05  # how often the CPU time of busy workers is read
WALL_FACTOR = 60  # a decision is killed after WALL_FACTOR x its CPU bound of wall time whatever its CPU
# time: a backstop for a worker that is stuck without computing, far beyond any machine's load


class _Worker:
    """One `python -m bench.verify.worker` process, fed pickled requests over a pipe. A plain
    subprocess (not multiprocessing) so that the caller's `__main__` is never re-imported and a
    trainer with many threads never forks itself."""

    def __init__(self) -> None:
        import psutil

        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bench.verify.worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env={**os.environ, "PYTHONWARNINGS": "ignore", "BENCH_VERIFY_PARENT": str(os.getpid())},
        )
        self.handle = psutil.Process(self.proc.pid)
        self.ready = False  # set once the worker has imported and warmed up the judges and said so
        self.task: int | None = None
        self.cpu_at_send = 0.0
        self.wall_deadline = 0.0

    def fileno(self) -> int:
        return self.proc.stdout.fileno()

    def cpu_seconds(self) -> float:
        """User + system CPU time of the worker so far (0 once it has exited)."""
        try:
            t = self.handle.cpu_times()
        except Exception:  # noqa: BLE001 - gone: the caller sees its pipe close
            return 0.0
        return t.user + t.system

    def send(self, task: int, request: tuple, timeout_s: float) -> None:
        payload = pickle.dumps((*request, timeout_s))
        self.cpu_at_send = self.cpu_seconds()
        self.proc.stdin.write(struct.pack("<I", len(payload)) + payload)
        self.proc.stdin.flush()
        self.task, self.wall_deadline = task, time.monotonic() + WALL_FACTOR * timeout_s

    def overran(self, timeout_s: float) -> bool:
        return self.cpu_seconds() - self.cpu_at_send >= timeout_s or time.monotonic() >= self.wall_deadline

    def receive(self):
        header = self.proc.stdout.read(4)
        if len(header) < 4:
            raise EOFError("verifier worker exited")
        # the pipe from the worker this process started, never a file: only our own child writes it
        return pickle.loads(self.proc.stdout.read(struct.unpack("<I", header)[0]))

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait()


class BoundedJudge:
    """A pool of worker processes; each judge call is bounded by `timeout_s` seconds of the
    worker's CPU time, counted from the moment a ready worker takes it."""

    def __init__(self, workers: int | None = None) -> None:
        self.size = max(1, workers or os.cpu_count() or 1)
        self.workers = [_Worker() for _ in range(self.size)]
        self.lock = threading.Lock()

    def run(self, judge: str, requests: list[tuple[str, str]], timeout_s: float) -> list[tuple[bool, str]]:
        """Results in order; (False, "timeout") for a call that overran its bound twice (its
        worker is killed and replaced each time), (False, "judge_error:...") for one that raised."""
        JUDGES[judge]  # noqa: B018 - raises with the valid names
        results: list[tuple[bool, str] | None] = [None] * len(requests)
        queue = list(range(len(requests)))[::-1]
        retried: set[int] = set()
        with self.lock:
            while queue or any(w.task is not None for w in self.workers):
                for w in list(self.workers):
                    if w.ready and w.task is None and queue:
                        i = queue.pop()
                        try:
                            w.send(i, (judge, *requests[i]), timeout_s)
                        except OSError:  # it died while idle (PR_SET_PDEATHSIG follows the thread
                            queue.append(i)  # that started it): the task never ran, so no retry is spent
                            w.task = None
                            self._retry_or_fail(w, queue, retried, results, "judge_error:WorkerDied")
                readable = select.select(self.workers, [], [], POLL_S)[0]
                for w in readable:
                    try:
                        message = w.receive()
                    except EOFError:  # died: out of memory, killed, or its own CPU limit
                        self._retry_or_fail(w, queue, retried, results, "judge_error:WorkerDied")
                        continue
                    if message == "ready":
                        w.ready = True
                    else:
                        results[w.task], w.task = message, None
                for w in list(self.workers):
                    if w.task is not None and w.overran(timeout_s):
                        self._retry_or_fail(w, queue, retried, results, "timeout")
        return results  # type: ignore[return-value]

    def _retry_or_fail(self, worker: _Worker, queue: list[int], retried: set[int], results: list,
                       status: str) -> None:
        """Replace the worker; its task goes back to the queue once, then fails with `status`."""
        task = worker.task
        if task is not None:
            if task in retried:
                results[task] = (False, status)
            else:
                retried.add(task)
                queue.append(task)
        worker.kill()
        self.workers[self.workers.index(worker)] = _Worker()

    def close(self) -> None:
        for w in self.workers:
            w.kill()


_lock = threading.Lock()
_judges: dict[int, BoundedJudge] = {}


def _forget_inherited_pools() -> None:
    """In a forked child: the inherited pools' workers are the parent's children, and their pipes
    are shared with the parent, so the child starts its own pools on first use (and never kills the
    parent's workers at exit)."""
    global _lock
    _lock = threading.Lock()  # a thread of the parent may have held it at the fork
    _judges.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_inherited_pools)


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
