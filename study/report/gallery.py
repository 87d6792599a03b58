"""The report's "Reconstructions" section: one comparison grid across the study's variants.

Each run's evaluation saved the first K images of the evaluation set and their reconstructions
in ``<run>/gallery/<protocol id>/`` (study/store/media.py; written by study/evaluation/gallery.py,
its ``manifest.json`` naming the files). The grid takes the protocol the results table uses:
the originals on top, then one row per variant (in the study's order; its lowest seed with a
gallery), one column per image; ``figures/reconstructions.png`` in the report folder, embedded
in report.html. A variant without a gallery gets a grey row and a line saying why; a variant
whose originals differ from the top row's (they cannot under one protocol) is named.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from study import store
from study.report.records import StudyRecords, main_eval_id, variant_order
from study.report.render import Doc, Figure
from study.store.media import MANIFEST, gallery_dir

FIGURE_NAME = "reconstructions.png"
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


def grid_png(lines: list[tuple[str, list[np.ndarray] | None]], tile: tuple[int, int], columns: int) -> bytes:
    """A labelled grid: one line per (label, images), None: a grey line; tiles enlarged to at
    least MIN_TILE pixels by an integer factor (nearest, so pixels stay pixels)."""
    scale = max(1, math.ceil(MIN_TILE / max(1, min(tile))))
    cell_h, cell_w = tile[0] * scale, tile[1] * scale
    size = (LABEL_WIDTH + columns * (cell_w + GAP) + GAP, len(lines) * (cell_h + GAP) + GAP)
    canvas = Image.new("RGB", size, "white")
    draw, font = ImageDraw.Draw(canvas), ImageFont.load_default(size=14)
    for r, (label, images) in enumerate(lines):
        y = GAP + r * (cell_h + GAP)
        draw.text((6, y + cell_h // 2), label, fill="black", font=font, anchor="lm")
        for c in range(columns):
            x = LABEL_WIDTH + GAP + c * (cell_w + GAP)
            if images is None:
                draw.rectangle((x, y, x + cell_w - 1, y + cell_h - 1), fill=(200, 200, 200))
            elif c < len(images):
                canvas.paste(Image.fromarray(images[c].repeat(scale, axis=0).repeat(scale, axis=1)), (x, y))
    buf = io.BytesIO()
    canvas.save(buf, format="PNG")
    return buf.getvalue()


def comparison(records: StudyRecords) -> tuple[Figure | None, list[str]]:
    """The comparison grid (None when no variant has a gallery) and the notes beside it."""
    eval_id = main_eval_id(records.frame)
    if eval_id is None:
        return None, ["No reconstructions: no run has been evaluated yet."]
    rows = variant_rows(records, eval_id)
    shown = [r for r in rows if r.manifest is not None]
    if not shown:
        return None, [
            f"No reconstructions under protocol {eval_id}: " + "; ".join(f"{r.name}: {r.missing}" for r in rows)
        ]
    top = shown[0]
    assert top.folder is not None and top.manifest is not None
    originals = [_load(top.folder, n) for n in top.manifest["files"]["original"]]
    lines: list[tuple[str, list[np.ndarray] | None]] = [("original", originals)]
    notes = []
    for r in rows:
        if r.manifest is None or r.folder is None:
            lines.append((f"{r.name}: none", None))
            notes.append(f"{r.name}: no reconstructions ({r.missing}).")
            continue
        if r.manifest["original_sha256"] != top.manifest["original_sha256"]:
            notes.append(f"{r.name}: its gallery shows other images than {top.name}'s.")
        lines.append((f"{r.name} (seed {r.seed})", [_load(r.folder, n) for n in r.manifest["files"]["reconstruction"]]))
    caption = (
        f"Reconstructions under protocol {eval_id}: the first {len(originals)} images of the evaluation set "
        f"(originals on top), one row per variant; tiles enlarged by an integer factor, nearest neighbour. "
        f"Each run's own grid, with error maps and a {top.manifest['zoom']}x zoom, is <run>/gallery/{eval_id}/grid.png."
    )
    png = grid_png(lines, originals[0].shape[:2], len(originals))
    return Figure(FIGURE_NAME, caption, png), notes


def add_reconstructions(doc: Doc, records: StudyRecords) -> list[Figure]:
    """Insert the "Reconstructions" section before the provenance (at the end without one);
    the figures to write beside the report's."""
    figure, notes = comparison(records)
    blocks: list[tuple[str, Any]] = [("h2", "Reconstructions")]
    blocks += [("figure", figure)] if figure is not None else []
    blocks += [("p", note) for note in notes]
    at = next((i for i, (k, v) in enumerate(doc.blocks) if k == "h2" and v == "Provenance"), len(doc.blocks))
    doc.blocks[at:at] = blocks
    return [figure] if figure is not None else []
