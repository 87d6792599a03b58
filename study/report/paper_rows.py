"""The paper's row a variant is compared with (results/paper/, through ``study.paper``).

The index names each variant's row by its label (the study file's ``paper.rows``). Where a label
repeats within a table (Table 1's "VAE" and "LiteVAE-B" per block), the setting recorded for the
name picks the block: dataset, evaluation resolution and latent size. That setting is the study's
own config without a profile (the paper's), recorded in the index's ``paper.settings``; a name
without one falls back to its run's own setting.
"""
from __future__ import annotations

from typing import Any

import pandas as pd

from study.paper import paper_table


class PaperRowError(ValueError):
    """A ``paper.rows`` label that names no row, or more than one, of the paper table."""


def label_column(table: pd.DataFrame) -> str:
    """The column holding the row labels: ``row``, or ``encoder`` for Table 3."""
    return "row" if "row" in table.columns else "encoder"


def same_setting(row: pd.Series, setting: dict[str, Any]) -> bool:
    """Whether a paper row's dataset, resolution and latent are the setting's."""
    return (str(row.get("dataset", "")).lower() == str(setting.get("dataset", "")).lower()
            and int(row.get("resolution", -1)) == setting.get("resolution")
            and row.get("latent") == setting.get("latent"))


def paper_row(table_id: str, label: str, setting: dict[str, Any] | None = None) -> pd.Series:
    """The one row of paper table ``table_id`` labelled ``label``; where the label repeats,
    the one of ``setting`` (keys dataset, resolution, latent)."""
    table = paper_table(table_id)
    rows = table[table[label_column(table)] == label]
    if len(rows) > 1 and setting is not None:
        rows = rows[[same_setting(row, setting) for _, row in rows.iterrows()]]
    if len(rows) != 1:
        labels = ", ".join(dict.fromkeys(table[label_column(table)]))
        found = "no row" if len(rows) == 0 else f"{len(rows)} rows"
        raise PaperRowError(f"paper table {table_id}: {found} labelled {label!r} "
                            f"for this variant; labels: {labels}")
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
    if not paper:
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
