"""What a study will cost before it is launched: per variant, the encoder's and the decoder's
parameters and multiply-accumulates at its data resolution, and an estimate of its GPU-hours.

- Parameters and GMACs are ``study.measure.complexity``'s counts on the meta device (GMACs: one
  image at ``data.resolution``, FLOPs / 2, what the paper calls "GFLOPS"). A count takes 0.1-1 s,
  so each side of the model is cached on its own: the encoder side by the canonical JSON of the
  model section without ``decoder`` (plus the resolution), the decoder side by the model section
  without ``encoder``; a grid of encoders x decoders counts each once. The cache lives in memory
  for the process and on disk (``<results>/.cache/cost.json``), stamped with a fingerprint of the
  model code, so that a changed model is counted again.
- GPU-hours = steps x batch x seconds per image / 3600, the seconds per image taken from a table
  of measured training step times (``benchmarks/step_times.json``; ``benchmarks/bench_train.py
  --record`` adds to it with ``record_step_time``), per device name and per step-time key
  (``step_time_key``: encoder, decoder size, discriminator, resolution, precision). Each stage of
  ``train.stages`` is costed at its own resolution. Without a figure for the device and key, the
  estimate is "no figure for <device>", never a guess.

Choices (ours): the batch is the global batch (every DDP rank's), so a one-GPU figure gives the
GPU-hours on any number of GPUs under linear scaling (communication is not counted); the steps
before ``loss.discriminator_start`` are costed at the rate with the discriminator (an upper
bound); the perceptual loss, the EMA and evaluation are not in the key nor in the estimate.
``precision: auto`` is bf16 on a GPU (the training loop's rule), fp32 on the device "cpu".

The measure layer may not import ``study.store``: whoever writes a file here passes the writer
(``store.write_json_atomic``) as ``write_json``.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import json
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from study import config as cfgmod

Writer = Callable[[Path, Any], None]

STEP_TIMES_ENV = "LITEVAE_STEP_TIMES"
REPO = Path(__file__).resolve().parents[2]
STEP_TIMES = REPO / "benchmarks" / "step_times.json"
TABLE_FORMAT = 1
CACHE_FORMAT = 1
# The code a count depends on: the models, the builders' arguments, the counting.
_CODE = ("study/models/*.py", "study/config/sections.py", "study/measure/complexity.py")


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
    if cfg.train.precision != "auto":
        return cfg.train.precision
    return "fp32" if (device or "").lower() == "cpu" else "bf16"


def encoder_key(enc: cfgmod.EncoderConfig) -> str:
    if enc.kind == "litevae":
        key = f"litevae-{enc.preset}"
        key += "" if enc.aggregator == "unet" else f"-{enc.aggregator}"
        key += "" if enc.extractor == "unet" else f"-{enc.extractor}"
        return key + ("" if tuple(enc.levels) == (1, 2, 3) else "-l" + "".join(map(str, enc.levels)))
    if enc.kind == "sdvae":
        return "sdvae" if enc.sd_width == "full" else f"sdvae-{enc.sd_width}"
    return enc.kind  # the fixed DWT latents


def decoder_key(dec: cfgmod.DecoderConfig) -> str:
    key = f"dec{dec.channels}-{'.'.join(map(str, dec.channel_mult))}-b{dec.blocks_per_level}"
    return key + ("" if dec.mid_attention else "-noattn") + ("" if dec.norm == "groupnorm" else f"-{dec.norm}")


def step_time_key(cfg: cfgmod.ExperimentConfig, resolution: int | None = None, device: str | None = None) -> str:
    """What a measured step time is a figure of, e.g.
    ``litevae-B/dec128-1.2.4.4-b3/disc-unet64/256px/bf16``: encoder, decoder size, discriminator,
    resolution (default: data.resolution), precision on ``device`` (default: a GPU). A diffusion
    run's: ``diffusion-<unet>/z<latent channels>/<resolution>px/<precision>``."""
    res = resolution or cfg.data.resolution
    precision = precision_on(cfg, device)
    if cfg.task == "diffusion":
        return f"diffusion-{cfg.diffusion.unet}/z{cfg.model.latent_channels}/{res}px/{precision}"
    loss = cfg.loss
    disc = "disc-none" if loss.discriminator == "none" else f"disc-{loss.discriminator}{loss.discriminator_channels}"
    return "/".join([encoder_key(cfg.model.encoder), decoder_key(cfg.model.decoder), disc, f"{res}px", precision])


# --------------------------------------------------------------------------------------------
# the estimate
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Estimate:
    device: str | None
    gpu_hours: float | None  # None: no figure (``why`` says for what)
    why: str  # "" when there is a number
    stages: tuple[dict[str, Any], ...]  # per stage: key, steps, batch, resolution, figure


def schedule(cfg: cfgmod.ExperimentConfig) -> list[tuple[int, int, int]]:
    """(steps, batch, resolution) of each stage a run trains."""
    if cfg.task == "diffusion":
        return [(cfg.diffusion.steps, cfg.diffusion.batch_size, cfg.data.resolution)]
    return [(s.steps, cfg.train.batch_size, s.resolution) for s in cfgmod.stages(cfg)]


