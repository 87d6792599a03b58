"""The image-folder and sample-photo datasets: splits, determinism, crops, flips, errors, skips."""

from __future__ import annotations

import re
import warnings
from dataclasses import replace

import numpy as np
import pytest
import torch
from PIL import Image

from study.config import DataConfig
from study.data import datasets as D

R = 16


def names(count: int, heldout: bool, prefix: str = "img", val_fraction: float = 0.5) -> list[str]:
    """``count`` file names that fall on the asked side of the split."""
    found, i = [], 0
    while len(found) < count:
        name = f"{prefix}{i:03d}.png"
        if D.is_heldout(name, val_fraction) == heldout:
            found.append(name)
        i += 1
    return found


def write(folder, name: str, pixels: np.ndarray) -> None:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)


def solid(value: int, h: int = R, w: int = R) -> np.ndarray:
    return np.full((h, w, 3), value, dtype=np.uint8)


def folder_cfg(path, **kw) -> DataConfig:
    return DataConfig(kind="folder", name="test", path=str(path), val_fraction=0.5, **kw)


@pytest.fixture
def colours(tmp_path):
    """Six training and two held-out R x R images, each one flat grey level."""
    for k, name in enumerate(names(6, heldout=False)):
        write(tmp_path, name, solid(20 + 30 * k))
    for k, name in enumerate(names(2, heldout=True)):
        write(tmp_path, name, solid(10 + 30 * k))
    return tmp_path


def grey(item: torch.Tensor) -> int:
    assert torch.all(item == item[0, 0, 0])
    return round((item[0, 0, 0].item() + 1) * 127.5)


# --------------------------------------------------------------------------------------------
# folder: split, determinism, epochs
# --------------------------------------------------------------------------------------------
def test_folder_split_is_disjoint_complete_and_stable_when_files_are_added(tmp_path):
    files = [f"a/{n}" for n in names(5, False)] + [f"b/{n}" for n in names(4, True)] + ["c/x.webp", "c/y.JPG"]
    for name in files:
        write(tmp_path, name, solid(99, 20, 24))
    cfg = folder_cfg(tmp_path)
    held = [f for f in files if D.is_heldout(f, 0.5)]
    train, ev = D.train_set(cfg, R, seed=0), D.eval_set(cfg, R, num_images=len(held))
    assert set(train.files).isdisjoint(ev.files)
    assert set(train.files) | set(ev.files) == set(files) and sorted(ev.files) == sorted(held)

    for name in names(6, False, prefix="new") + names(6, True, prefix="new"):
        write(tmp_path, f"d/{name}", solid(5))
    grown_train = D.train_set(cfg, R, seed=0).files
    assert set(train.files) <= set(grown_train) and set(ev.files).isdisjoint(grown_train)


def test_folder_stream_is_a_pure_function_of_seed_and_index(tmp_path):
    rng = np.random.default_rng(0)
    for name in names(4, False) + names(1, True):
        write(tmp_path, name, rng.integers(0, 256, (40, 56, 3), dtype=np.uint8))
    cfg = folder_cfg(tmp_path)
    a, b, other = D.train_set(cfg, R, 7), D.train_set(cfg, R, 7), D.train_set(cfg, R, 8)
    for i in (0, 3, 4, 1001):  # len is 4: indices past it are valid
        assert torch.equal(a[i], b[i])
    assert any(not torch.equal(a[i], other[i]) for i in range(8))
    assert not torch.equal(a[0], a[4])  # a new epoch, a new crop
    assert torch.equal(b[1001], a[1001]) and torch.equal(a[2], b[2])  # order of access is irrelevant
    with pytest.raises(IndexError):
        a[-1]


def test_every_epoch_visits_each_training_file_once_in_a_seeded_order(colours):
    ds = D.train_set(folder_cfg(colours, hflip=False), R, seed=3)
    assert len(ds) == 6
    epochs = [[grey(ds[e * 6 + j]) for j in range(6)] for e in range(3)]
    assert all(sorted(e) == [20 + 30 * k for k in range(6)] for e in epochs)
    assert epochs[0] != epochs[1] or epochs[1] != epochs[2]


