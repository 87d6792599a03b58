"""Encoder complexity, as in Table 3: parameters, multiply-accumulates, throughput and peak
memory of one encode, and the table beside the paper's ratios to SD-VAE. How each number is
measured: docs/models.md, "What each complexity number is".
"""

from __future__ import annotations

import contextlib
import json
import math
import statistics
import time
import weakref
from typing import Any

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

from study.config import ModelConfig, autoencoder_args, model_preset
from study.measure import macs
from study.models import registry
from study.models.autoencoder import build_autoencoder
from study.paper import paper_table

MODELS = tuple(registry.PRESETS)
PRECISIONS = ("fp32", "bf16")
BASELINE = "SD-VAE"
COMPLEXITY_TABLE = "3"
KEYS = (
    "model",
    "encoder_params",
    "decoder_params",
    "encoder_gmacs",
    "throughput_img_s",
    "peak_mem_mb",
    "device",
    "resolution",
    "batch",
)


class ComplexityError(ValueError):
    """An unknown model, precision or device, or a resolution the encoders cannot take."""


# --------------------------------------------------------------------------------------------
# parameters and multiply-accumulates (meta device: nothing is allocated or computed)
# --------------------------------------------------------------------------------------------
def count_parameters(*modules: nn.Module) -> int:
    return sum(p.numel() for m in modules for p in m.parameters())


def model_config(name: str) -> ModelConfig:
    if name not in registry.PRESETS:
        raise ComplexityError(f"unknown model {name!r}; allowed: {', '.join(MODELS)}")
    return model_preset(name).model


def parameter_counts(model_cfg: ModelConfig) -> tuple[int, int]:
    """(encoder params incl. quant conv, decoder params incl. post-quant conv)."""
    with torch.device("meta"):
        model = build_autoencoder(autoencoder_args(model_cfg))
    return count_parameters(*model.encoder_modules()), count_parameters(*model.decoder_modules())


def encoder_macs(model_cfg: ModelConfig, resolution: int = 256) -> int:
    """Multiply-accumulates of encoding one resolution x resolution image (FLOPs / 2), counted
    by ``study.measure.macs`` (FlopCounterMode's totals, faster)."""
    _check_resolution(resolution)
    return macs.encoder_counts(model_cfg, [resolution])[1][resolution]


LATENT_DOWNSAMPLING = macs.LATENT_DOWNSAMPLING


def decoder_macs(model_cfg: ModelConfig, resolution: int = 256) -> int:
    """Multiply-accumulates of decoding the latent of one resolution x resolution image (FLOPs / 2)."""
    _check_resolution(resolution)
    return macs.decoder_counts(model_cfg, [resolution])[1][resolution]


def run_record(model_cfg: ModelConfig, resolution: int) -> dict[str, Any]:
    """What a run records of its own model (complexity.json): parameters and encoder MACs at
    its training resolution and at 256 (the paper's). Throughput and memory depend on the
    hardware and are measured by ``measure`` / ``run_study.py complexity``, not per run."""
    encoder, decoder = parameter_counts(model_cfg)
    return {
        "encoder_params": encoder,
        "decoder_params": decoder,
        "encoder_gmacs": encoder_macs(model_cfg, 256) / 1e9,
        "encoder_gmacs_at_resolution": encoder_macs(model_cfg, resolution) / 1e9,
        "resolution": resolution,
    }


def _check_resolution(resolution: int) -> None:
    if resolution < 8 or resolution % 8:
        raise ComplexityError(f"resolution must be a positive multiple of 8, got {resolution}")


# --------------------------------------------------------------------------------------------
# peak memory
# --------------------------------------------------------------------------------------------
class LiveTensorTracker(TorchDispatchMode):
    """Tracks the bytes of tensor storage alive while it is active; ``peak`` is the maximum.

    ``hold(t)`` counts a tensor that exists beforehand (parameters, the input) for the whole
    measurement. Every tensor an op returns is counted from its creation until the last Python
    or autograd reference to a tensor on its storage is dropped (views share their storage).
    """

    def __init__(self) -> None:
        super().__init__()
        self.live = 0
        self.peak = 0
        self._held: set[tuple[str, int]] = set()
        self._refs: dict[tuple[str, int], int] = {}
        self._bytes: dict[tuple[str, int], int] = {}

    @staticmethod
    def _key(t: torch.Tensor) -> tuple[str, int] | None:
        storage = t.untyped_storage()
        ptr = storage.data_ptr()
        return None if ptr == 0 else (str(t.device), ptr)

    def hold(self, t: torch.Tensor) -> None:
        key = self._key(t)
        if key is not None and key not in self._held:
            self._held.add(key)
            self.live += t.untyped_storage().nbytes()
            self.peak = max(self.peak, self.live)

    def _release(self, key: tuple[str, int]) -> None:
        self._refs[key] -= 1
        if self._refs[key] == 0:
            del self._refs[key]
            self.live -= self._bytes.pop(key)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in torch.utils._pytree.tree_leaves(out):
            if not isinstance(t, torch.Tensor):
                continue
            key = self._key(t)
            if key is None or key in self._held:
                continue
            if key not in self._refs:
                self._refs[key] = 0
                self._bytes[key] = t.untyped_storage().nbytes()
                self.live += self._bytes[key]
                self.peak = max(self.peak, self.live)
            self._refs[key] += 1
            weakref.finalize(t, self._release, key)
        return out


