"""What a study will cost before it is launched: per run, the encoder's and decoder's parameters
and multiply-accumulates and its GPU-hours, always a number (measured, scaled, or a labelled FLOP
estimate). The rules and our choices: docs/performance.md, "A study's cost before launch"."""

from __future__ import annotations

import datetime as dt
import functools
import json
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from study import config as cfgmod
from study.measure.counts import COUNTS, CostCache

Writer = Callable[[Path, Any], None]

STEP_TIMES_ENV = "LITEVAE_STEP_TIMES"
REPO = Path(__file__).resolve().parents[2]
STEP_TIMES = REPO / "benchmarks" / "step_times.json"
TABLE_FORMAT = 1


class CostError(ValueError):
    """A malformed step-time table, or a figure that is not a positive number of seconds."""


# --------------------------------------------------------------------------------------------
# the step-time table
# --------------------------------------------------------------------------------------------
def step_times_path(path: str | Path | None = None) -> Path:
    """``path``, else $LITEVAE_STEP_TIMES, else the repository's benchmarks/step_times.json."""
    return Path(path or os.environ.get(STEP_TIMES_ENV) or STEP_TIMES)


def read_step_times(path: str | Path) -> dict[str, dict[str, dict[str, Any]]]:
    """device name -> step-time key -> {"seconds_per_image": s, "measured": ISO time, ...}; an
    absent file has no figures."""
    return dict(_read_table(Path(path))["devices"])


def _read_table(path: Path) -> dict[str, Any]:
    """The whole table document ({"format": 1, "devices": {...}, any notes}); checked."""
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError:
        return {"format": TABLE_FORMAT, "devices": {}}
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CostError(f"{path}: not a step-time table ({e})") from None
    devices = doc.get("devices") if isinstance(doc, dict) else None
    if not isinstance(devices, dict) or not all(
        isinstance(f, dict) and all(isinstance(e, dict) and "seconds_per_image" in e for e in f.values())
        for f in devices.values()
    ):
        raise CostError(
            f"{path}: expected {{'format': {TABLE_FORMAT}, 'devices': {{NAME: {{KEY: {{'seconds_per_image': S}}}}}}}}"
        )
    return doc


def record_step_time(
    path: str | Path,
    device: str,
    key: str,
    seconds_per_image: float,
    meta: dict[str, Any] | None = None,
    *,
    write_json: Writer,
) -> dict[str, Any]:
    """Set the figure of ``key`` on ``device`` in the table at ``path`` (created if absent) and
    return the entry written: ``meta`` (where and how it was measured: host, batch, steps, ...)
    plus ``seconds_per_image`` and ``measured`` (now, UTC, unless ``meta`` has it)."""
    if not device or not key:
        raise CostError(f"a step time needs a device name and a key, got {device!r} and {key!r}")
    if (
        not isinstance(seconds_per_image, (int, float))
        or not math.isfinite(seconds_per_image)
        or seconds_per_image <= 0
    ):
        raise CostError(f"seconds per image must be a positive number, got {seconds_per_image!r}")
    path = Path(path)
    doc = _read_table(path)
    entry = {"measured": _now()} | dict(meta or {}) | {"seconds_per_image": float(seconds_per_image)}
    doc["devices"].setdefault(device, {})[key] = entry
    write_json(path, doc | {"format": TABLE_FORMAT})
    return entry


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


# --------------------------------------------------------------------------------------------
# the step-time key
# --------------------------------------------------------------------------------------------
def precision_on(cfg: cfgmod.ExperimentConfig, device: str | None) -> str:
    """The precision a run trains in on ``device`` (a device name; "cpu" is the CPU)."""
    return precision_of(cfg.train.precision, device)


def _per_object(spell: Callable[[Any], str]) -> Callable[[Any], str]:
    """``spell`` kept per config object (a grid's runs share a few hundred sections)."""
    kept: dict[int, tuple[Any, str]] = {}

    @functools.wraps(spell)
    def spelled(section: Any) -> str:
        found = kept.get(id(section))
        if found is None or found[0] is not section:
            if len(kept) >= 100_000:  # a memo, not a store
                kept.clear()
            found = kept[id(section)] = (section, spell(section))
        return found[1]

    return spelled


