"""Records on disk: atomic writes, JSON and JSON-lines reading, file modes from the umask.

Every record is written to a temporary file in the same folder, flushed, fsynced and renamed
over the target, so a reader sees the old or the new record, never half of one; a kill -9 at any
point leaves no torn file. A record gets the mode any file the user creates gets (0666 less the
umask): ``tempfile.mkstemp`` makes its file 0600, which would hide the runs of one member of a
research group from the others in a shared results folder. ``*.jsonl`` files are append-only; a
torn last line (a kill during an append) is skipped by the reader. A record that cannot be
parsed is reported by path (a ``CorruptRecord`` warning) and skipped.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import tempfile
import threading
import warnings
from pathlib import Path
from typing import Any

__all__ = [
    "CorruptRecord",
    "append_jsonl",
    "file_mode",
    "read_json",
    "read_jsonl",
    "truncate_jsonl",
    "write_bytes_atomic",
    "write_json_atomic",
    "write_text_atomic",
]

_UMASK_LOCK = threading.Lock()


class CorruptRecord(UserWarning):
    """A record that could not be read: reported by path, skipped."""


@functools.cache
def file_mode() -> int:
    """0o666 less this process's umask: the mode ``open()`` would give a new file.

    Read once, at the first write. Linux states the umask in /proc/self/status, which reads it
    without changing it; elsewhere it is set and restored under a lock (another thread that
    creates a file between the two calls would get the momentary umask of this one)."""
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return 0o666 & ~int(line.split()[1], 8)
    with _UMASK_LOCK:
        umask = os.umask(0o022)
        os.umask(umask)
    return 0o666 & ~umask


def write_bytes_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), file_mode())
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_json_atomic(path: Path, obj: Any) -> None:
    write_bytes_atomic(path, (json.dumps(obj, indent=1, sort_keys=True, allow_nan=True) + "\n").encode())


def write_text_atomic(path: Path, text: str) -> None:
    write_bytes_atomic(path, text.encode())


def read_json(path: Path) -> Any | None:
    """The parsed record, None when absent; a corrupt file warns with its path and gives None."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    try:
        return json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        warnings.warn(f"corrupt record skipped: {path} ({e})", CorruptRecord, stacklevel=2)
        return None


def append_jsonl(path: Path, record: dict[str, Any]) -> None:
    """Append one line; a torn last line from a crash is skipped by ``read_jsonl``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    line = (json.dumps(record, sort_keys=True) + "\n").encode()
    with open(path, "ab") as f:  # open() creates the file with the umask's mode
        f.write(line)
        f.flush()


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    try:
        lines = path.read_bytes().splitlines()
    except FileNotFoundError:
        return []
    out = []
    for i, line in enumerate(lines):
        try:
            out.append(json.loads(line))
        except (json.JSONDecodeError, UnicodeDecodeError):
            if i != len(lines) - 1:  # a torn last line is expected after a kill; others are not
                warnings.warn(f"corrupt line {i + 1} skipped: {path}", CorruptRecord, stacklevel=2)
    return out


def truncate_jsonl(path: Path, keep: int) -> None:
    """Keep the records whose ``step`` <= ``keep`` (on resume, drop what the checkpoint lost)."""
    records = [r for r in read_jsonl(path) if r.get("step", 0) <= keep]
    write_text_atomic(path, "".join(json.dumps(r, sort_keys=True) + "\n" for r in records))
