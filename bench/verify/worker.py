"""Verifier worker process: reads length-prefixed pickled (judge, pred, gold, cpu_bound_s) requests
on stdin, writes (match, status) replies on stdout. Started by `bench.verify.judge.BoundedJudge`,
which kills it when a decision overruns its CPU-time bound. On its own it also

- imports and warms up every judge before saying "ready", so no decision pays for start-up;
- limits its CPU time (RLIMIT_CPU, whole seconds) to each decision's bound plus a margin, so that
  a decision cannot run on if its parent stopped watching;
- dies with its parent: on Linux the kernel kills it (PR_SET_PDEATHSIG); elsewhere a watcher
  thread notices a new parent process id, and RLIMIT_CPU ends a decision stuck in one long C call.
"""

import logging
import math
import os
import pickle
import struct
import sys
import threading
import time

CPU_MARGIN_S = 2  # the worker's own limit is the bound plus this: the parent normally kills first


def _die_with_parent(parent: int) -> None:
    """Linux: the kernel kills this process when its parent dies (PR_SET_PDEATHSIG), even inside a
    long C call; elsewhere a thread checks the parent's id twice a second."""
    import signal

    from bench.parent_death import death_signal_setter

    die = death_signal_setter(signal.SIGKILL)
    if die is not None:
        die()
    if os.getppid() != parent:  # the parent died before the line above took effect
        os._exit(1)
    threading.Thread(target=_watch_parent, args=(parent,), daemon=True).start()


def _watch_parent(parent: int) -> None:
    while True:
        if os.getppid() != parent:
            os._exit(1)
        time.sleep(0.5)


def _limit_cpu(bound_s: float) -> None:
    """Let the process use at most `bound_s` (+ margin) more seconds of CPU time, then SIGXCPU."""
    try:
        import resource
    except ImportError:  # not POSIX: the parent's bound still holds
        return
    used = sum(resource.getrusage(resource.RUSAGE_SELF)[:2])
    _, hard = resource.getrlimit(resource.RLIMIT_CPU)
    soft = math.ceil(used + bound_s) + CPU_MARGIN_S
    if hard == resource.RLIM_INFINITY or soft <= hard:
        resource.setrlimit(resource.RLIMIT_CPU, (soft, hard))


def _reply(stdout, obj) -> None:
    payload = pickle.dumps(obj)
    stdout.write(struct.pack("<I", len(payload)) + payload)
    stdout.flush()


def serve(stdin, stdout, limit_cpu=_limit_cpu) -> None:
    """Say "ready", then answer each request in order until stdin closes. A judge that raises is a
    non-match with status judge_error:<exception>, never a dead worker."""
    from bench.verify.judge import JUDGES

    _reply(stdout, "ready")
    while header := stdin.read(4):
        # the pipe from the parent that started this worker, never a file: only our own process writes it
        judge, pred, gold, bound_s = pickle.loads(stdin.read(struct.unpack("<I", header)[0]))
        limit_cpu(bound_s)
        try:
            _reply(stdout, JUDGES[judge](pred, gold))
        except Exception as exc:  # noqa: BLE001
            _reply(stdout, (False, f"judge_error:{type(exc).__name__}"))


def main() -> None:
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    sys.stdout = sys.stderr  # stray prints from the judges must not corrupt the protocol
    _die_with_parent(int(os.environ.get("BENCH_VERIFY_PARENT", os.getppid())))
    try:
        import resource

        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # a CPU-limit kill leaves no core file
    except (ImportError, ValueError, OSError):
        pass
    from bench.verify.judge import warm_up

    # math-verify's signal timeouts are off on purpose (the parent bounds us); it warns each call.
    logging.getLogger("math_verify").setLevel(logging.ERROR)
    warm_up()
    serve(stdin, stdout)
    os._exit(0)


if __name__ == "__main__":
    main()
