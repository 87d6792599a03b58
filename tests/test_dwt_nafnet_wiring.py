"""The DWT encoders (Tables 11, 12) and the NAFNet extractor (Table 18) wired into the config, the
run id, the builders, the KL term, the trainer and the complexity counts."""

from __future__ import annotations

import pytest
import torch

from study import config as cfgmod
from study import store
from study.autoencoder.loop import train
from study.autoencoder.losses import kl_loss
from study.kinds.registry import run_id
from study.measure import complexity
from study.models.autoencoder import build_autoencoder
from study.models.dwt_encoder import Deterministic, DWTEncoder
from study.models.nafnet import NAFNetExtractor
from study.trainer.context import Context
from tests.launch_helpers import TINY_MODEL

DWT = {"model.encoder.kind": "dwt", "model.latent_channels": 12}


def cfg(preset: str | None = None, **overrides) -> cfgmod.ExperimentConfig:
    """The default config with ``preset``'s settings (a key of cfgmod.MODEL_PRESETS), then ``overrides``."""
    first = cfgmod.MODEL_PRESETS[preset] if preset else {}
    return cfgmod.validate(cfgmod.apply_overrides(cfgmod.ExperimentConfig(), first | overrides))


# --------------------------------------------------------------------------------------------
# config checks and the run id
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "overrides, key",
    [
        ({"model.encoder.kind": "dwt"}, "model.latent_channels"),  # nz 4
        ({"model.encoder.kind": "dwt2", "model.latent_channels": 12}, "model.latent_channels"),
        (DWT | {"model.quant_conv": True}, "model.quant_conv"),
        ({"preset": "SD-VAE", "model.encoder.extractor": "nafnet"}, "model.encoder.extractor"),
        (DWT | {"model.encoder.extractor": "nafnet"}, "model.encoder.extractor"),
        ({"eval.mmd_repeats": 1}, "eval.mmd_repeats"),
        ({"eval.mmd_samples": 1}, "eval.mmd_samples"),
        ({"eval.mmd_bandwidths": [25.0, 0.0]}, "eval.mmd_bandwidths"),
    ],
)
def test_invalid_combinations_name_their_key(overrides, key):
    with pytest.raises(cfgmod.ConfigError) as e:
        cfg(**dict(overrides))
    assert e.value.key == key


def test_run_ids_of_existing_configs_stay_and_new_fields_count_where_used():
    assert run_id(cfgmod.ExperimentConfig()) == "be8329899161"  # the id before the new fields (since issue 20)
    assert run_id(cfg(**{"model.encoder.extractor": "unet"})) == "be8329899161"
    assert run_id(cfg(**{"model.encoder.extractor": "nafnet"})) != "be8329899161"
    assert run_id(cfg(**{"eval.latent_stats": True})) == "be8329899161"  # eval: not identity
    dwt = run_id(cfg(**DWT))
    # a fixed latent has no network: LiteVAE's and SD-VAE's fields do not make a new run
    for key, value in [
        ("model.encoder.preset", "L"),
        ("model.encoder.sd_width", "small"),
        ("model.encoder.levels", [2, 3]),
        ("model.encoder.dropout", 0.1),
    ]:
        assert run_id(cfg(**DWT | {key: value})) == dwt, key
    assert run_id(cfg(**{"model.encoder.kind": "dwt2", "model.latent_channels": 48})) != dwt
    # SD-VAE ignores the LiteVAE-only extractor field
    assert "extractor" not in cfgmod.identity(cfg(preset="SD-VAE"))["model"]["encoder"]


# --------------------------------------------------------------------------------------------
# builders, KL, training, complexity
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind, nz", [("dwt", 12), ("dwt2", 48)])
def test_dwt_autoencoder_encodes_to_its_fixed_latent_with_zero_kl(kind, nz):
    c = cfg(**TINY_MODEL | {"model.encoder.kind": kind, "model.latent_channels": nz})
    ae = build_autoencoder(cfgmod.autoencoder_args(c.model))
    assert isinstance(ae.encoder, DWTEncoder) and not list(ae.encoder.parameters())
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    posterior = ae.encode(x)
    assert isinstance(posterior, Deterministic) and posterior.mean.shape == (2, nz, 4, 4)
    torch.testing.assert_close(posterior.mean, DWTEncoder(kind)(x))
    assert kl_loss(posterior, x[0].numel()).item() == 0.0
    encoder_params, decoder_params = complexity.parameter_counts(c.model)
    assert encoder_params == 0 and decoder_params > 0
    assert complexity.encoder_macs(c.model, 32) == 0


def test_dwt_autoencoder_trains_its_decoder_only(tmp_path):
    c = cfg(
        **TINY_MODEL
        | DWT
        | {
            "loss.discriminator": "none",
            "data.kind": "samples",
            "data.resolution": 32,
            "train.steps": 2,
            "train.batch_size": 4,
            "train.num_workers": 0,
            "train.log_every": 1,
            "train.val_every": 2,
            "train.val_images": 8,
            "train.checkpoint_every": 2,
        }
    )
    folder = store.init_run(tmp_path, c, run_id(c))
    summary = train(c, folder, ctx=Context(torch.device("cpu")), progress=False)
    history = [r for r in store.read_jsonl(folder / "metrics.jsonl") if "loss" in r]
    assert summary["step"] == 2 and [r["step"] for r in history] == [1, 2]
    assert all(r["kl"] == 0.0 and r["loss"] > 0.0 for r in history)


def test_nafnet_litevae_b_builds_with_the_pinned_encoder_size():
    unet = cfg(preset="LiteVAE-B")
    nafnet = cfg(**{"preset": "LiteVAE-B", "model.encoder.extractor": "nafnet"})
    with torch.device("meta"):
        ae = build_autoencoder(cfgmod.autoencoder_args(nafnet.model))
    assert len(ae.encoder.extractors) == 3
    assert all(isinstance(f, NAFNetExtractor) for f in ae.encoder.extractors)
    n_unet, _ = complexity.parameter_counts(unet.model)
    n_nafnet, _ = complexity.parameter_counts(nafnet.model)
    # three extractors, each NAFNet 1,692,556 vs UNet 1,686,220 parameters (study/models/nafnet.py)
    assert n_nafnet - n_unet == 3 * (1_692_556 - 1_686_220)
    assert n_nafnet == 6_769_644  # the UNet aggregator's plain conv head: 64 fewer than its GroupNorm head
    x = torch.rand(1, 3, 32, 32) * 2 - 1
    small = build_autoencoder(cfgmod.autoencoder_args(cfg(**TINY_MODEL | {"model.encoder.extractor": "nafnet"}).model))
    assert small.encode(x).mean.shape == (1, 4, 4, 4)
