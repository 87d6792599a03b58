"""Checks across fields that no single field's type can express; each raises ConfigError naming
the key, the value and what is allowed."""

from __future__ import annotations

import dataclasses
import operator

from study.config import metric_specs
from study.config.overrides import get_value
from study.config.sections import ConfigError, ExperimentConfig, Stage


# --------------------------------------------------------------------------------------------
# checks across fields
# --------------------------------------------------------------------------------------------
def validate(cfg: ExperimentConfig) -> ExperimentConfig:
    """Checks no single field's type can express; raises ConfigError naming the key.

    Each check reads one section but those of ``_check_across``: a config whose every section
    object passed before (in a config that passed) passes when those pass (a grid's variants
    share a few hundred section objects); any other runs every check in order."""
    sections = (cfg.model, cfg.train, cfg.data, cfg.loss, cfg.eval)
    if _metrics_known() and all(map(operator.is_, map(_PASSED.get, map(id, sections)), sections)):  # each passed
        try:
            _check_across(cfg)
            return cfg
        except ConfigError:
            pass  # the checks in order say which fails first
    _check(cfg)
    if len(_PASSED) >= _PASSED_MAX:
        _PASSED.clear()
    _PASSED.update((id(s), s) for s in sections)
    return cfg


_PASSED: dict[int, object] = {}  # id(section) -> that section, of configs that passed
_PASSED_MAX = 100_000  # cleared when full: a memo, not a store
_METRICS: list[tuple[int, int]] = []  # the metric registry the sections passed with


def _metrics_known() -> bool:
    """Whether the metric names (``eval.metrics``' check) are those ``_PASSED`` was checked
    with; if not, ``_PASSED`` is cleared. The registry only grows: its object and size tell."""
    now = (id(metric_specs.SPECS), len(metric_specs.SPECS))
    if _METRICS == [now]:
        return True
    _PASSED.clear()
    _METRICS[:] = [now]
    return False


def _check(cfg: ExperimentConfig) -> None:
    """Every check, in order."""
    enc, dec, train, data = cfg.model.encoder, cfg.model.decoder, cfg.train, cfg.data
    if not enc.levels or len(set(enc.levels)) != len(enc.levels) or not set(enc.levels) <= {1, 2, 3}:
        raise ConfigError("model.encoder.levels", list(enc.levels), "a non-empty list of distinct levels from 1, 2, 3")
    if list(enc.levels) != sorted(enc.levels):
        raise ConfigError("model.encoder.levels", list(enc.levels), "levels in increasing order")
    for key in (
        "model.latent_channels",
        "model.encoder.num_res_blocks",
        "model.decoder.channels",
        "model.decoder.blocks_per_level",
        "train.batch_size",
        "train.checkpoint_every",
        "train.log_every",
        "train.val_every",
        "eval.batch_size",
        "loss.gaussian_kernel",
        "loss.discriminator_channels",
    ):
        if get_value(cfg, key) < 1:
            raise ConfigError(key, get_value(cfg, key), "an integer >= 1")
    if train.steps < 0:
        raise ConfigError("train.steps", train.steps, "an integer >= 0 (0: measure complexity only, no training)")
    if not dec.channel_mult or min(dec.channel_mult) < 1:
        raise ConfigError("model.decoder.channel_mult", list(dec.channel_mult), "a non-empty list of integers >= 1")
    if 2 ** (len(dec.channel_mult) - 1) != 8:
        raise ConfigError(
            "model.decoder.channel_mult", list(dec.channel_mult), "4 levels (the decoder upsamples by 8 = 2^(levels-1))"
        )
    if dec.channels % 8:
        raise ConfigError("model.decoder.channels", dec.channels, "a multiple of 8 (GroupNorm groups)")
    if cfg.loss.gaussian_kernel % 2 == 0:
        raise ConfigError("loss.gaussian_kernel", cfg.loss.gaussian_kernel, "an odd integer")
    if not 0.0 < data.val_fraction < 1.0:
        raise ConfigError("data.val_fraction", data.val_fraction, "a number in (0, 1)")
    if len(train.betas) != 2 or not all(0.0 <= b < 1.0 for b in train.betas):
        raise ConfigError("train.betas", list(train.betas), "two numbers in [0, 1)")
    for key in ("data.resolution", "eval.resolution"):
        res = get_value(cfg, key)
        if res is not None and (res < 8 or res % 8):
            raise ConfigError(key, res, "a positive multiple of 8 (the latent is H/8)")
    for i, stage in enumerate(train.stages):
        if stage.resolution < 8 or stage.resolution % 8:
            raise ConfigError(f"train.stages[{i}].resolution", stage.resolution, "a positive multiple of 8")
        if stage.steps < 1:
            raise ConfigError(f"train.stages[{i}].steps", stage.steps, "an integer >= 1")
    if train.stages and sum(s.steps for s in train.stages) != train.steps:
        raise ConfigError(
            "train.stages",
            [dataclasses.asdict(s) for s in train.stages],
            f"stages whose steps add up to train.steps ({train.steps})",
        )
    _check_eval_and_data(cfg)
    _check_latent_stats(cfg)
    if train.grad_accum < 1 or train.batch_size % train.grad_accum:
        raise ConfigError(
            "train.grad_accum", train.grad_accum, f"an integer >= 1 that divides train.batch_size ({train.batch_size})"
        )


