"""The report's "Reconstructions" section: one comparison grid across the study's variants.

Each run's evaluation saved the first K images of the evaluation set and their reconstructions
in ``<run>/gallery/<protocol id>/`` (study/store/media.py; written by study/evaluation/gallery.py,
its ``manifest.json`` naming the files). The grid takes the protocol the results table uses:
the originals on top, then one row per variant (in the study's order; its lowest seed with a
gallery), one column per image; ``figures/reconstructions.png`` in the report folder, embedded
in report.html. Row labels are wrapped whole into the label column, never cut. Beside it,
``figures/reconstruction_errors.png``: every variant's error maps on the gallery's fixed colour
scale (its manifest's ``error_scale``), with the colour bar under the tiles. A variant without a
gallery gets a grey row and a line saying why; a variant whose originals differ from the top
row's (they cannot under one protocol) is named.
"""

from __future__ import annotations

import io
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib import colormaps
from PIL import Image, ImageDraw, ImageFont

from study import store
from study.report.records import StudyRecords, main_eval_id, variant_order
from study.report.render import Doc, Figure
from study.store.media import MANIFEST, gallery_dir

FIGURE_NAME = "reconstructions.png"
ERRORS_NAME = "reconstruction_errors.png"
MIN_TILE = 128  # tiles are enlarged (nearest, integer factor) to at least this many pixels
LABEL_WIDTH = 200
GAP = 2


@dataclass(frozen=True)
class Row:
    """One variant's row: its gallery's folder and manifest, or why there is none."""

    name: str
    folder: Path | None = None
    manifest: dict[str, Any] | None = None
    seed: Any = None
    missing: str = ""


def variant_rows(records: StudyRecords, eval_id: str) -> list[Row]:
    """Per variant name (aliases share a run and are left out), its lowest seed's gallery under
    ``eval_id``, or a Row saying why it has none."""
    order, alias_of = variant_order(records.index)
    frame = records.frame
    rows = []
    for name in (n for n in order if n not in alias_of):
        runs = frame[(frame["name"] == name) & (frame["eval_id"] == eval_id)] if "eval_id" in frame else frame[:0]
        row = Row(name, missing=f"not evaluated under protocol {eval_id}")
        for _, run in runs.sort_values("seed").iterrows():
            folder = gallery_dir(store.run_dir(records.root, str(run["run_id"])), eval_id)
            manifest = store.read_json(folder / MANIFEST)
            if manifest is not None:
                row = Row(name, folder, manifest, run["seed"])
                break
            row = Row(name, missing="evaluated without a gallery (eval.gallery_images 0, or before galleries)")
        rows.append(row)
    return rows


def _load(folder: Path, name: str) -> np.ndarray:
    with Image.open(folder / name) as im:
        return np.asarray(im.convert("RGB"))


def wrap_label(label: str, font: ImageFont.FreeTypeFont | ImageFont.ImageFont, width: int) -> list[str]:
    """``label`` in lines no wider than ``width`` pixels, broken after ",", " " or "=" where it can
    be, inside a word only where a word alone is wider: every character is kept."""
    pieces = [p for p in re.split(r"(?<=[,=])|(?<= )(?![\d)])", label) if p]  # "(seed 0)" stays whole
    lines: list[str] = []
    line = ""
    for piece in pieces:
        if font.getlength(line + piece) <= width:
            line += piece
            continue
        if line:
            lines.append(line.rstrip())
            line = ""
        while font.getlength(piece) > width:  # a piece wider than the column: cut it by characters
            cut = max(1, max(k for k in range(1, len(piece) + 1) if font.getlength(piece[:k]) <= width or k == 1))
            lines.append(piece[:cut])
            piece = piece[cut:]
        line = piece
    if line.strip():
        lines.append(line.rstrip())
    return lines or [""]


def _font(size: int = 14) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return ImageFont.load_default(size=size)


