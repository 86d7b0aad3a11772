"""The machine a result was measured on, described once for every result file (perf, GPU suite,
miniature, paper smoke). Results replay to the digit only on the same kind of CPU (another kind's
kernels round differently), and every speed is the machine's, so each result names it."""

from __future__ import annotations

import os
import platform
import subprocess
from pathlib import Path


def cpu_model() -> str:
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor()


def describe() -> dict:
    """python, platform, cpu (model name), cores; CUDA version, GPU name, memory (MiB), count and
    driver where there is a GPU (None otherwise)."""
    import torch

    info = {"python": platform.python_version(), "platform": platform.platform(), "cpu": cpu_model(),
            "cores": os.cpu_count(), "cuda": torch.version.cuda, "gpu": None, "gpu_memory_mb": None, "gpu_count": 0,
            "driver": None}
    if torch.cuda.is_available():
        p = torch.cuda.get_device_properties(0)
        info |= {"gpu": p.name, "gpu_memory_mb": p.total_memory / 2**20, "gpu_count": torch.cuda.device_count()}
        try:
            info["driver"] = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                                            capture_output=True, text=True, timeout=20).stdout.strip() or None
        except (OSError, subprocess.TimeoutExpired):
            pass
    return info
