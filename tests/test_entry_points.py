"""Every entry point runs its work under `bench.errors.exit_on_usage_error`, the one wrapper that
turns a user's mistake into one line and exit status 2. Table-driven: for each entry point, with
arguments that parse, the wrapper is replaced by a spy that runs the real wrapper on each error
class (instead of the command's work) and reports what it printed; the entry point must reach the
wrapper and exit with what it returned."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

ENTRY_POINTS = [
    ("bench.data", ["--out", "o"]),
    ("bench.run", ["--model", "m", "--data", "D", "--work-dir", "w"]),
    ("bench.score", ["--work-dir", "w"]),
    ("bench.verify", ["--jsonl", "r.jsonl"]),
    ("train", ["--config", "c.yaml"]),
    ("train.tiny", ["--out", "o"]),
    ("train.export", ["ckpt", "out"]),
    ("train.expand", ["rewrite", "--input", "i.parquet", "--output", "o.parquet", "--endpoint", "http://x", "--model", "m"]),
    ("reproduce", ["table1", "--work-dir", "w"]),
    ("reproduce", ["submit", "--work-dir", "w", "--model", "m", "--out", "o"]),
    ("reproduce", ["run", "--scale", "paper"]),
    ("reproduce", ["ablations"]),
    ("reproduce.paper_smoke", ["--out", "o"]),
    ("reproduce.wheelhouse", ["--out", "o"]),
    ("reproduce.mini.probe", ["--runs", "r"]),
    ("reproduce.pins", []),
    ("reproduce.perf", []),
    ("reproduce.perf.gpu", []),
    ("reproduce.perf.memory", []),
]
INTERNAL = {
    "train.rewrite": "`python -m train.expand rewrite` under another name: train.expand's main is its main",
    "bench.verify.worker": "the verifier's worker process, started and killed by bench.verify.judge",
    "reproduce.perf.run_ours": "one benchmark run, started by python -m reproduce.perf",
    "reproduce.perf.run_trl": "one benchmark run in the peer environment, started by python -m reproduce.perf",
}
"""Modules that run as __main__ but are not commands a user types, and why."""

SPY = """
import contextlib, errno, io, json, runpy, sys
import bench.errors as errors

real = errors.exit_on_usage_error
cases = {
    "a path of the wrong kind": OSError(errno.ENOTDIR, "Not a directory", "/data/out"),
    "a full disk": OSError(errno.ENOSPC, "No space left on device", "/data/out/scores.json"),
    "a read-only folder": OSError(errno.EROFS, "Read-only file system", "/data/out/x.tmp", None, "/data/out/x"),
    "input nested too deeply": RecursionError("maximum recursion depth exceeded"),
    "a usage error": errors.UsageError("config.yaml: trainer.seed: must be an integer", "second: line"),
}

def spy(main, output=None):
    seen = {}
    for name, exc in cases.items():
        def boom(exc=exc):
            raise exc
        err = io.StringIO()
        with contextlib.redirect_stderr(err):
            seen[name] = [real(boom), err.getvalue()]
    print("SPY " + json.dumps(seen))
    return 7

errors.exit_on_usage_error = spy
sys.argv = [sys.argv[1], *sys.argv[2:]]
runpy.run_module(sys.argv[0], run_name="__main__", alter_sys=True)
"""

EXPECTED = {
    "a path of the wrong kind": "error: /data/out: a file where a folder is needed\n",
    "a full disk": "error: /data/out/scores.json: No space left on device\n",
    "a read-only folder": "error: /data/out/x: Read-only file system\n",
    "input nested too deeply": "error: an input is nested too deeply to be read (RecursionError)\n",
    "a usage error": "error: config.yaml: trainer.seed: must be an integer\nerror: second: line\n",
}


def main_modules() -> set[str]:
    """Every module of the project that runs as a program: a __main__.py, or a module with a
    `__name__ == "__main__"` block."""
    found = set()
    for package in ("bench", "train", "reproduce"):
        for path in (REPO / package).rglob("*.py"):
            if path.name == "__main__.py" or '__name__ == "__main__"' in path.read_text():
                parts = path.relative_to(REPO).with_suffix("").parts
                found.add(".".join(parts[:-1] if path.name == "__main__.py" else parts))
    return found


def test_every_program_is_a_wrapped_entry_point_or_named_internal():
    assert main_modules() == {m for m, _ in ENTRY_POINTS} | set(INTERNAL)


@pytest.mark.parametrize("module, args", ENTRY_POINTS, ids=[" ".join([m, *a[:1]]) for m, a in ENTRY_POINTS])
def test_every_entry_point_turns_each_error_class_into_one_line_and_exit_2(tmp_path, module, args):
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1",
           "NUMERICS": "native"}  # no re-exec under the pinned numerics (reproduce/numerics.py), which would drop the spy
    result = subprocess.run([sys.executable, "-c", SPY, module, *args], capture_output=True, text=True, cwd=tmp_path,
                            timeout=300, env=env)
    spied = [line for line in result.stdout.splitlines() if line.startswith("SPY ")]
    assert len(spied) == 1, f"{module} never reached exit_on_usage_error:\n{result.stderr[-3000:]}"
    assert result.returncode == 7  # the wrapper's status is the process's
    seen = json.loads(spied[0][4:])
    assert seen == {name: [2, line] for name, line in EXPECTED.items()}
