"""Atomic writes: a temporary file in the same folder, then a rename, so a reader (or a crash)
never sees half a results file. Files get the user's umask, like any other tool's output."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path


def write_text_atomic(path: str | Path, text: str) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, file_mode())  # mkstemp makes 0600
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def file_mode() -> int:
    """The mode a new file gets from open(): 0o666 less the process's umask."""
    try:  # Linux reports the umask without changing it (os.umask would, for every thread)
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return 0o666 & ~int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return 0o666 & ~mask


def write_json_atomic(path: str | Path, obj) -> Path:
    return write_text_atomic(path, json.dumps(obj, indent=2))


def write_table_atomic(frame, path: str | Path) -> Path:
    """A pandas frame as .xlsx, .tsv, .csv or .json (by suffix), written atomically."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=path.suffix)
    os.fchmod(fd, file_mode())
    os.close(fd)
    try:
        if path.suffix == ".xlsx":
            frame.to_excel(tmp, index=False)
        elif path.suffix in (".tsv", ".csv"):
            frame.to_csv(tmp, sep="\t" if path.suffix == ".tsv" else ",", index=False)
        else:
            frame.to_json(tmp, orient="records")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
