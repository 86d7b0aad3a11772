"""`make mutation`'s watchdog: ends mutant processes that hang without using the CPU.

mutmut forks each mutant's test run from its own process, which has threads by then; now and then
a child waits forever on a lock one of those threads held at the fork (a futex wait at 0% CPU).
mutmut's own limit counts CPU seconds (RLIMIT_CPU), so such a child is never stopped. This ends a
mutant process whose CPU time (with its children's) has not moved for STALL_S seconds; mutmut then records it as
"segfault" (killed by a signal), which the report counts as not run, never as killed."""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

STALL_S = 45
POLL_S = 5


def mutant_processes() -> dict[int, int]:
    """pid -> CPU ticks (user + system) of every `mutmut: <mutant>` process with all its live
    descendants (a test waiting on a child process it started is busy, not hung)."""
    ticks, parent, mutants = {}, {}, []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            fields = (proc / "stat").read_text().rsplit(")", 1)[1].split()
            pid = int(proc.name)
            parent[pid], ticks[pid] = int(fields[1]), int(fields[11]) + int(fields[12])
            if (proc / "cmdline").read_bytes().startswith(b"mutmut: "):
                mutants.append(pid)
        except (OSError, IndexError, ValueError):
            continue
    totals = {pid: ticks[pid] for pid in mutants}
    for pid in ticks:
        ancestor = parent.get(pid)
        while ancestor and ancestor not in totals:
            ancestor = parent.get(ancestor)
        if ancestor and pid not in totals:
            totals[ancestor] += ticks[pid]
    return totals


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def main() -> int:
    parent = int(sys.argv[1]) if len(sys.argv) > 1 else os.getppid()
    last: dict[int, tuple[int, float]] = {}  # pid -> (ticks, when they last moved)
    while _alive(parent):
        now = time.monotonic()
        current = mutant_processes()
        for pid, ticks in current.items():
            seen, since = last.get(pid, (None, now))
            if ticks != seen:
                last[pid] = (ticks, now)
            elif now - since > STALL_S:
                name = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").strip("\0 ")
                print(f"mutation watchdog: {name} used no CPU for {STALL_S} s; ended (counted as not run)",
                      file=sys.stderr, flush=True)
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        last = {pid: v for pid, v in last.items() if pid in current}
        time.sleep(POLL_S)
    return 0


if __name__ == "__main__":
    sys.exit(main())
