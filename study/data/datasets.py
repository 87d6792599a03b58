"""Training and evaluation images: an image folder, or the photographs shipped with scikit-image.

Every item is a float32 tensor 3 x R x R in [-1, 1] (``x / 127.5 - 1``). The two sources
(``data.kind``), their splits, crops and resizing (a folder's evaluation crops by the named rule
of study/data/preprocess.py, ``eval.preprocess``), the endless deterministic training stream and
the errors are described in docs/data.md.
"""

from __future__ import annotations

import functools
import hashlib
import math
import operator
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from study.config import DataConfig
from study.data.files import (  # the file listing, re-exported as part of this module's API
    IMAGE_SUFFIXES as IMAGE_SUFFIXES,
)
from study.data.files import DataError as DataError
from study.data.files import decode_image as decode_image
from study.data.files import image_files as image_files
from study.data.files import is_heldout as is_heldout
from study.data.files import list_images as list_images
from study.data.files import read_list as read_list
from study.data.files import split_hash as split_hash
from study.data.preprocess import RESAMPLE as RESAMPLE  # the resize functions, re-exported
from study.data.preprocess import preprocess as preprocess_fn
from study.data.preprocess import resize as resize
from study.data.preprocess import resize_shorter_side as resize_shorter_side


class DataWarning(UserWarning):
    """A training image was skipped (corrupt or unreadable); the message names it."""


# Seeds of the independent random streams drawn from one (seed, index) pair.
_ORDER_STREAM, _CROP_STREAM, _EVAL_GRID_STREAM = 0, 1, 2

# Bumped whenever a change alters which pixels an item holds (part of the fingerprint).
_FORMAT = 1


# --------------------------------------------------------------------------------------------
# pixels and randomness
# --------------------------------------------------------------------------------------------
def check_resolution(resolution: int, where: str) -> int:
    """``resolution`` if it is a positive multiple of 8 (the latent is R/8), else a DataError."""
    if isinstance(resolution, bool) or not isinstance(resolution, int) or resolution < 8 or resolution % 8:
        raise DataError(
            f"{where}: resolution {resolution!r} is not a positive multiple of 8 (the latent is resolution/8)"
        )
    return resolution


def to_tensor(image: np.ndarray) -> torch.Tensor:
    """uint8 H x W x 3 -> float32 3 x H x W in [-1, 1]."""
    chw = torch.from_numpy(np.array(image, dtype=np.uint8)).permute(2, 0, 1)  # a writable copy
    return (chw.to(torch.float32) / 127.5 - 1.0).contiguous()


def _rng(seed: int, stream: int, index: int) -> np.random.Generator:
    return np.random.default_rng([seed, stream, index])


def _check_index(i: int) -> int:
    i = operator.index(i)
    if i < 0:
        raise IndexError(f"the training stream takes non-negative indices, got {i}")
    return i


class _SkipCounter:
    """A skip count shared with DataLoader workers (a shared-memory tensor survives pickling)."""

    def __init__(self) -> None:
        self._count = torch.zeros((), dtype=torch.int64).share_memory_()

    def add(self, what: str, reason: BaseException) -> None:
        self._count.add_(1)
        warnings.warn(f"skipped {what}: {reason} ({int(self._count)} skipped so far)", DataWarning, stacklevel=3)

    def __int__(self) -> int:
        return int(self._count)


# --------------------------------------------------------------------------------------------
# folder
# --------------------------------------------------------------------------------------------
def folder_split(cfg: DataConfig, resolution: int) -> tuple[Path, list[str], list[str]]:
    """(folder, training files, held-out files in split-hash order)."""
    files = image_files(cfg.path, cfg.list)
    folder = Path(cfg.path).expanduser()
    check_resolution(resolution, str(folder))
    heldout = sorted((f for f in files if is_heldout(f, cfg.val_fraction)), key=lambda f: (split_hash(f), f))
    train = [f for f in files if not is_heldout(f, cfg.val_fraction)]
    if not train:
        raise DataError(
            f"{folder}: all {len(files)} images fall in the held-out split "
            f"(val_fraction={cfg.val_fraction}); add images or lower data.val_fraction"
        )
    if not heldout:
        raise DataError(
            f"{folder}: none of its {len(files)} images falls in the held-out split "
            f"(val_fraction={cfg.val_fraction}); add images or raise data.val_fraction"
        )
    return folder, train, heldout


