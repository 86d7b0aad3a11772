"""`UsageError`: a user's mistake (a bad config value, a missing or malformed file), as opposed to a
bug. Every entry point prints it as one line, `error: ...`, naming the key, file or row, and exits
with status 2; anything else keeps its traceback."""

from __future__ import annotations

import errno
import sys
from collections.abc import Callable

ENVIRONMENT_ERRNOS = frozenset({errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC, errno.EDQUOT})
"""OS errors that are the machine's state, not a bug: a read-only folder, a full disk."""


class UsageError(Exception):
    """A mistake in what the user gave; the message names the culprit and fits on one line.
    Several mistakes found at once are passed as several messages, one line each."""

    def __init__(self, message: str, *more: str) -> None:
        super().__init__(message)
        self.lines = (message, *more)


def exit_on_usage_error(main: Callable[[], int | None]) -> int:
    """Run `main`; a UsageError, or an OS error such as a read-only output folder or a full disk,
    becomes one line on stderr (per message) and exit status 2."""
    try:
        return main() or 0
    except UsageError as exc:
        for line in exc.lines:
            print(f"error: {' '.join(str(line).split())}", file=sys.stderr)
        return 2
    except OSError as exc:
        if exc.errno not in ENVIRONMENT_ERRNOS:
            raise
        print(f"error: {exc.filename or 'a file'}: {exc.strerror}", file=sys.stderr)
        return 2
