"""One instruction set and one thread layout for every numeric library of the CPU miniature, so that
its table replays to the digit on any x86-64 CPU with AVX2, not only on the kind that made it.

Without a pin, ATen dispatches its AVX2 or AVX-512 kernels by what the CPU has, and MKL and oneDNN
pick their own code paths: the rounding differs, and the miniature's warm start (which stops on a
sampled accuracy) amplifies it. `PINNED` fixes each: ATen's kernels (`ATEN_CPU_CAPABILITY`), MKL's
conditional numerical reproducibility in its strict AVX2 mode (`MKL_CBWR`), oneDNN's highest ISA
(`ONEDNN_MAX_CPU_ISA`), and the thread counts (a reduction split over another number of threads
adds in another order; the trainers and evaluators the pipeline starts use one thread each).

These are read when the libraries load, so they must be set before torch is imported:
`python -m reproduce run --scale mini` and `ablations` call `pin()` first, which re-executes the
command with them when the environment lacks them (`NUMERICS=native` keeps the machine's own).
`recorded()` is what run.json says about it; `python -m reproduce.mini.probe` measures what the
pin holds (a cut-down miniature under the environment as it is).
"""

from __future__ import annotations

import os
import sys

PINNED = {
    "ATEN_CPU_CAPABILITY": "avx2",
    "MKL_CBWR": "AVX2,STRICT",
    "ONEDNN_MAX_CPU_ISA": "AVX2",
    "OMP_NUM_THREADS": "2",
    "MKL_NUM_THREADS": "2",
}
"""The environment every miniature process runs under (`pin`)."""

MACHINE_KNOBS = ("MKL_ENABLE_INSTRUCTIONS", "NUMERICS")
"""Also recorded: what emulates a machine with fewer instructions, and the opt-out."""


def pin(argv: list[str]) -> None:
    """Re-execute `python -m reproduce *argv` with `PINNED` set, unless it is set already or
    NUMERICS=native. Never returns when it re-executes."""
    if os.environ.get("NUMERICS") == "native" or all(os.environ.get(k) == v for k, v in PINNED.items()):
        return
    if "torch" in sys.modules:  # too late to pin in this process, and a re-exec would lose its state
        raise RuntimeError("reproduce.numerics.pin() must run before torch is imported")
    os.execve(sys.executable, [sys.executable, "-m", "reproduce", *argv], {**os.environ, **PINNED})


def recorded() -> dict:
    """The numeric settings in force: the pinned variables as set, the machine knobs, and the kernel
    set ATen actually dispatches (torch.backends.cpu.get_cpu_capability)."""
    import torch

    return {"env": {k: os.environ.get(k) for k in (*PINNED, *MACHINE_KNOBS)},
            "pinned": all(os.environ.get(k) == v for k, v in PINNED.items()),
            "aten_capability": torch.backends.cpu.get_cpu_capability(), "torch_threads": torch.get_num_threads()}
