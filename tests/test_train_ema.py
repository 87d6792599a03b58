"""The trainer's EMA (train.ema_decay), LDL (loss.ldl_weight, Table 15) and ESRGAN perceptual loss
(loss.perceptual: esrgan, Table 14), for real on the CPU with tiny shapes and a few steps."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from study import config, store
from study.autoencoder import perceptual
from study.autoencoder.loop import train
from study.autoencoder.steps import MissingEMA
from study.autoencoder.trained import load_trained
from study.kinds.registry import run_id
from study.measure import weights as weight_files
from study.measure.weights import MissingWeightsError
from study.trainer.checkpoints import CHECKPOINT, load_checkpoint
from study.trainer.context import Context
from tests.launch_helpers import TINY_MODEL

CPU = Context(torch.device("cpu"))

TINY = TINY_MODEL | {
    # one Haar level and one residual block per level keep a step well under a second
    "model.encoder.levels": [3],
    "model.encoder.num_res_blocks": 1,
    "loss.discriminator": "none",
    "data.kind": "samples",
    "data.resolution": 32,
    "train.batch_size": 2,
    "train.num_workers": 0,
    "train.steps": 4,
    "train.checkpoint_every": 2,
    "train.log_every": 1,
    "train.val_every": 1000,
    "train.val_images": 2,
    "train.lr": 1e-3,
}


def tiny(**overrides) -> config.ExperimentConfig:
    return config.validate(config.apply_overrides(config.ExperimentConfig(), TINY | overrides))


def _terms(folder: Path) -> list[dict]:
    return [r for r in store.read_jsonl(folder / "metrics.jsonl") if "loss" in r]


@pytest.fixture
def no_weights(tmp_path, monkeypatch) -> Path:
    """An empty weights directory and no custom weight files: nothing can be loaded."""
    folder = tmp_path / "weights"
    monkeypatch.setenv(weight_files.WEIGHTS_ENV, str(folder))
    for w in weight_files.REGISTRY.values():
        monkeypatch.delenv(w.override_env, raising=False)
    return folder


@pytest.fixture
def random_vgg19(no_weights, tmp_path, monkeypatch) -> Path:
    """A VGG19 ``features.*`` state dict with random weights as $LITEVAE_VGG19_WEIGHTS."""
    torch.manual_seed(0)
    state = {f"features.{k}": v for k, v in perceptual.vgg19_features_to_conv5_4().state_dict().items()}
    path = tmp_path / "vgg19-random.pth"
    torch.save(state, path)
    monkeypatch.setenv(weight_files.REGISTRY["vgg19"].override_env, str(path))
    return path


def test_ema_survives_checkpoint_and_resume_bitwise(tmp_path):
    cfg = tiny(**{"train.ema_decay": 0.9})
    straight = store.init_run(tmp_path / "a", cfg, run_id(cfg))
    resumed = store.init_run(tmp_path / "b", cfg, run_id(cfg))
    train(cfg, straight, ctx=CPU, progress=False)
    train(cfg, resumed, ctx=CPU, progress=False, max_steps=3)  # killed after step 3: checkpoint at 2
    assert load_checkpoint(resumed)["step"] == 2
    assert train(cfg, resumed, ctx=CPU, progress=False)["resumed_from"] == 2

    a, b = load_checkpoint(straight)["ema"], load_checkpoint(resumed)["ema"]
    assert a["num_updates"] == b["num_updates"] == 4 and a["decay"] == b["decay"] == 0.9
    for name, tensor in a["module"].items():
        assert torch.equal(tensor, b["module"][name]), f"ema {name} differs after resuming at step 2"
    model = load_checkpoint(straight)["autoencoder"]
    assert any(not torch.equal(model[k], a["module"][k]) for k in model), "the EMA is the model itself"


def test_evaluation_loads_the_ema_weights_only_from_a_run_that_kept_them(tmp_path):
    cfg = tiny(**{"train.ema_decay": 0.9, "train.steps": 1})
    folder = store.init_run(tmp_path / "a", cfg, run_id(cfg))
    train(cfg, folder, ctx=CPU, progress=False)
    ema_cfg = config.apply_overrides(cfg, {"eval.weights": "ema"})
    ae = load_trained(folder, ema_cfg, torch.device("cpu"))
    saved = load_checkpoint(folder)["ema"]["module"]
    assert all(torch.equal(t, saved[k]) for k, t in ae.state_dict().items())

    plain = tiny(**{"train.steps": 1})
    bare = store.init_run(tmp_path / "b", plain, run_id(plain))
    train(plain, bare, ctx=CPU, progress=False)
    assert load_checkpoint(bare)["ema"] is None
    with pytest.raises(MissingEMA, match="no EMA weights"):
        load_trained(bare, config.apply_overrides(cfg, {"eval.weights": "ema"}), torch.device("cpu"))


def test_ldl_and_ema_config_checks():
    with pytest.raises(config.ConfigError, match="train.ema_decay"):
        tiny(**{"loss.ldl_weight": 1.0})
    with pytest.raises(config.ConfigError, match="train.ema_decay"):
        tiny(**{"train.ema_decay": 1.0})
    with pytest.raises(config.ConfigError, match="eval.weights"):
        tiny(**{"eval.weights": "ema"})
    base = config.ExperimentConfig()
    assert run_id(base) == run_id(
        config.apply_overrides(base, {"loss.perceptual": "lpips", "loss.ldl_weight": 0.0, "train.ema_decay": 0.0})
    )
    assert run_id(base) != run_id(config.apply_overrides(base, {"train.ema_decay": 0.999}))


def test_a_run_with_ldl_logs_its_term(tmp_path):
    cfg = tiny(**{"train.ema_decay": 0.9, "loss.ldl_weight": 1.0, "train.steps": 3})
    folder = store.init_run(tmp_path, cfg, run_id(cfg))
    assert train(cfg, folder, ctx=CPU, progress=False)["step"] == 3
    rows = _terms(folder)
    assert [r["step"] for r in rows] == [1, 2, 3]
    assert all(r["ldl"] >= 0.0 for r in rows)
    # step 1: the EMA is the initial model, so its reconstruction differs from the current one
    # only through the update; by step 3 the artifact map is non-zero somewhere
    assert any(r["ldl"] > 0.0 for r in rows)


def test_a_run_with_the_esrgan_loss_trains(tmp_path, random_vgg19):
    cfg = tiny(**{"loss.perceptual": "esrgan", "loss.lpips_weight": 1.0, "train.steps": 2})
    folder = store.init_run(tmp_path, cfg, run_id(cfg))
    assert train(cfg, folder, ctx=CPU, progress=False)["step"] == 2
    rows = _terms(folder)
    assert len(rows) == 2 and all(r["esrgan"] > 0.0 and "lpips" not in r for r in rows)


def test_without_the_vgg19_file_the_esrgan_run_fails_before_its_first_step(tmp_path, no_weights):
    cfg = tiny(**{"loss.perceptual": "esrgan", "loss.lpips_weight": 1.0, "train.steps": 2})
    folder = store.init_run(tmp_path, cfg, run_id(cfg))
    with pytest.raises(MissingWeightsError, match="weights fetch"):
        train(cfg, folder, ctx=CPU, progress=False)
    assert not (folder / CHECKPOINT).exists() and not _terms(folder)
