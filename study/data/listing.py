"""A dataset's file list, read once: the images below a folder (or the checked names of a split
list), kept in this process and, where a cache folder is set (``use_cache``: the launcher and
every job set ``<results>/.cache/listings``), in one file per folder that all runs share.

A listing carries its folder's signature: the modification time of every directory it walked
(a file added, removed or renamed anywhere below changes its directory's), and for a split list
the list file's size and time and those of the directories holding the files it names. A listing
whose signature no longer matches is read again; checking it costs one ``stat`` per directory,
not a walk; a listing of a directory changed in the last two seconds is not kept (its time
cannot tell a change made just after apart). Files on disk are sorted, carry their count and sha256, and are written atomically:
a torn or edited one is ignored and rewritten. docs/data.md, "The file listing".
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from study.store.files import write_json_atomic

FORMAT = 1
RACY_NS = 2_000_000_000  # 2 s: above the coarsest clock of the file systems in use (NFS, ext3: 1 s)


@dataclass(frozen=True)
class Listing:
    key: str  # "folder <path>" or "list <list file> in <folder>"
    files: tuple[str, ...]
    signature: dict[str, list[int]]  # path -> [mtime_ns, size] (size 0 for a directory)


_MEMO: dict[str, Listing] = {}
_PERSISTED: set[str] = set()
_cache_dir: Path | None = None


def use_cache(directory: str | Path | None) -> None:
    """Keep listings in ``directory`` from now on (None: in this process only)."""
    global _cache_dir
    _cache_dir = Path(directory) if directory else None


def persist(directory: str | Path) -> None:
    """Write every listing this process holds into ``directory`` (the launcher, once its checks
    passed: a refused launch writes nothing)."""
    for item in list(_MEMO.values()):
        _write(Path(directory), item)


# --------------------------------------------------------------------------------------------
# signatures
# --------------------------------------------------------------------------------------------
def _stamp(path: str) -> list[int]:
    """[mtime_ns, size] of a file; [mtime_ns, 0] of a directory."""
    st = os.stat(path)
    return [st.st_mtime_ns, 0 if stat.S_ISDIR(st.st_mode) else st.st_size]


def _valid(item: Listing) -> bool:
    try:
        return all(_stamp(p) == s for p, s in item.signature.items())
    except OSError:
        return False


def _digest(files: tuple[str, ...]) -> str:
    return hashlib.sha256("\n".join(files).encode("utf-8")).hexdigest()


# --------------------------------------------------------------------------------------------
# the cache: this process, then the folder of listings
# --------------------------------------------------------------------------------------------
def _file_of(directory: Path, key: str) -> Path:
    return directory / f"{hashlib.sha256(key.encode('utf-8')).hexdigest()[:24]}.json"


def _read(key: str) -> Listing | None:
    item = _MEMO.get(key)
    if item is not None and _valid(item):
        return item
    if _cache_dir is None:
        return None
    try:
        doc: Any = json.loads(_file_of(_cache_dir, key).read_text(encoding="utf-8"))
        files = tuple(doc["files"])
        ok = doc["format"] == FORMAT and doc["key"] == key and doc["count"] == len(files)
        item = Listing(key, files, {p: list(s) for p, s in doc["signature"].items()})
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not ok or doc["sha256"] != _digest(files) or not _valid(item):
        return None
    _MEMO[key] = item
    _PERSISTED.add(key)
    return item


def _keep(item: Listing) -> None:
    _MEMO[item.key] = item
    _PERSISTED.discard(item.key)
    if _cache_dir is not None:
        _write(_cache_dir, item)


def _write(directory: Path, item: Listing) -> None:
    if item.key in _PERSISTED and _file_of(directory, item.key).exists():
        return
    doc = {
        "format": FORMAT,
        "key": item.key,
        "count": len(item.files),
        "sha256": _digest(item.files),
        "signature": item.signature,
        "files": list(item.files),
    }
    try:
        write_json_atomic(_file_of(directory, item.key), doc)
        _PERSISTED.add(item.key)
    except OSError:  # a read-only results folder: the listing stays in this process
        pass


# --------------------------------------------------------------------------------------------
# folders and split lists
# --------------------------------------------------------------------------------------------
def folder_files(folder: Path, suffixes: tuple[str, ...]) -> list[str]:
    """The files below ``folder`` (symbolic links followed, each directory once) whose suffix,
    lowercased, is one of ``suffixes``: sorted relative POSIX paths."""
    root = str(folder.resolve())
    key = f"folder {root} suffixes {','.join(suffixes)}"
    item = _read(key)
    if item is None:
        item = _walk(key, root, suffixes)
        if not _racy(item):
            _keep(item)
    return list(item.files)


def _racy(item: Listing) -> bool:
    """A directory changed within RACY_NS of now: a change made just after the walk could leave
    its time as it is (coarse file-system clocks), so such a listing is not kept."""
    now = time.time_ns()
    return any(now - stamp[0] < RACY_NS for stamp in item.signature.values())


def _walk(key: str, root: str, suffixes: tuple[str, ...]) -> Listing:
    files: list[str] = []
    signature: dict[str, list[int]] = {}
    seen: set[tuple[int, int]] = set()
    stack = [""]
    while stack:
        rel = stack.pop()
        path = os.path.join(root, rel) if rel else root
        st = os.stat(path)
        if (st.st_dev, st.st_ino) in seen:  # a link back up the tree
            continue
        seen.add((st.st_dev, st.st_ino))
        signature[path] = [st.st_mtime_ns, 0]
        with os.scandir(path) as entries:
            for entry in entries:
                name = f"{rel}/{entry.name}" if rel else entry.name
                if entry.is_dir():
                    stack.append(name)
                elif os.path.splitext(entry.name)[1].lower() in suffixes and entry.is_file():
                    files.append(name)
    return Listing(key, tuple(sorted(files)), signature)


def _list_key(list_file: Path, folder: Path) -> str:
    return f"list {list_file.resolve()} in {folder.resolve()}"


def cached_list(list_file: Path, folder: Path) -> list[str] | None:
    """The names of a split list checked before, if neither it nor the folders it names changed."""
    item = _read(_list_key(list_file, folder))
    return None if item is None else list(item.files)


def remember_list(list_file: Path, folder: Path, names: list[str]) -> None:
    """Keep a split list's checked names (every one exists below ``folder``)."""
    signature = {str(list_file.resolve()): _stamp(str(list_file.resolve()))}
    for parent in sorted({os.path.dirname(n) for n in names}):
        path = str(folder.resolve() / parent) if parent else str(folder.resolve())
        signature[path] = _stamp(path)
    item = Listing(_list_key(list_file, folder), tuple(names), signature)
    if not _racy(item):
        _keep(item)
