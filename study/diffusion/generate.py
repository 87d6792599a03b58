"""Sampling a trained diffusion run with DDIM and its generation FID (Tables 7, 13), under a protocol
of its own: samples decoded by the frozen autoencoder, FID against the training images' cached
Inception statistics, the record and ADM-format npz files. Details: docs/diffusion.md, "Sampling
and generation FID".
"""

from __future__ import annotations

import contextlib
import io
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from study import config, store
from study.autoencoder.trained import load_trained
from study.diffusion.adm_npz import AdmBatchWriter, link_or_copy
from study.diffusion.latents import ChannelMoments, image_set, open_cache
from study.diffusion.train import build_denoiser, schedule_args
from study.evaluation.evaluate import still_unavailable
from study.evaluation.protocol import package_version, protocol_id
from study.evaluation.references import load_reference, save_reference
from study.measure import metrics as metric_fns
from study.measure import weights as weight_files
from study.models import gaussian_diffusion
from study.trainer import accelerate
from study.trainer.checkpoints import load_checkpoint

GENERATION_PROTOCOL_VERSION = 2  # 2: fp32 DDIM by default and its precision recorded (1: bf16 on CUDA)
SAMPLE_SEED = 0
GRID_SAMPLES = 64
GRID = "samples/grid.png"
ADM_SAMPLES = "samples/adm_samples.npz"
ADM_REFERENCE = "samples/adm_reference.npz"
PRECISION = {"fp32": "fp32, TF32 off", "bf16": "bf16 autocast"}


class MissingDiffusionCheckpoint(FileNotFoundError):
    """A diffusion run with no checkpoint to sample from (it has not trained yet)."""


# --------------------------------------------------------------------------------------------
# the protocol
# --------------------------------------------------------------------------------------------
def reference_count(cfg: config.ExperimentConfig, available: int) -> int:
    """How many training images the reference statistics use: ``reference_images`` or all
    (at most the set's size)."""
    wanted = cfg.diffusion.reference_images
    return available if wanted == "all" else min(int(wanted), available)


def sampler(d: config.DiffusionConfig) -> dict[str, Any]:
    """The DDIM sampler a generation uses, as the protocol (and ``plan --json``) states it."""
    return {
        "name": "ddim",
        "steps": d.sampler_steps,
        "eta": d.eta,
        "discretisation": "uniform (LDM)",
        "precision": PRECISION[d.sample_precision],
    }


def generation_protocol(cfg: config.ExperimentConfig) -> dict[str, Any]:
    """Everything that decides what a gFID means, as plain JSON (its hash is the protocol id)."""
    d, res = cfg.diffusion, cfg.data.resolution
    images, ident = image_set(cfg.data, res, d.cache_images)
    return {
        "kind": "generation",
        "version": GENERATION_PROTOCOL_VERSION,
        "sampler": sampler(d),
        "sample_seed": SAMPLE_SEED,
        "num_samples": d.num_samples,
        "weights": "ema" if d.ema_decay > 0 else "model",
        "reference": {
            "set": "the diffusion run's training images (unflipped)",
            "kind": cfg.data.kind,
            "name": cfg.data.name,
            "identity": ident,
            "num_images": reference_count(cfg, len(images)),  # type: ignore[arg-type]
        },
        "resolution": res,
        "quantisation": "uint8 round((clamp(x,-1,1)+1)*127.5), references and samples",
        "fid": {
            "extractor": f"torch-fidelity {metric_fns.FID_EXTRACTOR}",
            "features": f"pool3 ({metric_fns.FID_LAYER})",
            "weights_sha256": weight_files.expected_sha256("inception"),
            "statistics": "float64 mean and unbiased covariance; all references vs all samples",
        },
        "versions": {
            "torch": ".".join(torch.__version__.split("+")[0].split(".")[:2]),
            "torch-fidelity": package_version("torch-fidelity"),
        },
    }


def reference_id(p: dict[str, Any]) -> str:
    """The key of the reference statistics: the fields that change them, not the sampler."""
    keep = {k: p[k] for k in ("reference", "resolution", "quantisation", "fid", "versions")}
    return protocol_id({"kind": "generation-reference", **keep})


