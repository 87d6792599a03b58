"""A run's identity: the fields that define what is trained, as canonical JSON, and its hash."""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
from typing import Any

from study.config.checks import validate
from study.config.overrides import _is_section, coerce
from study.config.sections import ExperimentConfig

# --------------------------------------------------------------------------------------------
# identity
# --------------------------------------------------------------------------------------------
# Fields that only matter for one encoder kind: dropped from the id for the other kind, so an
# SD-VAE crossed with the LiteVAE presets is one run, not four.
_LITEVAE_ONLY = ("preset", "levels", "wavelet", "aggregator", "shared_extractors", "num_res_blocks")
_SDVAE_ONLY = ("sd_width",)
# The fixed DWT latents (Tables 11, 12) have neither network: every encoder field but kind goes.
_DWT_KINDS = ("dwt", "dwt2")
# LiteVAE-only fields added after run ids were in use: left out at their default, so the ids of
# runs that predate them do not change.
_LITEVAE_ADDED = {"extractor": "unet"}


_LEAF_TYPES = frozenset({str, int, float, bool, type(None)})


def to_dict(cfg: Any, identity_only: bool = False) -> Any:
    """Plain nested dicts and lists (tuples as lists), optionally without non-identity fields."""
    if type(cfg) in _LEAF_TYPES:
        return cfg
    if _is_section(cfg):  # leaves inline: this runs once per variant id
        return {
            name: v if type(v := getattr(cfg, name)) in _LEAF_TYPES else to_dict(v, identity_only)
            for name, ident in _fields(_class_of(cfg))
            if ident or not identity_only
        }
    if isinstance(cfg, (tuple, list)):
        return [v if type(v) in _LEAF_TYPES else to_dict(v, identity_only) for v in cfg]
    return cfg


def _class_of(obj: Any) -> Any:
    return type(obj)


@functools.lru_cache(maxsize=None)
def _fields(cls: Any) -> tuple[tuple[str, bool], ...]:
    """(name, is an identity field) of each field of a config dataclass."""
    return tuple((f.name, f.metadata.get("identity", True)) for f in dataclasses.fields(cls))


def from_dict(data: dict[str, Any]) -> ExperimentConfig:
    """The inverse of ``to_dict`` (for configs read back from a run folder)."""
    return validate(coerce("config", data, ExperimentConfig))


def identity(cfg: ExperimentConfig) -> dict[str, Any]:
    """What defines a run: model, loss, train, data and seed, without the eval protocol,
    intervals, paths and fields the chosen encoder kind does not use."""
    d = to_dict(cfg, identity_only=True)
    del d["eval"]
    if cfg.task == "diffusion":
        return _diffusion_identity(d)
    del d["task"], d["diffusion"]  # an autoencoder run: the ids of before diffusion runs stay
    enc = d["model"]["encoder"]
    kind = cfg.model.encoder.kind
    for name in _SDVAE_ONLY if kind == "litevae" else _LITEVAE_ONLY:
        del enc[name]
    if kind in _DWT_KINDS:
        for name in _SDVAE_ONLY + ("dropout",):
            del enc[name]
    for name, default in _LITEVAE_ADDED.items():
        if kind != "litevae" or enc[name] == default:
            del enc[name]
    if cfg.loss.discriminator == "none":
        for name in (
            "adversarial_loss",
            "adversarial_weight_mode",
            "adversarial_weight",
            "discriminator_start",
            "discriminator_channels",
        ):
            del d["loss"][name]
        del d["train"]["discriminator_lr"]
    # Fields added later, dropped at their defaults so existing run ids stay the same.
    if cfg.loss.perceptual == "lpips":
        del d["loss"]["perceptual"]
    if cfg.loss.ldl_weight == 0:
        del d["loss"]["ldl_weight"]
    if cfg.train.ema_decay == 0:
        del d["train"]["ema_decay"]
    if not cfg.train.compile:
        del d["train"]["compile"]
    if cfg.train.grad_accum == 1:
        del d["train"]["grad_accum"]
    if not cfg.model.init_sha256:  # no pretrained start: the ids of before model.init stay
        del d["model"]["init_sha256"]
    if cfg.data.kind == "samples":  # the sample photos have a fixed held-out region instead
        del d["data"]["val_fraction"]
    return d


def _diffusion_identity(d: dict[str, Any]) -> dict[str, Any]:
    """A diffusion run is its diffusion settings, the frozen autoencoder's run id (inside them:
    the autoencoder's own identity, transitively), the data its latents come from, the
    precision and the seed; the autoencoder's model and loss sections are not its own."""
    return {
        "task": d["task"],
        "diffusion": d["diffusion"],
        "data": d["data"],
        "precision": d["train"]["precision"],
        "seed": d["seed"],
    }


def canonical_json(obj: Any) -> str:
    """Sorted keys, no spaces, floats by repr: one spelling for equal configs."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), allow_nan=False)


def run_id(cfg: ExperimentConfig) -> str:
    """A variant's id: 12 hex digits of the sha256 of its canonical identity."""
    return hashlib.sha256(canonical_json(identity(cfg)).encode()).hexdigest()[:12]
