"""`run_study.py reconstruct`: one PNG per input, of the asked size, from a finished tiny run
(by its id and as ``SPEC VARIANT``) and from a diffusers checkpoint; bad sources exit 2."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import run_study
from study.studyfile.grid import expand
from study.studyfile.parse import load_study
from tests.test_eval_data import photo_folder
from tests.test_preprocess import adm_written_out, albumentations_ldm, grey_levels

pytestmark = pytest.mark.usefixtures("one_thread")

STUDY = """\
study: tiny
set:
  preset: LiteVAE-S
  model:
    latent_channels: 4
    decoder: {channels: 32, channel_mult: [1, 1, 2, 2], blocks_per_level: 1, mid_attention: false}
  loss: {lpips_weight: 0.0, discriminator: none}
  data: {kind: samples, name: samples, resolution: 32}
  train: {steps: 2, batch_size: 2, checkpoint_every: 100, log_every: 1, val_every: 100, val_images: 2, num_workers: 0}
  eval: {num_images: 2, batch_size: 2, metrics: [psnr]}
seeds: [0]
resources: {gpus: 0, cpus_per_gpu: 1, mem_gb: 4, timeout_min: 10}
"""


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("tiny")
    spec = tmp / "tiny.yaml"
    spec.write_text(STUDY)
    results = tmp / "results"
    assert (
        run_study.main(
            [
                "run",
                str(spec),
                "--executor",
                "debug",
                "--results",
                str(results),
                "--reports",
                str(tmp / "reports"),
                "--poll",
                "0.1",
            ]
        )
        == 0
    )
    (variant,) = expand(load_study(spec))
    return spec, results, variant, photo_folder(tmp / "photos", 3, size=40)


def _sizes(out: Path) -> list[tuple[int, int]]:
    return [Image.open(p).size for p in sorted(out.glob("*.png"))]


def test_from_a_run_id(finished, tmp_path):
    spec, results, variant, photos = finished
    inputs = [str(p) for p in sorted(photos.glob("*.png"))]
    assert (
        run_study.main(
            ["--results", str(results), "reconstruct", variant.run_id, *inputs, "--out", str(tmp_path / "out")]
        )
        == 0
    )
    assert _sizes(tmp_path / "out") == [(32, 32)] * 3  # the run's data.resolution


def test_from_a_study_variant_at_another_resolution(finished, tmp_path):
    spec, results, variant, photos = finished
    assert (
        run_study.main(
            [
                "reconstruct",
                str(spec),
                variant.name,
                str(photos),
                "--out",
                str(tmp_path / "out"),
                "--resolution",
                "16",
                "--results",
                str(results),
            ]
        )
        == 0
    )
    assert _sizes(tmp_path / "out") == [(16, 16)] * 3


def test_from_a_diffusers_checkpoint(finished, tmp_path):
    from tests.test_init_e2e import save_diffusers

    photos = finished[3]
    vae = save_diffusers(tmp_path / "vae")
    sets = ["--set", "model.decoder.channels=64", "--set", "model.decoder.channel_mult=[1,1,3,4]"]
    assert (
        run_study.main(
            [
                "reconstruct",
                str(vae),
                str(photos / "img000.png"),
                "--out",
                str(tmp_path / "out"),
                "--preset",
                "VAE-Small",
                "--resolution",
                "32",
                *sets,
            ]
        )
        == 0
    )
    assert _sizes(tmp_path / "out") == [(32, 32)]


def test_bad_sources_exit_2(finished, tmp_path, capsys):
    spec, results, variant, photos = finished
    out = str(tmp_path / "out")
    assert run_study.main(["--results", str(results), "reconstruct", "0123456789ab", str(photos), "--out", out]) == 2
    assert (
        run_study.main(
            ["--results", str(results), "reconstruct", variant.run_id, str(tmp_path / "none.png"), "--out", out]
        )
        == 2
    )
    assert run_study.main(["reconstruct", str(tmp_path), str(photos), "--out", out]) == 2  # not a checkpoint
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 3 and all(line.startswith("error: ") for line in err)
    assert not Path(out).exists()


def test_preprocess_and_save_inputs(finished, tmp_path):
    """--save-inputs writes the crop the model read, by --preprocess or else the run's eval.preprocess."""
    spec, results, variant, photos = finished
    inputs = [str(p) for p in sorted(photos.glob("*.png"))]
    for name, flags, reference in [
        ("adm", ["--preprocess", "adm"], adm_written_out),
        ("default", [], albumentations_ldm),  # the run's eval.preprocess: ldm
    ]:
        out = tmp_path / name
        argv = ["--results", str(results), "reconstruct", variant.run_id, *inputs, "--out", str(out)]
        assert run_study.main(argv + flags + ["--save-inputs", "--resolution", "24"]) == 0
        for source in inputs:
            seen = np.asarray(Image.open(out / f"{Path(source).stem}.input.png"))
            assert grey_levels(seen, reference(source, 24)) <= 1
            assert Image.open(out / f"{Path(source).stem}.png").size == (24, 24)
