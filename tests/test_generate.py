"""Sampling and generation FID (study/diffusion/generate.py) and the whole diffusion job
(study/diffusion/run.py) on a tiny frozen autoencoder: the samples' latent statistics
move toward the training latents' with training, a missing Inception file is "unavailable" with
the reason, the locally generated one gives a finite gFID with cached reference statistics, and
a diffusion run refuses an autoencoder run that is not completed, naming its state and reason."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch
from PIL import Image

from study import store
from study.diffusion import generate
from study.diffusion import train as diffusion_train
from study.diffusion.adm_npz import AdmBatchError, AdmBatchWriter
from study.diffusion.latents import build_cache, image_set
from study.diffusion.run import AutoencoderNotReady, run_diffusion
from study.kinds.registry import run_id
from study.measure.metrics import to_uint8
from study.trainer.ema import EMA
from tests.diffusion_helpers import CPU, diffusion_run, tiny_autoencoder
from tests.launch_helpers import TINY_SET

pytest_plugins = ["tests.metric_fixtures"]  # the weights fixtures


@pytest.fixture(scope="module")
def ae_folder(tmp_path_factory, one_thread):
    return tiny_autoencoder(tmp_path_factory.mktemp("results"))


@pytest.fixture(scope="module")
def trained(ae_folder):
    """A diffusion run trained for 20 steps: (config, folder)."""
    cfg, folder = diffusion_run(ae_folder, **{"diffusion.num_samples": 8, "diffusion.reference_images": 8})
    build_cache(cfg, ae_folder, CPU.device, progress=False)
    diffusion_train.train_diffusion(cfg, folder, ae_folder, CPU, progress=False)
    return cfg, folder


def _distance(record: dict, stat: str) -> float:
    """Mean absolute gap between the generated latents' per-channel ``stat`` and the training cache's."""
    g, t = record["latent_stats"]["generated"][stat], record["latent_stats"]["training"][stat]
    return sum(abs(a - b) for a, b in zip(g, t)) / len(g)


@pytest.mark.training
def test_the_samples_latent_statistics_move_toward_the_training_latents(ae_folder, tmp_path, no_weights):
    """The per-channel mean and std of 64 DDIM samples (unscaled latents) are closer to the
    cache's after 200 steps than from the untrained UNet (eps = 0: x0 blown up by 1/sqrt(a_T))."""
    over = {"diffusion.steps": 200, "diffusion.num_samples": 64, "diffusion.sample_batch_size": 64,
            "diffusion.sampler_steps": 20, "train.checkpoint_every": 200, "train.log_every": 50}  # fmt: skip
    cfg, folder = diffusion_run(ae_folder, **over)
    cache = build_cache(cfg, ae_folder, CPU.device, progress=False)
    untrained = store.init_run(tmp_path, cfg, run_id(cfg))  # the same run, at step 0, in another results folder
    unet = diffusion_train.build_denoiser(cfg, cache.shape[0])
    ema = EMA(unet, cfg.diffusion.ema_decay)
    diffusion_train.save_diffusion_checkpoint(
        untrained, 0, unet, torch.optim.AdamW(unet.parameters()), ema, cache.scale_factor("sample")
    )
    before = generate.generate(cfg, untrained, ae_folder, CPU.device, progress=False)
    diffusion_train.train_diffusion(cfg, folder, ae_folder, CPU, progress=False)
    after = generate.generate(cfg, folder, ae_folder, CPU.device, progress=False)
    gaps = {s: (_distance(before, s), _distance(after, s)) for s in ("channel_mean", "channel_std")}
    print(f"latent stats gap to the training cache (before, after training): {gaps}")
    print(f"generated after: {after['latent_stats']['generated']}; training: {after['latent_stats']['training']}")
    assert gaps["channel_std"][1] < 0.5 * gaps["channel_std"][0]
    assert gaps["channel_mean"][1] < gaps["channel_mean"][0]


def test_a_missing_inception_file_makes_gfid_unavailable_with_the_reason(trained, ae_folder, no_weights):
    cfg, folder = trained
    record = generate.generate(cfg, folder, ae_folder, CPU.device, progress=False)
    assert record["metrics"] == {} and record["missing_weights"] == ["inception"]
    assert record["unavailable"]["gfid"].startswith("unavailable: ")
    assert "weights-inception-2015-12-05-6726825d.pth" in record["unavailable"]["gfid"]
    assert record["protocol"]["kind"] == "generation" and record["protocol"]["reference"]["num_images"] == 8
    assert store.read_evals(folder)[record["protocol_id"]]["unavailable"] == record["unavailable"]
    with Image.open(folder / generate.GRID) as grid:  # 8 samples of 32x32, 8 a row, 2-pixel gaps
        assert grid.size == (8 * 34 + 2, 34 + 2)
    assert generate.generate(cfg, folder, ae_folder, CPU.device, progress=False)["reused"]


