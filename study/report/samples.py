"""The report's "Samples" section of a generation study (Tables 7, 13): per diffusion run, the
grid of its first samples that its generation saved (``<run>/samples/grid.png``, written by
study/diffusion/generate.py), captioned with its generation FID and the autoencoder it used."""

from __future__ import annotations

import math
import re
from typing import Any

from study import store
from study.report.records import StudyRecords, generative_runs, variant_order
from study.report.render import Doc, Figure

GRID = ("samples", "grid.png")


def sample_figures(records: StudyRecords) -> list[Figure]:
    """One figure per diffusion variant with a saved grid (aliases share their run's)."""
    order, alias_of = variant_order(records.index)
    runs = generative_runs(records.index)
    by_name = {v["name"]: v for v in records.index["variants"]}
    figures = []
    for name in (n for n in order if n in runs and n not in alias_of):
        v = by_name[name]
        path = store.run_dir(records.root, v["run_id"]).joinpath(*GRID)
        if not path.is_file():
            continue
        caption = f"Samples of {name} (run {v['run_id']}; autoencoder {v.get('autoencoder_id')}){_fid(records, name)}"
        figures.append(Figure(f"samples-{_slug(name)}.png", caption, path.read_bytes()))
    return figures


def add_samples(doc: Doc, records: StudyRecords) -> list[Figure]:
    """A "Samples" section before the provenance, when a diffusion run saved a grid; returns the
    figures (written to the report's figures folder with the others)."""
    if not generative_runs(records.index):
        return []
    figures = sample_figures(records)
    blocks: list[tuple[str, Any]] = [("h2", "Samples")]
    protocol = generation_protocol_text(records)
    if protocol:
        blocks.append(("p", protocol))
    if figures:
        blocks += [("figure", f) for f in figures]
    else:
        blocks.append(("p", "No samples yet: no diffusion run has finished its generation."))
    at = next((i for i, b in enumerate(doc.blocks) if b == ("h2", "Provenance")), len(doc.blocks))
    doc.blocks[at:at] = blocks
    return figures


def generation_protocol_text(records: StudyRecords) -> str:
    """How our FID was measured, from the first generation record found, beside what the paper
    leaves unsaid (the numbers beside its Tables 7 and 13 are not from a stated protocol)."""
    for v in records.index["variants"]:
        if not v.get("generates"):
            continue
        for record in store.read_evals(store.run_dir(records.root, v["run_id"])).values():
            p = record.get("protocol") or {}
            if p.get("kind") != "generation":
                continue
            sampler, ref = p.get("sampler", {}), p.get("reference", {})
            return (
                f"FID protocol (ours): {p.get('num_samples')} samples of the {p.get('weights')} UNet with "
                f"{sampler.get('name', '?').upper()} ({sampler.get('steps')} steps, eta {sampler.get('eta')}) at "
                f"{p.get('resolution')}x{p.get('resolution')}, against the Inception statistics of "
                f"{ref.get('num_images')} training images ({ref.get('name')}). The paper states no sampler, "
                "step count or sample count for Tables 7 and 13; our defaults follow LDM (docs/diffusion.md)."
            )
    return ""


def _fid(records: StudyRecords, name: str) -> str:
    frame = records.frame
    if "gfid" not in frame.columns or "name" not in frame.columns:
        return ""
    values = [x for x in frame.loc[frame["name"] == name, "gfid"] if isinstance(x, float) and math.isfinite(x)]
    return (
        f", FID {sum(values) / len(values):.2f}" + (f" (mean of {len(values)} seeds)" if len(values) > 1 else "")
        if values
        else ""
    )


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", name)
