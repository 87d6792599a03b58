"""The pictures behind a run's numbers: the first ``eval.gallery_images`` images of the evaluation
set, their reconstructions, error maps and zooms, and one labelled grid, under
``<run>/gallery/<protocol id>/``. The files and our scale choices: docs/reports.md, "The gallery
files".
"""

from __future__ import annotations

import hashlib
import io
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont
from torch import Tensor
from torch.utils.data import Dataset

from study import store
from study.store.media import MANIFEST

HEAT_MAX = 64  # grey levels of |x - x_hat| at the top of the colour scale
ZOOM = 4
MIN_TILE = 128  # grid tiles are enlarged (nearest, integer factor) to at least this many pixels
LABEL_WIDTH = 150
GAP = 2
KINDS = ("original", "reconstruction", "error", "zoom_original", "zoom")
LABELS = {
    "original": "original",
    "reconstruction": "reconstruction",
    "error": f"|x - x_hat|, 0-{HEAT_MAX}",
    "zoom_original": f"original, {ZOOM}x crop",
    "zoom": f"reconstruction, {ZOOM}x",
}


def file_name(kind: str, index: int) -> str:
    return f"{kind}_{index:03d}.png"


def first_images(dataset: Dataset, k: int) -> Tensor:
    """The first ``k`` images of ``dataset`` (all of them when it has fewer), N x 3 x H x W."""
    n = min(k, len(dataset))  # type: ignore[arg-type]
    return torch.stack([dataset[i] for i in range(n)])


def is_saved(folder: Path, k: int) -> bool:
    """True when ``folder`` holds a complete gallery of ``k`` images (``k`` asked for: a smaller
    evaluation set gives fewer)."""
    manifest = store.read_json(Path(folder) / MANIFEST)
    if manifest is None or manifest.get("requested") != k:
        return False
    return all((Path(folder) / name).is_file() for names in manifest["files"].values() for name in names)


# --------------------------------------------------------------------------------------------
# the pictures
# --------------------------------------------------------------------------------------------
def _hwc(images: Tensor) -> np.ndarray:
    """uint8 N x 3 x H x W -> N x H x W x 3 numpy."""
    return images.detach().to("cpu", torch.uint8).permute(0, 2, 3, 1).contiguous().numpy()


def error_map(original: np.ndarray, reconstruction: np.ndarray) -> np.ndarray:
    """|x - x_hat| averaged over RGB (H x W x 3 uint8 each), as inferno colours: 0 black, HEAT_MAX
    grey levels and above the colour scale's top."""
    from matplotlib import colormaps

    err = np.abs(original.astype(np.int16) - reconstruction.astype(np.int16)).mean(axis=2)
    level = np.clip(np.round(err * 255.0 / HEAT_MAX), 0, 255).astype(np.uint8)
    lut = (colormaps["inferno"](np.arange(256))[:, :3] * 255).round().astype(np.uint8)
    return lut[level]


def crop_box(height: int, width: int) -> tuple[int, int, int, int]:
    """(top, left, height, width) of the fixed crop: the centre, a quarter of each side."""
    h, w = max(1, height // ZOOM), max(1, width // ZOOM)
    return (height - h) // 2, (width - w) // 2, h, w


def zoom(image: np.ndarray) -> np.ndarray:
    """The fixed crop of ``image`` (H x W x 3) enlarged ZOOM times, nearest neighbour."""
    top, left, h, w = crop_box(*image.shape[:2])
    return image[top : top + h, left : left + w].repeat(ZOOM, axis=0).repeat(ZOOM, axis=1)


def _png(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


def labelled_grid(rows: list[tuple[str, list[np.ndarray]]], tile: tuple[int, int]) -> np.ndarray:
    """One row per (label, images): images placed left to right in cells of ``tile`` (H, W),
    enlarged by the integer factor that makes a cell at least MIN_TILE pixels, a label at the left."""
    scale = max(1, math.ceil(MIN_TILE / max(1, min(tile))))
    cell_h, cell_w = tile[0] * scale, tile[1] * scale
    columns = max((len(images) for _, images in rows), default=0)
    height = len(rows) * (cell_h + GAP) + GAP
    width = LABEL_WIDTH + columns * (cell_w + GAP) + GAP
    canvas = Image.new("RGB", (width, height), "white")
    draw, font = ImageDraw.Draw(canvas), ImageFont.load_default(size=14)
    for r, (label, images) in enumerate(rows):
        y = GAP + r * (cell_h + GAP)
        draw.text((6, y + cell_h // 2), label, fill="black", font=font, anchor="lm")
        for c, image in enumerate(images):
            big = image.repeat(scale, axis=0).repeat(scale, axis=1)
            canvas.paste(Image.fromarray(big), (LABEL_WIDTH + GAP + c * (cell_w + GAP), y))
    return np.asarray(canvas)


def save(folder: Path, originals: Tensor, reconstructions: Tensor, about: dict[str, Any], requested: int) -> Path:
    """Write the gallery of ``originals`` and ``reconstructions`` (uint8 N x 3 x H x W) into
    ``folder``; ``about`` (e.g. the posterior) goes into the manifest. Returns the grid's path."""
    folder = Path(folder)
    xs, ys = _hwc(originals), _hwc(reconstructions)
    pictures = {
        "original": list(xs),
        "reconstruction": list(ys),
        "error": [error_map(x, y) for x, y in zip(xs, ys)],
        "zoom_original": [zoom(x) for x in xs],
        "zoom": [zoom(y) for y in ys],
    }
    files: dict[str, list[str]] = {kind: [] for kind in KINDS}
    for kind in KINDS:
        for i, picture in enumerate(pictures[kind]):
            files[kind].append(file_name(kind, i))
            store.write_bytes_atomic(folder / files[kind][-1], _png(picture))
    grid = labelled_grid([(LABELS[kind], pictures[kind]) for kind in KINDS], xs.shape[1:3])
    store.write_bytes_atomic(folder / "grid.png", _png(grid))
    manifest = {
        "requested": requested,
        "images": len(xs),
        "indices": list(range(len(xs))),
        "selection": "the first images of the evaluation set, in its fixed order",
        "files": files,
        "original_sha256": [hashlib.sha256(x.tobytes()).hexdigest()[:16] for x in xs],
        "crop": dict(zip(("top", "left", "height", "width"), crop_box(*xs.shape[1:3]))) if len(xs) else None,
        "zoom": ZOOM,
        "error_scale": {"colormap": "inferno", "max_grey_levels": HEAT_MAX, "of": "|x - x_hat| mean over RGB"},
        "grid": "grid.png",
        **about,
    }
    store.write_json_atomic(folder / MANIFEST, manifest)
    return folder / "grid.png"
