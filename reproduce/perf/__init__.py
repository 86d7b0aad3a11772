"""Side-by-side trainer benchmark: our trainer against TRL's `GRPOTrainer` on identical work.

    make bench-perf                      # or: python -m reproduce.perf [--alternations 3] [--steps 10]
    make bench-perf-grid                 # python -m reproduce.perf --grid; python -m reproduce.perf.memory

`workload.py` fixes the work (model, prompts x completions, exactly N new tokens, temperature
1.0, no KL, fused AdamW (TRL's default and ours); fp32 by default). `run_ours.py` runs it through
`train`, `run_trl.py` through TRL inside its own virtual environment (`.venv-peer`, made on
first use so the project's environment never depends on TRL). `compare.py` alternates them in
fresh processes and summarises; `__main__.py` reports one point, `grid.py` the cost curves over
length x n x model, `memory.py` the longest response each trainer trains within a memory limit.
"""
