"""`python -m train --config FILE [key=value ...]` (also under `deepspeed --module` and `torchrun -m`)."""

import os
import sys

import torch

if "DS_ACCELERATOR" not in os.environ and not torch.cuda.is_available():
    os.environ["DS_ACCELERATOR"] = "cpu"  # what DeepSpeed would pick, without its warning on every start

from .trainer import main  # noqa: E402 - DeepSpeed reads DS_ACCELERATOR when first imported

sys.exit(main())