# --------------------------------------------------------------------------------------------
# folder: crops, resize, flips
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("shape", [(16, 16), (20, 48), (64, 24), (8, 12), (33, 17)])
def test_folder_crops_are_resolution_sized_float_images_in_range(tmp_path, shape):
    rng = np.random.default_rng(1)
    for name in names(2, False) + names(1, True):
        write(tmp_path, name, rng.integers(0, 256, (*shape, 3), dtype=np.uint8))
    cfg = folder_cfg(tmp_path)
    for item in [D.train_set(cfg, R, 0)[i] for i in range(4)] + [D.eval_set(cfg, R, 1)[0]]:
        assert item.shape == (3, R, R) and item.dtype == torch.float32
        assert item.min() >= -1 and item.max() <= 1


def test_eval_resizes_the_shorter_side_and_takes_the_centre(tmp_path):
    # 16 x 48 in thirds of grey 0, 128, 255: the shorter side is already 16, the centre crop is
    # the middle third.
    image = np.concatenate([solid(0, 16, 16), solid(128, 16, 16), solid(255, 16, 16)], axis=1)
    write(tmp_path, names(1, True)[0], image)
    write(tmp_path, names(1, False)[0], image)
    assert grey(D.eval_set(folder_cfg(tmp_path), 16, 1)[0]) == 128
    # at resolution 8 the image becomes 8 x 24; the centre 8 columns are still the middle third
    small = D.eval_set(folder_cfg(tmp_path), 8, 1)[0]
    assert torch.allclose(small[:, :, 2:6], torch.full((3, 8, 4), 128 / 127.5 - 1), atol=2 / 127.5)


def test_training_flips_half_the_time_only_when_asked(tmp_path):
    ramp = np.repeat(np.repeat(np.arange(0, 256, 16, dtype=np.uint8)[None, :, None], R, 0), 3, 2)
    write(tmp_path, names(1, False)[0], ramp)  # exactly R x R: the crop is the image
    write(tmp_path, names(1, True)[0], ramp)
    original = D.to_tensor(ramp)
    mirrored = original.flip(-1)
    flipping = [D.train_set(folder_cfg(tmp_path), R, 0)[i] for i in range(40)]
    fixed = [D.train_set(folder_cfg(tmp_path, hflip=False), R, 0)[i] for i in range(40)]
    n_mirrored = sum(torch.equal(x, mirrored) for x in flipping)
    assert sum(torch.equal(x, original) for x in flipping) + n_mirrored == 40
    assert 8 <= n_mirrored <= 32
    assert all(torch.equal(x, original) for x in fixed)
    assert all(torch.equal(x, original) for x in D.eval_set(folder_cfg(tmp_path), R, 1))


# --------------------------------------------------------------------------------------------
# folder: errors and corrupt files
# --------------------------------------------------------------------------------------------
def test_unusable_folders_are_errors_that_name_the_path(tmp_path):
    missing = tmp_path / "nope"
    with pytest.raises(D.DataError, match=re.escape(str(missing))):
        D.train_set(folder_cfg(missing), R, 0)
    (tmp_path / "notes.txt").write_text("no images here")
    with pytest.raises(D.DataError, match=re.escape(f"{tmp_path}: no image files")):
        D.train_set(folder_cfg(tmp_path), R, 0)
    with pytest.raises(D.DataError, match="data.path is empty"):
        D.train_set(folder_cfg(""), R, 0)


def test_a_folder_without_a_readable_image_is_an_error_naming_it_and_a_file(tmp_path):
    for name in names(2, False) + names(1, True):
        (tmp_path / name).write_bytes(b"not a png")
    with pytest.raises(D.DataError, match=re.escape(f"{tmp_path}: no readable image")) as err:
        D.train_set(folder_cfg(tmp_path), R, 0)
    assert names(1, False)[0] in str(err.value)


