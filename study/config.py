"""The typed experiment config: one dataclass per section, the paper's defaults.

Every field a study file can set is a field here, addressed by a dotted key such as
``model.decoder.norm``. Defaults follow LiteVAE (Sadat et al., NeurIPS 2024, arXiv 2405.14477);
where the paper is silent the default is the project's choice and the field's comment says
"paper gap" and what was chosen, usually the LDM KL-f8 recipe the paper says it follows.

A field whose metadata says ``identity=False`` (log and checkpoint intervals, paths, worker
counts) does not change what is trained, so it is left out of the run id (see ``identity``).
"""
from __future__ import annotations

import dataclasses
import difflib
import functools
import hashlib
import json
import math
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Literal, get_args, get_origin, get_type_hints

from study.models import registry
from study.models.arguments import AutoencoderArgs, DecoderArgs, EncoderArgs, LiteVAEArgs


class ConfigError(ValueError):
    """A bad override: ``key`` (dotted path), ``value`` and ``allowed`` say what and why."""

    def __init__(self, key: str, value: Any, allowed: str):
        self.key, self.value, self.allowed = key, value, allowed
        super().__init__(f"{key}: got {value!r}; allowed: {allowed}")


def _not_identity(default: Any) -> Any:
    """A field that does not change what is trained (left out of the run id)."""
    if isinstance(default, (list, dict, set)):
        return field(default_factory=lambda: type(default)(default), metadata={"identity": False})
    return field(default=default, metadata={"identity": False})


# --------------------------------------------------------------------------------------------
# model
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class EncoderConfig:
    kind: Literal["litevae", "sdvae"] = "litevae"
    # LiteVAE presets of Tables 23/24 (used when kind == litevae).
    preset: Literal["S", "B", "M", "L"] = "B"
    # Which Haar levels feed the encoder: all three, or e.g. (2, 3) as in Table 21.
    levels: tuple[int, ...] = (1, 2, 3)
    # Haar by default (the paper); other pywt families go through pytorch-wavelets.
    wavelet: str = "haar"
    # Feature aggregation: the UNet of the paper, or a ViT (Table 20).
    aggregator: Literal["unet", "vit"] = "unet"
    # One feature extractor shared by every level (Table 19) instead of one per level.
    shared_extractors: bool = False
    # Residual blocks per channel multiplier in F_l and F_agg: 2 reproduces Tables 2/3 exactly.
    num_res_blocks: int = 2
    dropout: float = 0.0
    # SD-VAE encoder width (used when kind == sdvae): "full" is LDM KL-f8 (34.16 M, Table 3),
    # "small" is VAE-Small of Table 2b (about 6.75 M; paper gap: its widths are not given).
    sd_width: Literal["full", "small"] = "full"


@dataclass(frozen=True)
class DecoderConfig:
    # Table 4: GroupNorm (LDM) or self-modulated convolution (Eq. 3).
    norm: Literal["groupnorm", "smc"] = "groupnorm"
    # LDM KL-f8 decoder: 128 channels, multipliers (1, 2, 4, 4), 3 residual blocks per level,
    # 49.49 M parameters. A smoke run narrows it.
    channels: int = 128
    channel_mult: tuple[int, ...] = (1, 2, 4, 4)
    blocks_per_level: int = 3
    mid_attention: bool = True


@dataclass(frozen=True)
class ModelConfig:
    # Latent channels nz: the paper uses 4 and 12 (the ablation baseline is 16x16x12 at 128).
    latent_channels: int = 4
    # 1x1 quant / post-quant convs around the latent (Table 17: they hurt LiteVAE, off).
    quant_conv: bool = False
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    decoder: DecoderConfig = field(default_factory=DecoderConfig)


# --------------------------------------------------------------------------------------------
# loss
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class LossConfig:
    # Eq. 1: L1 + LPIPS + KL + adversarial. Paper gap: no weights given; LDM KL-f8 values.
    l1_weight: float = 1.0
    lpips_weight: float = 1.0
    kl_weight: float = 1e-6
    # Table 10: the UNet discriminator of Schonfeld et al. (2020); none disables the GAN.
    discriminator: Literal["none", "patchgan", "stylegan", "unet"] = "unet"
    # Paper gap: the discriminator's size is not given; its first layer's width (LDM's PatchGAN
    # has 64 filters; the StyleGAN and UNet discriminators double it per level from there).
    discriminator_channels: int = 64
    # Table 16: hinge and logistic work equally well; hinge is LDM's.
    adversarial_loss: Literal["hinge", "logistic"] = "hinge"
    # Table 8: LiteVAE uses a constant weight instead of the adaptive weight of Esser et al.
    adversarial_weight_mode: Literal["constant", "adaptive"] = "constant"
    # Paper gap: LDM's disc_weight 0.5 (a constant here, the adaptive ratio's factor otherwise).
    adversarial_weight: float = 0.5
    # Paper gap: LDM starts the discriminator at step 50001.
    discriminator_start: int = 50_001
    # Table 9: Charbonnier loss on the level-1 Haar detail bands (paper gap: weight 0.1).
    wavelet_weight: float = 0.1
    charbonnier_eps: float = 1e-3
    # Table 9: L1 between x - G(x) and x_hat - G(x_hat) (paper gap: weight 0.1, 5x5, sigma 1).
    gaussian_weight: float = 0.1
    gaussian_kernel: int = 5
    gaussian_sigma: float = 1.0


