"""Pretrained autoencoders through a study (``model.init``, study/autoencoder/pretrained.py): an
SD-VAE-shaped model initialised from a diffusers AutoencoderKL folder the test makes and
evaluated with ``train.steps: 0`` has an eval record; the file's sha256 is part of the run id;
an unreadable checkpoint is a study error (exit 2)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

pytest.importorskip("diffusers")
from diffusers import AutoencoderKL

import run_study
from study import store
from study.autoencoder import pretrained
from study.kinds.registry import run_id
from study.studyfile.grid import expand
from study.studyfile.parse import StudyFileError, load_study

pytestmark = pytest.mark.usefixtures("one_thread")

# VAE-Small's encoder (64 x (1, 1, 3, 4), two residual blocks a level) and a decoder of the same
# widths: the layout diffusers' AutoencoderKL builds for both sides.
WIDTHS, BLOCKS = (64, 64, 192, 256), 2
STUDY = """\
study: init
set:
  preset: VAE-Small
  model:
    init: vae
    latent_channels: 4
    decoder: {channels: 64, channel_mult: [1, 1, 3, 4], blocks_per_level: 3, mid_attention: true}
  loss: {lpips_weight: 0.0, discriminator: none}
  data: {kind: samples, name: samples, resolution: 32}
  train: {steps: 0, batch_size: 2, num_workers: 0}
  eval: {num_images: 4, batch_size: 4, metrics: [psnr, ssim]}
seeds: [0]
resources: {gpus: 0, cpus_per_gpu: 1, mem_gb: 4, timeout_min: 10}
"""


def save_diffusers(folder: Path, seed: int = 0) -> Path:
    """A small diffusers AutoencoderKL (VAE-Small's widths) saved with ``save_pretrained``."""
    torch.manual_seed(seed)
    vae = AutoencoderKL(
        block_out_channels=WIDTHS,
        layers_per_block=BLOCKS,
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        latent_channels=4,
        norm_num_groups=32,
    )
    vae.save_pretrained(folder)
    return folder


def test_a_pretrained_model_is_evaluated_without_training(tmp_path):
    save_diffusers(tmp_path / "vae")
    spec = tmp_path / "init.yaml"
    spec.write_text(STUDY)
    results = tmp_path / "results"
    code = run_study.main(
        [
            "run",
            str(spec),
            "--executor",
            "debug",
            "--results",
            str(results),
            "--reports",
            str(tmp_path / "reports"),
            "--poll",
            "0.1",
        ]
    )
    assert code == 0
    (variant,) = expand(load_study(spec))
    assert variant.config.model.init == str((tmp_path / "vae").resolve())
    assert variant.config.model.init_sha256 == pretrained.checkpoint_sha256(tmp_path / "vae")
    folder = store.run_dir(results, variant.run_id)
    (record,) = store.read_evals(folder).values()
    assert record["num_images"] == 4 and 5 < record["metrics"]["psnr"] < 60
    assert not (folder / "checkpoints" / "last.pt").exists()  # nothing trained
    assert store.read_status(folder)["state"] == "completed"

    save_diffusers(tmp_path / "vae", seed=1)  # other weights: another run
    (changed,) = expand(load_study(spec))
    assert changed.run_id != variant.run_id


def test_a_missing_checkpoint_is_a_study_error(tmp_path, capsys):
    spec = tmp_path / "init.yaml"
    spec.write_text(STUDY)
    with pytest.raises(StudyFileError, match="model.init"):
        expand(load_study(spec))
    assert run_study.main(["plan", str(spec)]) == 2
    assert "model.init" in capsys.readouterr().err


def test_training_starts_from_the_checkpoint(tmp_path):
    """train.steps > 0: the weights are loaded before the first step (the status says which),
    and a resumed run keeps its own checkpoint instead."""
    from study.autoencoder.loop import train
    from study.trainer.checkpoints import load_checkpoint

    vae = save_diffusers(tmp_path / "vae", seed=5)  # not the seed the run builds its model with
    spec = tmp_path / "init.yaml"
    spec.write_text(STUDY.replace("steps: 0", "steps: 1, checkpoint_every: 1, val_every: 100, val_images: 2"))
    (variant,) = expand(load_study(spec))
    folder = store.init_run(tmp_path / "results", variant.config, run_id(variant.config))
    train(variant.config, folder, progress=False)
    status = store.read_status(folder)
    assert status["init_sha256"] == pretrained.checkpoint_sha256(vae) and status["init_naming"] == "diffusers"
    start = pretrained.load_state(vae)["decoder.conv_out.weight"]
    trained = load_checkpoint(folder)["autoencoder"]["decoder.conv_out.weight"]
    assert (trained - start).abs().max() < 0.05  # one small step away from the pretrained weights
    from study import config
    from study.models.autoencoder import build_autoencoder

    torch.manual_seed(0)
    fresh = build_autoencoder(config.autoencoder_args(variant.config.model)).state_dict()["decoder.conv_out.weight"]
    assert (fresh - start).abs().max() > 0.05  # the run's own initialisation is not
