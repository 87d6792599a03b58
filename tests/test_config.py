"""Config identity: what changes a run id and what does not; the dict round trip; the presets and
the model builders' arguments the config derives from the model registry."""

from __future__ import annotations

import dataclasses
import math
import subprocess
import sys
import typing
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from study import config as cfgmod
from study.kinds.registry import run_id
from study.models import registry
from study.models.arguments import LiteVAEArgs, SDEncoderArgs

SIX = ("LiteVAE-S", "LiteVAE-B", "LiteVAE-M", "LiteVAE-L", "SD-VAE", "VAE-Small")


def rid(**overrides) -> str:
    """The run id of the default config with dotted overrides (``__`` stands for ``.``)."""
    return run_id(
        cfgmod.validate(
            cfgmod.apply_overrides(cfgmod.ExperimentConfig(), {k.replace("__", "."): v for k, v in overrides.items()})
        )
    )


def test_run_id_is_12_hex_digits_and_deterministic():
    a, b = run_id(cfgmod.ExperimentConfig()), run_id(cfgmod.ExperimentConfig())
    assert a == b and len(a) == 12 and int(a, 16) >= 0


def test_key_order_does_not_change_the_id():
    overrides = {
        "model.decoder.norm": "smc",
        "train.lr": 2e-4,
        "loss.kl_weight": 1e-5,
        "seed": 3,
        "model.encoder.levels": [2, 3],
        "data.resolution": 128,
    }
    forward = cfgmod.apply_overrides(cfgmod.ExperimentConfig(), overrides)
    backward = cfgmod.apply_overrides(cfgmod.ExperimentConfig(), dict(reversed(list(overrides.items()))))
    assert forward == backward
    assert run_id(forward) == run_id(backward) != run_id(cfgmod.ExperimentConfig())


def test_canonical_json_sorts_keys():
    assert cfgmod.canonical_json({"b": 1, "a": {"d": 2, "c": 3}}) == cfgmod.canonical_json(
        {"a": {"c": 3, "d": 2}, "b": 1}
    )
    assert cfgmod.canonical_json({"b": 1, "a": 2}) == '{"a":2,"b":1}'


@pytest.mark.parametrize(
    "key, one, other",
    [
        ("loss.l1_weight", 1, 1.0),  # int for a float field
        ("train.lr", 1e-4, 0.0001),
        ("loss.kl_weight", 1e-6, 0.000001),
        ("train.steps", 500, 500.0),  # integral float for an int field
        ("train.betas", [0.5, 0.9], (0.5, 0.9)),
        ("loss.gaussian_sigma", 2, 2.0),
    ],
)
def test_number_spellings_are_one_id(key, one, other):
    a = cfgmod.apply_overrides(cfgmod.ExperimentConfig(), {key: one})
    b = cfgmod.apply_overrides(cfgmod.ExperimentConfig(), {key: other})
    assert a == b and run_id(a) == run_id(b)
    assert type(cfgmod.get_value(a, key)) is type(cfgmod.get_value(b, key))


def test_coerced_types_are_canonical():
    cfg = cfgmod.apply_overrides(cfgmod.ExperimentConfig(), {"loss.l1_weight": 1, "train.steps": 500.0})
    assert type(cfg.loss.l1_weight) is float and type(cfg.train.steps) is int
    assert cfgmod.canonical_json(cfgmod.identity(cfg)).count('"l1_weight":1.0') == 1


@pytest.mark.parametrize(
    "key, a, b",
    [
        ("train.lr", 1e-4, 2e-4),
        ("seed", 0, 1),
        ("model.decoder.norm", "groupnorm", "smc"),
        ("data.name", "samples", "imagenet"),
        ("data.resolution", 128, 256),
        ("train.steps", 10, 11),
        ("model.encoder.levels", [1, 2, 3], [2, 3]),
        ("loss.discriminator", "unet", "patchgan"),
    ],
)
def test_identity_fields_change_the_id(key, a, b):
    assert rid(**{key.replace(".", "__"): a}) != rid(**{key.replace(".", "__"): b})


