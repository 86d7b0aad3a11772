"""Side-by-side trainer benchmark: our trainer against TRL's `GRPOTrainer` on identical work.

    make bench-perf                      # or: python -m reproduce.perf [--alternations 3] [--steps 10]

`workload.py` fixes the work (the tiny Qwen2.5-VL, 2 prompts x 4 completions, exactly 64 new
tokens, temperature 1.0, no KL, fp32, AdamW). `run_ours.py` runs it through `train`, `run_trl.py`
through TRL inside its own virtual environment (`.venv-peer`, made on first use so the project's
environment never depends on TRL), and `__main__.py` alternates them and reports medians and
ratios. Each run is a fresh process; its figures come back as JSON.
"""