# --------------------------------------------------------------------------------------------
# the pieces
# --------------------------------------------------------------------------------------------
def _extractor(device: torch.device) -> tuple[torch.nn.Module | None, str | None]:
    """The Inception extractor, or (None, why it is unavailable)."""
    try:
        return metric_fns.inception_extractor(weight_files.resolve("inception").path, device), None
    except weight_files.MissingWeightsError as e:
        return None, f"unavailable: {e}"


def _reference(
    cfg: config.ExperimentConfig,
    p: dict[str, Any],
    extractor: torch.nn.Module | None,
    stats_path: Path,
    adm_path: Path,
    device: torch.device,
) -> tuple[tuple[np.ndarray, np.ndarray] | None, str | None]:
    """The training images' (mu, sigma), from the cache or computed and cached, and which (None,
    None without an extractor); in the same pass over the images, the reference batch in ADM's
    format at ``adm_path`` when it is missing (with or without an extractor)."""
    n = p["reference"]["num_images"]
    cached = load_reference(stats_path, n) if extractor is not None else None
    stats = metric_fns.FeatureStats() if extractor is not None and cached is None else None
    if stats is None and adm_path.exists():
        return cached, "reused" if cached is not None else None
    images, _ = image_set(cfg.data, cfg.data.resolution, cfg.diffusion.cache_images)
    writer = AdmBatchWriter(adm_path, n, cfg.data.resolution) if not adm_path.exists() else None
    with writer if writer is not None else contextlib.nullcontext():
        for start in range(0, n, 64):
            x = metric_fns.to_uint8(torch.stack([images[i] for i in range(start, min(start + 64, n))]))
            if writer is not None:
                writer.add(x)
            if stats is not None and extractor is not None:
                with accelerate.full_fp32(device):
                    stats.update(metric_fns.inception_features(extractor, x.to(device)))
    if stats is None:
        return cached, "reused" if cached is not None else None
    mu, sigma = stats.mean(), stats.cov()
    save_reference(stats_path, n, mu, sigma)
    return (mu, sigma), "computed"


def load_denoiser(cfg: config.ExperimentConfig, folder: Path, channels: int, device: torch.device) -> tuple[Any, float]:
    """The EMA UNet of the run's last checkpoint (raw when ``ema_decay`` is 0), in eval mode,
    and the scale factor it was trained with."""
    state = load_checkpoint(folder)
    if state is None:
        raise MissingDiffusionCheckpoint(f"diffusion run {folder} has no checkpoint to sample from")
    unet = build_denoiser(cfg, channels)
    unet.load_state_dict(state["ema"]["module"] if cfg.diffusion.ema_decay > 0 else state["unet"])
    return unet.to(device).eval().requires_grad_(False), float(state["scale_factor"])


def save_grid(images: Tensor, path: Path, nrow: int = 8) -> None:
    """uint8 N x 3 x H x W images as one PNG grid (2-pixel black gaps), written atomically."""
    from PIL import Image
    from torchvision.utils import make_grid

    grid = make_grid(images.cpu(), nrow=nrow, padding=2)
    buf = io.BytesIO()
    Image.fromarray(grid.permute(1, 2, 0).numpy()).save(buf, format="PNG")
    store.write_bytes_atomic(path, buf.getvalue())


# --------------------------------------------------------------------------------------------
# generate
# --------------------------------------------------------------------------------------------
@contextlib.contextmanager
def _precision(name: str, device: torch.device) -> Iterator[None]:
    """``diffusion.sample_precision``: fp32 with TF32 off (LDM samples without autocast), or bf16 autocast."""
    if name == "bf16":
        with torch.autocast(device.type, dtype=torch.bfloat16):
            yield
    else:
        with accelerate.full_fp32(device):
            yield