@pytest.mark.parametrize(
    "key, value",
    [
        ("train.log_every", 7),
        ("train.checkpoint_every", 3),
        ("train.val_every", 9),
        ("train.val_images", 2),
        ("train.num_workers", 0),
        ("data.path", "/somewhere/else"),
        ("eval.num_images", 16),
        ("eval.posterior", "sample"),
        ("eval.batch_size", 4),
        ("eval.resolution", 64),
    ],
)
def test_non_identity_fields_keep_the_id(key, value):
    cfg = cfgmod.apply_overrides(cfgmod.ExperimentConfig(), {key: value})
    assert cfg != cfgmod.ExperimentConfig()  # the field really changed
    assert run_id(cfg) == run_id(cfgmod.ExperimentConfig())


def test_non_identity_fields_are_kept_by_to_dict_and_dropped_from_identity():
    full, ident = cfgmod.to_dict(cfgmod.ExperimentConfig()), cfgmod.identity(cfgmod.ExperimentConfig())
    assert "log_every" in full["train"] and "path" in full["data"] and "eval" in full
    assert "log_every" not in ident["train"] and "path" not in ident["data"] and "eval" not in ident
    assert "lr" in ident["train"] and "name" in ident["data"] and "seed" in ident


def test_sdvae_ignores_litevae_only_fields():
    sd = {"model.encoder.kind": "sdvae"}
    base = run_id(cfgmod.apply_overrides(cfgmod.ExperimentConfig(), sd))
    for key, value in [
        ("model.encoder.preset", "S"),
        ("model.encoder.levels", [2, 3]),
        ("model.encoder.aggregator", "vit"),
        ("model.encoder.wavelet", "db2"),
        ("model.encoder.shared_extractors", True),
        ("model.encoder.num_res_blocks", 3),
    ]:
        cfg = cfgmod.apply_overrides(cfgmod.ExperimentConfig(), sd | {key: value})
        assert run_id(cfg) == base, key
        lite = cfgmod.apply_overrides(cfgmod.ExperimentConfig(), {key: value})  # litevae: the field counts
        assert run_id(lite) != run_id(cfgmod.ExperimentConfig()), key
    # and the other way round: LiteVAE ignores the SD-VAE width, SD-VAE does not
    assert rid(model__encoder__sd_width="small") == rid()
    assert rid(model__encoder__kind="sdvae", model__encoder__sd_width="small") != base


def test_presets_crossed_with_sdvae_are_one_run():
    ids = {
        run_id(cfgmod.apply_overrides(cfgmod.model_preset(p), {"model.encoder.kind": "sdvae"}))
        for p in ("LiteVAE-S", "LiteVAE-B", "LiteVAE-M", "LiteVAE-L")
    }
    assert len(ids) == 1
    lite = {run_id(cfgmod.model_preset(p)) for p in ("LiteVAE-S", "LiteVAE-B", "LiteVAE-M", "LiteVAE-L")}
    assert len(lite) == 4


def test_disabled_discriminator_ignores_gan_settings():
    off = rid(loss__discriminator="none")
    assert (
        rid(
            loss__discriminator="none",
            loss__adversarial_loss="logistic",
            loss__adversarial_weight=3,
            loss__discriminator_start=1,
            train__discriminator_lr=0.5,
        )
        == off
    )
    assert rid(loss__adversarial_loss="logistic") != rid()


# --------------------------------------------------------------------------------------------
# round trip
# --------------------------------------------------------------------------------------------
ROUND_TRIP = [
    cfgmod.ExperimentConfig(),
    cfgmod.model_preset("SD-VAE"),
    cfgmod.model_preset("VAE-Small"),
    cfgmod.apply_overrides(
        cfgmod.ExperimentConfig(),
        {
            "train.steps": 150_000,
            "train.stages": [{"resolution": 128, "steps": 100_000}, {"resolution": 256, "steps": 50_000}],
            "eval.resolution": 256,
            "model.encoder.levels": [2, 3],
            "data.kind": "folder",
            "data.path": "/d",
            "eval.metrics": ["psnr"],
            "train.betas": [0.0, 0.99],
            "seed": 7,
        },
    ),
]