@_per_object
def encoder_key(enc: cfgmod.EncoderConfig) -> str:
    if enc.kind == "litevae":
        key = f"litevae-{enc.preset}"
        key += "" if enc.aggregator == "unet" else f"-{enc.aggregator}"
        key += "" if enc.extractor == "unet" else f"-{enc.extractor}"
        return key + ("" if tuple(enc.levels) == (1, 2, 3) else "-l" + "".join(map(str, enc.levels)))
    if enc.kind == "sdvae":
        return "sdvae" if enc.sd_width == "full" else f"sdvae-{enc.sd_width}"
    return enc.kind  # the fixed DWT latents


@_per_object
def decoder_key(dec: cfgmod.DecoderConfig) -> str:
    key = f"dec{dec.channels}-{'.'.join(map(str, dec.channel_mult))}-b{dec.blocks_per_level}"
    return key + ("" if dec.mid_attention else "-noattn") + ("" if dec.norm == "groupnorm" else f"-{dec.norm}")


def step_time_key(cfg: cfgmod.ExperimentConfig, resolution: int | None = None, device: str | None = None) -> str:
    """What a measured step time of an autoencoder run is a figure of, e.g.
    ``litevae-B/dec128-1.2.4.4-b3/disc-unet64/256px/bf16``: encoder, decoder size, discriminator,
    resolution (default: data.resolution), precision on ``device`` (default: a GPU)."""
    res = resolution or cfg.data.resolution
    loss = cfg.loss
    disc = "disc-none" if loss.discriminator == "none" else f"disc-{loss.discriminator}{loss.discriminator_channels}"
    return "/".join(
        [encoder_key(cfg.model.encoder), decoder_key(cfg.model.decoder), disc, f"{res}px", precision_on(cfg, device)]
    )


# --------------------------------------------------------------------------------------------
# device classes and their peaks (the FLOP estimate)
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class DeviceClass:
    name: str
    bf16_tflops: float  # dense tensor-core peak, bf16
    tf32_tflops: float  # dense tensor-core peak, TF32 (what an fp32 run's matmuls and convs use)

    def peak(self, precision: str) -> float:
        return self.bf16_tflops if precision == "bf16" else self.tf32_tflops


# NVIDIA's datasheets give the peaks "with sparsity"; the dense peak is half. H100 SXM5: BF16
# 1,979 TFLOPS, TF32 989 TFLOPS (NVIDIA H100 Tensor Core GPU datasheet); H200 SXM: the same
# (NVIDIA H200 Tensor Core GPU datasheet); A100 SXM4: BF16 312 TFLOPS, TF32 156 TFLOPS dense
# (NVIDIA A100 Tensor Core GPU datasheet, Table "Specifications").
DEVICE_CLASSES = {
    "H100": DeviceClass("H100", 989.0, 494.5),
    "H200": DeviceClass("H200", 989.0, 494.5),
    "A100": DeviceClass("A100", 312.0, 156.0),
}
DEFAULT_DEVICE = "H100"  # plan's device without --device-class and without a local GPU
# The fraction of the peak a training step is assumed to reach: the model-FLOP utilisation that
# issue 23 sets as the training loop's target (docs/performance.md).
UTILISATION = 0.35


@functools.lru_cache(maxsize=64)
def device_class(device: str | None) -> DeviceClass | None:
    """The class of a device name ('NVIDIA H100 80GB HBM3' -> H100); None for one not listed."""
    name = (device or "").upper()
    return next((c for key, c in DEVICE_CLASSES.items() if key in name), None)


@functools.lru_cache(maxsize=64)
def flop_label(device_cls: DeviceClass, precision: str) -> str:
    peak = device_cls.peak(precision)
    return f"FLOP estimate at {UTILISATION:.0%} of {peak:g} TFLOP/s"


# --------------------------------------------------------------------------------------------
# the estimate
# --------------------------------------------------------------------------------------------
MacsOf = Callable[[int, CostCache], int]  # forward MACs of one image at a resolution


