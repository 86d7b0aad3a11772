"""Atomic writes: a temporary file in the same folder, then a rename, so a reader (or a crash)
never sees half a results file. Files get the user's umask, like any other tool's output. And the
one check every reader of a results file makes first: `regular_file`."""

from __future__ import annotations

import errno
import json
import os
import stat
import tempfile
from collections.abc import Callable
from pathlib import Path


def write_atomic(path: str | Path, write: Callable[[str], None]) -> Path:
    """Call write(temporary path) for a file in `path`'s folder, then rename it to `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=path.suffix)
    try:
        os.fchmod(fd, file_mode())  # mkstemp makes 0600
        os.close(fd)
        write(tmp)
        os.replace(tmp, path)
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, OSError) and exc.filename is None:  # a full disk fails a write(), which names no file
            raise OSError(exc.errno, exc.strerror, str(path)) from exc
        raise
    return path


def write_text_atomic(path: str | Path, text: str) -> Path:
    return write_atomic(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


def write_json_atomic(path: str | Path, obj) -> Path:
    return write_text_atomic(path, json.dumps(obj, indent=2))


def write_table_atomic(frame, path: str | Path) -> Path:
    """A pandas frame as .xlsx, .tsv, .csv, .parquet, .jsonl or .json (by suffix)."""
    suffix = Path(path).suffix
    writers = {
        ".xlsx": lambda tmp: frame.to_excel(tmp, index=False),
        ".tsv": lambda tmp: frame.to_csv(tmp, sep="\t", index=False),
        ".csv": lambda tmp: frame.to_csv(tmp, index=False),
        ".parquet": lambda tmp: frame.to_parquet(tmp, index=False),
        ".jsonl": lambda tmp: frame.to_json(tmp, orient="records", lines=True, force_ascii=False),
        ".json": lambda tmp: frame.to_json(tmp, orient="records", force_ascii=False),
    }
    if suffix not in writers:
        raise ValueError(f"{path}: cannot write a table as {suffix!r}; use {', '.join(writers)}")
    return write_atomic(path, writers[suffix])


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


def regular_file(path: str | Path) -> Path:
    """`path`, if it is a regular file; otherwise OSError naming it. Opening a FIFO for reading waits
    for a writer forever, and a device may never end: a results file must be a file."""
    path = Path(path)
    mode = path.stat().st_mode  # FileNotFoundError, naming the path, when it is missing
    if not stat.S_ISREG(mode):
        kind = "a folder" if stat.S_ISDIR(mode) else "a FIFO" if stat.S_ISFIFO(mode) else "not a regular file"
        raise OSError(errno.EINVAL, f"{kind}, where a results file is needed", str(path))
    return path


def read_text_regular(path: str | Path) -> str:
    """The UTF-8 text of a regular file (`regular_file`)."""
    return regular_file(path).read_text(encoding="utf-8")


def output_stem(out: str | Path, name: str) -> Path:
    """The path, without extension, of outputs written as `{stem}.{ext}` for an --out of `out`: a
    folder (one that exists, or written with a trailing slash, or "." or "/") gets `{out}/{name}`,
    anything else is the stem itself, less an output extension it ends with (`sub.json`: `sub`).
    An empty --out is a mistake (UsageError): an unset variable."""
    from .errors import UsageError

    text = str(out)
    if not text.strip():
        raise UsageError("--out '': give a folder, or a path without extension")
    path = Path(text)
    if text.endswith(("/", os.sep)) or path.name in ("", ".", "..") or path.is_dir():
        return path / name
    return path.with_suffix("") if path.suffix in OUTPUT_SUFFIXES else path


OUTPUT_SUFFIXES = (".json", ".md", ".csv", ".tex", ".py")
"""Extensions `output_stem` drops from a stem it is given (they are added per output)."""