class FolderTrain(Dataset):
    """Endless deterministic stream of random crops of a folder's training files."""

    def __init__(self, folder: Path, files: list[str], resolution: int, seed: int, hflip: bool):
        self.folder, self.files, self.resolution = folder, files, resolution
        self.seed, self.hflip = seed, hflip
        self._skips = _SkipCounter()
        self._order_cache: tuple[int, np.ndarray] | None = None
        self._check_readable()

    def _check_readable(self) -> None:
        """Fail before training when not a single file decodes."""
        errors = []
        for name in self.files:
            try:
                decode_image(self.folder / name)
                return
            except DataError as err:
                errors.append(str(err))
        raise DataError(
            f"{self.folder}: no readable image among its {len(self.files)} training files; "
            "first errors: " + "; ".join(errors[:3])
        )

    @property
    def skipped(self) -> int:
        """How many times an unreadable file was skipped (in this process and its workers)."""
        return int(self._skips)

    def __len__(self) -> int:
        return len(self.files)

    def order(self, epoch: int) -> np.ndarray:
        """The permutation of the training files visited in ``epoch`` (seeded by seed, epoch)."""
        if self._order_cache is None or self._order_cache[0] != epoch:
            self._order_cache = (epoch, _rng(self.seed, _ORDER_STREAM, epoch).permutation(len(self.files)))
        return self._order_cache[1]

    def __getitem__(self, i: int) -> torch.Tensor:
        i = _check_index(i)
        n = len(self.files)
        epoch, pos = divmod(i, n)
        order = self.order(epoch)
        for k in range(n):
            path = self.folder / self.files[order[(pos + k) % n]]
            try:
                image = decode_image(path)
            except DataError as err:
                self._skips.add(str(path), err.__cause__ or err)
                continue
            return to_tensor(self._augment(image, _rng(self.seed, _CROP_STREAM, i)))
        raise DataError(f"{self.folder}: no readable image left among its {n} training files")

    def _augment(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        r = self.resolution
        image = resize_shorter_side(image, r)
        h, w = image.shape[:2]
        top, left = int(rng.integers(0, h - r + 1)), int(rng.integers(0, w - r + 1))
        flip = rng.random() < 0.5  # drawn even without flips: crops do not depend on hflip
        crop = image[top : top + r, left : left + r]
        return crop[:, ::-1] if self.hflip and flip else crop


class FolderEval(Dataset):
    """Center crops of the first ``num_images`` held-out files (no flips). Corrupt: DataError.

    ``preprocess`` names the resize and crop (study/data/preprocess.py); ``pixels(i)`` is the
    uint8 R x R x 3 image item ``i`` holds."""

    def __init__(self, folder: Path, files: list[str], resolution: int, preprocess: str = "pil_bicubic"):
        self.folder, self.files, self.resolution = folder, files, resolution
        self.preprocess, self._crop = preprocess, preprocess_fn(preprocess)

    def __len__(self) -> int:
        return len(self.files)

    def pixels(self, i: int) -> np.ndarray:
        return self._crop(decode_image(self.folder / self.files[i]), self.resolution)

    def __getitem__(self, i: int) -> torch.Tensor:
        return to_tensor(self.pixels(i))


# --------------------------------------------------------------------------------------------
# samples: the photographs inside scikit-image
# --------------------------------------------------------------------------------------------
SAMPLE_PHOTOS = (
    "astronaut",
    "chelsea",
    "coffee",
    "rocket",
    "hubble_deep_field",
    "immunohistochemistry",
    "retina",
    "motorcycle_left",
    "motorcycle_right",
)
SAMPLE_HOLDOUT = 0.25
SAMPLE_MAX_ZOOM_OUT = 4
_SAMPLES_WHERE = "the scikit-image sample photos"


@functools.lru_cache(maxsize=1)
def sample_photos() -> dict[str, np.ndarray]:
    """The sample photos as read-only uint8 H x W x 3 arrays, decoded once per process."""
    import skimage.data

    loaders = {name: getattr(skimage.data, name) for name in SAMPLE_PHOTOS[:7]}
    photos = {name: load() for name, load in loaders.items()}
    photos["motorcycle_left"], photos["motorcycle_right"], _ = skimage.data.stereo_motorcycle()
    for name, photo in photos.items():
        if photo.dtype != np.uint8 or photo.ndim != 3 or photo.shape[2] != 3:
            raise DataError(f"{_SAMPLES_WHERE}: {name} is not an RGB uint8 photo ({photo.dtype}, {photo.shape})")
        photo.setflags(write=False)
    return {name: photos[name] for name in SAMPLE_PHOTOS}


@dataclass(frozen=True)
class Region:
    """A rectangle of one photo: rows [top, top + height), columns [left, left + width)."""

    photo: str
    top: int
    left: int
    height: int
    width: int


@dataclass(frozen=True)
class Crop:
    """A square of side ``size`` source pixels at (top, left) of ``photo``, mirrored if ``flip``."""

    photo: str
    top: int
    left: int
    size: int
    flip: bool = False


def sample_regions(photo: str, heldout: bool) -> Region:
    """The training region (left 3/4) or the held-out strip (right 1/4) of a sample photo."""
    h, w = sample_photos()[photo].shape[:2]
    boundary = w - round(w * SAMPLE_HOLDOUT)
    return Region(photo, 0, boundary, h, w - boundary) if heldout else Region(photo, 0, 0, h, boundary)


def _crop_sizes(region: Region, resolution: int) -> tuple[int, int]:
    """The smallest and largest crop side: native scale up to 4x zoom-out, inside the region."""
    m = min(region.height, region.width)
    return min(resolution, m), min(m, SAMPLE_MAX_ZOOM_OUT * resolution)


def render(crop: Crop, resolution: int) -> torch.Tensor:
    """The pixels of ``crop`` resized to resolution x resolution, as a tensor in [-1, 1]."""
    pixels = sample_photos()[crop.photo][crop.top : crop.top + crop.size, crop.left : crop.left + crop.size]
    pixels = resize(pixels, resolution, resolution)
    return to_tensor(pixels[:, ::-1] if crop.flip else pixels)


class SampleTrain(Dataset):
    """Endless deterministic stream of random crops of the photos' training regions."""

    def __init__(self, resolution: int, seed: int, hflip: bool):
        self.resolution, self.seed, self.hflip = resolution, seed, hflip
        self.regions = [sample_regions(name, heldout=False) for name in SAMPLE_PHOTOS]
        self.skipped = 0  # the photos are in memory: nothing is ever skipped

    def __len__(self) -> int:
        return len(self.regions)

    def crop(self, i: int) -> Crop:
        """Where item ``i`` comes from (photo by the epoch's permutation, crop by (seed, i))."""
        i = _check_index(i)
        epoch, pos = divmod(i, len(self.regions))
        region = self.regions[_rng(self.seed, _ORDER_STREAM, epoch).permutation(len(self.regions))[pos]]
        rng = _rng(self.seed, _CROP_STREAM, i)
        lo, hi = _crop_sizes(region, self.resolution)
        size = min(hi, max(lo, round(math.exp(rng.uniform(math.log(lo), math.log(hi))))))
        top = region.top + int(rng.integers(0, region.height - size + 1))
        left = region.left + int(rng.integers(0, region.width - size + 1))
        flip = rng.random() < 0.5  # drawn even without flips: crops do not depend on hflip
        return Crop(region.photo, top, left, size, self.hflip and flip)

    def __getitem__(self, i: int) -> torch.Tensor:
        return render(self.crop(i), self.resolution)


@functools.lru_cache(maxsize=8)
def eval_crops(resolution: int) -> tuple[Crop, ...]:
    """Every evaluation crop of the held-out strips, in the order eval_set takes them."""
    per_photo = []
    for p, name in enumerate(SAMPLE_PHOTOS):
        region = sample_regions(name, heldout=True)
        lo, hi = _crop_sizes(region, resolution)
        per_size, k, size = [], 0, lo
        while size <= hi:
            stride = max(1, size // 2)
            grid = [
                Crop(name, region.top + t, region.left + l, size)
                for t in range(0, region.height - size + 1, stride)
                for l in range(0, region.width - size + 1, stride)
            ]
            shuffle = _rng(p, _EVAL_GRID_STREAM, k).permutation(len(grid))
            per_size.append([grid[j] for j in shuffle])
            k += 1
            size = round(lo * 2 ** (k / 2))
        per_photo.append(_interleave(per_size))
    return tuple(_interleave(per_photo))


def _interleave(lists: list[list[Crop]]) -> list[Crop]:
    """Round robin: the first of each list, then the second of each, ..."""
    longest = max((len(x) for x in lists), default=0)
    return [x[j] for j in range(longest) for x in lists if j < len(x)]


class SampleEval(Dataset):
    """The first ``num_images`` crops of the held-out grid (no flips)."""

    def __init__(self, crops: tuple[Crop, ...], resolution: int):
        self.crops, self.resolution = crops, resolution

    def __len__(self) -> int:
        return len(self.crops)

    def __getitem__(self, i: int) -> torch.Tensor:
        return render(self.crops[i], self.resolution)


@functools.lru_cache(maxsize=1)
def photos_digest() -> str:
    h = hashlib.sha256()
    for name, photo in sample_photos().items():
        h.update(f"{name}:{photo.shape}".encode())
        h.update(photo.tobytes())
    return h.hexdigest()[:16]


# --------------------------------------------------------------------------------------------
# the entry points
# --------------------------------------------------------------------------------------------
def train_set(cfg: DataConfig, resolution: int, seed: int) -> Dataset:
    """The endless training stream at ``resolution`` (see the module docstring).

    ``len`` is the number of distinct source items (files, or photos), for epoch bookkeeping;
    any non-negative index is valid. ``.skipped`` counts skipped unreadable files."""
    if cfg.kind == "folder":
        folder, train, _ = folder_split(cfg, resolution)
        return FolderTrain(folder, train, resolution, seed, cfg.hflip)
    check_resolution(resolution, _SAMPLES_WHERE)
    return SampleTrain(resolution, seed, cfg.hflip)


def eval_set(cfg: DataConfig, resolution: int, num_images: int, preprocess: str = "pil_bicubic") -> Dataset:
    """``num_images`` deterministic held-out center crops (folder, resized by ``preprocess``) or
    grid crops (samples, which keep their own bicubic grid)."""
    if num_images < 1:
        raise DataError(f"num_images must be >= 1, got {num_images}")
    if cfg.kind == "folder":
        folder, _, heldout = folder_split(cfg, resolution)
        if num_images > len(heldout):
            raise DataError(
                f"{folder}: {len(heldout)} images are held out "
                f"(val_fraction={cfg.val_fraction}); asked to evaluate {num_images}"
            )
        return FolderEval(folder, heldout[:num_images], resolution, preprocess)
    check_resolution(resolution, _SAMPLES_WHERE)
    crops = eval_crops(resolution)
    if num_images > len(crops):
        raise DataError(
            f"{_SAMPLES_WHERE}: their held-out strips give {len(crops)} distinct "
            f"{resolution}x{resolution} crops; asked to evaluate {num_images}"
        )
    return SampleEval(crops[:num_images], resolution)


def crop_rule(preprocess: str) -> str:
    """A folder's crop rule in a fingerprint (``pil_bicubic`` keeps the words used before the choice)."""
    preprocess_fn(preprocess)  # a ValueError for an unknown name
    return "shorter-side-bicubic+center" if preprocess == "pil_bicubic" else f"{preprocess}+center"


def dataset_fingerprint(cfg: DataConfig, resolution: int, preprocess: str = "pil_bicubic") -> str:
    """What the evaluation images are, as one line for the evaluation protocol's hash.

    It names the source and its content (a digest of the held-out file names, or of the photos'
    pixels), the split rule, the crop rule and the resolution; not the folder's location, and not
    the image count (the protocol records that itself)."""
    if cfg.kind == "folder":
        folder, _, heldout = folder_split(cfg, resolution)
        names = hashlib.sha256("\n".join(heldout).encode("utf-8")).hexdigest()[:16]
        return (
            f"data-v{_FORMAT} folder name={cfg.name} split=sha256(relpath)<{cfg.val_fraction!r} "
            f"heldout={len(heldout)} files sha256={names} order=split-hash "
            f"crop={crop_rule(preprocess)} resolution={resolution}"
        )
    check_resolution(resolution, _SAMPLES_WHERE)
    return (
        f"data-v{_FORMAT} samples photos={','.join(SAMPLE_PHOTOS)} sha256={photos_digest()} "
        f"heldout=right-{SAMPLE_HOLDOUT!r}-of-width crop=grid(stride=s/2,s=min(R,m)*2^(k/2)"
        f"<=min(m,{SAMPLE_MAX_ZOOM_OUT}R))+bicubic resolution={resolution}"
    )
