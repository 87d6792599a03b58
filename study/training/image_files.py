"""The image files of a set: every image below a folder, or those a split list names; the
deterministic hold-out by path hash; decoding with an error that names the file."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
from PIL import Image

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp")


class DataError(ValueError):
    """A dataset that cannot be used: the message names the folder or file and why."""


def split_hash(relpath: str) -> float:
    """The file's place in [0, 1): sha256 of its relative POSIX path, first 8 bytes."""
    digest = hashlib.sha256(relpath.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def is_heldout(relpath: str, val_fraction: float) -> bool:
    """Whether the file at ``relpath`` (relative to the folder) belongs to the held-out split."""
    return split_hash(relpath) < val_fraction


def list_images(root: str | Path) -> list[str]:
    """The image files below ``root`` as sorted relative POSIX paths; DataError if none."""
    folder = Path(root).expanduser()
    if not str(root):
        raise DataError("data.path is empty: an image folder is needed when data.kind is 'folder'")
    if not folder.is_dir():
        raise DataError(f"{folder}: no such image folder")
    files = sorted(
        p.relative_to(folder).as_posix()
        for p in folder.rglob("*")
        if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()
    )
    if not files:
        raise DataError(f"{folder}: no image files ({', '.join(IMAGE_SUFFIXES)}) in the folder or below it")
    return files


def read_list(list_file: str | Path, root: str | Path, where: str) -> list[str]:
    """The relative image paths of a split list (one a line; blank lines and ``#`` comments
    skipped), in the list's order, each checked to exist below ``root``. ``where`` names the
    config key in errors."""
    path = Path(list_file).expanduser()
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise DataError(f"{where}: cannot read the split list {path} ({type(err).__name__}: {err})") from err
    names = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    if not names:
        raise DataError(f"{where}: the split list {path} names no image")
    folder = Path(root).expanduser()
    if not folder.is_dir():
        raise DataError(f"{folder}: no such image folder (for the split list {path})")
    for name in (n for n in names if Path(n).is_absolute() or ".." in Path(n).parts):
        raise DataError(f"{where}: {path} lists {name!r}; paths must be relative to {folder}")
    missing = [n for n in names if not (folder / n).is_file()]
    if missing or len(set(names)) != len(names):
        raise DataError(
            f"{where}: {len(missing)} of the {len(names)} files that {path} lists are not in {folder}, "
            f"e.g. {', '.join(missing[:3])}"
            if missing
            else f"{where}: {path} names some files twice"
        )
    return names


def image_files(root: str | Path, list_file: str | Path = "", where: str = "data.list") -> list[str]:
    """The images of a set: those a split list names, else every image below ``root``."""
    return read_list(list_file, root, where) if str(list_file) else list_images(root)


def decode_image(path: str | Path) -> np.ndarray:
    """The image at ``path`` as uint8 H x W x 3 RGB; a DataError naming the file if unreadable."""
    try:
        with Image.open(path) as img:
            return np.asarray(img.convert("RGB"))
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as err:
        raise DataError(f"{path}: cannot read the image ({type(err).__name__}: {err})") from err