def test_the_samples_and_the_reference_are_written_in_adms_format(trained, ae_folder, no_weights):
    """guided-diffusion's evaluations/evaluator.py reads ``arr_0`` of an .npz as uint8 N x H x W x 3:
    the samples the gFID saw (the grid's first one among them) and the reference images (the run's
    training images, quantised as the metrics see them), written even without the Inception file.
    The sampler ran in fp32, and the protocol says so."""
    cfg, folder = trained
    record = generate.generate(cfg, folder, ae_folder, CPU.device, progress=False)
    assert (
        record["adm"]["samples"] == generate.ADM_SAMPLES
        and record["protocol"]["sampler"]["precision"] == "fp32, TF32 off"
    )
    with np.load(folder / generate.ADM_SAMPLES) as samples, np.load(folder / generate.ADM_REFERENCE) as reference:
        for batch in (samples, reference):
            assert list(batch.keys()) == ["arr_0"]
            assert batch["arr_0"].dtype == np.uint8 and batch["arr_0"].shape == (8, 32, 32, 3)
        images, _ = image_set(cfg.data, 32, cfg.diffusion.cache_images)
        expected = to_uint8(torch.stack([images[i] for i in range(8)])).permute(0, 2, 3, 1).numpy()
        np.testing.assert_array_equal(reference["arr_0"], expected)
        with Image.open(folder / generate.GRID) as grid:  # the first sample, after the 2-pixel gap
            np.testing.assert_array_equal(samples["arr_0"][0], np.asarray(grid.convert("RGB"))[2:34, 2:34])


def test_an_adm_batch_appears_only_complete(tmp_path):
    path = tmp_path / "batch.npz"
    images = torch.randint(0, 256, (3, 3, 8, 8), dtype=torch.uint8)
    with pytest.raises(AdmBatchError, match="2 images written, 3 announced"):
        with AdmBatchWriter(path, 3, 8) as writer:
            writer.add(images[:2])
    with pytest.raises(AdmBatchError, match="uint8"):
        with AdmBatchWriter(path, 3, 8) as writer:
            writer.add(images.float())
    assert list(tmp_path.iterdir()) == []  # nothing half-written, under any name
    with AdmBatchWriter(path, 3, 8) as writer:
        writer.add(images[:1])
        writer.add(images[1:])
    with np.load(path) as batch:
        np.testing.assert_array_equal(batch["arr_0"], images.permute(0, 2, 3, 1).numpy())


@pytest.mark.training  # ~25 s: Inception-v3 on the CPU
def test_the_local_inception_file_gives_a_finite_gfid_and_caches_the_reference(trained, ae_folder, test_weights):
    cfg, folder = trained
    record = generate.generate(cfg, folder, ae_folder, CPU.device, progress=False)
    assert math.isfinite(record["metrics"]["gfid"]) and record["metrics"]["gfid"] > 0
    assert record["unavailable"] == {} and record["reference_cache"] == "computed"
    print(f"gfid (8 samples vs 8 references, random-weight Inception): {record['metrics']['gfid']:.3f}")
    # another sampler is another protocol, with the same reference statistics
    other = dataclasses.replace(cfg, diffusion=dataclasses.replace(cfg.diffusion, sampler_steps=5))
    second = generate.generate(other, folder, ae_folder, CPU.device, progress=False)
    assert second["protocol_id"] != record["protocol_id"] and second["reference_cache"] == "reused"
    assert (folder.parent.parent / "cache" / "fid_ref" / f"{generate.reference_id(record['protocol'])}.npz").is_file()


def test_a_diffusion_run_refuses_an_autoencoder_run_that_is_not_completed(ae_folder):
    from study import config as cfgmod

    failed_cfg = cfgmod.validate(cfgmod.apply_overrides(cfgmod.ExperimentConfig(), TINY_SET | {"seed": 7}))
    failed = store.init_run(ae_folder.parent.parent, failed_cfg, run_id(failed_cfg))
    store.update_status(failed, state="failed", error="RuntimeError: out of memory at step 3")
    cfg, folder = diffusion_run(failed)
    with pytest.raises(AutoencoderNotReady, match=rf"{failed.name} is failed: RuntimeError: out of memory at step 3"):
        run_diffusion(cfg, folder, CPU, progress=False)
    assert not (failed / "latents").exists()


@pytest.mark.training
def test_the_diffusion_job_caches_trains_and_generates_and_a_second_run_reuses_the_cache(ae_folder, no_weights):
    over = {"diffusion.steps": 10, "diffusion.num_samples": 8, "diffusion.cache_images": 48}
    first = run_diffusion(*diffusion_run(ae_folder, **over), CPU, progress=False)
    second = run_diffusion(*diffusion_run(ae_folder, seed=1, **over), CPU, progress=False)
    assert first["step"] == second["step"] == 10 and first["autoencoder_id"] == ae_folder.name
    assert not first["latent_cache"]["reused"] and second["latent_cache"]["reused"]
    assert first["latent_cache"]["key"] == second["latent_cache"]["key"]
    assert "gfid" in first["unavailable"] and first["metrics"] == {}