@pytest.mark.parametrize("cfg", ROUND_TRIP, ids=["default", "sd-vae", "vae-small", "stages"])
def test_from_dict_to_dict_round_trip(cfg):
    back = cfgmod.from_dict(cfgmod.to_dict(cfg))
    assert back == cfg and run_id(back) == run_id(cfg)
    assert all(isinstance(s, cfgmod.Stage) for s in back.train.stages)
    # through YAML as well (config.yaml in a run folder)
    again = cfgmod.from_dict(yaml.safe_load(yaml.safe_dump(cfgmod.to_dict(cfg))))
    assert again == cfg


def test_to_dict_is_plain_data():
    d = cfgmod.to_dict(ROUND_TRIP[-1])
    assert d["train"]["stages"] == [{"resolution": 128, "steps": 100_000}, {"resolution": 256, "steps": 50_000}]
    assert d["model"]["encoder"]["levels"] == [2, 3] and isinstance(d["train"]["betas"], list)
    assert yaml.safe_load(yaml.safe_dump(d)) == d


def test_from_dict_rejects_unknown_and_invalid():
    d = cfgmod.to_dict(cfgmod.ExperimentConfig())
    d["model"]["decoder"]["nrom"] = "smc"
    with pytest.raises(cfgmod.ConfigError) as info:
        cfgmod.from_dict(d)
    assert info.value.key == "config.model.decoder.nrom" and "did you mean 'norm'" in str(info.value)
    d = cfgmod.to_dict(cfgmod.ExperimentConfig())
    d["data"]["resolution"] = 30
    with pytest.raises(cfgmod.ConfigError) as info:
        cfgmod.from_dict(d)
    assert info.value.key == "data.resolution"


_OVERRIDES = st.fixed_dictionaries(
    {},
    optional={
        "model.decoder.norm": st.sampled_from(["groupnorm", "smc"]),
        "model.encoder.kind": st.sampled_from(["litevae", "sdvae"]),
        "model.encoder.preset": st.sampled_from(["S", "B", "M", "L"]),
        "model.encoder.levels": st.sampled_from([[1, 2, 3], [2, 3], [3], [1, 3]]),
        "loss.discriminator": st.sampled_from(["none", "unet", "patchgan"]),
        "loss.kl_weight": st.floats(1e-8, 1.0),
        "train.lr": st.floats(1e-6, 1e-2),
        "train.steps": st.integers(1, 10**6),
        "train.log_every": st.integers(1, 1000),
        "data.resolution": st.integers(1, 64).map(lambda n: 8 * n),
        "seed": st.integers(0, 2**31),
    },
)


@settings(max_examples=40, deadline=None)
@given(_OVERRIDES)
def test_round_trip_and_order_property(overrides):
    cfg = cfgmod.validate(cfgmod.apply_overrides(cfgmod.ExperimentConfig(), overrides))
    assert cfgmod.from_dict(cfgmod.to_dict(cfg)) == cfg
    shuffled = cfgmod.apply_overrides(cfgmod.ExperimentConfig(), dict(reversed(list(overrides.items()))))
    assert run_id(shuffled) == run_id(cfg)
    # float fields given as an integral-valued int and as its float are one config
    if "train.steps" in overrides:
        assert cfgmod.apply_overrides(cfg, {"train.steps": float(overrides["train.steps"])}) == cfg


def test_non_finite_numbers_are_rejected():
    for bad in (math.nan, math.inf):
        with pytest.raises(cfgmod.ConfigError):
            cfgmod.apply_overrides(cfgmod.ExperimentConfig(), {"train.lr": bad})


@pytest.mark.parametrize(
    "key, value",
    [
        ("train.steps", "100"),
        ("train.steps", True),
        ("train.steps", 1.5),
        ("data.hflip", 1),
        ("model.decoder.norm", "batchnorm"),
        ("model.decoder.norm", 1),
        ("train.lr", "1e-4"),
        ("model.encoder.levels", 3),
        ("eval.resolution", "x"),
    ],
)
def test_coerce_rejects_wrong_types(key, value):
    with pytest.raises(cfgmod.ConfigError) as info:
        cfgmod.apply_overrides(cfgmod.ExperimentConfig(), {key: value})
    assert info.value.key.startswith(key) and info.value.value is not None


def test_unknown_key_suggests():
    with pytest.raises(cfgmod.ConfigError) as info:
        cfgmod.apply_overrides(cfgmod.ExperimentConfig(), {"train.batchsize": 3})
    assert "did you mean 'train.batch_size'" in str(info.value)


