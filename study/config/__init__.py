"""The typed experiment config: the sections with the paper's defaults (``sections``), dotted-key
overrides (``overrides``), checks across fields (``checks``) and a run's identity (``identity``).
Everything is re-exported here: ``from study import config`` is how the harness reads it."""

from study.config.checks import eval_resolution, stages, validate
from study.config.identity import canonical_json, from_dict, identity, identity_hash, to_dict
from study.config.overrides import apply_overrides, coerce, config_keys, describe_type, get_value, model_preset, suggest
from study.config.sections import (
    METRICS,
    MODEL_PRESETS,
    ConfigError,
    DataConfig,
    DecoderConfig,
    DiffusionConfig,
    EncoderConfig,
    EvalConfig,
    ExperimentConfig,
    LossConfig,
    ModelConfig,
    Stage,
    TrainConfig,
    autoencoder_args,
)

__all__ = [
    "METRICS",
    "MODEL_PRESETS",
    "ConfigError",
    "DataConfig",
    "DecoderConfig",
    "DiffusionConfig",
    "EncoderConfig",
    "EvalConfig",
    "ExperimentConfig",
    "LossConfig",
    "ModelConfig",
    "Stage",
    "TrainConfig",
    "apply_overrides",
    "autoencoder_args",
    "canonical_json",
    "coerce",
    "config_keys",
    "describe_type",
    "eval_resolution",
    "from_dict",
    "get_value",
    "identity",
    "identity_hash",
    "model_preset",
    "stages",
    "suggest",
    "to_dict",
    "validate",
]
