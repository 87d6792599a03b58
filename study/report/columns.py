"""What a table shows: its columns, where each value comes from, and which direction is better.

A reconstruction table shows rFID, LPIPS, PSNR and SSIM, then each other metric of the registry
the study measured (study/config/metric_specs.py: heading, direction, digits), plus the encoder's
parameters where the paper counts the whole encoder (Tables 1, 2a, 2b); Table 3 shows parameters, multiply-accumulates,
throughput and peak memory, its parameter difference in percent of the paper's count, its
throughput and memory as ratios to SD-VAE beside the paper's ratios (``ratios``); Table 6
shows the latents' MMD to a standard Gaussian per kernel bandwidth.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

from study.config import metric_specs


@dataclass(frozen=True)
class Column:
    key: str  # our value: a column of the collected frame
    label: str
    lower_is_better: bool
    digits: int
    paper: str | None  # the paper's value: a column of its reference CSV
    scale: float = 1.0  # our value * scale is in the paper's unit
    relative: bool = False  # the difference in percent of the paper's value
    ratio: bool = False  # shown relative to SD-VAE of the same study, beside the paper's ratio (Table 3)
    ranked: bool = True  # False: no better direction (a spread), no arrow, nothing bold

    @property
    def heading(self) -> str:
        if not self.ranked:
            return self.label
        return f"{self.label} {'↓' if self.lower_is_better else '↑'}"


def metric_column(name: str) -> Column:
    """A metric's column, from the metric registry's facts (study/config/metric_specs.py)."""
    spec = metric_specs.spec(name)
    return Column(name, spec.heading, spec.lower_is_better, spec.digits, spec.paper, ranked=spec.better != "neither")


# The paper's four, in the order of its tables.
METRIC_COLUMNS = tuple(metric_column(name) for name in ("rfid", "lpips", "psnr", "ssim"))
PARAMS_COLUMN = Column("encoder_params", "Params (M)", True, 3, "params_m", scale=1e-6, relative=True)
GMACS_COLUMN = Column("encoder_gmacs", "GMACs", True, 2, "gmacs_256")
THROUGHPUT_COLUMN = Column("throughput_img_s", "Throughput (img/s)", False, 1, "throughput_img_s", ratio=True)
MEMORY_COLUMN = Column("peak_mem_mb", "Memory (MB)", True, 0, "gpu_memory_mb", ratio=True)
COMPLEXITY_COLUMNS = (PARAMS_COLUMN, GMACS_COLUMN, THROUGHPUT_COLUMN, MEMORY_COLUMN)

# Table 6: the MMD of the latents to N(0, I) per RBF bandwidth (study.measure.latent_stats). The
# paper does not state its MMD's units, so our values are not on its scale.
LATENT_TABLE = "6"
LATENT_COLUMNS = tuple(Column(f"mmd_{h}", f"MMD σ={h}", True, 2, f"mmd_{h}") for h in (25, 50, 100, 250, 500))

# Tables 7, 13: the generation FID of a diffusion run (its own protocol: study.diffusion.generate)
# beside the reconstruction numbers of the autoencoder whose latents it was trained on.
GENERATION_TABLES = ("7", "13")
GENERATION_COLUMNS = (Column("gfid", "FID", True, 2, "fid"),) + tuple(
    Column(f"ae_{c.key}", f"AE {c.label}", c.lower_is_better, c.digits, None) for c in METRIC_COLUMNS
)

COMPLEXITY_TABLE = "3"
# Tables whose parameter column counts the whole encoder (Table 20 counts the aggregator only).
ENCODER_PARAM_TABLES = ("1", "2a", "2b")


def columns_for(table: str | None, measured: Iterable[str] = ()) -> tuple[Column, ...]:
    """The columns of a study's table, by the paper table it reproduces (None: no paper table).
    A reconstruction table also shows each other registered metric in ``measured`` (the
    columns with numbers: the conventions a study asked for in ``eval.metrics``)."""
    if table == COMPLEXITY_TABLE:
        return COMPLEXITY_COLUMNS
    if table == LATENT_TABLE:
        return LATENT_COLUMNS
    if table in GENERATION_TABLES:
        return GENERATION_COLUMNS
    shown = {c.key for c in METRIC_COLUMNS}
    extra = tuple(metric_column(n) for n in metric_specs.names() if n in set(measured) and n not in shown)
    return METRIC_COLUMNS + extra + ((PARAMS_COLUMN,) if table in ENCODER_PARAM_TABLES else ())
