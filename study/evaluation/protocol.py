"""The evaluation protocol as plain data, and its id: everything that decides what a number means."""

from __future__ import annotations

import hashlib
from importlib import metadata
from typing import Any

import torch

from study import config
from study.data import eval_sets, preprocess
from study.measure import registry as metric_registry

PROTOCOL_VERSION = 1


SAMPLE_SEED = 0


def package_version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


def protocol(cfg: config.ExperimentConfig, *, fingerprint: str | None = None) -> dict[str, Any]:
    """The evaluation protocol of ``cfg`` as plain JSON data (its hash is ``protocol_id``).

    ``fingerprint`` stands in for ``study.data.eval_sets.fingerprint`` when the images
    come from elsewhere (``evaluate(dataset=...)``)."""
    ev, data = cfg.eval, cfg.data
    resolution = config.eval_resolution(cfg)
    if fingerprint is None:
        fingerprint = eval_sets.fingerprint(data, ev, resolution)
    dataset: dict[str, Any] = {
        "kind": data.kind,
        "name": data.name,
        "split": "held-out",
        "val_fraction": data.val_fraction if data.kind == "folder" else None,
        "fingerprint": fingerprint,
    }
    if ev.path:  # a set apart from the training data (study/data/eval_sets.py)
        dataset = {"kind": "folder", **eval_sets.describe(data, ev), "fingerprint": fingerprint}
    folder = data.kind == "folder" or bool(ev.path)
    p: dict[str, Any] = {
        "version": PROTOCOL_VERSION,
        "dataset": dataset,
        "num_images": ev.num_images,
        "resolution": resolution,
        "resize": preprocess.DESCRIPTIONS[ev.preprocess]  # eval.preprocess (study/data/preprocess.py)
        if folder
        else "square grid crops resized to the resolution, PIL bicubic",
        "crop": "center" if folder else "held-out grid (see dataset.fingerprint)",
        "quantisation": "uint8 round((clamp(x,-1,1)+1)*127.5), originals and reconstructions",
        "posterior": ev.posterior,
        "metrics": sorted(ev.metrics),
        "versions": {"torch": ".".join(torch.__version__.split("+")[0].split(".")[:2])},
    }
    if ev.posterior == "sample":
        p["sample_seed"] = SAMPLE_SEED
    if ev.weights == "ema":  # only then, so the ids of protocols before the field stay the same
        p["weights"] = "ema"
    if ev.latent_stats:  # only then, so the ids of protocols without Table 6 stay the same
        p["latent_stats"] = {
            "latents": "posterior mean, unscaled",
            "mmd_samples": ev.mmd_samples,
            "mmd_repeats": ev.mmd_repeats,
            "mmd_bandwidths": list(ev.mmd_bandwidths),
            "mmd": "unbiased MMD^2, RBF exp(-d^2/(2h^2)), vs N(0, I), seed 0",
        }
    _add_metric_definitions(p, ev)
    return p


def _add_metric_definitions(p: dict[str, Any], ev: config.EvalConfig) -> None:
    """Each wanted metric's definition (study/measure/registry.py), with the digests of the
    weights it loads, and the versions of the packages that compute it."""
    for name in p["metrics"]:
        if name in p:
            raise ValueError(f"metric {name!r} would overwrite the protocol's own field {name!r}")
        p[name], packages = metric_registry.metric(name).define(ev)
        p["versions"] |= {dist: package_version(dist) for dist in packages}


def _hash(obj: Any) -> str:
    return hashlib.sha256(config.canonical_json(obj).encode()).hexdigest()[:12]


def protocol_id(p: dict[str, Any]) -> str:
    """12 hex digits of the sha256 of the protocol's canonical JSON."""
    return _hash(p)


def reference_id(p: dict[str, Any], num_images: int) -> str:
    """The key of the originals' cached Inception statistics: the protocol fields that change
    them (dataset, count, resolution, resize, crop, quantisation, extractor and its weights,
    versions), not the posterior or the other metrics, so runs and protocols share them."""
    keep = {k: p[k] for k in ("version", "dataset", "resolution", "resize", "crop", "quantisation", "rfid")}
    keep["num_images"] = num_images
    keep["versions"] = {k: v for k, v in p["versions"].items() if k in ("torch", "torch-fidelity")}
    return _hash(keep)