@dataclass(frozen=True)
class Work:
    """What one run trains, as its cost counts it (its run kind says: ``study.kinds``)."""

    resolution: int  # shown beside the run
    model: cfgmod.ModelConfig | None  # the autoencoder whose sides are counted (None: not in the plan)
    model_resolution: int  # the resolution its MACs are counted at
    stages: tuple[tuple[int, int, int], ...]  # (steps, batch, resolution) of each stage it trains
    key: Callable[[int, str | None], str]  # the step-time key of a stage at (resolution, device)
    # forward MACs of one image through what a step trains, at a stage's resolution (the FLOP
    # estimate; None: none, the estimate needs a recorded figure)
    forward_macs: MacsOf | None = None
    precision: str = "auto"  # train.precision: which peak the FLOP estimate divides by


@dataclass(frozen=True)
class Estimate:
    device: str | None
    gpu_hours: float | None  # None: no figure and no FLOP estimate (``why`` says why)
    why: str  # "" when there is a number
    stages: tuple[dict[str, Any], ...]  # per stage: key, steps, batch, resolution, basis, figure
    basis: str = ""  # "measured", "scaled" or the FLOP estimate's label (the weakest of the stages)


def autoencoder_macs(cfg: cfgmod.ExperimentConfig) -> MacsOf:
    """An autoencoder step's forward: encoder, decoder and the discriminator on one image."""
    loss = cfg.loss

    def macs(resolution: int, cache: CostCache) -> int:
        counts = cache.model(cfg.model, resolution)
        disc = cache.discriminator(loss.discriminator, loss.discriminator_channels, resolution)
        return round((counts["encoder_gmacs"] + counts["decoder_gmacs"]) * 1e9) + disc

    return macs


def denoiser_macs(cfg: cfgmod.ExperimentConfig) -> MacsOf:
    """A diffusion step's forward: the denoiser on one latent (the autoencoder is frozen and its
    latents cached: not counted)."""
    return lambda resolution, cache: cache.denoiser(cfg.diffusion.unet, cfg.model.latent_channels, resolution)


def _resolution_of(key: str) -> tuple[str, int] | None:
    """(the key with its resolution masked, the resolution) of a step-time key."""
    parts = key.split("/")
    for i, part in enumerate(parts):
        if part.endswith("px") and part[:-2].isdigit():
            return "/".join(parts[:i] + ["*"] + parts[i + 1 :]), int(part[:-2])
    return None


def _recorded(key: str, figures: dict[str, dict[str, Any]]) -> tuple[float, str, dict[str, Any]] | None:
    """(seconds per image, basis, figure) of ``key``: measured, else scaled from the nearest
    resolution recorded under the same key; None without either."""
    if not figures:
        return None
    figure = figures.get(key)
    if figure is not None:
        return float(figure["seconds_per_image"]), "measured", figure
    masked = _resolution_of(key)
    if masked is None:
        return None
    near = [(abs(r - masked[1]), r, f) for k, f in figures.items() if (m := _resolution_of(k)) and m[0] == masked[0]
            for r in (m[1],)]  # fmt: skip
    if not near:
        return None
    _, res, figure = min(near, key=lambda t: t[:2])
    scale = (masked[1] / res) ** 2
    return float(figure["seconds_per_image"]) * scale, f"scaled from {res}px", figure


def estimate(
    work: Work,
    device: str | None,
    table: dict[str, dict[str, dict[str, Any]]],
    cache: CostCache | None = None,
    memo: dict[tuple[Any, ...], Estimate] | None = None,
) -> Estimate:
    """GPU-hours of training ``work`` on ``device``: each stage measured, scaled or estimated
    from its FLOPs (the module docstring says in which order). ``memo``: estimates already made
    with this table and cache, by what they are made of (each stage's steps, batch, resolution,
    step-time key and forward MACs): a study's runs share a few thousand."""
    if sum(steps for steps, _, _ in work.stages) == 0:
        return Estimate(device, 0.0, "", ())  # nothing to train (Table 3 measures its encoders)
    if device is None:
        return Estimate(None, None, "no device class: give --device-class NAME", ())
    figures, cls = table.get(device, {}), device_class(device)
    parts = []
    for steps, batch, resolution in work.stages:
        key = work.key(resolution, device)
        found = _recorded(key, figures)
        flop_estimate = found is None and cls is not None and work.forward_macs is not None and cache is not None
        macs = work.forward_macs(resolution, cache) if flop_estimate else None  # type: ignore[misc,arg-type]
        parts.append((steps, batch, resolution, key, found, macs))
    made = (device, work.precision, tuple(p[:4] + p[5:] for p in parts))
    if memo is not None and made in memo:
        return memo[made]
    out = _estimate(device, cls, work.precision, parts)
    if memo is not None:
        memo[made] = out
    return out


