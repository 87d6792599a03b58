"""A run's identity: the fields that define what is trained, as canonical JSON, and its hash."""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
from typing import Any

from study.config.checks import validate
from study.config.overrides import coerce
from study.config.sections import ExperimentConfig

# --------------------------------------------------------------------------------------------
# identity
# --------------------------------------------------------------------------------------------
# Fields that only matter for one encoder kind: dropped from the id for the other kind, so an
# SD-VAE crossed with the LiteVAE presets is one run, not four.
_LITEVAE_ONLY = ("preset", "levels", "wavelet", "aggregator", "shared_extractors", "num_res_blocks")
_SDVAE_ONLY = ("sd_width",)


_LEAF_TYPES = frozenset({str, int, float, bool, type(None)})


def to_dict(cfg: Any, identity_only: bool = False) -> Any:
    """Plain nested dicts and lists (tuples as lists), optionally without non-identity fields."""
    if type(cfg) in _LEAF_TYPES:
        return cfg
    if dataclasses.is_dataclass(cfg):  # leaves inline: this runs once per variant id
        return {name: v if type(v := getattr(cfg, name)) in _LEAF_TYPES else to_dict(v, identity_only)
                for name, ident in _fields(type(cfg)) if ident or not identity_only}
    if isinstance(cfg, (tuple, list)):
        return [v if type(v) in _LEAF_TYPES else to_dict(v, identity_only) for v in cfg]
    return cfg


@functools.lru_cache(maxsize=None)
def _fields(cls: type) -> tuple[tuple[str, bool], ...]:
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
    enc = d["model"]["encoder"]
    for name in _SDVAE_ONLY if cfg.model.encoder.kind == "litevae" else _LITEVAE_ONLY:
        del enc[name]
    if cfg.loss.discriminator == "none":
        for name in ("adversarial_loss", "adversarial_weight_mode", "adversarial_weight",
                     "discriminator_start", "discriminator_channels"):
            del d["loss"][name]
        del d["train"]["discriminator_lr"]
    if cfg.data.kind == "samples":  # the sample photos have a fixed held-out region instead
        del d["data"]["val_fraction"]
    return d


def canonical_json(obj: Any) -> str:
    """Sorted keys, no spaces, floats by repr: one spelling for equal configs."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), allow_nan=False)


def run_id(cfg: ExperimentConfig) -> str:
    """A variant's id: 12 hex digits of the sha256 of its canonical identity."""
    return hashlib.sha256(canonical_json(identity(cfg)).encode()).hexdigest()[:12]