def estimate(cfg: cfgmod.ExperimentConfig, device: str | None, table: dict[str, dict[str, dict[str, Any]]]) -> Estimate:
    """GPU-hours of training ``cfg`` on ``device``: steps x batch x seconds per image / 3600."""
    plan = schedule(cfg)
    if sum(steps for steps, _, _ in plan) == 0:
        return Estimate(device, 0.0, "", ())  # nothing to train (Table 3 measures its encoders)
    if device is None:
        return Estimate(None, None, "no device class (no CUDA device here): give --device-class NAME", ())
    figures = table.get(device, {})
    stages, missing, seconds = [], [], 0.0
    for steps, batch, resolution in plan:
        key = step_time_key(cfg, resolution, device)
        figure = figures.get(key)
        if figure is None:
            missing.append(key)
            continue
        seconds += steps * batch * float(figure["seconds_per_image"])
        stages.append({"key": key, "steps": steps, "batch": batch, "resolution": resolution, "figure": figure})
    if missing:
        return Estimate(device, None, f"no figure for {device}: {', '.join(dict.fromkeys(missing))}", ())
    return Estimate(device, seconds / 3600, "", tuple(stages))


# --------------------------------------------------------------------------------------------
# parameters and MACs, cached
# --------------------------------------------------------------------------------------------
_MEMORY: dict[str, dict[str, Any]] = {}


def clear_memory_cache() -> None:
    _MEMORY.clear()


@functools.cache
def code_fingerprint() -> str:
    """sha256 over the sources the counts depend on: a disk cache of other code is not used."""
    digest = hashlib.sha256()
    for pattern in _CODE:
        for path in sorted(REPO.glob(pattern)):
            digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


