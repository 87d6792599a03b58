"""Evaluation sets apart from the training data (eval.path, eval.list, eval.name) and split lists
for training (data.list), on image folders cut from the sample photos."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from PIL import Image

from study import config
from study.data import datasets, eval_sets


def photo_folder(folder, count: int, offset: int = 0, size: int = 48):
    """``count`` PNG crops of the sample photos (real content), named by index."""
    folder.mkdir(parents=True, exist_ok=True)
    photos = list(datasets.sample_photos().values())
    for i in range(offset, offset + count):
        photo = photos[i % len(photos)]
        top = (i * 37) % (photo.shape[0] - size)
        left = (i * 53) % (photo.shape[1] - size)
        Image.fromarray(photo[top : top + size, left : left + size]).save(folder / f"img{i:03d}.png")
    return folder


@pytest.fixture
def folders(tmp_path):
    return photo_folder(tmp_path / "train", 20), photo_folder(tmp_path / "val", 12, offset=100)


def cfg(train, **overrides) -> config.ExperimentConfig:
    base = {"data.kind": "folder", "data.name": "photos", "data.path": str(train), "data.resolution": 32}
    return config.validate(config.apply_overrides(config.ExperimentConfig(), base | overrides))


def test_the_eval_folder_is_read_whole_and_apart_from_training(folders):
    train, val = folders
    c = cfg(train, **{"eval.path": str(val), "eval.name": "val12", "eval.num_images": "all"})
    ds = eval_sets.evaluation_set(c.data, c.eval, 32)
    assert len(ds) == 12
    assert {f for f in ds.files} == {p.name for p in val.iterdir()}
    assert ds[0].shape == (3, 32, 32) and -1 <= float(ds[0].min()) and float(ds[0].max()) <= 1


def test_more_images_than_the_set_holds_is_an_error_naming_both_numbers(folders):
    train, val = folders
    c = cfg(train, **{"eval.path": str(val), "eval.name": "val12", "eval.num_images": 50})
    with pytest.raises(datasets.DataError, match=r"eval.num_images is 50 .* holds 12 images"):
        eval_sets.check_size(c.data, c.eval, 32)


def test_a_split_list_selects_its_files_in_a_stable_order(folders, tmp_path):
    train, val = folders
    listed = sorted(p.name for p in val.iterdir())[:5]
    (tmp_path / "split.txt").write_text("# a split\n" + "\n".join(listed) + "\n\n")
    c = cfg(
        train,
        **{"eval.path": str(val), "eval.list": str(tmp_path / "split.txt"), "eval.name": "v5", "eval.num_images": 3},
    )
    ds = eval_sets.evaluation_set(c.data, c.eval, 32)
    assert len(ds) == 3 and set(ds.files) <= set(listed)
    assert ds.files == eval_sets.evaluation_set(c.data, c.eval, 32).files


def test_a_list_naming_a_missing_or_outside_file_is_an_error(folders, tmp_path):
    train, val = folders
    (tmp_path / "bad.txt").write_text("img100.png\nnope.png\n")
    c = cfg(train, **{"eval.path": str(val), "eval.list": str(tmp_path / "bad.txt"), "eval.name": "x"})
    with pytest.raises(datasets.DataError, match="nope.png"):
        eval_sets.set_size(c.data, c.eval, 32)
    (tmp_path / "out.txt").write_text("../train/img000.png\n")
    c = cfg(train, **{"eval.path": str(val), "eval.list": str(tmp_path / "out.txt"), "eval.name": "x"})
    with pytest.raises(datasets.DataError, match="relative"):
        eval_sets.set_size(c.data, c.eval, 32)


def test_the_fingerprint_names_the_set_and_its_files_not_its_location(folders, tmp_path):
    train, val = folders
    c = cfg(train, **{"eval.path": str(val), "eval.name": "val12"})
    moved = shutil.copytree(val, tmp_path / "elsewhere")
    c2 = cfg(train, **{"eval.path": str(moved), "eval.name": "val12"})
    assert eval_sets.fingerprint(c.data, c.eval, 32) == eval_sets.fingerprint(c2.data, c2.eval, 32)
    assert "name=val12" in eval_sets.fingerprint(c.data, c.eval, 32)
    (moved / "img100.png").unlink()
    assert eval_sets.fingerprint(c.data, c.eval, 32) != eval_sets.fingerprint(c2.data, c2.eval, 32)


def test_a_training_split_list_restricts_the_training_files(folders, tmp_path):
    train, _ = folders
    keep = [f"img{i:03d}.png" for i in range(10)]
    (tmp_path / "train.txt").write_text("\n".join(keep))
    c = cfg(train, **{"data.list": str(tmp_path / "train.txt"), "data.val_fraction": 0.2})
    ds = datasets.train_set(c.data, 32, seed=0)
    held = eval_sets.evaluation_set(c.data, c.eval.__class__(num_images="all"), 32)
    assert set(ds.files) | set(held.files) == set(keep)
    assert not set(ds.files) & set(held.files)


def test_without_an_eval_path_the_training_hold_out_is_used_and_all_counts_it(folders):
    train, _ = folders
    c = cfg(train, **{"eval.num_images": "all", "data.val_fraction": 0.3})
    n = eval_sets.set_size(c.data, c.eval, 32)
    assert 0 < n < 20 and len(eval_sets.evaluation_set(c.data, c.eval, 32)) == n
    samples = config.validate(
        config.apply_overrides(config.ExperimentConfig(), {"eval.num_images": "all", "data.resolution": 32})
    )
    assert eval_sets.set_size(samples.data, samples.eval, 32) == len(datasets.eval_crops(32))


@pytest.mark.parametrize(
    "overrides, key",
    [
        ({"eval.path": "/x"}, "eval.name"),
        ({"eval.list": "/x.txt"}, "eval.list"),
        ({"data.list": "/x.txt"}, "data.list"),
        ({"eval.num_images": 0}, "eval.num_images"),
    ],
)
def test_inconsistent_evaluation_settings_are_config_errors(overrides, key):
    with pytest.raises(config.ConfigError, match=key):
        config.validate(config.apply_overrides(config.ExperimentConfig(), overrides))


def test_pixels_of_the_eval_set_are_the_centre_crops_of_its_files(folders):
    train, val = folders
    overrides = {"eval.path": str(val), "eval.name": "val12", "eval.num_images": 1, "eval.preprocess": "pil_bicubic"}
    c = cfg(train, **overrides)
    ds = eval_sets.evaluation_set(c.data, c.eval, 32)
    image = np.asarray(Image.open(val / ds.files[0]).convert("RGB"))
    resized = datasets.resize_shorter_side(image, 32)  # pil_bicubic; the other rules: tests/test_preprocess.py
    expected = datasets.to_tensor(resized[(resized.shape[0] - 32) // 2 :][:32, (resized.shape[1] - 32) // 2 :][:, :32])
    assert np.array_equal(ds[0].numpy(), expected.numpy())
