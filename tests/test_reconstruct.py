"""Reconstructions written as PNGs (study/evaluation/reconstruct.py): the protocol's resize, crop
and quantisation computed by hand on a non-square image, output names for files and folders,
and inputs that cannot be written refused before anything is."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from study.data.datasets import DataError
from study.evaluation.reconstruct import ReconstructError, reconstruct_files
from study.models.arguments import AutoencoderArgs, DecoderArgs, SDEncoderArgs
from study.models.autoencoder import build_autoencoder

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    mult = (1, 1, 1, 1)
    return build_autoencoder(
        AutoencoderArgs(SDEncoderArgs(32, mult, num_res_blocks=1), 4, True, DecoderArgs(32, mult, blocks_per_level=1))
    )


def photo(height: int, width: int, seed: int) -> np.ndarray:
    y, x = np.mgrid[0:height, 0:width]
    rng = np.random.default_rng(seed)
    base = np.stack([x * 255 / width, y * 255 / height, (x + y) % 64 * 4], axis=-1)
    return np.clip(base + rng.normal(0, 20, base.shape), 0, 255).astype(np.uint8)


def test_pixels_follow_the_protocol(model, tmp_path):
    pixels = photo(40, 56, seed=0)  # landscape: shorter side 40 -> 32, width round(44.8) = 45
    Image.fromarray(pixels).save(tmp_path / "cat.png")
    [written] = reconstruct_files(
        model, [tmp_path / "cat.png"], tmp_path / "out", resolution=32, preprocess="pil_bicubic"
    )
    assert written == tmp_path / "out" / "cat.png"

    resized = np.asarray(Image.fromarray(pixels).resize((45, 32), Image.Resampling.BICUBIC))
    crop = resized[:, 6:38]  # center: (45 - 32) // 2 = 6
    x = torch.from_numpy(crop.copy()).permute(2, 0, 1)[None].float() / 127.5 - 1
    with torch.no_grad():
        x_hat = model.decode(model.encode(x).mean)
    expected = ((x_hat.clamp(-1, 1) + 1) * 127.5).round()[0].permute(1, 2, 0).to(torch.uint8).numpy()
    got = np.asarray(Image.open(written))
    assert got.shape == (32, 32, 3)
    assert np.array_equal(got, expected)
    assert model.training  # the caller's mode is restored


def test_names_of_files_and_folders(model, tmp_path):
    Image.fromarray(photo(24, 24, 1)).save(tmp_path / "single.jpg")
    shots = tmp_path / "shots"
    (shots / "day").mkdir(parents=True)
    Image.fromarray(photo(32, 48, 2)).save(shots / "a.png")
    Image.fromarray(photo(48, 32, 3)).save(shots / "day" / "b.JPG")
    written = reconstruct_files(model, [tmp_path / "single.jpg", shots], tmp_path / "out", resolution=16)
    out = tmp_path / "out"
    assert written == [out / "single.png", out / "a.png", out / "day" / "b.png"]
    assert all(Image.open(p).size == (16, 16) for p in written)


def test_bad_inputs_are_refused_before_writing(model, tmp_path):
    Image.fromarray(photo(16, 16, 4)).save(tmp_path / "cat.png")
    Image.fromarray(photo(16, 16, 5)).save(tmp_path / "cat.jpg")
    out = tmp_path / "out"
    with pytest.raises(ReconstructError, match="would both be written to"):
        reconstruct_files(model, [tmp_path / "cat.png", tmp_path / "cat.jpg"], out, resolution=16)
    with pytest.raises(ReconstructError, match="no such image file or folder"):
        reconstruct_files(model, [tmp_path / "cat.png", tmp_path / "dog.png"], out, resolution=16)
    with pytest.raises(DataError, match="multiple of 8"):
        reconstruct_files(model, [tmp_path / "cat.png"], out, resolution=20)
    assert not out.exists()
