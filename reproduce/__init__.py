"""The paper's tables: reference numbers with provenance, table builders, the CPU-scale
reproduction, the leaderboard submission and run configs. Nothing imports this package."""