# --------------------------------------------------------------------------------------------
# train / data / eval
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Stage:
    """One resolution stage: train ``steps`` steps at ``resolution`` (Table 5: 128 then 256)."""

    resolution: int
    steps: int


@dataclass(frozen=True)
class TrainConfig:
    # Paper: 100k steps for ImageNet-256 and FFHQ (200k for ImageNet-128). 0: no training, the
    # run only measures its model's complexity (Table 3).
    steps: int = 100_000
    # Empty: one stage of ``steps`` at data.resolution. Otherwise the stages run in order and
    # their steps must add up to ``steps`` (Table 5: [{128, 100000}, {256, 50000}]).
    stages: tuple[Stage, ...] = ()
    # Paper: batch 16 (on two GPUs), Adam lr 1e-4, betas (0.5, 0.9), for both networks.
    batch_size: int = 16
    lr: float = 1e-4
    betas: tuple[float, ...] = (0.5, 0.9)
    discriminator_lr: float = 1e-4
    # auto: bf16 autocast on CUDA, fp32 on CPU.
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    checkpoint_every: int = _not_identity(1000)
    log_every: int = _not_identity(50)
    val_every: int = _not_identity(1000)
    val_images: int = _not_identity(64)
    num_workers: int = _not_identity(4)


@dataclass(frozen=True)
class DataConfig:
    # samples: random crops of the photographs shipped inside scikit-image (no download);
    # folder: an image folder (recursive; jpg, png, webp) at ``path``.
    kind: Literal["samples", "folder"] = "samples"
    # The dataset's name is part of the run id; its path is not (moving it does not retrain).
    # With a split list, let the name say which split (e.g. "ffhq-train60k").
    name: str = "samples"
    path: str = _not_identity("")
    # Optional text file of image paths relative to ``path``, one a line (the usual split files,
    # e.g. FFHQ's first 60k, CelebA-HQ's train list); empty: every image below ``path``.
    list: str = _not_identity("")
    resolution: int = 256
    hflip: bool = True
    # Fraction of the images held out for validation and evaluation (deterministic split).
    val_fraction: float = 0.1


@dataclass(frozen=True)
class EvalConfig:
    """The evaluation protocol: not part of the run id; it has an id of its own."""

    # The evaluation set, apart from the training data (LDM: the ImageNet validation folder).
    # Empty path: the training folder's own hold-out (data.val_fraction), or the held-out strips
    # of the sample photos. ``name`` names the set in the protocol id, with a digest of its file
    # list; its location is not part of it (moving the folder changes nothing).
    path: str = ""
    list: str = ""
    name: str = ""
    # LDM convention: the 50k validation images, shorter side resized, center crop. "all": the
    # whole evaluation set.
    num_images: int | Literal["all"] = 50_000
    # None: data.resolution.
    resolution: int | None = None
    metrics: tuple[str, ...] = ("rfid", "psnr", "ssim", "lpips")
    # Reconstructions are decoded from the posterior mean (LDM) or a sample.
    posterior: Literal["mean", "sample"] = "mean"
    lpips_net: Literal["alex", "vgg"] = "alex"
    batch_size: int = _not_identity(32)


METRICS = ("rfid", "psnr", "ssim", "lpips")


