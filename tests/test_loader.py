"""The training input pipeline (study/data/loader.py) and the JPEG decoder
(study/data/files.py): worker-made batches equal main-process ones, the data-wait line,
and torchvision's JPEG pixels equal PIL's (the protocol's)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from study import config
from study.data import files as image_files
from study.data.batches import BatchStream, posterior_noise
from study.data.datasets import DataError, sample_photos
from study.data.loader import Batches, StepBatches, step_loader
from study.trainer.context import Context

CFG = config.validate(
    config.apply_overrides(
        config.ExperimentConfig(),
        {"data.resolution": 32, "train.batch_size": 2, "train.steps": 10, "model.latent_channels": 4},
    )
)
CPU = Context(torch.device("cpu"))


def test_items_are_the_steps_batch_and_noise():
    stream = BatchStream(CFG, CPU)
    x, noise = StepBatches(CFG, CPU)[3]
    assert torch.equal(x, stream.batch(3))
    assert torch.equal(noise, posterior_noise(CFG.seed, 3, stream.indices(3), (4, 4, 4), torch.device("cpu")))


def test_workers_make_the_same_batches_as_the_main_process():
    main = list(step_loader(StepBatches(CFG, CPU), 2, 5, torch.device("cpu"), workers=0))
    workers = list(step_loader(StepBatches(CFG, CPU), 2, 5, torch.device("cpu"), workers=2))
    assert len(main) == len(workers) == 3
    for (xa, na), (xb, nb) in zip(main, workers):
        assert torch.equal(xa, xb) and torch.equal(na, nb)


def test_waiting_on_data_is_said_in_the_log(capfd):
    batches = Batches(CFG, CPU, 0, 10, torch.contiguous_format)
    batches.next()
    assert batches.report(1) > 0.5  # nothing but data since the start
    err = capfd.readouterr().err
    assert "steps 1-1: waited on data" in err and "main process" in err
    batches.next()
    batches.report(2)  # main-process loading says it once per run
    assert "waited on data" not in capfd.readouterr().err
    batches.workers = 2  # (as on CUDA) a worker-fed run says it at every log step that waits
    batches.next()
    batches.report(3)
    assert "steps 3-3: waited on data" in capfd.readouterr().err


def _jpegs(tmp_path):
    paths = []
    for name, photo in sample_photos().items():
        paths.append(tmp_path / f"{name}.jpg")
        Image.fromarray(photo).convert("RGB").save(paths[-1], quality=90)
    paths.append(tmp_path / "grey.jpeg")
    Image.fromarray(sample_photos()["astronaut"][..., 0]).save(paths[-1], quality=85)
    return paths


def _pil(path) -> np.ndarray:
    with Image.open(path) as img:
        return np.asarray(img.convert("RGB"))


def test_jpeg_decoding_gives_pils_pixels(tmp_path):
    assert image_files.JPEG_DECODER == "torchvision"
    for path in _jpegs(tmp_path):
        assert image_files.jpeg_components(path.read_bytes()) == (1 if path.name == "grey.jpeg" else 3)
        ours = image_files.decode_image(path)
        assert ours.dtype == np.uint8 and ours.flags["C_CONTIGUOUS"]
        np.testing.assert_array_equal(ours, _pil(path), err_msg=path.name)


def test_cmyk_and_broken_jpegs_go_through_pil(tmp_path):
    cmyk = tmp_path / "cmyk.jpg"
    Image.fromarray(sample_photos()["coffee"]).convert("CMYK").save(cmyk)
    assert image_files.jpeg_components(cmyk.read_bytes()) == 4
    np.testing.assert_array_equal(image_files.decode_image(cmyk), _pil(cmyk))
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes(_jpegs(tmp_path)[0].read_bytes()[:5000])
    with pytest.raises(DataError, match="truncated.jpg: cannot read the image"):
        image_files.decode_image(truncated)
    assert image_files.jpeg_components(b"\x89PNG....") is None
