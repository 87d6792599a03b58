"""Evaluation preprocessing by name (study/data/preprocess.py, eval.preprocess): each rule equals its
reference on the real sample photos saved as PNG files (albumentations + OpenCV for ``ldm``,
torchvision for ``torchvision``, ADM's algorithm written out here for ``adm``), hand-checked pixels
on a tiny block image, the rule reaching the evaluation set, the protocol and
``reconstruct_files(save_inputs=True)``."""

from __future__ import annotations

import typing

import albumentations
import numpy as np
import pytest
import torch
import torchvision.transforms as transforms
from PIL import Image

from study import config
from study.data import datasets, eval_sets
from study.data import preprocess as pre
from study.evaluation import protocol
from study.evaluation.reconstruct import ReconstructError, input_path, reconstruct_files
from study.models.arguments import AutoencoderArgs, DecoderArgs, SDEncoderArgs
from study.models.autoencoder import build_autoencoder

SIZES = (64, 256)


@pytest.fixture(scope="module")
def photo_files(tmp_path_factory):
    """The nine sample photos as PNG files (landscape, portrait-free square and odd sizes)."""
    folder = tmp_path_factory.mktemp("photos")
    for name, photo in datasets.sample_photos().items():
        Image.fromarray(photo).save(folder / f"{name}.png")
    return sorted(folder.glob("*.png"))


def as_taming_loads(path) -> np.ndarray:
    """taming's ImagePaths: PIL, convert to RGB, np.array uint8."""
    with Image.open(path) as image:
        return np.array(image.convert("RGB")).astype(np.uint8)


def albumentations_ldm(path, size: int) -> np.ndarray:
    transform = albumentations.Compose(
        [albumentations.SmallestMaxSize(max_size=size), albumentations.CenterCrop(height=size, width=size)]
    )
    return transform(image=as_taming_loads(path))["image"]


def lightningdit(path, size: int) -> np.ndarray:
    """LightningDiT's evaluate_tokenizer.py: ToTensor, Resize, CenterCrop, Normalize(0.5, 0.5), and
    the reference images saved as clamp(127.5 x + 128, 0, 255) cast to uint8."""
    transform = transforms.Compose(
        [
            transforms.ToTensor(),
            transforms.Resize(size),
            transforms.CenterCrop(size),
            transforms.Normalize([0.5] * 3, [0.5] * 3),
        ]
    )
    x = transform(Image.open(path).convert("RGB"))
    return torch.clamp(127.5 * x + 128.0, 0, 255).permute(1, 2, 0).numpy().astype(np.uint8)


