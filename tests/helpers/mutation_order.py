"""`make mutation`'s test order: the tests that reach a mutant, fastest first."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path


def fastest_first(items: list) -> None:
    """When mutmut runs a mutant's tests (it sets MUTANT_UNDER_TEST to the mutant's name and runs
    pytest in mutants/, beside its mutmut-stats.json), order them by the durations mutmut recorded,
    fastest first: with -x the first failing test ends the run, so a slow subprocess test runs only
    for a mutant that no faster test kills. Elsewhere the order is left as collected."""
    if "__mutmut_" not in os.environ.get("MUTANT_UNDER_TEST", ""):
        return
    try:
        durations = json.loads(Path("mutmut-stats.json").read_text())["duration_by_test"]
    except (OSError, ValueError, KeyError, TypeError):
        return
    items.sort(key=lambda item: durations.get(item.nodeid, math.inf))
