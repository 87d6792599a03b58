"""The image files of a set: every image below a folder, or those a split list names; the
deterministic hold-out by path hash; decoding with an error that names the file."""

from __future__ import annotations

import hashlib
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from study.data import listing

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
    """The image files below ``root`` as sorted relative POSIX paths; DataError if none. Read
    through the listing cache (study/data/listing.py): the tree is walked once per change."""
    folder = Path(root).expanduser()
    if not str(root):
        raise DataError("data.path is empty: an image folder is needed when data.kind is 'folder'")
    if not folder.is_dir():
        raise DataError(f"{folder}: no such image folder")
    files = listing.folder_files(folder, IMAGE_SUFFIXES)
    if not files:
        raise DataError(f"{folder}: no image files ({', '.join(IMAGE_SUFFIXES)}) in the folder or below it")
    return files


def read_list(list_file: str | Path, root: str | Path, where: str) -> list[str]:
    """The relative image paths of a split list (one a line; blank lines and ``#`` comments
    skipped), in the list's order, each checked to exist below ``root`` (once per change of the
    list or of the folders it names: study/data/listing.py). ``where`` names the config key in
    errors."""
    path = Path(list_file).expanduser()
    folder = Path(root).expanduser()
    try:
        path.stat()
    except OSError as err:
        raise DataError(f"{where}: cannot read the split list {path} ({type(err).__name__}: {err})") from err
    if not folder.is_dir():
        raise DataError(f"{folder}: no such image folder (for the split list {path})")
    cached = listing.cached_list(path, folder)
    if cached is not None:
        return cached
    names = _checked_list(path, folder, where)
    listing.remember_list(path, folder, names)
    return names


def _checked_list(path: Path, folder: Path, where: str) -> list[str]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise DataError(f"{where}: cannot read the split list {path} ({type(err).__name__}: {err})") from err
    names = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    if not names:
        raise DataError(f"{where}: the split list {path} names no image")
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


# JPEG files of one (grey) or three (YCbCr) components decode with torchvision.io.decode_jpeg
# (libjpeg-turbo, as PIL's; the same pixels: tests/test_loader.py checks equality with PIL, the
# protocol's decoder); CMYK and anything torchvision refuses go through PIL. Measured on this
# project's 2-core CPU (benchmarks/bench_train.py, the 9 sample photos twice as quality-90 JPEGs,
# 300x451 to 1411x1411, median of 3 passes): 1.39x and 1.43x PIL's rate (docs/performance.md);
# "pil" switches it off.
JPEG_DECODER: str = "torchvision"


def decode_image(path: str | Path) -> np.ndarray:
    """The image at ``path`` as uint8 H x W x 3 RGB; a DataError naming the file if unreadable."""
    try:
        if JPEG_DECODER == "torchvision" and Path(path).suffix.lower() in (".jpg", ".jpeg"):
            data = Path(path).read_bytes()
            if jpeg_components(data) in (1, 3):
                try:
                    return _decode_jpeg(data)
                except RuntimeError:
                    pass  # PIL decodes what it can, and words the error when it cannot
        with Image.open(path) as img:
            return np.asarray(img.convert("RGB"))
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as err:
        raise DataError(f"{path}: cannot read the image ({type(err).__name__}: {err})") from err


def _decode_jpeg(data: bytes) -> np.ndarray:
    """torchvision's decoder (deprecated from torchvision 0.29 in favour of TorchCodec, which this
    environment lacks: its warning is silenced; a build without it raises RuntimeError -> PIL)."""
    try:
        from torchvision.io import ImageReadMode, decode_jpeg
    except ImportError as err:
        raise RuntimeError(f"no torchvision JPEG decoder: {err}") from err
    encoded = torch.frombuffer(bytearray(data), dtype=torch.uint8)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning, module="torchvision")
        image = decode_jpeg(encoded, mode=ImageReadMode.RGB)
    return np.ascontiguousarray(image.permute(1, 2, 0).numpy())


def jpeg_components(data: bytes) -> int | None:
    """The colour components of a JPEG's frame (1 grey, 3 YCbCr or RGB, 4 CMYK), read from its
    start-of-frame marker; None when ``data`` is not a JPEG whose header reads cleanly."""
    if data[:2] != b"\xff\xd8":
        return None
    i = 2
    while i + 4 <= len(data) and data[i] == 0xFF:
        marker, length = data[i + 1], int.from_bytes(data[i + 2 : i + 4], "big")
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):  # SOFn: P, Y, X, Nf
            return data[i + 9] if i + 9 < len(data) else None
        i += 2 + length
    return None
