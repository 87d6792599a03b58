"""Reading a study file: UTF-8 YAML through a safe loader that rejects duplicate keys, and the one
error every malformed study file raises (``StudyFileError``: file, key path, value, allowed)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml


class StudyFileError(ValueError):
    """A malformed study file. The one-line message names the file, the key path, the value
    and what is allowed."""

    def __init__(self, path: Path | str, key: str, value: Any, allowed: str):
        self.path, self.key, self.value, self.allowed = str(path), key, value, allowed
        super().__init__(f"{self.path}: {key}: got {_show(value)}; allowed: {allowed}")


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 120 else text[:117] + "..."


class _DuplicateKey(Exception):
    def __init__(self, key: Any, line: int):
        self.key, self.line = key, line


class _StrictLoader(yaml.SafeLoader):
    """The safe loader, refusing a key given twice in one mapping."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if key in seen:
                raise _DuplicateKey(key, key_node.start_mark.line + 1)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


# YAML 1.1 (PyYAML) reads 1e-4 and 1e5 as strings: it wants a dot and a signed exponent. Read
# them as numbers, as YAML 1.2 and every researcher do (`train.lr: 1e-4` must mean 0.0001).
_StrictLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float", re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"), list("-+0123456789")
)


def _read_text(path: Path) -> str:
    """The file as UTF-8 text (YAML's encoding; the locale's does not matter), or StudyFileError
    naming the file and the line of the first byte that is not UTF-8 (a binary file, or text
    saved in Latin-1 or another legacy encoding)."""
    try:
        data = path.read_bytes()
    except OSError as e:
        raise StudyFileError(path, "<file>", str(path), f"a readable study file ({e.strerror})") from None
    try:
        return data.decode("utf-8-sig")  # a byte-order mark, if any, is not part of the text
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise StudyFileError(
            path,
            f"line {line}",
            f"byte 0x{data[e.start]:02x}, not UTF-8 text",
            "a UTF-8 text file (a binary file, or text in another encoding such as Latin-1: save it as UTF-8)",
        ) from None


def read_yaml(path: Path) -> Any:
    text = _read_text(path)
    try:
        return yaml.load(text, Loader=_StrictLoader)
    except _DuplicateKey as e:
        raise StudyFileError(
            path, str(e.key), f"a second {e.key!r} at line {e.line}", "each key once per mapping"
        ) from None
    except yaml.reader.ReaderError as e:  # a character YAML does not allow (NUL, other controls)
        line = text[: e.position].count("\n") + 1
        raise StudyFileError(
            path, f"line {line}", f"character {chr(e.character)!r}", "printable YAML text (no control characters)"
        ) from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark else "<file>"
        raise StudyFileError(path, where, getattr(e, "problem", str(e)), "valid YAML") from None