def colour_bar(width: int, colours: np.ndarray, scale_max: int, what: str) -> Image.Image:
    """A horizontal colour bar ``width`` pixels wide: ``colours`` (256 x 3 uint8) from 0 to
    ``scale_max`` grey levels and above, ticks every quarter, captioned ``what`` (wrapped)."""
    bar_h, pad = 16, 18
    font = _font(12)
    text = wrap_label(what, font, width - 2 * pad)
    line_h = round(font.getbbox("Ag|")[3] * 1.3)
    image = Image.new("RGB", (width, bar_h + 24 + line_h * len(text)), "white")
    ramp = colours[np.linspace(0, 255, width - 2 * pad).round().astype(int)]
    image.paste(Image.fromarray(np.repeat(ramp[None], bar_h, axis=0)), (pad, 2))
    draw = ImageDraw.Draw(image)
    for k in range(5):
        x = pad + round(k / 4 * (width - 2 * pad - 1))
        draw.line((x, 2 + bar_h, x, 6 + bar_h), fill="black")
        tick = f"{scale_max * k // 4}" + ("+" if k == 4 else "")
        draw.text((x, 8 + bar_h), tick, fill="black", font=font, anchor="mt")
    for i, line in enumerate(text):
        draw.text((width // 2, 24 + bar_h + i * line_h), line, fill="black", font=font, anchor="mt")
    return image


def grid_png(
    lines: list[tuple[str, list[np.ndarray] | None]],
    tile: tuple[int, int],
    columns: int,
    below: Image.Image | None = None,
) -> bytes:
    """A labelled grid: one line per (label, images), None: a grey line; tiles enlarged to at
    least MIN_TILE pixels by an integer factor (nearest, so pixels stay pixels); labels wrapped
    whole into LABEL_WIDTH (a line grows where its label needs more height); ``below``: an image
    under the tiles (a colour bar)."""
    scale = max(1, math.ceil(MIN_TILE / max(1, min(tile))))
    cell_h, cell_w = tile[0] * scale, tile[1] * scale
    font = _font()
    line_h = round(font.getbbox("Ag|")[3] * 1.25)
    labels = [wrap_label(label, font, LABEL_WIDTH - 10) for label, _ in lines]
    heights = [max(cell_h, len(text) * line_h + 4) for text in labels]
    tiles_w = columns * (cell_w + GAP)
    size = (LABEL_WIDTH + tiles_w + GAP, sum(h + GAP for h in heights) + GAP + (below.height if below else 0))
    canvas = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(canvas)
    y = GAP
    for (_, images), text, height in zip(lines, labels, heights):
        draw.multiline_text((6, y + height // 2), "\n".join(text), fill="black", font=font, anchor="lm", spacing=4)
        for c in range(columns):
            x = LABEL_WIDTH + GAP + c * (cell_w + GAP)
            if images is None:
                draw.rectangle((x, y, x + cell_w - 1, y + cell_h - 1), fill=(200, 200, 200))
            elif c < len(images):
                canvas.paste(Image.fromarray(images[c].repeat(scale, axis=0).repeat(scale, axis=1)), (x, y))
        y += height + GAP
    if below is not None:
        canvas.paste(below, (LABEL_WIDTH + GAP, y))
    buf = io.BytesIO()
    canvas.save(buf, format="PNG")
    return buf.getvalue()


def comparison(records: StudyRecords) -> tuple[list[Figure], list[str]]:
    """The comparison grid and the error maps' grid (none when no variant has a gallery), and the
    notes beside them."""
    eval_id = main_eval_id(records.frame)
    if eval_id is None:
        return [], ["No reconstructions: no run has been evaluated yet."]
    rows = variant_rows(records, eval_id)
    shown = [r for r in rows if r.manifest is not None]
    if not shown:
        return [], [
            f"No reconstructions under protocol {eval_id}: " + "; ".join(f"{r.name}: {r.missing}" for r in rows)
        ]
    top = shown[0]
    assert top.folder is not None and top.manifest is not None
    originals = [_load(top.folder, n) for n in top.manifest["files"]["original"]]
    lines: list[tuple[str, list[np.ndarray] | None]] = [("original", originals)]
    errors: list[tuple[str, list[np.ndarray] | None]] = []
    notes = []
    for r in rows:
        if r.manifest is None or r.folder is None:
            lines.append((f"{r.name}: none", None))
            notes.append(f"{r.name}: no reconstructions ({r.missing}).")
            continue
        if r.manifest["original_sha256"] != top.manifest["original_sha256"]:
            notes.append(f"{r.name}: its gallery shows other images than {top.name}'s.")
        lines.append((f"{r.name} (seed {r.seed})", [_load(r.folder, n) for n in r.manifest["files"]["reconstruction"]]))
        error_files = r.manifest["files"].get("error") or []
        errors.append((f"{r.name} (seed {r.seed})", [_load(r.folder, n) for n in error_files] or None))
    caption = (
        f"Reconstructions under protocol {eval_id}: the first {len(originals)} images of the evaluation set "
        f"(originals on top), one row per variant; tiles enlarged by an integer factor, nearest neighbour. "
        f"Each run's own grid, with error maps and a {top.manifest['zoom']}x zoom, is <run>/gallery/{eval_id}/grid.png."
    )
    png = grid_png(lines, originals[0].shape[:2], len(originals))
    figures = [Figure(FIGURE_NAME, caption, png)]
    scale = top.manifest.get("error_scale")
    if scale and any(images for _, images in errors):
        figures.append(error_figure(errors, originals, scale, eval_id))
    return figures, notes


def error_figure(
    errors: list[tuple[str, list[np.ndarray] | None]], originals: list[np.ndarray], scale: dict[str, Any], eval_id: str
) -> Figure:
    """The error maps of every variant (originals on top), with the colour bar of their fixed scale."""
    top = int(scale.get("max_grey_levels", 64))
    colours = (colormaps[str(scale.get("colormap", "inferno"))](np.arange(256))[:, :3] * 255).round()
    tile_scale = max(1, math.ceil(MIN_TILE / max(1, min(originals[0].shape[:2]))))
    width = len(originals) * (originals[0].shape[1] * tile_scale + GAP)
    what = f"{scale.get('of', '|x - x_hat|')}, in grey levels of 0-255 ({top} and above: the top colour)"
    bar = colour_bar(width, colours.astype(np.uint8), top, what)
    png = grid_png([("original", originals), *errors], originals[0].shape[:2], len(originals), below=bar)
    caption = (
        f"Reconstruction errors under protocol {eval_id}: |x - x_hat| averaged over RGB, one row per variant, "
        f"on one fixed colour scale (0 to {top} grey levels, the colour bar below), so a colour is the same "
        "error in every variant."
    )
    return Figure(ERRORS_NAME, caption, png)


def add_reconstructions(doc: Doc, records: StudyRecords) -> list[Figure]:
    """Insert the "Reconstructions" section before the provenance (at the end without one);
    the figures to write beside the report's."""
    figures, notes = comparison(records)
    blocks: list[tuple[str, Any]] = [("h2", "Reconstructions")]
    blocks += [("figure", figure) for figure in figures]
    blocks += [("p", note) for note in notes]
    at = next((i for i, (k, v) in enumerate(doc.blocks) if k == "h2" and v == "Provenance"), len(doc.blocks))
    doc.blocks[at:at] = blocks
    return figures