class CostCache:
    """The counts of each model side, in memory and, with ``path``, in a JSON file that ``save``
    writes with ``write_json`` (merged with what another process wrote meanwhile)."""

    def __init__(self, path: Path | None = None, write_json: Writer | None = None):
        self.path, self._write = path, write_json
        self.counted = self.cached = 0
        self._new: dict[str, dict[str, Any]] = {}
        if path is not None:
            for key, value in _read_cache(path).items():
                _MEMORY.setdefault(key, value)

    def side(self, key: str, count: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        if key in _MEMORY:
            self.cached += 1
            return _MEMORY[key]
        self.counted += 1
        value = _MEMORY[key] = self._new[key] = count()
        return value

    def save(self) -> None:
        if not self._new or self.path is None or self._write is None:
            return
        entries = _read_cache(self.path) | self._new
        try:
            self._write(self.path, {"format": CACHE_FORMAT, "code": code_fingerprint(), "entries": entries})
        except OSError:  # a read-only results folder: the counts are only not kept
            return
        self._new = {}


def _read_cache(path: Path) -> dict[str, dict[str, Any]]:
    """The cached counts; none when the file is absent, unreadable or of other code."""
    try:
        doc = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        return {}
    if not isinstance(doc, dict) or doc.get("format") != CACHE_FORMAT or doc.get("code") != code_fingerprint():
        return {}
    entries = doc.get("entries")
    return entries if isinstance(entries, dict) else {}


def _side_key(side: str, model: cfgmod.ModelConfig, resolution: int) -> str:
    """The canonical JSON of what one side's counts depend on."""
    d = cfgmod.to_dict(model, identity_only=True)
    d.pop("init_sha256", None)
    d.pop("decoder" if side == "encoder" else "encoder")
    return cfgmod.canonical_json({"side": side, "model": d, "resolution": resolution})


def model_counts(model: cfgmod.ModelConfig, resolution: int, cache: CostCache) -> dict[str, Any]:
    """Encoder and decoder parameters and GMACs of one image at ``resolution``."""

    def encoder() -> dict[str, Any]:
        from study.measure import complexity  # torch: imported only when something is counted

        return {"params": complexity.parameter_counts(model)[0], "macs": complexity.encoder_macs(model, resolution)}

    def decoder() -> dict[str, Any]:
        from study.measure import complexity

        return {"params": complexity.parameter_counts(model)[1], "macs": complexity.decoder_macs(model, resolution)}

    enc = cache.side(_side_key("encoder", model, resolution), encoder)
    dec = cache.side(_side_key("decoder", model, resolution), decoder)
    return {
        "encoder_params": enc["params"],
        "decoder_params": dec["params"],
        "encoder_gmacs": enc["macs"] / 1e9,
        "decoder_gmacs": dec["macs"] / 1e9,
    }


# --------------------------------------------------------------------------------------------
# a study's cost
# --------------------------------------------------------------------------------------------
COUNTS = ("encoder_params", "decoder_params", "encoder_gmacs", "decoder_gmacs")


@dataclass(frozen=True)
class VariantCost:
    resolution: int
    counts: dict[str, Any]  # COUNTS (None: a diffusion run whose autoencoder is not in the plan)
    estimate: Estimate

    def to_json(self) -> dict[str, Any]:
        e = self.estimate
        return {"resolution": self.resolution, **self.counts, "device": e.device, "gpu_hours": e.gpu_hours} | (
            {"why": e.why} if e.why else {"stages": list(e.stages)}
        )


@dataclass(frozen=True)
class StudyCost:
    variants: tuple[VariantCost, ...]
    device: str | None
    table: str  # the step-time table's path
    devices: tuple[str, ...]  # the devices the table has figures for
    counted: int  # model sides counted by this call
    cached: int  # model sides that came from the cache

    @property
    def missing(self) -> int:
        return sum(v.estimate.gpu_hours is None for v in self.variants)

    @property
    def known_gpu_hours(self) -> float:
        return sum(v.estimate.gpu_hours or 0.0 for v in self.variants)

    @property
    def gpu_hours(self) -> float | None:
        """The study's total; None when a variant has no figure."""
        return None if self.missing else self.known_gpu_hours

    def total_json(self) -> dict[str, Any]:
        return {
            "device": self.device,
            "gpu_hours": self.gpu_hours,
            "gpu_hours_known": self.known_gpu_hours,
            "runs": len(self.variants),
            "runs_without_figure": self.missing,
            "step_times": self.table,
            "devices_in_table": list(self.devices),
            "cache": {"counted": self.counted, "cached": self.cached},
        }


def study_cost(
    configs: Sequence[cfgmod.ExperimentConfig], device: str | None, step_times: str | Path, cache: CostCache
) -> StudyCost:
    """The cost of each config (a study's variants, each one run) and of them all, on ``device``;
    the cache is saved before returning."""
    table = read_step_times(step_times)
    counted, cached = cache.counted, cache.cached
    diffusion = any(cfg.task == "diffusion" for cfg in configs)
    autoencoders = {cfgmod.run_id(cfg): cfg for cfg in configs if cfg.task != "diffusion"} if diffusion else {}
    variants = []
    for cfg in configs:
        # a diffusion run's counts are its frozen autoencoder's, where that run is in the plan
        ae = autoencoders.get(cfg.diffusion.autoencoder_id) if cfg.task == "diffusion" else cfg
        counts = model_counts(ae.model, ae.data.resolution, cache) if ae else dict.fromkeys(COUNTS)
        variants.append(VariantCost(cfg.data.resolution, counts, estimate(cfg, device, table)))
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
COLUMNS = ("enc M", "dec M", "enc GMACs", "dec GMACs", "GPU-h")


def hours_text(hours: float | None) -> str:
    if hours is None:
        return "no figure"
    return "0" if hours == 0 else f"{hours:,.1f}" if hours >= 10 else f"{hours:.3g}"


def cells(v: VariantCost) -> list[str]:
    c = v.counts
    if c["encoder_params"] is None:  # a diffusion run whose autoencoder is not in the plan
        return ["-"] * 4 + [hours_text(v.estimate.gpu_hours)]
    return [
        f"{c['encoder_params'] / 1e6:.2f}",
        f"{c['decoder_params'] / 1e6:.2f}",
        f"{c['encoder_gmacs']:.2f}",
        f"{c['decoder_gmacs']:.2f}",
        hours_text(v.estimate.gpu_hours),
    ]


def footer(cost: StudyCost) -> list[str]:
    """What the plan prints under its table: what the counts are and the study's GPU-hours."""
    n = len(cost.variants)
    lines = [
        "cost: parameters (M) and GMACs of one image at each run's data.resolution "
        f"({cost.counted} model side(s) counted, {cost.cached} cached)"
    ]
    where = f"{_shown(cost.table)} has figures for: {', '.join(cost.devices) or 'no device'}"
    if cost.gpu_hours is not None:
        dates = sorted({str(s["figure"].get("measured", "?"))[:10] for v in cost.variants for s in v.estimate.stages})
        when = f", measured {dates[0]}" + (f" to {dates[-1]}" if len(dates) > 1 else "") if dates else ""
        lines.append(
            f"GPU-hours: {hours_text(cost.gpu_hours)} for {n} run(s) on {cost.device} "
            f"(steps x batch x seconds per image from {_shown(cost.table)}{when})"
        )
        return lines
    if cost.device is None:
        lines.append(f"GPU-hours: no device class (no CUDA device here): give --device-class NAME; {where}")
        return lines
    rest = cost.known_gpu_hours if cost.missing < n else None
    lines.append(
        f"GPU-hours: no figure for {cost.device} for {cost.missing} of {n} run(s)"
        + (f" (the other {n - cost.missing}: {hours_text(rest)})" if rest is not None else "")
        + f"; {where}; record one with benchmarks/bench_train.py --record"
    )
    return lines


def _shown(path: str) -> str:
    """A path relative to the working directory where it lies below it."""
    try:
        return str(Path(path).resolve().relative_to(Path.cwd()))
    except ValueError:
        return path