def _autocast(device: str, precision: str):
    if precision == "bf16":
        return torch.autocast(device_type=torch.device(device).type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def _sync(device: str) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def peak_memory_mb(encoder: nn.Module, x: torch.Tensor, precision: str = "fp32") -> float:
    """Peak memory of one inference encode, MiB (see the module docstring for the method)."""
    device = str(x.device)
    with torch.inference_mode(), _autocast(device, precision):
        if x.device.type == "cuda":
            _sync(device)
            torch.cuda.reset_peak_memory_stats(x.device)
            encoder(x)
            _sync(device)
            return torch.cuda.max_memory_allocated(x.device) / 2**20
        tracker = LiveTensorTracker()
        for t in [*encoder.parameters(), *encoder.buffers(), x]:
            tracker.hold(t)
        with tracker:
            encoder(x)
        return tracker.peak / 2**20


# --------------------------------------------------------------------------------------------
# throughput
# --------------------------------------------------------------------------------------------
def time_encoder(
    encoder: nn.Module, x: torch.Tensor, repeats: int, warmup: int, precision: str = "fp32"
) -> list[float]:
    """Seconds of each of ``repeats`` timed encodes of the batch ``x``, after ``warmup``."""
    device = str(x.device)
    times = []
    with torch.inference_mode(), _autocast(device, precision):
        for _ in range(warmup):
            encoder(x)
        for _ in range(repeats):
            _sync(device)
            start = time.perf_counter()
            encoder(x)
            _sync(device)
            times.append(time.perf_counter() - start)
    return times


def encoder_path(model_cfg: ModelConfig) -> nn.Module:
    """What ``Autoencoder.encode`` runs, without building the decoder: encoder [+ quant conv]."""
    return macs.encoder_module(model_cfg)


def default_repeats(device: str) -> tuple[int, int]:
    """(repeats, extra warm-up passes): few on a CPU (seconds per pass at 256), more on a GPU.
    The memory pass that ``measure`` runs first is itself a warm-up (same kernels)."""
    return (3, 0) if torch.device(device).type == "cpu" else (20, 5)


def measure(
    name: str,
    resolution: int = 256,
    batch: int = 32,
    device: str = "cpu",
    precision: str = "fp32",
    repeats: int | None = None,
    warmup: int | None = None,
    channels_last: bool = False,
    seed: int = 0,
) -> dict[str, Any]:
    """One row of Table 3 for the preset ``name`` (keys: KEYS)."""
    return measure_model(
        model_config(name), name, resolution, batch, device, precision, repeats, warmup, channels_last, seed
    )


def measure_model(
    cfg: ModelConfig,
    name: str,
    resolution: int = 256,
    batch: int = 32,
    device: str = "cpu",
    precision: str = "fp32",
    repeats: int | None = None,
    warmup: int | None = None,
    channels_last: bool = False,
    seed: int = 0,
) -> dict[str, Any]:
    """``measure`` for any model config (a study's variant), named ``name`` in the row."""
    _check_resolution(resolution)
    if precision not in PRECISIONS:
        raise ComplexityError(f"unknown precision {precision!r}; allowed: {', '.join(PRECISIONS)}")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ComplexityError("device cuda requested but CUDA is not available")
    default_rep, default_warm = default_repeats(device)
    repeats = default_rep if repeats is None else repeats
    warmup = default_warm if warmup is None else warmup

    encoder_params, decoder_params = parameter_counts(cfg)
    encoder_mac_count = encoder_macs(cfg, resolution)

    torch.manual_seed(seed)
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    encoder = encoder_path(cfg).to(dev).to(memory_format=memory_format).eval()
    x = (torch.rand(batch, 3, resolution, resolution, device=dev) * 2 - 1).contiguous(memory_format=memory_format)
    peak = peak_memory_mb(encoder, x, precision)  # also a warm-up pass
    times = time_encoder(encoder, x, repeats, warmup, precision)
    return {
        "model": name,
        "encoder_params": encoder_params,
        "decoder_params": decoder_params,
        "encoder_gmacs": encoder_mac_count / 1e9,
        "throughput_img_s": batch / statistics.median(times),
        "peak_mem_mb": peak,
        "device": str(dev) if dev.type == "cpu" else f"{dev} ({torch.cuda.get_device_name(dev)})",
        "resolution": resolution,
        "batch": batch,
        "precision": precision,
        "channels_last": channels_last,
        "repeats": repeats,
    }


def complexity_rows(
    models: list[str] | tuple[str, ...] = MODELS,
    resolution: int = 256,
    batch: int = 32,
    device: str = "cpu",
    precision: str = "fp32",
    **kwargs: Any,
) -> list[dict[str, Any]]:
    """``measure`` for each model, in order (unknown names fail before anything runs)."""
    for name in models:
        model_config(name)
    return [measure(name, resolution, batch, device, precision, **kwargs) for name in models]


def to_json(rows: list[dict[str, Any]]) -> str:
    """One JSON document: a list with one object per model."""
    return json.dumps(rows, indent=2, allow_nan=False)


# --------------------------------------------------------------------------------------------
# Table 3 with the paper's numbers beside ours
# --------------------------------------------------------------------------------------------
def paper_rows() -> dict[str, dict[str, Any]]:
    """Preset name -> its row of the paper's Table 3 (the registry's label finds it)."""
    table = paper_table(COMPLEXITY_TABLE)
    by_encoder = {row["encoder"]: row for row in table.to_dict("records")}
    return {
        ours: by_encoder[label]
        for ours, label in registry.paper_labels(COMPLEXITY_TABLE).items()
        if label in by_encoder
    }


def _fmt(value: Any, digits: int) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.{digits}f}"


