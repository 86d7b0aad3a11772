"""Child processes that end with the pipeline that started them.

`spawn` starts a child that the kernel sends SIGTERM when this process dies, even by kill -9 or
the OOM killer (Linux, PR_SET_PDEATHSIG). `end_children_on_exit` makes SIGTERM to the pipeline a
normal exit that terminates every running child first (SIGTERM, then SIGKILL after a grace
period), so a rerun never finds trainers of the last run still writing to its folders."""

from __future__ import annotations

import atexit
import os
import signal
import subprocess
import sys
from pathlib import Path

from bench.parent_death import death_signal_setter

GRACE_S = 30
_children: list[subprocess.Popen] = []


def spawn(cmd: list[str], **kwargs) -> subprocess.Popen:
    """subprocess.Popen(cmd, **kwargs) for a child that dies with this process."""
    proc = subprocess.Popen(cmd, preexec_fn=death_signal_setter(signal.SIGTERM), **kwargs)  # noqa: PLW1509 - one prctl call
    _children.append(proc)
    return proc


def run(cmd: list[str], **kwargs) -> None:
    """Like subprocess.run(cmd, check=True) for a child that dies with this process."""
    proc = spawn(cmd, **kwargs)
    if proc.wait():
        raise subprocess.CalledProcessError(proc.returncode, cmd)


def terminate_children() -> None:
    running = [p for p in _children if p.poll() is None]
    for p in running:
        p.terminate()
    for p in running:
        try:
            p.wait(GRACE_S)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
    _children.clear()


def end_children_on_exit() -> None:
    """SIGTERM -> SystemExit(143) in the main thread; on any exit, running children are ended."""
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    atexit.register(terminate_children)


def child_env(**extra: str) -> dict[str, str]:
    """This process's environment for a child that imports the checkout: the checkout first on
    PYTHONPATH, then whatever was there (packages installed with `pip --target`, as on an offline
    GPU machine, must stay importable), plus `extra`."""
    repo = str(Path(__file__).resolve().parents[1])
    path = os.pathsep.join(p for p in (repo, os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, "PYTHONPATH": path, **extra}