def test_config_keys_is_a_fresh_copy():
    keys = cfgmod.config_keys()
    assert "model.decoder.norm" in keys and "seed" in keys
    keys.clear()
    assert "model.decoder.norm" in cfgmod.config_keys()
    cfgmod.apply_overrides(cfgmod.ExperimentConfig(), {"model.decoder.norm": "smc"})  # still works


def test_apply_overrides_leaves_the_input_alone():
    cfg = cfgmod.ExperimentConfig()
    out = cfgmod.apply_overrides(
        cfg, {"model.decoder.norm": "smc", "model.decoder.channels": 64, "model.latent_channels": 12}
    )
    assert cfg == cfgmod.ExperimentConfig()
    assert (out.model.decoder.norm, out.model.decoder.channels, out.model.latent_channels) == ("smc", 64, 12)
    assert out.model.encoder == cfg.model.encoder and out.loss == cfg.loss
    assert dataclasses.replace(out) == out


# --------------------------------------------------------------------------------------------
# presets and the model builders' arguments, from study.models.registry
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", SIX)
def test_config_presets_compose_the_registry_models(name):
    assert cfgmod.autoencoder_args(cfgmod.model_preset(name).model) == registry.preset_args(name)


def test_preset_run_ids_did_not_change():
    """The ids the registry kept, as issue 20's recipe (the plain conv head, the fresh
    discriminator input) moved them (tests/test_recipe_identity.py)."""
    assert {n: run_id(cfgmod.model_preset(n)) for n in SIX} == {
        "LiteVAE-S": "30af5564452c",
        "LiteVAE-B": "be8329899161",
        "LiteVAE-M": "7da6c7298e13",
        "LiteVAE-L": "cea0cb896b4e",
        "SD-VAE": "8c90c166c128",
        "VAE-Small": "718f8d10eb04",
    }


def test_config_options_reach_the_builder_arguments():
    cfg = cfgmod.apply_overrides(
        cfgmod.model_preset("LiteVAE-M"),
        {
            "model.encoder.levels": [2, 3],
            "model.encoder.aggregator": "vit",
            "model.latent_channels": 12,
            "model.decoder.norm": "smc",
            "model.quant_conv": True,
        },
    ).model
    args = cfgmod.autoencoder_args(cfg)
    assert isinstance(args.encoder, LiteVAEArgs)
    assert args.encoder.widths == registry.litevae_widths("M")
    assert (args.encoder.levels, args.encoder.aggregator) == ((2, 3), "vit")
    assert (args.latent_channels, args.quant_conv, args.decoder.norm) == (12, True, "smc")
    sd = cfgmod.autoencoder_args(
        cfgmod.apply_overrides(cfgmod.model_preset("VAE-Small"), {"model.encoder.dropout": 0.1}).model
    )
    assert sd.encoder == SDEncoderArgs(64, (1, 1, 3, 4), dropout=0.1)


def test_a_size_the_registry_does_not_hold_is_a_named_error():
    bad = cfgmod.ModelConfig(encoder=cfgmod.EncoderConfig(preset="XL"))  # type: ignore[arg-type]  # not coerced
    with pytest.raises(registry.UnknownPresetError, match="litevae size 'XL'; allowed: S, B, M, L"):
        cfgmod.autoencoder_args(bad)
    with pytest.raises(cfgmod.ConfigError, match="model.encoder.preset"):  # a study file's value is checked
        cfgmod.apply_overrides(cfgmod.ExperimentConfig(), {"model.encoder.preset": "XL"})


def test_config_sizes_are_the_registry_sizes():
    hints = typing.get_type_hints(cfgmod.EncoderConfig)
    assert typing.get_args(hints["preset"]) == registry.sizes("litevae")
    assert typing.get_args(hints["sd_width"]) == registry.sizes("sdvae")


def test_naming_a_model_does_not_load_torch():
    """The config and the registry describe models without importing torch (the CLI's plan)."""
    code = "import sys, study.config, study.models.registry; assert 'torch' not in sys.modules, 'torch loaded'"
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=Path(__file__).resolve().parents[1],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
