"""The latent cache: a diffusion run's training images encoded once by the frozen autoencoder, in
shards under the autoencoder's run folder, keyed by everything that changes them, resumable and
locked, with per-channel statistics and the scale factor in ``meta.json``. Layout, key and
images: docs/diffusion.md, "The latent cache".
"""

from __future__ import annotations

import hashlib
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Subset

from study import config, store
from study.data.datasets import FolderEval, SampleEval, SampleTrain, check_resolution, image_files, photos_digest

CACHE_VERSION = 1
CROP_SEED = 0  # the sample photos' fixed crops: drawn as training stream 0 draws them
NOISE_SEED = 0  # the posterior samples' generators
SHARD_SIZE = 1024
KINDS = ("mean", "sample")


class CacheNotBuilt(FileNotFoundError):
    """A diffusion run asked for a latent cache that has no meta.json yet."""


class CacheMismatch(ValueError):
    """A shard or meta.json that does not fit the cache's key (another layout, a torn write)."""


# --------------------------------------------------------------------------------------------
# what is encoded, and the key
# --------------------------------------------------------------------------------------------
def image_set(data: config.DataConfig, resolution: int, cache_images: int) -> tuple[Dataset, str]:
    """The unflipped images a cache encodes (float 3 x R x R in [-1, 1]) and their identity as
    one line: the same set the generation FID's reference statistics come from."""
    if data.kind == "folder":
        folder = Path(data.path).expanduser()
        check_resolution(resolution, str(folder))
        train = image_files(data.path, data.list)  # the whole list: no held-out part is kept back
        names = hashlib.sha256("\n".join(train).encode("utf-8")).hexdigest()[:16]
        ident = (
            f"folder name={data.name} split=whole-list train={len(train)} files "
            f"sha256={names} crop=shorter-side-bicubic+center resolution={resolution}"
        )
        return FolderEval(folder, train, resolution), ident  # center crops, no flip
    stream = SampleTrain(resolution, CROP_SEED, hflip=False)
    crops = tuple(stream.crop(i) for i in range(cache_images))
    ident = (
        f"samples sha256={photos_digest()} training-regions crops={cache_images} "
        f"stream-seed={CROP_SEED} resolution={resolution}"
    )
    return SampleEval(crops, resolution), ident


def cache_fields(cfg: config.ExperimentConfig, ae_folder: Path) -> dict[str, Any]:
    """What the cache of ``cfg``'s data on the autoencoder in ``ae_folder`` depends on."""
    ae_cfg = store.read_config(ae_folder)
    _, ident = image_set(cfg.data, cfg.data.resolution, cfg.diffusion.cache_images)
    return {
        "version": CACHE_VERSION,
        "data": ident,
        "resolution": cfg.data.resolution,
        "flips": [False, True] if cfg.data.hflip else [False],
        "autoencoder": ae_folder.name,
        "weights": ae_cfg.eval.weights,
        "noise_seed": NOISE_SEED,
    }


def cache_key(fields: dict[str, Any]) -> str:
    return hashlib.sha256(config.canonical_json(fields).encode()).hexdigest()[:12]


# --------------------------------------------------------------------------------------------
# running per-channel moments (float64, merged by Chan et al.'s rule)
# --------------------------------------------------------------------------------------------
class ChannelMoments:
    """Per-channel count, mean and centred sum of squares of N x C x h x w batches in float64:
    the result does not depend on how the latents are batched. ``summary`` equals
    study.measure.latent_stats.channel_stats of all the latents at once."""

    def __init__(self) -> None:
        self.n = 0
        self.mean: Tensor | None = None
        self.m2: Tensor | None = None

    def update(self, z: Tensor) -> None:
        x = z.detach().double().cpu().transpose(0, 1).reshape(z.shape[1], -1)
        b = x.shape[1]
        mb = x.mean(1)
        m2b = (x - mb[:, None]).square().sum(1)
        if self.mean is None or self.m2 is None:
            self.n, self.mean, self.m2 = b, mb, m2b
            return
        n = self.n + b
        delta = mb - self.mean
        self.mean = self.mean + delta * (b / n)
        self.m2 = self.m2 + m2b + delta.square() * (self.n * b / n)
        self.n = n

    def summary(self) -> dict[str, Any]:
        """channel_mean, channel_std (ddof 1), std_all over every element, scale_factor = 1/std_all."""
        if self.mean is None or self.m2 is None or self.n < 2:
            raise ValueError("statistics need at least 2 values per channel")
        c = len(self.mean)
        mean_all = self.mean.mean()
        m2_all = self.m2.sum() + self.n * (self.mean - mean_all).square().sum()
        std_all = float((m2_all / (c * self.n - 1)).sqrt())
        return {
            "channel_mean": self.mean.tolist(),
            "channel_std": (self.m2 / (self.n - 1)).sqrt().tolist(),
            "mean_all": float(mean_all),
            "std_all": std_all,
            "scale_factor": 1.0 / std_all,
            "values_per_channel": self.n,
        }


