"""What a launcher (torchrun, deepspeed) sets in the environment, for a process started alone."""

from __future__ import annotations

import os
import socket


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def launcher_env_defaults() -> None:
    """A process run without a launcher is rank 0 of 1 on 127.0.0.1, on a free port (a fixed one may
    be taken). DeepSpeed's `init_distributed` and vLLM's external-launcher executor read these
    (vllm 0.28.0, vllm/v1/executor/uniproc_executor.py:195-196 reads RANK and LOCAL_RANK with
    `os.environ[...]`, so a missing one is a KeyError there)."""
    for key, value in (("RANK", "0"), ("WORLD_SIZE", "1"), ("LOCAL_RANK", "0"), ("MASTER_ADDR", "127.0.0.1")):
        os.environ.setdefault(key, value)
    if "MASTER_PORT" not in os.environ:
        os.environ["MASTER_PORT"] = str(free_port())