@dataclass(frozen=True)
class ExperimentConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    data: DataConfig = field(default_factory=DataConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    seed: int = 0


# --------------------------------------------------------------------------------------------
# named presets (Tables 2, 3) and the model builders' arguments, from study.models.registry
# --------------------------------------------------------------------------------------------
def _preset_overrides(p: registry.Preset) -> dict[str, Any]:
    """What ``preset: NAME`` sets: encoder kind and size; quant convs only where kept (SD-VAE, as LDM)."""
    size_key = "model.encoder.preset" if p.kind == "litevae" else "model.encoder.sd_width"
    return {"model.encoder.kind": p.kind, size_key: p.size} | ({"model.quant_conv": True} if p.quant_conv else {})


MODEL_PRESETS: dict[str, dict[str, Any]] = {name: _preset_overrides(p) for name, p in registry.PRESETS.items()}


def model_preset(name: str) -> ExperimentConfig:
    """The default experiment with the named model preset applied."""
    if name not in MODEL_PRESETS:
        raise ConfigError("preset", name, ", ".join(MODEL_PRESETS))
    return apply_overrides(ExperimentConfig(), MODEL_PRESETS[name])


def autoencoder_args(model: ModelConfig) -> AutoencoderArgs:
    """What ``models.autoencoder.build_autoencoder`` takes: the size's widths from the registry, options on top."""
    enc, dec = model.encoder, model.decoder
    encoder: EncoderArgs = (
        dataclasses.replace(registry.sd_encoder_args(enc.sd_width), dropout=enc.dropout) if enc.kind == "sdvae"
        else LiteVAEArgs(registry.litevae_widths(enc.preset), levels=tuple(enc.levels), wavelet=enc.wavelet,
                         aggregator=enc.aggregator, shared_extractors=enc.shared_extractors,
                         num_res_blocks=enc.num_res_blocks, dropout=enc.dropout))
    decoder = DecoderArgs(dec.channels, tuple(dec.channel_mult), dec.blocks_per_level, dec.mid_attention, dec.norm)
    return AutoencoderArgs(encoder, model.latent_channels, model.quant_conv, decoder)


# --------------------------------------------------------------------------------------------
# overrides: dotted key -> typed value
# --------------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=None)  # resolving string annotations is slow; classes are fixed
def _hints(cls: type) -> dict[str, Any]:
    return get_type_hints(cls)


def config_keys(cls: type = ExperimentConfig, prefix: str = "") -> dict[str, Any]:
    """Every settable dotted key below ``cls`` with its type."""
    return dict(_config_keys(cls, prefix))


@functools.lru_cache(maxsize=None)
def _config_keys(cls: type, prefix: str) -> dict[str, Any]:
    keys: dict[str, Any] = {}
    for name, tp in _hints(cls).items():
        if dataclasses.is_dataclass(tp):
            keys.update(_config_keys(tp, f"{prefix}{name}."))
        else:
            keys[f"{prefix}{name}"] = tp
    return keys


def suggest(word: str, choices: typing.Iterable[str]) -> str:
    """' (did you mean X?)' when a choice is close to ``word``, else ''."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def describe_type(tp: Any) -> str:
    origin = get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in get_args(tp))
    if origin in (typing.Union, types.UnionType):
        return " or ".join(describe_type(a) for a in get_args(tp))
    if origin is tuple:
        return f"a list of {describe_type(get_args(tp)[0])}"
    if tp is type(None):
        return "null"
    if dataclasses.is_dataclass(tp):
        return "a mapping with keys " + ", ".join(_hints(tp))
    return {int: "an integer", float: "a number", bool: "true or false", str: "a string"}.get(
        tp, str(tp))


def coerce(key: str, value: Any, tp: Any) -> Any:
    """``value`` as type ``tp``, or ConfigError. Integral numbers given for a float become
    floats, lists become tuples, so equal values always compare (and hash) equal."""
    origin = get_origin(tp)
    def bad() -> ConfigError:  # built only when raised: describing the type is not free
        return ConfigError(key, value, describe_type(tp))

    if origin is Literal:
        if value in get_args(tp) and type(value) in {type(a) for a in get_args(tp)}:
            return value
        raise bad()
    if origin in (typing.Union, types.UnionType):
        for option in get_args(tp):
            try:
                return coerce(key, value, option)
            except ConfigError:
                pass
        raise bad()
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise bad()
        (item,) = [a for a in get_args(tp) if a is not Ellipsis]
        return tuple(coerce(f"{key}[{i}]", v, item) for i, v in enumerate(value))
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):  # already coerced (a study file's values are checked twice)
            return value
        if not isinstance(value, dict):
            raise bad()
        hints = _hints(tp)
        for k in value:
            if k not in hints:
                raise ConfigError(f"{key}.{k}", value[k], "keys " + ", ".join(hints) + suggest(str(k), hints))
        missing = [k for k, f in ((f.name, f) for f in dataclasses.fields(tp))
                   if k not in value and f.default is dataclasses.MISSING
                   and f.default_factory is dataclasses.MISSING]
        if missing:
            raise ConfigError(f"{key}.{missing[0]}", None, describe_type(hints[missing[0]]))
        return tp(**{k: coerce(f"{key}.{k}", v, hints[k]) for k, v in value.items()})
    if tp is type(None):
        if value is None:
            return None
        raise bad()
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise bad()
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise bad()
        if isinstance(value, float) and not value.is_integer():
            raise bad()
        return int(value)
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise bad()
        return float(value)
    if tp is str:
        if isinstance(value, str):
            return value
        raise bad()
    raise TypeError(f"unsupported config type {tp!r} at {key}")


def apply_overrides(cfg: ExperimentConfig, overrides: dict[str, Any]) -> ExperimentConfig:
    """A copy of ``cfg`` with each dotted key set to its (type-checked) value."""
    keys = _config_keys(ExperimentConfig, "")
    changes: dict[str, Any] = {}  # nested {section: {field: value}}: one replace per section
    for key, value in overrides.items():
        if key not in keys:
            raise ConfigError(key, value, "a key of the experiment config" + suggest(key, keys))
        *sections, name = key.split(".")
        node = changes
        for section in sections:
            node = node.setdefault(section, {})
        node[name] = coerce(key, value, keys[key])
    return _set(cfg, changes)


def _set(obj: Any, changes: dict[str, Any]) -> Any:
    """A copy of dataclass ``obj`` with nested ``changes`` (a dict marks a section)."""
    return dataclasses.replace(obj, **{name: _set(getattr(obj, name), v) if isinstance(v, dict) else v
                                       for name, v in changes.items()})


def get_value(cfg: Any, key: str) -> Any:
    for part in key.split("."):
        cfg = getattr(cfg, part)
    return cfg


# --------------------------------------------------------------------------------------------
# checks across fields
# --------------------------------------------------------------------------------------------
def validate(cfg: ExperimentConfig) -> ExperimentConfig:
    """Checks no single field's type can express; raises ConfigError naming the key."""
    enc, dec, train, data = cfg.model.encoder, cfg.model.decoder, cfg.train, cfg.data
    if not enc.levels or len(set(enc.levels)) != len(enc.levels) or not set(enc.levels) <= {1, 2, 3}:
        raise ConfigError("model.encoder.levels", list(enc.levels),
                          "a non-empty list of distinct levels from 1, 2, 3")
    if list(enc.levels) != sorted(enc.levels):
        raise ConfigError("model.encoder.levels", list(enc.levels), "levels in increasing order")
    for key in ("model.latent_channels", "model.encoder.num_res_blocks", "model.decoder.channels",
                "model.decoder.blocks_per_level", "train.batch_size",
                "train.checkpoint_every", "train.log_every", "train.val_every",
                "eval.batch_size", "loss.gaussian_kernel", "loss.discriminator_channels"):
        if get_value(cfg, key) < 1:
            raise ConfigError(key, get_value(cfg, key), "an integer >= 1")
    if train.steps < 0:
        raise ConfigError("train.steps", train.steps, "an integer >= 0 (0: measure complexity only, no training)")
    if not dec.channel_mult or min(dec.channel_mult) < 1:
        raise ConfigError("model.decoder.channel_mult", list(dec.channel_mult),
                          "a non-empty list of integers >= 1")
    if 2 ** (len(dec.channel_mult) - 1) != 8:
        raise ConfigError("model.decoder.channel_mult", list(dec.channel_mult),
                          "4 levels (the decoder upsamples by 8 = 2^(levels-1))")
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
        raise ConfigError("train.stages", [dataclasses.asdict(s) for s in train.stages],
                          f"stages whose steps add up to train.steps ({train.steps})")
    unknown = [m for m in cfg.eval.metrics if m not in METRICS]
    if unknown or len(set(cfg.eval.metrics)) != len(cfg.eval.metrics):
        raise ConfigError("eval.metrics", list(cfg.eval.metrics), "distinct names from " + ", ".join(METRICS))
    if cfg.eval.num_images != "all" and cfg.eval.num_images < 1:
        raise ConfigError("eval.num_images", cfg.eval.num_images, "an integer >= 1, or 'all'")
    if cfg.eval.path and not cfg.eval.name:
        raise ConfigError("eval.name", cfg.eval.name, "the evaluation set's name when eval.path is set")
    if cfg.eval.list and not cfg.eval.path:
        raise ConfigError("eval.list", cfg.eval.list, "a split list only together with eval.path")
    if data.list and data.kind != "folder":
        raise ConfigError("data.list", data.list, "a split list only when data.kind is 'folder'")
    if data.kind == "folder" and not data.path:
        raise ConfigError("data.path", data.path, "the image folder's path when data.kind is 'folder'")
    return cfg


def stages(cfg: ExperimentConfig) -> tuple[Stage, ...]:
    """The resolution stages of a run (one stage at data.resolution when none are set)."""
    return cfg.train.stages or (Stage(cfg.data.resolution, cfg.train.steps),)


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
