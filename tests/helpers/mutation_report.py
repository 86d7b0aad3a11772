"""`make mutation`'s summary: mutmut's outcome per module, and the kill rate over the mutants that
ran (killed, or timed out, of those not skipped) and over all of them ("no tests": no in-process
test reaches the mutated function, which counts against the module). "hung": ended by
`mutation_watchdog.py` (mutmut reports it as a segfault), counted as not killed."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter, defaultdict
from pathlib import Path


def summarise(results: str) -> dict[str, Counter]:
    """Outcome counts per module from `mutmut results --all true` ("    pkg.mod.x_fn__mutmut_3: killed")."""
    per_module: dict[str, Counter] = defaultdict(Counter)
    for line in results.splitlines():
        name, _, status = line.strip().rpartition(": ")
        if "__mutmut_" in name:
            per_module[name.split(".x")[0]][status] += 1
    return per_module


def kill_rates(c: Counter) -> tuple[float | None, float | None]:
    """(over the mutants that ran, over all that were generated and not skipped), in percent."""
    killed = c["killed"] + c["timeout"]
    ran = killed + c["survived"]
    total = sum(c.values()) - c["not checked"] - c["skipped"]
    return (100 * killed / ran if ran else None, 100 * killed / total if total else None)


def main() -> int:
    mutmut = Path(sys.executable).with_name("mutmut")
    out = subprocess.run([str(mutmut), "results", "--all", "true"], capture_output=True, text=True, check=True).stdout
    print(f"{'module':28} {'mutants':>8} {'killed':>7} {'survived':>9} {'no tests':>9} {'not run':>8} {'hung':>5} {'kill rate (ran)':>16} "
          f"{'kill rate (all)':>16}")
    for module, c in sorted(summarise(out).items()):
        rates = [f"{r:.0f}%" if r is not None else "-" for r in kill_rates(c)]
        print(f"{module:28} {sum(c.values()):8} {c['killed'] + c['timeout']:7} {c['survived']:9} {c['no tests']:9} "
              f"{c['not checked']:8} {c['segfault']:5} {rates[0]:>16} {rates[1]:>16}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
