"""Table 3's throughput and memory as ratios to SD-VAE measured in the same study.

Absolute images per second and megabytes depend on the device, resolution, batch and precision a
run was measured with (a CPU at 32x32 in the smoke profile); the paper's were measured on one
Quadro RTX 6000 at batch 32 (Table 3; resolution and precision not stated, 256 presumed). So the
report divides each encoder's number by the SD-VAE encoder's of the same study, and the paper's
by the paper's SD-VAE row (e.g. LiteVAE-B's throughput, 129 / 68 = 1.90x), and names the setting
our numbers were measured in (each run's ``complexity.json``: ``device``, ``resolution``,
``batch``, ``precision``, as ``study.launch.job`` writes it for a Table 3 run).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from study import store

# The row of Table 3 the ratios are taken to (results/paper/litevae_complexity.csv's label).
REFERENCE_LABEL = "VAE (SD-VAE encoder)"
REFERENCE_SHORT = "SD-VAE"
PAPER_SETTING = "one Quadro RTX 6000 at batch 32 (Table 3; resolution and precision not stated, 256x256 presumed)"
SETTING_KEYS = ("device", "resolution", "batch", "precision")


def reference_name(names: list[str], paper_labels: dict[str, str]) -> str | None:
    """The study's variant compared with Table 3's SD-VAE row (None: the study has none)."""
    return next((n for n in names if paper_labels.get(n) == REFERENCE_LABEL), None)


def relative(value: float | None, reference: float | None) -> float | None:
    """value / reference (None where either is missing or the reference is 0)."""
    if value is None or reference is None or pd.isna(value) or pd.isna(reference) or reference == 0:
        return None
    return float(value) / float(reference)


def ratio_label(label: str) -> str:
    """``Throughput (img/s)`` -> ``Throughput ÷ SD-VAE`` (a ratio has no unit)."""
    return f"{label.split(' (')[0]} ÷ {REFERENCE_SHORT}"


def ratio_text(value: float | None) -> str:
    return "—" if value is None or pd.isna(value) else f"{value:.2f}x"


def settings(root: Path, frame: pd.DataFrame) -> list[dict[str, object]]:
    """The distinct measurement settings of the study's runs' complexity records, in run order."""
    found: list[dict[str, object]] = []
    for run_id in dict.fromkeys(frame.get("run_id", pd.Series(dtype=str)).dropna()):
        record = store.read_json(store.run_dir(root, run_id) / "complexity.json") or {}
        setting = {k: record[k] for k in SETTING_KEYS if k in record}
        if setting and setting not in found:
            found.append(setting)
    return found


def setting_text(setting: dict[str, object]) -> str:
    """``cpu, 32x32, batch 2, fp32`` (the keys a record lacks are said to be unrecorded)."""
    res = setting.get("resolution")
    parts = [
        str(setting.get("device", "device not recorded")),
        f"{res}x{res}" if res is not None else "resolution not recorded",
        f"batch {setting['batch']}" if "batch" in setting else "batch not recorded",
        str(setting.get("precision", "precision not recorded")),
    ]
    return ", ".join(parts)


def caption(root: Path, frame: pd.DataFrame, reference: str | None) -> str:
    """What the Table 3 report says under its table: where ours and the paper's were measured,
    and what the ratios are taken to."""
    found = settings(root, frame)
    ours = "; ".join(setting_text(s) for s in found) if found else "no complexity record names its device"
    mixed = " (the runs differ in setting: ratios across them do not compare)" if len(found) > 1 else ""
    to = (
        f"throughput and memory relative to SD-VAE ({reference}) measured in this study"
        if reference
        else "no SD-VAE row in this study, so no ratios"
    )
    return f"Ours measured on {ours}{mixed}; {to}. The paper's: {PAPER_SETTING}, its ratios to its SD-VAE row."


def headline(numbers: pd.DataFrame) -> list[str]:
    """The fastest encoder relative to SD-VAE, beside the paper's ratio (``numbers``: the table's
    ``summarize`` frame); [] without ratios."""
    sub = numbers[(numbers["column"] == "throughput_img_s") & numbers["ratio"].notna()]
    if sub.empty:
        return []
    best = sub.loc[sub["ratio"].astype(float).idxmax()]
    paper = f" (paper {best['paper_ratio']:.2f}x)" if pd.notna(best["paper_ratio"]) else ""
    return [f"fastest {best['variant']}: {best['ratio']:.2f}x SD-VAE's throughput{paper}"]