@torch.no_grad()
def _sample_all(
    cfg: config.ExperimentConfig,
    unet: Any,
    ae: Any,
    shape: tuple[int, int, int],
    scale: float,
    device: torch.device,
    extractor: torch.nn.Module | None,
    progress: bool,
    adm: AdmBatchWriter,
) -> tuple[metric_fns.FeatureStats | None, ChannelMoments, Tensor]:
    """All samples, batch by batch: their Inception statistics, their latent moments, the grid's;
    each batch's uint8 images also go to ``adm`` (ADM's format)."""
    from tqdm import tqdm

    d = cfg.diffusion
    g = torch.Generator().manual_seed(SAMPLE_SEED)
    sched = schedule_args(cfg)
    fake, moments = (metric_fns.FeatureStats() if extractor is not None else None), ChannelMoments()
    grid: list[Tensor] = []
    bar = tqdm(total=d.num_samples, desc="samples", unit="img", disable=not progress, leave=False)
    for start in range(0, d.num_samples, d.sample_batch_size):
        b = min(d.sample_batch_size, d.num_samples - start)
        with _precision(d.sample_precision, device):
            z = gaussian_diffusion.ddim_sample(unet, (b, *shape), d.sampler_steps, g, d.eta, device=device, args=sched)
        z = z.float() / scale  # back to the autoencoder's latent space
        moments.update(z)
        with accelerate.full_fp32(device):
            images = metric_fns.to_uint8(ae.decode(z))
            adm.add(images)
            if fake is not None and extractor is not None:
                fake.update(metric_fns.inception_features(extractor, images))
        if sum(x.shape[0] for x in grid) < GRID_SAMPLES:
            grid.append(images.cpu())
        bar.update(b)
    bar.close()
    return fake, moments, torch.cat(grid)[:GRID_SAMPLES]


def generate(
    cfg: config.ExperimentConfig, folder: Path, ae_folder: Path, device: torch.device, progress: bool = True
) -> dict[str, Any]:
    """Sample the diffusion run in ``folder``, decode with the autoencoder of ``ae_folder``,
    measure gFID and write the record (see the module docstring). An existing record of the same
    protocol is returned as it is, unless it lacked the Inception weights and they are staged
    now. The returned dict is the record plus ``"reused"`` (not stored)."""
    start, device = time.time(), torch.device(device)
    p = generation_protocol(cfg)
    pid = protocol_id(p)
    existing = store.read_evals(folder).get(pid)
    if existing is not None and existing.get("protocol") == p and still_unavailable(existing, None):
        return {**existing, "reused": True}

    cache = open_cache(cfg, ae_folder)
    unet, scale = load_denoiser(cfg, folder, cache.shape[0], device)
    ae: Any = load_trained(ae_folder, store.read_config(ae_folder), device).requires_grad_(False)
    extractor, why = _extractor(device)
    unavailable = {"gfid": why} if why else {}
    if extractor is not None and cfg.diffusion.num_samples < 2:
        extractor, unavailable = None, {"gfid": "unavailable: a FID needs at least 2 samples"}
    with AdmBatchWriter(folder / ADM_SAMPLES, cfg.diffusion.num_samples, cfg.data.resolution) as adm:
        fake, moments, grid = _sample_all(cfg, unet, ae, cache.shape, scale, device, extractor, progress, adm)
    save_grid(grid, folder / GRID)

    metrics: dict[str, float] = {}
    refs = folder.parent.parent / "cache" / "fid_ref"
    adm_reference = refs / f"{reference_id(p)}.adm.npz"
    ref_stats, how = _reference(cfg, p, extractor, refs / f"{reference_id(p)}.npz", adm_reference, device)
    link_or_copy(adm_reference, folder / ADM_REFERENCE)
    if fake is not None and ref_stats is not None:
        mu, sigma = ref_stats
        metrics["gfid"] = metric_fns.frechet_distance(mu, sigma, fake.mean(), fake.cov())
    generated = moments.summary()
    record = {
        "protocol_id": pid,
        "protocol": p,
        "metrics": metrics,
        "unavailable": unavailable,
        "missing_weights": ["inception"] if why else [],
        "num_samples": cfg.diffusion.num_samples,
        "reference_cache": how,
        "scale_factor": scale,
        "latent_stats": {
            "latent": cfg.diffusion.latent,
            "generated": {k: generated[k] for k in ("channel_mean", "channel_std", "std_all")},
            "training": {k: cache.stats(cfg.diffusion.latent)[k] for k in ("channel_mean", "channel_std", "std_all")},
        },
        "grid": GRID,
        "adm": {
            "samples": ADM_SAMPLES,
            "reference": ADM_REFERENCE,
            "format": "guided-diffusion evaluator: arr_0 uint8 NHWC",
        },
        "created": time.time(),
        "seconds": round(time.time() - start, 3),
        "device": str(device),
    }
    store.write_eval(folder, pid, record)
    return {**record, "reused": False}
