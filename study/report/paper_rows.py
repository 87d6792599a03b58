"""The paper's row a variant is compared with (results/paper/, through ``study.paper``).

The index names each variant's row by its label (the study file's ``paper.rows``). Where a label
repeats within a table (Table 1's "VAE" and "LiteVAE-B" per block), the setting recorded for the
name picks the block: dataset, evaluation resolution and latent size. That setting is the study's
own config without a profile (the paper's), recorded in the index's ``paper.settings``; a name
without one falls back to its run's own setting.
"""

from __future__ import annotations

import re
from typing import Any

import pandas as pd

from study.paper import REFERENCE_TABLE, paper_table


class PaperRowError(ValueError):
    """A ``paper.rows`` label that names no row, or more than one, of the paper table."""


def label_column(table: pd.DataFrame) -> str:
    """The column holding the row labels: ``row``, or ``encoder`` for Table 3."""
    return "row" if "row" in table.columns else "encoder"


def same_setting(row: pd.Series, setting: dict[str, Any]) -> bool:
    """Whether a paper row's dataset, resolution and latent are the setting's. A row without a
    resolution (Tables 11, 12 do not state it) matches any; a latent given as channels only
    ("nz=12") matches any latent of that many channels; a row without a latent (Tables 7, 13)
    matches any."""
    resolution, latent = row.get("resolution"), row.get("latent")
    return (
        _same_dataset(str(row.get("dataset", "")), setting)
        and (resolution is None or pd.isna(resolution) or int(resolution) == setting.get("resolution"))
        and (latent is None or pd.isna(latent) or _same_latent(str(latent), str(setting.get("latent"))))
    )


def _same_dataset(paper: str, setting: dict[str, Any]) -> bool:
    """``ffhq`` against ``FFHQ``; where the paper names the resolution with the dataset (Tables 7,
    13: "CelebA-HQ 256"), ``celebahq`` at 256 against it (letters and digits only)."""
    ours = re.sub(r"[^a-z0-9]", "", str(setting.get("dataset", "")).lower())
    theirs = re.sub(r"[^a-z0-9]", "", paper.lower())
    return theirs in (ours, f"{ours}{setting.get('resolution')}")


def _same_latent(paper: str, ours: str) -> bool:
    """``16x16x12`` against ``16x16x12``, or ``nz=12`` against the channels of ``16x16x12``."""
    if paper.startswith("nz="):
        return ours.rsplit("x", 1)[-1] == paper[len("nz=") :]
    return paper == ours


def wide_mmd(table: pd.DataFrame) -> pd.DataFrame:
    """Table 6 (one row per bandwidth sigma and encoder) as one row per encoder, with columns
    ``mmd_<sigma>`` and ``mmd_<sigma>_std``: the keys of our eval records' metrics."""
    wide: dict[str, dict[str, Any]] = {}
    for _, r in table.iterrows():
        row = wide.setdefault(str(r["encoder"]), {"table": r["table"], "encoder": r["encoder"]})
        key = f"mmd_{float(r['sigma']):g}"  # study.measure.latent_stats.metric_name (no torch here)
        row[key], row[key + "_std"] = float(r["mmd_mean"]), float(r["mmd_std"])
    return pd.DataFrame(list(wide.values()))


def paper_row(table_id: str, label: str, setting: dict[str, Any] | None = None) -> pd.Series:
    """The one row of paper table ``table_id`` labelled ``label``; where the label repeats,
    the one of ``setting`` (keys dataset, resolution, latent)."""
    table = paper_table(table_id)
    if "sigma" in table.columns:  # Table 6: per bandwidth
        table = wide_mmd(table)
    rows = table[table[label_column(table)] == label]
    if len(rows) > 1 and setting is not None:
        rows = rows[[same_setting(row, setting) for _, row in rows.iterrows()]]
    if len(rows) != 1:
        labels = ", ".join(dict.fromkeys(table[label_column(table)]))
        found = "no row" if len(rows) == 0 else f"{len(rows)} rows"
        raise PaperRowError(f"paper table {table_id}: {found} labelled {label!r} for this variant; labels: {labels}")
    return rows.iloc[0]


def run_settings(index: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Every variant name (aliases included) -> the setting its run recorded."""
    out: dict[str, dict[str, Any]] = {}
    for v in index["variants"]:
        setting = {k: v.get(k) for k in ("dataset", "resolution", "latent")}
        for name in (v["name"], *v.get("aliases", [])):
            out.setdefault(name, setting)
    return out


def paper_rows(index: dict[str, Any]) -> dict[str, pd.Series | str]:
    """Every name of the index's ``paper.rows`` -> its paper row, or why there is none."""
    paper = index.get("paper")
    if not paper or str(paper.get("table")) == REFERENCE_TABLE:  # not a LiteVAE table: references.py
        return {}
    settings = paper.get("settings") or {}
    own = run_settings(index)
    out: dict[str, pd.Series | str] = {}
    for name, label in (paper.get("rows") or {}).items():
        try:
            out[name] = paper_row(str(paper["table"]), label, settings.get(name) or own.get(name))
        except PaperRowError as e:
            out[name] = str(e)
    return out
