"""`UsageError`: a user's mistake (a bad config value, a missing or malformed file), as opposed to a
bug. Every entry point prints it as one line, `error: ...`, naming the key, file or row, and exits
with status 2; anything else keeps its traceback."""

from __future__ import annotations

import errno
import sys
from collections.abc import Callable
from pathlib import Path

ENVIRONMENT_ERRNOS = frozenset({errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC, errno.EDQUOT})
"""OS errors that are the machine's state, not a bug: a read-only folder, a full disk."""

PATH_ERRNOS = frozenset({errno.EEXIST, errno.EISDIR, errno.ENOTDIR, errno.ENOTEMPTY, errno.ENAMETOOLONG,
                         errno.ELOOP, errno.EINVAL})
"""OS errors about a path the user gave: a file where a folder must go or the other way round, a
name too long, a FIFO where a file must be (`bench.fileio.regular_file`). One line when the error
names the path. A missing file is not among them: commands check the inputs they are given, so one
missing later is a bug, and keeps its traceback."""

KIND_HINTS = {errno.EEXIST: "exists already (a file where a folder is needed?)",
              errno.ENOTDIR: "a file where a folder is needed", errno.EISDIR: "a folder where a file is needed"}


class UsageError(Exception):
    """A mistake in what the user gave; the message names the culprit and fits on one line.
    Several mistakes found at once are passed as several messages, one line each."""

    def __init__(self, message: str, *more: str) -> None:
        super().__init__(message)
        self.lines = (message, *more)


def exit_on_usage_error(main: Callable[[], int | None], output: str | Path | None = None) -> int:
    """Run `main`; a UsageError, an OS error such as a read-only output folder, a full disk or a path
    of the wrong kind, or input nested too deeply, becomes one line on stderr (per message) and exit
    status 2. `output`: the folder the command writes under, named when a failing call names no
    file (a library's write that fails on a full disk). An object that fails the same way while it
    is torn down (an open workbook closing on the full disk: Python's "Exception ignored in")
    stays quiet: the line says it, and where the command went on regardless, it still ends in that
    line and status 2 (the file has lost data)."""
    previous, quieted = sys.unraisablehook, []

    def quiet_environment(unraisable) -> None:
        if isinstance(unraisable.exc_value, OSError) and unraisable.exc_value.errno in ENVIRONMENT_ERRNOS:
            quieted.append(unraisable.exc_value.strerror)
        else:
            previous(unraisable)

    sys.unraisablehook = quiet_environment
    try:
        status = main() or 0
        if not quieted:
            return status
        # a file that failed to close has lost data even though the command went on
        lines = (f"{output or 'a file'}: {quieted[0]} (a file failed to close)",)
    except UsageError as exc:
        lines = exc.lines
    except OSError as exc:
        if exc.errno not in ENVIRONMENT_ERRNOS and not (exc.errno in PATH_ERRNOS and exc.filename):
            raise
        # a rename names its source and destination: the destination is the path the user gave
        where = exc.filename2 or exc.filename or (f"{output} (a file under it)" if output else "a file")
        lines = (f"{where}: {KIND_HINTS.get(exc.errno, exc.strerror)}",)
    except RecursionError:  # a JSON or YAML value nested thousands deep
        lines = ("an input is nested too deeply to be read (RecursionError)",)
    for line in lines:
        print(f"error: {' '.join(str(line).split())}", file=sys.stderr)
    return 2


def json_argument(text: str):
    """argparse `type=` for a JSON value: a malformed or too deeply nested one is argparse's own one-line
    error (exit 2), not a traceback."""
    import argparse
    import json

    try:
        return json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise argparse.ArgumentTypeError(f"not JSON that can be read ({type(exc).__name__})") from None