def test_a_resolution_not_divisible_by_8_is_an_error_naming_the_path(colours):
    for bad in (30, 4, 0):
        message = f"{colours}: resolution {bad} is not a positive multiple of 8"
        with pytest.raises(D.DataError, match=re.escape(message)):
            D.train_set(folder_cfg(colours), bad, 0)
    with pytest.raises(D.DataError, match="scikit-image sample photos: resolution 30"):
        D.eval_set(DataConfig(), 30, 4)


def test_a_split_left_empty_or_too_small_is_an_error(tmp_path):
    for name in names(3, False):
        write(tmp_path, name, solid(1))
    with pytest.raises(D.DataError, match="none of its 3 images falls in the held-out split"):
        D.eval_set(folder_cfg(tmp_path), R, 1)
    write(tmp_path, names(1, True)[0], solid(2))
    with pytest.raises(D.DataError, match=re.escape(f"{tmp_path}: 1 images are held out")):
        D.eval_set(folder_cfg(tmp_path), R, 2)


def test_a_corrupt_evaluation_image_is_an_error_naming_the_file(colours):
    bad = names(1, True)[0]
    (colours / bad).write_bytes(b"\x89PNG broken")
    ev = D.eval_set(folder_cfg(colours), R, 2)
    with pytest.raises(D.DataError, match=re.escape(str(colours / bad))):
        [ev[i] for i in range(2)]


def test_a_corrupt_training_file_is_skipped_warned_and_counted(colours):
    ds = D.train_set(folder_cfg(colours, hflip=False), R, seed=0)
    bad = names(6, False)[2]
    (colours / bad).write_bytes(b"truncated in the middle of a run")  # after the dataset was built
    with pytest.warns(D.DataWarning, match=bad):
        greys = [grey(ds[i]) for i in range(6)]
    assert ds.skipped == 1
    assert 20 + 30 * 2 not in greys and len(set(greys)) == 5  # the next file stood in once


def test_the_skip_count_reaches_the_trainer_from_dataloader_workers(colours):
    ds = D.train_set(folder_cfg(colours, hflip=False), R, seed=0)
    (colours / names(6, False)[4]).write_bytes(b"garbage")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", D.DataWarning)
        loader = torch.utils.data.DataLoader(ds, batch_size=6, num_workers=1, sampler=range(12))
        batches = list(loader)
    assert len(batches) == 2 and ds.skipped == 2  # once per epoch


# --------------------------------------------------------------------------------------------
# the sample photos
# --------------------------------------------------------------------------------------------
def test_all_sample_photos_load_offline_as_rgb():
    photos = D.sample_photos()
    assert list(photos) == list(D.SAMPLE_PHOTOS)
    assert all(
        p.dtype == np.uint8 and p.ndim == 3 and p.shape[2] == 3 and min(p.shape[:2]) >= 300 for p in photos.values()
    )


def boundary(photo: str) -> int:
    return D.sample_regions(photo, heldout=True).left


def test_sample_training_and_evaluation_crops_come_from_disjoint_regions():
    for photo in D.SAMPLE_PHOTOS:
        train, held = D.sample_regions(photo, False), D.sample_regions(photo, True)
        width = D.sample_photos()[photo].shape[1]
        assert train.left + train.width == held.left and held.left + held.width == width
        assert held.width == round(width * D.SAMPLE_HOLDOUT)
    for resolution in (32, 256):
        ds = D.train_set(DataConfig(), resolution, seed=0)
        for i in range(300):
            c = ds.crop(i)
            assert c.left >= 0 and c.left + c.size <= boundary(c.photo) and c.size >= min(resolution, 300)
        for c in D.eval_crops(resolution):
            assert c.left >= boundary(c.photo) and not c.flip
            assert c.left + c.size <= D.sample_photos()[c.photo].shape[1]


