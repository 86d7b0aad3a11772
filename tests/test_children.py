"""The pipeline's child processes (trainers, evaluation runners) end with it: SIGTERM to the
pipeline terminates them, and kill -9 of the pipeline has the kernel end them (Linux)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import psutil
import pytest

REPO = Path(__file__).resolve().parents[1]
PIPELINE = textwrap.dedent("""
    import sys, time
    from reproduce.children import end_children_on_exit, spawn
    end_children_on_exit()
    kids = [spawn([sys.executable, "-c", "import time; time.sleep(600)"]) for _ in range(2)]
    print(" ".join(str(k.pid) for k in kids), flush=True)
    time.sleep(600)
""")


@pytest.mark.parametrize("sig", [signal.SIGTERM, pytest.param(signal.SIGKILL, marks=pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's"))])
def test_children_end_with_the_pipeline(sig):
    parent = subprocess.Popen([sys.executable, "-c", PIPELINE], cwd=REPO, stdout=subprocess.PIPE, text=True,
                              env={**os.environ, "PYTHONPATH": str(REPO)})
    try:
        kids = [psutil.Process(int(pid)) for pid in parent.stdout.readline().split()]
        assert len(kids) == 2 and all(k.is_running() for k in kids)
        parent.send_signal(sig)
        assert parent.wait(60) == (143 if sig == signal.SIGTERM else -signal.SIGKILL)
        _, alive = psutil.wait_procs(kids, timeout=60)
        assert alive == []
    finally:
        parent.kill()
        parent.wait()
