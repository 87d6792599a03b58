"""Evaluation preprocessing by name (``PREPROCESS``): how a decoded uint8 photo becomes the R x R
center crop an evaluation reads, under the convention of LDM (``ldm``, the default), ADM,
torchvision or this harness's earlier PIL bicubic rule. Each rule's exact sizes and offsets:
docs/data.md, "Evaluation preprocessing by name".
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from PIL import Image

RESAMPLE = Image.Resampling.BICUBIC

Preprocess = Callable[[np.ndarray, int], np.ndarray]


def resize(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """uint8 H x W x 3 resized with PIL's bicubic filter (antialiased when shrinking)."""
    if image.shape[:2] == (height, width):
        return image
    return np.asarray(Image.fromarray(image).resize((width, height), RESAMPLE))


def resize_shorter_side(image: np.ndarray, side: int) -> np.ndarray:
    """Scale (PIL bicubic) so that the shorter side is exactly ``side``, keeping the aspect ratio."""
    h, w = image.shape[:2]
    if h <= w:
        return resize(image, side, max(side, round(w * side / h)))
    return resize(image, max(side, round(h * side / w)), side)


def center_crop(image: np.ndarray, size: int) -> np.ndarray:
    """The size x size crop at offsets ((h - size) // 2, (w - size) // 2)."""
    h, w = image.shape[:2]
    top, left = (h - size) // 2, (w - size) // 2
    return image[top : top + size, left : left + size]


def pil_bicubic_crop(image: np.ndarray, size: int) -> np.ndarray:
    """Shorter side to ``size`` with PIL bicubic, then the center crop."""
    return center_crop(resize_shorter_side(image, size), size)


def ldm_crop(image: np.ndarray, size: int) -> np.ndarray:
    """taming's ``SmallestMaxSize(size)`` + ``CenterCrop(size, size)``, written with OpenCV."""
    import cv2  # imported where the rule runs: the command line and the launcher need none of it

    h, w = image.shape[:2]
    scale = size / min(h, w)
    new_h, new_w = max(1, round(h * scale)), max(1, round(w * scale))
    if (new_h, new_w) != (h, w):
        image = cv2.resize(np.ascontiguousarray(image), (new_w, new_h), interpolation=cv2.INTER_LINEAR)
    return center_crop(image, size)


def adm_crop(image: np.ndarray, size: int) -> np.ndarray:
    """ADM's ``center_crop_arr``: BOX halvings, a bicubic resize to shorter side ``size``, the crop."""
    pil = Image.fromarray(image)
    while min(pil.size) >= 2 * size:
        pil = pil.resize((pil.size[0] // 2, pil.size[1] // 2), resample=Image.Resampling.BOX)
    scale = size / min(pil.size)
    pil = pil.resize((round(pil.size[0] * scale), round(pil.size[1] * scale)), resample=RESAMPLE)
    return center_crop(np.asarray(pil), size)


def torchvision_crop(image: np.ndarray, size: int) -> np.ndarray:
    """torchvision ``Resize(size)`` + ``CenterCrop(size)`` on the [0, 1] float tensor, as uint8."""
    from torchvision.transforms import InterpolationMode  # imported where the rule runs
    from torchvision.transforms import functional as tvf

    x = torch.from_numpy(np.array(image, dtype=np.uint8)).permute(2, 0, 1).to(torch.float32) / 255.0  # a copy
    x = tvf.resize(x, [size], interpolation=InterpolationMode.BILINEAR, antialias=True)
    x = tvf.center_crop(x, [size, size])
    pixels = torch.floor(x * 255.0 + 0.5).clamp(0, 255).to(torch.uint8)
    return pixels.permute(1, 2, 0).numpy()


DEFAULT_PREPROCESS = "ldm"  # EvalConfig.preprocess's default

PREPROCESS: dict[str, Preprocess] = {
    "ldm": ldm_crop,
    "adm": adm_crop,
    "torchvision": torchvision_crop,
    "pil_bicubic": pil_bicubic_crop,
}

# One line each for the protocol record (study/evaluation/protocol.py). pil_bicubic keeps the
# wording protocols had before the choice existed, so their ids stay reachable.
DESCRIPTIONS: dict[str, str] = {
    "ldm": "ldm: OpenCV INTER_LINEAR shorter side to the resolution (albumentations SmallestMaxSize), "
    "sides round(side*R/shorter)",
    "adm": "adm: PIL BOX halving while shorter side >= 2R, then PIL bicubic shorter side to the resolution "
    "(guided-diffusion center_crop_arr)",
    "torchvision": "torchvision: Resize(R) bilinear antialias on the float tensor, CenterCrop(R) "
    "offsets round((h-R)/2), uint8 floor(255v+0.5)",
    "pil_bicubic": "shorter side to the resolution, PIL bicubic",
}


def preprocess(name: str) -> Preprocess:
    """The function registered under ``name``; a ValueError naming the choices otherwise."""
    try:
        return PREPROCESS[name]
    except KeyError:
        raise ValueError(f"unknown preprocess {name!r}; choose one of {', '.join(PREPROCESS)}") from None