def _check_eval_and_data(cfg: ExperimentConfig) -> None:
    """The evaluation set, the EMA/LDL options and the data source."""
    train, data = cfg.train, cfg.data
    known = metric_specs.names()
    unknown = [m for m in cfg.eval.metrics if m not in known]
    if unknown or len(set(cfg.eval.metrics)) != len(cfg.eval.metrics):
        raise ConfigError("eval.metrics", list(cfg.eval.metrics), "distinct names from " + ", ".join(known))
    if cfg.eval.num_images != "all" and cfg.eval.num_images < 1:
        raise ConfigError("eval.num_images", cfg.eval.num_images, "an integer >= 1, or 'all'")
    if cfg.eval.during.every < 0 or cfg.eval.during.num_images < 1:
        key = "eval.during.every" if cfg.eval.during.every < 0 else "eval.during.num_images"
        raise ConfigError(key, get_value(cfg, key), "eval.during.every >= 0 (0: off), eval.during.num_images >= 1")
    if train.divergence_psnr_drop <= 0 or train.divergence_patience < 1:
        key = "train.divergence_psnr_drop" if train.divergence_psnr_drop <= 0 else "train.divergence_patience"
        raise ConfigError(key, get_value(cfg, key), "a PSNR drop > 0 dB and a patience >= 1 step")
    if cfg.eval.gallery_images < 0:
        raise ConfigError("eval.gallery_images", cfg.eval.gallery_images, "an integer >= 0 (0: no gallery)")
    if cfg.eval.path and not cfg.eval.name:
        raise ConfigError("eval.name", cfg.eval.name, "the evaluation set's name when eval.path is set")
    if cfg.eval.list and not cfg.eval.path:
        raise ConfigError("eval.list", cfg.eval.list, "a split list only together with eval.path")
    if not 0.0 <= train.ema_decay < 1.0:
        raise ConfigError("train.ema_decay", train.ema_decay, "a number in [0, 1) (0: no EMA)")
    if cfg.loss.ldl_weight < 0:
        raise ConfigError("loss.ldl_weight", cfg.loss.ldl_weight, "a number >= 0 (0: no LDL)")
    _check_across(cfg)
    if data.list and data.kind != "folder":
        raise ConfigError("data.list", data.list, "a split list only when data.kind is 'folder'")
    if data.kind == "folder" and not data.path:
        raise ConfigError("data.path", data.path, "the image folder's path when data.kind is 'folder'")
    _check_encoder_kind(cfg)


def _check_across(cfg: ExperimentConfig) -> None:
    """The checks that read two sections: what needs the EMA (``validate`` runs these always)."""
    if cfg.loss.ldl_weight > 0 and cfg.train.ema_decay == 0:
        raise ConfigError(
            "train.ema_decay",
            cfg.train.ema_decay,
            "a decay in (0, 1) when loss.ldl_weight > 0 (LDL compares with the EMA model)",
        )
    if cfg.eval.weights == "ema" and cfg.train.ema_decay == 0:
        raise ConfigError(
            "eval.weights",
            cfg.eval.weights,
            "'model' unless train.ema_decay > 0 (a run without an EMA has no EMA weights)",
        )


def _check_latent_stats(cfg: ExperimentConfig) -> None:
    """Table 6's MMD needs two samples and two repeats (a std), and positive bandwidths."""
    ev = cfg.eval
    if ev.mmd_samples < 2:
        raise ConfigError("eval.mmd_samples", ev.mmd_samples, "an integer >= 2")
    if ev.mmd_repeats < 2:
        raise ConfigError("eval.mmd_repeats", ev.mmd_repeats, "an integer >= 2 (for a std)")
    if not ev.mmd_bandwidths or min(ev.mmd_bandwidths) <= 0:
        raise ConfigError("eval.mmd_bandwidths", list(ev.mmd_bandwidths), "a non-empty list of numbers > 0")


# The fixed DWT latents' channels (study.models.dwt_encoder.DWT_LATENT_CHANNELS; Tables 11, 12).
_DWT_LATENT_CHANNELS = {"dwt": 12, "dwt2": 48}


def _check_encoder_kind(cfg: ExperimentConfig) -> None:
    """DWT latents have a fixed nz and no quant convs; NAFNet extractors exist only in LiteVAE."""
    enc = cfg.model.encoder
    if enc.kind in _DWT_LATENT_CHANNELS:
        nz = _DWT_LATENT_CHANNELS[enc.kind]
        if cfg.model.latent_channels != nz:
            raise ConfigError(
                "model.latent_channels",
                cfg.model.latent_channels,
                f"{nz} for model.encoder.kind {enc.kind} (its fixed Haar latent)",
            )
        if cfg.model.quant_conv:
            raise ConfigError(
                "model.quant_conv", True, f"false for model.encoder.kind {enc.kind} (a fixed latent has no quant conv)"
            )
    if enc.extractor != "unet" and enc.kind != "litevae":
        raise ConfigError(
            "model.encoder.extractor",
            enc.extractor,
            f"'unet' unless model.encoder.kind is litevae (got kind {enc.kind})",
        )


def eval_resolution(cfg: ExperimentConfig) -> int:
    """The resolution a run is evaluated at: ``eval.resolution``, else ``data.resolution``."""
    return cfg.eval.resolution or cfg.data.resolution


def stages(cfg: ExperimentConfig) -> tuple[Stage, ...]:
    """The resolution stages of a run (one stage at data.resolution when none are set)."""
    return cfg.train.stages or (Stage(cfg.data.resolution, cfg.train.steps),)