def adm_written_out(path, size: int) -> np.ndarray:
    """guided-diffusion's center_crop_arr as its docstring-free code describes it: halve with BOX
    while the shorter side is >= 2 * size, bicubic so the shorter side is size, integer center crop."""
    image = Image.open(path).convert("RGB")
    while min(image.width, image.height) >= 2 * size:
        image = image.resize((image.width // 2, image.height // 2), Image.Resampling.BOX)
    ratio = size / min(image.width, image.height)
    image = image.resize((round(image.width * ratio), round(image.height * ratio)), Image.Resampling.BICUBIC)
    array = np.array(image)
    top, left = (array.shape[0] - size) // 2, (array.shape[1] - size) // 2
    return array[top : top + size, left : left + size]


def grey_levels(a: np.ndarray, b: np.ndarray) -> int:
    assert a.shape == b.shape and a.dtype == b.dtype == np.uint8
    return int(np.abs(a.astype(np.int16) - b.astype(np.int16)).max())


# --------------------------------------------------------------------------------------------
# each rule against its reference
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "name, reference", [("ldm", albumentations_ldm), ("torchvision", lightningdit), ("adm", adm_written_out)]
)
def test_each_rule_equals_its_reference_on_the_photos(photo_files, name, reference):
    rule = pre.PREPROCESS[name]
    for path in photo_files:
        for size in SIZES:
            ours = rule(datasets.decode_image(path), size)
            assert ours.shape == (size, size, 3)
            assert grey_levels(ours, reference(path, size)) <= 1, (name, path.name, size)


def test_the_rules_differ_from_each_other(photo_files):
    rocket = datasets.decode_image(next(p for p in photo_files if p.stem == "rocket"))  # 427 x 640
    crops = {name: rule(rocket, 64).astype(np.int16) for name, rule in pre.PREPROCESS.items()}
    for a in crops:
        for b in crops:
            if a < b:
                assert np.abs(crops[a] - crops[b]).mean() > 0.5, (a, b)


def test_torchvision_on_the_tensor_is_torchvision_on_pil_within_one_grey_level(photo_files):
    pil_pipeline = transforms.Compose([transforms.Resize(64), transforms.CenterCrop(64)])
    for path in photo_files:
        on_pil = np.asarray(pil_pipeline(Image.open(path).convert("RGB")))
        assert grey_levels(pre.torchvision_crop(datasets.decode_image(path), 64), on_pil) <= 1


def block_image(height_blocks: int, width_blocks: int, side: int) -> tuple[np.ndarray, np.ndarray]:
    """An image of side x side blocks of one colour each, and the block colours."""
    colours = (np.arange(height_blocks * width_blocks * 3).reshape(height_blocks, width_blocks, 3) * 5 + 7).astype(
        np.uint8
    )
    return np.repeat(np.repeat(colours, side, axis=0), side, axis=1), colours


def test_hand_checked_pixels_on_a_block_image():
    # 8 x 20 pixels of 4 x 4 blocks (2 x 5 blocks), to 2 x 2.
    image, colours = block_image(2, 5, 4)
    # adm: BOX 8x20 -> 4x10 (min 8 >= 4), -> 2x5 (min 4 >= 4), stop (2 < 4): one pixel a block;
    # bicubic to the same size changes nothing; crop columns (5 - 2) // 2 = 1: blocks 1 and 2.
    assert np.array_equal(pre.adm_crop(image, 2), colours[:, 1:3])
    # ldm: scale 1/4 to 2 x 5; INTER_LINEAR samples source x = 4 x_out + 1.5, inside block x_out
    # (no antialiasing), so again one pixel a block; the same crop offset 1.
    assert np.array_equal(pre.ldm_crop(image, 2), colours[:, 1:3])
    # torchvision's CenterCrop puts the crop at round((5 - 2) / 2) = round(1.5) = 2; a 2 x 5 input
    # is not resized, so its pixels are the blocks 2 and 3 exactly.
    small = colours.copy()
    assert np.array_equal(pre.torchvision_crop(small, 2), colours[:, 2:4])
    assert np.array_equal(pre.pil_bicubic_crop(small, 2), colours[:, 1:3])  # (5 - 2) // 2 = 1


# --------------------------------------------------------------------------------------------
# the config field, the evaluation set and the protocol
# --------------------------------------------------------------------------------------------
def test_the_field_offers_exactly_the_registered_rules_and_defaults_to_ldm():
    field_type = typing.get_type_hints(config.EvalConfig)["preprocess"]
    assert set(typing.get_args(field_type)) == set(pre.PREPROCESS) == set(pre.DESCRIPTIONS)
    assert config.EvalConfig().preprocess == pre.DEFAULT_PREPROCESS == "ldm"
    with pytest.raises(config.ConfigError, match="eval.preprocess"):
        config.validate(config.apply_overrides(config.ExperimentConfig(), {"eval.preprocess": "bilinear"}))


def folder_cfg(folder, **overrides) -> config.ExperimentConfig:
    base = {"data.kind": "folder", "data.name": "photos", "data.path": str(folder), "data.resolution": 64}
    base |= {"eval.path": str(folder), "eval.name": "photos", "eval.num_images": "all"}
    return config.validate(config.apply_overrides(config.ExperimentConfig(), base | overrides))


@pytest.mark.parametrize("name, reference", [("ldm", albumentations_ldm), ("adm", adm_written_out)])
def test_the_evaluation_set_reads_through_the_named_rule(photo_files, name, reference):
    cfg = folder_cfg(photo_files[0].parent, **{"eval.preprocess": name})
    ds = eval_sets.evaluation_set(cfg.data, cfg.eval, 64)
    for i in (0, len(ds) - 1):
        expected = reference(photo_files[0].parent / ds.files[i], 64)
        assert grey_levels(ds.pixels(i), expected) <= 1
        assert torch.equal(ds[i], datasets.to_tensor(ds.pixels(i)))


def test_the_protocol_names_the_rule_and_each_rule_has_its_own_id(photo_files):
    folder = photo_files[0].parent
    ps = {name: protocol.protocol(folder_cfg(folder, **{"eval.preprocess": name})) for name in pre.PREPROCESS}
    assert len({protocol.protocol_id(p) for p in ps.values()}) == len(pre.PREPROCESS)
    assert len({protocol.reference_id(p, 9) for p in ps.values()}) == len(pre.PREPROCESS)  # FID references too
    assert ps["ldm"]["resize"].startswith("ldm:") and "crop=ldm+center" in ps["ldm"]["dataset"]["fingerprint"]
    # pil_bicubic keeps the words of the protocols recorded before the field, so their ids stay reachable
    assert ps["pil_bicubic"]["resize"] == "shorter side to the resolution, PIL bicubic"
    assert "crop=shorter-side-bicubic+center" in ps["pil_bicubic"]["dataset"]["fingerprint"]
    # the sample photos keep their grid crops: the field does not enter their protocol
    samples = [config.apply_overrides(config.ExperimentConfig(), {"eval.preprocess": n}) for n in ("ldm", "adm")]
    assert protocol.protocol_id(protocol.protocol(samples[0])) == protocol.protocol_id(protocol.protocol(samples[1]))


# --------------------------------------------------------------------------------------------
# reconstruct --preprocess NAME --save-inputs
# --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    mult = (1, 1, 1, 1)
    return build_autoencoder(
        AutoencoderArgs(SDEncoderArgs(32, mult, num_res_blocks=1), 4, True, DecoderArgs(32, mult, blocks_per_level=1))
    )


@pytest.mark.usefixtures("one_thread")
@pytest.mark.parametrize(
    "name, reference", [("ldm", albumentations_ldm), ("adm", adm_written_out), ("torchvision", lightningdit)]
)
def test_reconstruct_saves_the_input_the_autoencoder_read(model, photo_files, tmp_path, name, reference):
    chosen = [p for p in photo_files if p.stem in ("chelsea", "retina")]  # landscape 300 x 451, square 1411
    written = reconstruct_files(model, chosen, tmp_path, 64, preprocess=name, save_inputs=True)
    for source, target in zip(chosen, written):
        seen = np.asarray(Image.open(input_path(target)))
        assert input_path(target).name == f"{source.stem}.input.png"
        assert grey_levels(seen, reference(source, 64)) <= 1
        x = datasets.to_tensor(seen)[None]
        with torch.no_grad():
            x_hat = model.decode(model.encode(x).mean)
        expected = ((x_hat.clamp(-1, 1) + 1) * 127.5).round()[0].permute(1, 2, 0).to(torch.uint8).numpy()
        assert np.array_equal(np.asarray(Image.open(target)), expected)  # reconstructed from that input


def test_reconstruct_refuses_an_unknown_rule_and_a_clash_with_an_input_name(model, tmp_path):
    Image.fromarray(block_image(2, 3, 8)[0]).save(tmp_path / "cat.png")
    Image.fromarray(block_image(2, 3, 8)[0]).save(tmp_path / "cat.input.jpg")
    with pytest.raises(ReconstructError, match="bilinear"):
        reconstruct_files(model, [tmp_path / "cat.png"], tmp_path / "out", 16, preprocess="bilinear")
    with pytest.raises(ReconstructError, match="cat.input.png"):
        reconstruct_files(
            model, [tmp_path / "cat.png", tmp_path / "cat.input.jpg"], tmp_path / "out", 16, save_inputs=True
        )
    assert not (tmp_path / "out").exists()
    assert len(reconstruct_files(model, [tmp_path / "cat.png", tmp_path / "cat.input.jpg"], tmp_path / "out", 16)) == 2
