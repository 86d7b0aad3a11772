"""`make rehearse-gpu`: the GPU machine's install rehearsed on this CPU. A fresh venv holds the CPU
torch and the wheelhouse's packages alone (pip --no-index), without decord and jieba; from it, the
tiny-shape `make bench-gpu` and `make smoke-paper` run through. This is what proves the wheelhouse
complete for both (it downloads the wheelhouse from the package registry once)."""

import json
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_the_gpu_commands_run_from_a_venv_of_torch_and_the_wheelhouse_alone(tmp_path):
    out = tmp_path / "rehearsal"
    proc = subprocess.run(["make", "rehearse-gpu", f"REHEARSAL={out}"], cwd=REPO, capture_output=True, text=True,
                          timeout=1800)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    python = out / "venv" / "bin" / "python"
    for module in ("decord", "jieba", "torchvision"):  # as on the GPU image
        missing = subprocess.run([str(python), "-c", f"import {module}"], capture_output=True, text=True)
        assert missing.returncode != 0 and "No module named" in missing.stderr, module
    installed = subprocess.run([str(python), "-m", "pip", "list", "--format=json"], capture_output=True, text=True)
    names = {p["name"].lower() for p in json.loads(installed.stdout)}
    assert {"torch", "deepspeed", "transformers", "ms-vlmeval"} <= names and "r1-sharevl" not in names
    gpu = json.loads((out / "gpu.json").read_text())
    runs = gpu["workloads"]["16_rows"]["runs"]
    assert runs["ours_grpo"]["step_time"] and runs["ours_share_grpo"]["step_time"], runs
    smoke = json.loads((out / "smoke" / "smoke.json").read_text())
    assert [s["rc"] for s in smoke["steps"]] == [0, 0, 0, 0]
