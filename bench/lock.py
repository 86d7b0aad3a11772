"""One run per output folder: `hold_folder_lock` takes an exclusive `flock` on `{folder}/.lock` for
the life of the process. A second trainer, `bench.run` or `reproduce run` on the same folder would
interleave its files with the first one's, so it stops with a message naming the first one's pid.
The kernel drops the lock when the holder dies (kill -9 included), so a stale lock never blocks."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from typing import IO

from .errors import UsageError


def hold_folder_lock(folder: Path, label: str, activity: str) -> IO[str]:
    """Create `folder` and lock it; keep the returned handle alive while the run lasts.

    `label` names the folder as the user gave it (`trainer.output_dir`, `--work-dir`), `activity`
    what holds it ("training", "bench.run")."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        handle = (folder / ".lock").open("a+")
    except OSError as exc:
        raise UsageError(f"{label}={folder}: cannot write there ({exc.strerror or exc})") from None
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        owner = handle.read().strip() or "another process"
        handle.close()
        raise UsageError(f"{label}={folder} is in use by a running {activity} ({owner}); wait for it to end or "
                         f"choose another {label}") from None
    try:
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()}")
        handle.flush()
    except OSError as exc:  # a full disk: the lock is held, only the note of who holds it is lost
        handle.close()
        raise UsageError(f"{label}={folder}: cannot write there ({exc.strerror or exc})") from None
    return handle


def holder(folder: Path) -> str | None:
    """Who holds `folder`'s lock now ("pid N"), or None when no running process does (the lock file
    is only read: nothing is created)."""
    try:
        handle = (folder / ".lock").open("r")
    except OSError:
        return None
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return handle.read().strip() or "another process"
        fcntl.flock(handle, fcntl.LOCK_UN)
        return None