def _estimate(device: str, cls: DeviceClass | None, precision: str, parts: list[tuple[Any, ...]]) -> Estimate:
    """``estimate`` of the stages as (steps, batch, resolution, key, recorded figure, forward MACs)."""
    stages, seconds, bases = [], 0.0, []
    for steps, batch, resolution, key, found, macs in parts:
        if found is not None:
            per_image, basis, figure = found
            stage: dict[str, Any] = {"figure": figure}
        elif macs is not None:
            assert cls is not None
            on = precision_of(precision, device)
            flops = 3 * 2 * macs
            per_image = flops / (cls.peak(on) * 1e12 * UTILISATION)
            basis, stage = flop_label(cls, on), {"forward_gflops": flops / 3 / 1e9}
        else:
            known = ", ".join(DEVICE_CLASSES)
            return Estimate(device, None, f"no figure for {device}: {key}; no peak known for it ({known})", ())
        seconds += steps * batch * per_image
        bases.append(basis)
        stages.append({"key": key, "steps": steps, "batch": batch, "resolution": resolution, "basis": basis} | stage)
    weakest = next((b for b in bases if b.startswith("FLOP")), None) or next(
        (b for b in bases if b != "measured"), "measured"
    )
    return Estimate(device, seconds / 3600, "", tuple(stages), weakest)


def precision_of(precision: str, device: str | None) -> str:
    """``train.precision`` on ``device``: auto is bf16 on a GPU, fp32 on the device "cpu"."""
    if precision != "auto":
        return precision
    return "fp32" if (device or "").lower() == "cpu" else "bf16"


# --------------------------------------------------------------------------------------------
# a study's cost
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class VariantCost:
    resolution: int
    counts: dict[str, Any]  # COUNTS (None: the model counted is not in the plan)
    estimate: Estimate

    def to_json(self) -> dict[str, Any]:
        e = self.estimate
        return {
            "resolution": self.resolution,
            **self.counts,
            "device": e.device,
            "gpu_hours": e.gpu_hours,
            "basis": e.basis,
        } | ({"why": e.why} if e.why else {"stages": list(e.stages)})


@dataclass(frozen=True)
class StudyCost:
    variants: tuple[VariantCost, ...]
    device: str | None
    table: str  # the step-time table's path
    devices: tuple[str, ...]  # the devices the table has figures for
    counted: int  # network sides (at one resolution) counted by this call
    cached: int  # network sides that came from the cache

    @property
    def missing(self) -> int:
        return sum(v.estimate.gpu_hours is None for v in self.variants)

    @property
    def known_gpu_hours(self) -> float:
        return sum(v.estimate.gpu_hours or 0.0 for v in self.variants)

    @property
    def gpu_hours(self) -> float | None:
        """The study's total; None when a variant has no number."""
        return None if self.missing else self.known_gpu_hours

    @property
    def bases(self) -> list[str]:
        """The bases of the runs' numbers, each once, in order of first use."""
        return list(dict.fromkeys(v.estimate.basis for v in self.variants if v.estimate.basis))

    def total_json(self) -> dict[str, Any]:
        return {
            "device": self.device,
            "gpu_hours": self.gpu_hours,
            "gpu_hours_known": self.known_gpu_hours,
            "bases": self.bases,
            "runs": len(self.variants),
            "runs_without_figure": self.missing,
            "step_times": self.table,
            "devices_in_table": list(self.devices),
            "cache": {"counted": self.counted, "cached": self.cached},
        }


def study_cost(works: Sequence[Work], device: str | None, step_times: str | Path, cache: CostCache) -> StudyCost:
    """The cost of each run (a study's variants, as their kinds describe them) and of them all,
    on ``device``; every network counted once (``CostCache.prefetch``), the cache saved."""
    table = read_step_times(step_times)
    counted, cached = cache.counted, cache.cached
    cache.prefetch(
        (w.model, r) for w in works if w.model for r in (w.model_resolution, *(s[2] for s in w.stages if s[0]))
    )
    variants = []
    memo: dict[tuple[Any, ...], Estimate] = {}
    shared: dict[tuple[int, int, int], VariantCost] = {}  # runs that cost the same share one (the plan's JSON)
    none = dict.fromkeys(COUNTS)
    for work in works:
        counts = cache.model(work.model, work.model_resolution) if work.model else none
        e = estimate(work, device, table, cache, memo)
        found = shared.get(same := (work.resolution, id(counts), id(e)))
        if found is None:
            found = shared[same] = VariantCost(work.resolution, counts, e)
        variants.append(found)
    cache.save()
    return StudyCost(
        tuple(variants), device, str(step_times), tuple(table), cache.counted - counted, cache.cached - cached
    )


