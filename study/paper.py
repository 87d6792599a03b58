"""The paper's reference numbers, committed under ``results/paper/`` and loaded by table id.

Every row carries the table number it comes from (LiteVAE, arXiv 2405.14477); nothing here is
computed. ``litevae_results.csv`` holds the reconstruction tables (1, 2a, 2b, 4, 5, 8-10, 14-22),
``litevae_complexity.csv`` Table 3, ``litevae_generation.csv`` Tables 7 and 13,
``litevae_latent_mmd.csv`` Table 6 (one row per bandwidth and encoder), and Tables 11 and 12 (the
non-learned DWT encoder, App. B) in ``litevae_results.csv``. ``reference_autoencoders.csv`` is not
from the paper: published numbers of the public Stable Diffusion VAEs, each row naming its source,
for calibrating the evaluation protocol (``reference_autoencoders``).
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import pandas as pd

PAPER_DIR = Path(__file__).resolve().parent.parent / "results" / "paper"
FILES = ("litevae_results.csv", "litevae_complexity.csv", "litevae_generation.csv", "litevae_latent_mmd.csv")
REFERENCES = "reference_autoencoders.csv"
# The ``paper.table`` of a protocol check (ablations/protocol_check.yaml): its rows name reference
# rows as "<model> @ <dataset>", not rows of a LiteVAE table.
REFERENCE_TABLE = "reference"


class UnknownPaperTable(KeyError):
    """A table id that no reference file holds."""


@lru_cache(maxsize=None)
def _load(name: str) -> pd.DataFrame:
    return pd.read_csv(PAPER_DIR / name, dtype={"table": str})


def paper_tables() -> list[str]:
    """Every table id with reference numbers."""
    return sorted({t for name in FILES for t in _load(name)["table"]})


def paper_table(table: str) -> pd.DataFrame:
    """The rows of one table (e.g. "3", "4", "2a"), as printed in the paper."""
    for name in FILES:
        df = _load(name)
        rows = df[df["table"] == str(table)]
        if len(rows):
            return rows.dropna(axis=1, how="all").reset_index(drop=True)
    raise UnknownPaperTable(f"no paper table {table!r}; known: {', '.join(paper_tables())}")


def reference_autoencoders() -> pd.DataFrame:
    """Published numbers of other autoencoders (source, dataset, split, images, resolution, model,
    rfid, psnr, ssim, lpips, note): the calibration rows of ``ablations/protocol_check.yaml``."""
    return pd.read_csv(PAPER_DIR / REFERENCES)