# --------------------------------------------------------------------------------------------
# the cache on disk
# --------------------------------------------------------------------------------------------
def _tensor_name(kind: str, flip: bool) -> str:
    return f"{kind}_flip" if flip else kind


@dataclass(frozen=True)
class LatentCache:
    """A built cache: its folder, its meta.json and whether this call found it already built."""

    folder: Path
    meta: dict[str, Any]
    reused: bool

    @property
    def count(self) -> int:
        return int(self.meta["count"])

    @property
    def shape(self) -> tuple[int, int, int]:
        c, h, w = self.meta["shape"]
        return int(c), int(h), int(w)

    def stats(self, kind: str) -> dict[str, Any]:
        return self.meta["stats"][kind]

    def scale_factor(self, kind: str) -> float:
        return float(self.meta["stats"][kind]["scale_factor"])

    def shard_paths(self) -> list[Path]:
        return [_shard_path(self.folder, i) for i in range(int(self.meta["shards"]))]

    def load(self, kind: str) -> Tensor:
        """The latents of ``kind`` ("mean" or "sample") as one float32 tensor F x N x C x h x w,
        F the flips (index 0 unflipped, 1 mirrored when data.hflip)."""
        from safetensors.torch import load_file

        flips = self.meta["flips"]
        parts: list[list[Tensor]] = [[] for _ in flips]
        for path in self.shard_paths():
            tensors = load_file(str(path))
            for f, flip in enumerate(flips):
                parts[f].append(tensors[_tensor_name(kind, flip)])
        out = torch.stack([torch.cat(p) for p in parts])
        if tuple(out.shape[1:]) != (self.count, *self.shape):
            raise CacheMismatch(f"{self.folder}: shards hold {tuple(out.shape[1:])}, meta.json says {self.meta}")
        return out


def cache_folder(ae_folder: Path, key: str) -> Path:
    return ae_folder / "latents" / key


def _shard_path(folder: Path, index: int) -> Path:
    return folder / f"shard-{index:05d}.safetensors"


def open_cache(cfg: config.ExperimentConfig, ae_folder: Path) -> LatentCache:
    """The built cache of ``cfg`` on ``ae_folder``; CacheNotBuilt when its meta.json is absent."""
    fields = cache_fields(cfg, ae_folder)
    folder = cache_folder(ae_folder, cache_key(fields))
    meta = store.read_json(folder / "meta.json")
    if meta is None:
        raise CacheNotBuilt(f"no latent cache at {folder} (build it with build_cache first)")
    if meta.get("fields") != fields:
        raise CacheMismatch(f"{folder}/meta.json was written for {meta.get('fields')}, not {fields}")
    return LatentCache(folder, meta, reused=True)


def build_cache(
    cfg: config.ExperimentConfig,
    ae_folder: Path,
    device: torch.device,
    *,
    progress: bool = True,
    shard_size: int = SHARD_SIZE,
    encode_batch: int = 32,
) -> LatentCache:
    """Encode the training images of ``cfg`` with the frozen autoencoder of ``ae_folder`` into
    its latent cache, or read the cache when it is built (``reused``). The encoder runs in fp32
    (the cache is the diffusion model's data); on CUDA ``train.num_workers`` processes decode. Only the shards that are
    missing are encoded (a shard of another ``shard_size`` counts as missing); the frozen
    autoencoder is loaded only when one is."""
    fields = cache_fields(cfg, ae_folder)
    folder = cache_folder(ae_folder, cache_key(fields))
    with store.locked(folder):
        meta = store.read_json(folder / "meta.json")
        if meta is not None and meta.get("fields") == fields:
            return LatentCache(folder, meta, reused=True)
        start = time.time()
        images, _ = image_set(cfg.data, cfg.data.resolution, cfg.diffusion.cache_images)
        n = len(images)  # type: ignore[arg-type]
        shards = (n + shard_size - 1) // shard_size
        missing = [i for i in range(shards) if _shard_size(_shard_path(folder, i)) != shard_size]
        if missing:
            workers = min(cfg.train.num_workers, os.cpu_count() or 1) if device.type == "cuda" else 0
            _encode_shards(
                ae_folder, images, folder, missing, shard_size, fields, device, progress, encode_batch, workers
            )
        meta = _summarise(folder, fields, n, shards)
        meta["shard_size"] = shard_size
        meta.update(created=time.time(), seconds=round(time.time() - start, 3), device=str(device))
        meta["encoded_shards"] = len(missing)
        store.write_json_atomic(folder / "meta.json", meta)  # last: the cache is complete
    return LatentCache(folder, meta, reused=False)


