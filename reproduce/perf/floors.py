"""The floor of a training step on this chip, from two rates measured on it.

- Copy bandwidth: bytes read plus bytes written per second by a device-to-device copy of a large
  buffer (what a memory-bound decoding step can at best stream).
- Matrix rate: bf16 (n x n) @ (n x n) products, 2 n^3 FLOP each.

Decoding one token for R rows reads every weight once plus each row's KV cache, so the decode floor
of L tokens is the sum over t < L of (weight bytes + KV bytes at length P + t) / bandwidth. The
update floor is 6 x parameters x trained tokens / matrix rate (forward 2, backward 4 FLOP per
parameter and token). A step's floor is their sum: what no implementation on this chip can beat.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import torch


@dataclass(frozen=True)
class ChipRates:
    device: str
    copy_bytes_per_s: float
    matmul_flop_per_s: float


def _timed(fn, repeats: int, device: torch.device) -> float:
    """Median seconds of fn() over `repeats` runs after one warm-up (CUDA events on a GPU)."""
    fn()
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end) / 1e3)
        else:
            t = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t)
    return sorted(times)[len(times) // 2]


def measure_rates(device: str | torch.device = "cuda", copy_mib: int = 2048, matmul_n: int = 8192,
                  repeats: int = 10) -> ChipRates:
    """This chip's copy bandwidth and bf16 matrix rate (small sizes: a test on the CPU)."""
    device = torch.device(device)
    buffers = [torch.empty(copy_mib * 2**20, dtype=torch.uint8, device=device) for _ in range(2)]
    copy_s = _timed(lambda: buffers[1].copy_(buffers[0]), repeats, device)
    buffers.clear()
    factors = [torch.randn(matmul_n, matmul_n, dtype=torch.bfloat16, device=device) for _ in range(2)]
    matmul_s = _timed(lambda: factors[0] @ factors[1], repeats, device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    return ChipRates(name, 2 * copy_mib * 2**20 / copy_s, 2 * matmul_n**3 / matmul_s)


@dataclass(frozen=True)
class StepShape:
    parameters: int
    """All of the model's parameters, in bf16 (2 bytes): the language model's are read once per
    decoded token, the vision tower's once per step (it encodes the prompts' images, not tokens)."""
    layers: int
    kv_heads: int
    head_dim: int
    rows: int
    prompt_tokens: int
    """Per row (the prompt's length, including its image tokens)."""
    new_tokens: int
    vision_parameters: int = 0
    """Of `parameters`, the vision tower's (0.67B at 3B and 7B)."""


def decode_floor_s(s: StepShape, rates: ChipRates, bytes_per_value: int = 2) -> float:
    """Seconds to stream the language model's weights and the KV cache once per decoded token, and
    the vision tower's weights once."""
    text_weights = (s.parameters - s.vision_parameters) * bytes_per_value
    kv_per_token = s.rows * s.layers * 2 * s.kv_heads * s.head_dim * bytes_per_value
    kv = kv_per_token * sum(s.prompt_tokens + t for t in range(s.new_tokens))
    return (s.new_tokens * text_weights + s.vision_parameters * bytes_per_value + kv) / rates.copy_bytes_per_s


def update_floor_s(s: StepShape, rates: ChipRates) -> float:
    """Seconds for 6 FLOP per parameter and trained token at the matrix rate."""
    return 6 * s.parameters * s.rows * (s.prompt_tokens + s.new_tokens) / rates.matmul_flop_per_s


def step_floor(s: StepShape, rates: ChipRates) -> dict:
    decode, update = decode_floor_s(s, rates), update_floor_s(s, rates)
    return {"decode_s": decode, "update_s": update, "step_s": decode + update,
            "tokens_per_s": s.rows * s.new_tokens / (decode + update), "shape": asdict(s)}