def test_sample_stream_is_deterministic_and_each_epoch_visits_every_photo():
    a, b, c = (D.train_set(DataConfig(), 32, s) for s in (0, 0, 1))
    assert len(a) == len(D.SAMPLE_PHOTOS)
    for i in (0, 5, 9, 12345):
        assert a.crop(i) == b.crop(i) and torch.equal(a[i], b[i])
    assert [a.crop(i) for i in range(9)] != [c.crop(i) for i in range(9)]
    for epoch in range(3):
        assert sorted(a.crop(epoch * 9 + j).photo for j in range(9)) == sorted(D.SAMPLE_PHOTOS)


def test_sample_flips_mirror_the_same_crop_and_follow_the_config():
    flipping, fixed = D.train_set(DataConfig(), 32, 0), D.train_set(DataConfig(hflip=False), 32, 0)
    crops = [flipping.crop(i) for i in range(40)]
    assert 8 <= sum(c.flip for c in crops) <= 32
    for i, c in enumerate(crops):
        assert fixed.crop(i) == replace(c, flip=False)  # same place, never mirrored
        if c.flip:
            assert torch.equal(flipping[i], fixed[i].flip(-1))


def test_sample_items_are_resolution_sized_and_a_native_crop_is_the_photo_itself():
    for resolution in (32, 512):  # 512: some regions upsampled
        for item in (D.train_set(DataConfig(), resolution, 0)[i] for i in range(3)):
            assert item.shape == (3, resolution, resolution) and item.dtype == torch.float32
            assert item.min() >= -1 and item.max() <= 1
    ev = D.eval_set(DataConfig(), 32, 9)
    first = ev.crops[0]
    assert first.size == 32
    photo = D.sample_photos()[first.photo]
    pixels = photo[first.top : first.top + 32, first.left : first.left + 32]
    assert torch.equal(ev[0], torch.from_numpy(pixels.astype(np.float32)).permute(2, 0, 1) / 127.5 - 1)


def test_sample_eval_crops_are_distinct_deterministic_and_spread_over_the_photos():
    ev = D.eval_set(DataConfig(), 32, 32)
    assert len(set(ev.crops)) == 32 and ev.crops == D.eval_set(DataConfig(), 32, 32).crops
    assert {c.photo for c in ev.crops[:9]} == set(D.SAMPLE_PHOTOS)
    assert D.eval_set(DataConfig(), 32, 8).crops == ev.crops[:8]
    assert torch.equal(ev[5], D.eval_set(DataConfig(), 32, 8)[5])


def test_asking_more_sample_eval_crops_than_exist_says_how_many_exist():
    available = len(D.eval_crops(256))
    assert len(D.eval_set(DataConfig(), 256, available)) == available
    message = f"give {available} distinct 256x256 crops; asked to evaluate {available + 1}$"
    with pytest.raises(D.DataError, match=message):
        D.eval_set(DataConfig(), 256, available + 1)


# --------------------------------------------------------------------------------------------
# fingerprints
# --------------------------------------------------------------------------------------------
def test_fingerprint_names_the_content_not_the_location(colours, tmp_path_factory):
    import shutil

    copy = tmp_path_factory.mktemp("moved") / "data"
    shutil.copytree(colours, copy)
    fp = D.dataset_fingerprint(folder_cfg(colours), R)
    assert fp == D.dataset_fingerprint(folder_cfg(copy), R) and str(colours) not in fp
    assert fp != D.dataset_fingerprint(folder_cfg(colours), 2 * R)
    write(copy, names(3, True)[2], solid(7))  # a new held-out image
    assert fp != D.dataset_fingerprint(folder_cfg(copy), R)
    samples = D.dataset_fingerprint(DataConfig(), 32)
    assert samples == D.dataset_fingerprint(DataConfig(), 32) != D.dataset_fingerprint(DataConfig(), 64)
    assert "samples" in samples and fp.startswith("data-v1 folder")
