"""The miniature's numeric pin (`reproduce.numerics`): under it, the warm start and an RL run give
the same weights, bit for bit, whether MKL may use the machine's own instructions or is held to
AVX2 (what an AVX2-only CPU gives), and the settings in force are recorded."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from reproduce.numerics import PINNED

REPO = Path(__file__).resolve().parents[1]


def probe(tmp_path: Path, name: str, **env: str) -> dict:
    out = subprocess.run([sys.executable, "-m", "reproduce.mini.probe", "--probe", "smoke", "--runs", str(tmp_path / name)],
                         capture_output=True, text=True, cwd=REPO, timeout=900,
                         env={**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO), **env})
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_the_pinned_miniature_gives_the_same_weights_with_mkl_held_to_avx2(tmp_path):
    pinned = probe(tmp_path, "pinned", **PINNED)
    avx2 = probe(tmp_path, "avx2", **PINNED, MKL_ENABLE_INSTRUCTIONS="AVX2")
    assert pinned["numerics"]["pinned"] and pinned["numerics"]["aten_capability"] == "AVX2"
    assert pinned["numerics"]["torch_threads"] == 2 and avx2["numerics"]["env"]["MKL_ENABLE_INSTRUCTIONS"] == "AVX2"
    assert (pinned["warm_start_sha256"], pinned["rl_sha256"]) == (avx2["warm_start_sha256"], avx2["rl_sha256"])


def test_pin_is_a_no_op_once_pinned_or_asked_native(monkeypatch):
    """`pin` re-executes only when a pinned variable is missing: after its own re-exec (every
    variable set) and under NUMERICS=native it returns, so it can never loop."""
    from reproduce import numerics

    calls = []
    monkeypatch.setattr(os, "execve", lambda *a: calls.append(a))
    for key, value in PINNED.items():
        monkeypatch.setenv(key, value)
    numerics.pin(["run"])
    monkeypatch.delenv("ATEN_CPU_CAPABILITY")
    monkeypatch.setenv("NUMERICS", "native")
    numerics.pin(["run"])
    assert calls == []
    monkeypatch.delenv("NUMERICS")
    with pytest.raises(RuntimeError, match="before torch is imported"):  # torch is imported in this process
        numerics.pin(["run"])