def _ratio(a: Any, b: Any) -> float | None:
    if (
        a is None
        or b is None
        or (isinstance(a, float) and math.isnan(a))
        or (isinstance(b, float) and math.isnan(b))
        or b == 0
    ):
        return None
    return a / b


def format_table(rows: list[dict[str, Any]]) -> str:
    """Table 3 as a Markdown table: ours | paper for parameters, GMACs, throughput and memory,
    and throughput / memory relative to SD-VAE (ours from the same run | the paper's)."""
    paper = paper_rows()
    ours_base = next((r for r in rows if r["model"] == BASELINE), None)
    paper_base = paper.get(BASELINE, {})
    header = [
        "model",
        "enc. params M",
        "paper",
        "dec. params M",
        "GMACs",
        "paper",
        "img/s",
        "paper",
        "x SD-VAE",
        "paper",
        "mem MB",
        "paper",
        "x SD-VAE",
        "paper",
    ]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in rows:
        p = paper.get(r["model"], {})
        cells = [
            r["model"],
            _fmt(r["encoder_params"] / 1e6, 2),
            _fmt(p.get("params_m"), 2),
            _fmt(r["decoder_params"] / 1e6, 2),
            _fmt(r["encoder_gmacs"], 2),
            _fmt(p.get("gmacs_256"), 2),
            _fmt(r["throughput_img_s"], 1),
            _fmt(p.get("throughput_img_s"), 1),
            _fmt(_ratio(r["throughput_img_s"], ours_base and ours_base["throughput_img_s"]), 2),
            _fmt(_ratio(p.get("throughput_img_s"), paper_base.get("throughput_img_s")), 2),
            _fmt(r["peak_mem_mb"], 0),
            _fmt(p.get("gpu_memory_mb"), 0),
            _fmt(_ratio(r["peak_mem_mb"], ours_base and ours_base["peak_mem_mb"]), 2),
            _fmt(_ratio(p.get("gpu_memory_mb"), paper_base.get("gpu_memory_mb")), 2),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    if rows:
        r = rows[0]
        lines.append("")
        lines.append(
            f"ours: {r['device']}, {r['resolution']}x{r['resolution']}, batch {r['batch']}, "
            f"{r.get('precision', 'fp32')}; GMACs per image. paper (Table 3): batch 32, "
            "one Quadro RTX 6000; GMACs at 256x256 (reported as GFLOPS)."
        )
    return "\n".join(lines)
