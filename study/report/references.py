"""A protocol check's section: our numbers beside the published numbers of other autoencoders.

A study whose ``paper.table`` is ``reference`` (ablations/protocol_check.yaml) evaluates public
autoencoders as they are; its ``paper.rows`` name, per variant, the rows of
results/paper/reference_autoencoders.csv it is compared with, as ``"<model> @ <dataset>"`` (the
CSV's ``model`` and ``dataset`` columns; several sources may publish one pair). Each row of the
section gives the source, its setting, its numbers beside ours, and what is known of where its
protocol differs from ours: the facts of docs/paper.md ("Published numbers of other autoencoders")
and the CSV's own notes; what neither states is written as unknown, never guessed.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from study.config import metric_specs
from study.paper import reference_autoencoders
from study.report.records import StudyRecords, main_eval_id, rows_for_protocol, variant_order

METRICS = metric_specs.PAPER_METRICS  # the columns the published rows have
OURS = (
    "ours: the resize and center crop of eval.preprocess (ldm by default: OpenCV bilinear shorter "
    "side, as albumentations' SmallestMaxSize), uint8 rounding of originals and reconstructions, "
    "the posterior of eval.posterior (mean by default); rFID with torch-fidelity's Inception "
    "(pool3), originals vs reconstructions of the same images (the record's protocol below; the "
    "Conventions section sets each number beside ours under its source's convention)"
)
# What our sources say of each source's protocol (docs/paper.md, "Published numbers of other
# autoencoders"; the CSV's notes are added per row).
KNOWN = {
    "stabilityai/sd-vae-ft-mse model card": "COCO 2017 val, 5 000 images at 256x256; how they were "
    "resized and cropped, the rounding, the SSIM convention and the FID implementation: unknown "
    "(not stated in our sources)",
}
UNKNOWN = (
    "resize, rounding, SSIM channel and data range and FID reference set: unknown here; such "
    "differences between harnesses move these numbers by more than the paper's ablations differ"
)
NOTE = (
    f"Published numbers of other autoencoders (results/paper/reference_autoencoders.csv; not from "
    f"LiteVAE) beside ours, each with its source, each variant under its own evaluation set's "
    f"protocol (the table above shows one protocol only). Where the protocols differ: {OURS}."
)


class ReferenceLabelError(ValueError):
    """A ``paper.rows`` label that is not ``"<model> @ <dataset>"``."""


def split_label(label: str) -> tuple[str, str]:
    """``"sd-vae-ft-mse @ COCO 2017"`` -> ("sd-vae-ft-mse", "COCO 2017")."""
    model, sep, dataset = label.rpartition(" @ ")
    if not sep or not model or not dataset:
        raise ReferenceLabelError(f"paper.rows label {label!r}: expected '<model> @ <dataset>'")
    return model.strip(), dataset.strip()


def _ours(runs: pd.DataFrame, metric: str) -> float | None:
    if metric not in runs.columns:
        return None
    values = pd.to_numeric(runs[metric], errors="coerce").dropna()
    return float(values.mean()) if len(values) else None


def _text(value: Any, digits: int) -> str:
    return "—" if value is None or pd.isna(value) else f"{float(value):.{digits}f}"


def _runs(records: StudyRecords, name: str, alias_of: dict[str, str]) -> pd.DataFrame:
    """The rows of a variant's run under its own main protocol: each evaluation set of a protocol
    check is a protocol of its own, so the study's main table shows only one of them."""
    frame = records.frame
    if "name" not in frame.columns:
        return frame.iloc[0:0]
    runs = frame[frame["name"] == alias_of.get(name, name)]
    return rows_for_protocol(runs, main_eval_id(runs))


def reference_table(records: StudyRecords) -> pd.DataFrame:
    """One row per (variant, published row): the source, its setting, published / ours per metric,
    and the known protocol differences."""
    refs = reference_autoencoders()
    digits = {m: metric_specs.spec(m).digits for m in METRICS}
    names, alias_of = variant_order(records.index)
    labels = dict((records.paper or {}).get("rows") or {})
    out: list[dict[str, str]] = []
    for name in names:
        label = labels.get(name)
        if not label:
            continue
        model, dataset = split_label(label)
        rows = refs[(refs["model"] == model) & (refs["dataset"].str.lower() == dataset.lower())]
        runs = _runs(records, name, alias_of)
        ours = {m: _ours(runs, m) for m in METRICS}
        if not len(rows):
            out.append(
                {
                    "Variant": name,
                    "Reference": label,
                    "Source": "no published row",
                    "Setting": "—",
                    **{m: f"— / {_text(ours[m], digits[m])}" for m in METRICS},
                    "Protocol": "—",
                }
            )
        for _, r in rows.iterrows():
            setting = f"{r['dataset']} {r['split']}, {int(r['images'])} images, {int(r['resolution'])}px"
            known = KNOWN.get(str(r["source"]), UNKNOWN)
            note = f"{known}; source's note: {r['note']}" if isinstance(r["note"], str) and r["note"] else known
            out.append(
                {
                    "Variant": name,
                    "Reference": label,
                    "Source": str(r["source"]),
                    "Setting": setting,
                    **{m: f"{_text(r[m], digits[m])} / {_text(ours[m], digits[m])}" for m in METRICS},
                    "Protocol": note,
                }
            )
    frame = pd.DataFrame(out, columns=["Variant", "Reference", "Source", "Setting", *METRICS, "Protocol"])
    return frame.rename(columns={m: f"{metric_specs.spec(m).heading} published / ours" for m in METRICS})