def _encode_shards(
    ae_folder: Path,
    images: Dataset,
    folder: Path,
    shards: list[int],
    size: int,
    fields: dict[str, Any],
    device: torch.device,
    progress: bool,
    encode_batch: int,
    workers: int,
) -> None:
    """Encode and write each of ``shards`` (indices) atomically, one after another; ``workers``
    DataLoader processes decode the images."""
    from safetensors.torch import save
    from tqdm import tqdm

    from study.autoencoder.trained import load_trained

    ae: Any = load_trained(ae_folder, store.read_config(ae_folder), device)
    ae.requires_grad_(False)
    flips = [bool(f) for f in fields["flips"]]
    n = len(images)  # type: ignore[arg-type]
    for s in tqdm(shards, desc=f"latent cache {folder.name}", disable=not progress, unit="shard"):
        out: dict[str, list[Tensor]] = {_tensor_name(k, f): [] for k in KINDS for f in flips}
        first = s * size
        part = Subset(images, range(first, min(first + size, n)))
        loader = DataLoader(part, batch_size=encode_batch, num_workers=workers, pin_memory=device.type == "cuda")
        for b, x in enumerate(loader):
            idx = range(first + b * encode_batch, first + b * encode_batch + len(x))
            x = x.to(device, non_blocking=True)
            for f in flips:
                mean, sample = _encode(ae, torch.flip(x, dims=[3]) if f else x, idx, f)
                out[_tensor_name("mean", f)].append(mean)
                out[_tensor_name("sample", f)].append(sample)
        tensors = {k: torch.cat(v).contiguous() for k, v in out.items()}
        data = save(tensors, metadata={"first": str(s * size), "shard_size": str(size), "key": cache_key(fields)})
        store.write_bytes_atomic(_shard_path(folder, s), data)


@torch.no_grad()
def _encode(ae: Any, x: Tensor, indices: range, flip: bool) -> tuple[Tensor, Tensor]:
    """(posterior mean, posterior sample) of a batch, float32 on the CPU; each image's eps from
    its own generator (seeded by NOISE_SEED, its index and the flip)."""
    posterior = ae.encode(x)
    mean, std = posterior.mean.float().cpu(), posterior.std.float().cpu()
    eps = torch.stack(
        [
            torch.randn(mean.shape[1:], generator=torch.Generator().manual_seed(NOISE_SEED * 1_000_003 + 2 * i + flip))
            for i in indices
        ]
    )
    return mean, mean + std * eps


def _shard_size(path: Path) -> int | None:
    """The shard size a shard file was written with, None when there is no readable shard."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), "pt") as f:
            return int((f.metadata() or {}).get("shard_size", -1))
    except (OSError, SafetensorError, ValueError):
        return None


def _summarise(folder: Path, fields: dict[str, Any], n: int, shards: int) -> dict[str, Any]:
    """meta.json's content, read back from the shards on disk (so a resumed build gets the same)."""
    from safetensors.torch import load_file

    moments = {k: ChannelMoments() for k in KINDS}
    shape: list[int] | None = None
    count = 0
    for s in range(shards):
        tensors = load_file(str(_shard_path(folder, s)))
        for name, t in tensors.items():
            moments[name.removesuffix("_flip")].update(t)
        shape = list(tensors["mean"].shape[1:])
        count += len(tensors["mean"])
    if count != n or shape is None:
        raise CacheMismatch(f"{folder}: the shards hold {count} images, expected {n}")
    return {
        "fields": fields,
        "key": cache_key(fields),
        "count": count,
        "shape": shape,
        "flips": fields["flips"],
        "shards": shards,
        "stats": {k: m.summary() for k, m in moments.items()},
    }
