"""`UsageError`: a user's mistake (a bad config value, a missing or malformed file), as opposed to a
bug. Every entry point prints it as one line, `error: ...`, naming the key, file or row, and exits
with status 2; anything else keeps its traceback."""

from __future__ import annotations

import sys
from collections.abc import Callable


class UsageError(Exception):
    """A mistake in what the user gave; the message names the culprit and fits on one line."""


def exit_on_usage_error(main: Callable[[], int | None]) -> int:
    """Run `main`; a UsageError becomes one line on stderr and exit status 2."""
    try:
        return main() or 0
    except UsageError as exc:
        print(f"error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2
