"""`python -m train --config FILE [key=value ...]` (also under `deepspeed --module` and `torchrun -m`)."""

import sys

from .trainer import main

sys.exit(main())