def local_device() -> str | None:
    """The name of this machine's first CUDA device, None without one (and without importing
    torch where the NVIDIA driver has no device node)."""
    if not Path("/dev/nvidiactl").exists():
        return None
    import torch

    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else None


# --------------------------------------------------------------------------------------------
# the plan's columns and footer
# --------------------------------------------------------------------------------------------
COLUMNS = ("params M", "GMACs", "GPU-h")
FLOP_MARK = "~"  # beside a FLOP estimate in the table


def hours_text(hours: float | None) -> str:
    if hours is None:
        return "no figure"
    return "0" if hours == 0 else f"{hours:,.1f}" if hours >= 10 else f"{hours:.3g}"


def hours_cell(e: Estimate) -> str:
    mark = FLOP_MARK if e.basis.startswith("FLOP") else "*" if e.basis.startswith("scaled") else ""
    return mark + hours_text(e.gpu_hours)


def cells(v: VariantCost) -> list[str]:
    """params (encoder + decoder, M), GMACs (encoder + decoder, one image) and GPU-hours."""
    c = v.counts
    if c["encoder_params"] is None:  # the model counted is not in the plan (Work.model)
        return ["-", "-", hours_cell(v.estimate)]
    return [
        f"{c['encoder_params'] / 1e6:.2f}+{c['decoder_params'] / 1e6:.2f}",
        f"{c['encoder_gmacs']:.2f}+{c['decoder_gmacs']:.2f}",
        hours_cell(v.estimate),
    ]


def footer(cost: StudyCost) -> list[str]:
    """What the plan prints under its table: what the counts are and the study's GPU-hours."""
    n = len(cost.variants)
    lines = [
        "params M, GMACs: encoder+decoder, one image at the run's data.resolution "
        f"({cost.counted} network(s) counted, {cost.cached} cached)"
    ]
    marks = {b: FLOP_MARK if b.startswith("FLOP") else "*" if b.startswith("scaled") else "" for b in cost.bases}
    basis = "; ".join(f"{m + ': ' if m else ''}{b}" for b, m in marks.items())
    if any(b.startswith("FLOP") for b in cost.bases):
        basis += " (3 x the forward FLOPs of encoder+decoder+discriminator per image, not a measurement)"
    if any(b.startswith("scaled") for b in cost.bases):
        basis += " (a measured step time scaled by the pixel ratio)"
    if cost.gpu_hours is not None:
        dates = sorted({str(s["figure"].get("measured", "?"))[:10] for v in cost.variants for s in v.estimate.stages
                        if "figure" in s})  # fmt: skip
        when = f", measured {dates[0]}" + (f" to {dates[-1]}" if len(dates) > 1 else "") if dates else ""
        lines.append(
            f"GPU-hours: {hours_text(cost.gpu_hours)} for {n} run(s) on {cost.device}"
            + (f" ({basis}{when})" if basis else "")
        )
        return lines
    if cost.device is None:
        lines.append("GPU-hours: no device class: give --device-class NAME")
        return lines
    where = f"{_shown(cost.table)} has figures for: {', '.join(cost.devices) or 'no device'}"
    rest = cost.known_gpu_hours if cost.missing < n else None
    lines.append(
        f"GPU-hours: no figure for {cost.device} for {cost.missing} of {n} run(s)"
        + (f" (the other {n - cost.missing}: {hours_text(rest)})" if rest is not None else "")
        + f"; {where}; record one with benchmarks/bench_train.py --record, or name a device class "
        + f"with a known peak ({', '.join(DEVICE_CLASSES)})"
    )
    return lines


def _shown(path: str) -> str:
    """A path relative to the working directory where it lies below it."""
    try:
        return str(Path(path).resolve().relative_to(Path.cwd()))
    except ValueError:
        return path
