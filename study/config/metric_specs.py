"""The metrics an evaluation can compute, as plain data: each one's name (what ``eval.metrics``
accepts), heading, unit, direction, digits, what it needs loaded and whether it is a mean over
images or one number for the set.

This is the facts half of the metric registry: the config's checks and the report read it (no
torch here). The other half, how each metric is computed and the definition its protocol
records, is study/measure/registry.py, keyed by the same names; a new metric is one entry there
(``registry.register``), which adds its facts here. docs/evaluation.md lists the metrics and the
convention each follows.

A per-image metric also has a spread, ``<name>_std``: the population standard deviation of its
per-image values over the evaluation set (LDM's README reports PSNR as mean +- std).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

# The paper's four (Sec. 5, Tables 1-2): the default of ``eval.metrics``, in the order of its tables.
PAPER_METRICS = ("rfid", "psnr", "ssim", "lpips")
STD_SUFFIX = "_std"


class UnknownMetric(KeyError):
    """A metric name the registry does not know."""


@dataclass(frozen=True)
class MetricSpec:
    name: str
    heading: str  # the table's label
    unit: str  # "" for a dimensionless number
    better: Literal["lower", "higher", "neither"]
    digits: int
    # What it loads: "inception"; "lpips" (the net ``eval.lpips_net`` names); "lpips:alex", "lpips:vgg".
    needs: tuple[str, ...] = ()
    # per_image: the mean over images of a per-image value (and its spread); set: one number for the set.
    kind: Literal["per_image", "set"] = "per_image"
    paper: str | None = None  # the column of the paper's reference tables with this metric
    about: str = ""  # one line: what the number is

    @property
    def lower_is_better(self) -> bool:
        return self.better == "lower"


SPECS: dict[str, MetricSpec] = {
    s.name: s
    for s in (
        MetricSpec("rfid", "rFID", "", "lower", 2, ("inception",), "set", "rfid", about="Frechet Inception distance"),
        MetricSpec("psnr", "PSNR", "dB", "higher", 2, paper="psnr", about="per image on uint8 RGB, mean over images"),
        MetricSpec("ssim", "SSIM", "", "higher", 3, paper="ssim", about="Gaussian 11x11 window, per RGB channel"),
        MetricSpec("lpips", "LPIPS", "", "lower", 3, ("lpips",), paper="lpips", about="the net eval.lpips_net names"),
        MetricSpec("psnr@set", "PSNR (set)", "dB", "higher", 2, kind="set", about="one MSE over the whole set"),
        MetricSpec("psnr@luma", "PSNR (luma)", "dB", "higher", 2, about="per image on BT.601 luma"),
        MetricSpec("ssim@skimage", "SSIM (7x7)", "", "higher", 3, about="scikit-image's default: uniform 7x7 window"),
        MetricSpec("ssim@luma", "SSIM (luma)", "", "higher", 3, about="Gaussian 11x11 window on BT.601 luma"),
        MetricSpec("ssim@range2", "SSIM (range 2)", "", "higher", 3, about="7x7 window, data_range 2 on [0, 1] images"),
        MetricSpec("lpips@alex", "LPIPS (AlexNet)", "", "lower", 3, ("lpips:alex",)),
        MetricSpec("lpips@vgg", "LPIPS (VGG)", "", "lower", 3, ("lpips:vgg",)),
    )
}


def split_name(name: str) -> tuple[str, Literal["mean", "std", "value"]]:
    """``"psnr_std"`` -> ("psnr", "std"); ``"psnr"`` -> ("psnr", "mean"); ``"rfid"`` -> ("rfid", "value")."""
    if name in SPECS:
        return name, "mean" if SPECS[name].kind == "per_image" else "value"
    base = name[: -len(STD_SUFFIX)] if name.endswith(STD_SUFFIX) else ""
    if base in SPECS and SPECS[base].kind == "per_image":
        return base, "std"
    raise UnknownMetric(f"unknown metric {name!r}; known: {', '.join(names())}")


def spec(name: str) -> MetricSpec:
    """The facts of ``name``; a spread (``<name>_std``) has its base's unit and digits, no direction."""
    base, reduce = split_name(name)
    s = SPECS[base]
    if reduce != "std":
        return s
    return replace(s, name=name, heading=f"{s.heading} σ", better="neither", paper=None, about=f"spread of {base}")


def names() -> tuple[str, ...]:
    """Every name ``eval.metrics`` accepts: each metric, and the spread of each per-image one."""
    out: list[str] = []
    for s in SPECS.values():
        out += [s.name, s.name + STD_SUFFIX] if s.kind == "per_image" else [s.name]
    return tuple(out)


def add(s: MetricSpec) -> None:
    """Add a metric's facts (called by study.measure.registry.register, with its function)."""
    if s.name in SPECS or s.name.endswith(STD_SUFFIX) or not s.name or s.name != s.name.strip():
        raise ValueError(f"metric name {s.name!r}: taken, empty, or ending in {STD_SUFFIX!r}")
    SPECS[s.name] = s
