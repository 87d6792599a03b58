"""The metrics themselves, on tensors: PSNR, SSIM, LPIPS, Inception features and the Frechet
distance (rFID), plus the field's other conventions on the same uint8 images. Pure functions;
which images, which protocol and where records go is study/evaluation/evaluate.py's part. The
conventions: docs/evaluation.md, "The metric functions' conventions".
"""

from __future__ import annotations

import hashlib
import math
from pathlib import Path
from typing import Any, Iterable, Iterator, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from study.measure import weights

FID_EXTRACTOR = "inception-v3-compat"
FID_LAYER = "2048"
SSIM_WINDOW, SSIM_SIGMA, SSIM_K1, SSIM_K2 = 11, 1.5, 0.01, 0.03
SSIM_UNIFORM_WINDOW = 7  # scikit-image's default win_size
LUMA_BT601 = (65.481, 128.553, 24.966)  # R, G, B weights of Y on [0, 255] values (scikit-image rgb2ycbcr)


# --------------------------------------------------------------------------------------------
# images
# --------------------------------------------------------------------------------------------
def to_uint8(x: Tensor) -> Tensor:
    """[-1, 1] floats -> uint8 [0, 255], rounded to nearest (values outside are clipped)."""
    return ((x.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)


def _check_pair(x: Tensor, y: Tensor) -> None:
    if x.shape != y.shape or x.dim() != 4:
        raise ValueError(f"expected two N x C x H x W batches of one shape, got {tuple(x.shape)} and {tuple(y.shape)}")
    if x.dtype != torch.uint8 or y.dtype != torch.uint8:
        raise TypeError(f"expected uint8 images, got {x.dtype} and {y.dtype} (see to_uint8)")


# --------------------------------------------------------------------------------------------
# PSNR, SSIM, LPIPS
# --------------------------------------------------------------------------------------------
def psnr(x: Tensor, y: Tensor) -> Tensor:
    """Per-image PSNR in dB (float64, shape N) of two uint8 N x C x H x W batches, peak 255."""
    _check_pair(x, y)
    return _psnr(x.double(), y.double())


def _psnr(a: Tensor, b: Tensor) -> Tensor:
    mse = (a - b).pow(2).flatten(1).mean(1)
    return 10 * torch.log10(255.0**2 / mse)  # mse == 0 -> +inf


def luma(x: Tensor) -> Tensor:
    """ITU-R BT.601 luma of a uint8 N x 3 x H x W batch as float64 N x 1 x H x W in [16, 235],
    not rounded: ``16 + (65.481 R + 128.553 G + 24.966 B) / 255``, scikit-image's
    ``rgb2ycbcr(...)[..., 0]`` (the Y channel super-resolution harnesses measure)."""
    if x.dim() != 4 or x.shape[1] != 3:
        raise ValueError(f"expected N x 3 x H x W RGB images, got {tuple(x.shape)}")
    weights = torch.tensor(LUMA_BT601, dtype=torch.float64, device=x.device).view(1, 3, 1, 1)
    return 16.0 + (x.double() * weights).sum(1, keepdim=True) / 255.0


def psnr_luma(x: Tensor, y: Tensor) -> Tensor:
    """Per-image PSNR in dB (float64, shape N) of the BT.601 luma of two uint8 RGB batches, peak 255."""
    _check_pair(x, y)
    return _psnr(luma(x), luma(y))


class SetPsnr:
    """PSNR of a whole set: ``10 log10(255^2 / MSE)`` with one MSE over every value of every
    image (not a mean of per-image PSNRs), accumulated over uint8 batches."""

    def __init__(self) -> None:
        self.sum_sq, self.count = 0.0, 0

    def update(self, x: Tensor, y: Tensor) -> None:
        _check_pair(x, y)
        self.sum_sq += float((x.double() - y.double()).pow(2).sum())
        self.count += x.numel()

    def value(self) -> float:
        if not self.count:
            raise ValueError("a PSNR needs at least one image")
        return 10 * math.log10(255.0**2 * self.count / self.sum_sq) if self.sum_sq else math.inf


def _gaussian_window(
    size: int = SSIM_WINDOW, sigma: float = SSIM_SIGMA, dtype: torch.dtype = torch.float64, device: Any = None
) -> Tensor:
    r = torch.arange(size, dtype=dtype, device=device) - (size - 1) / 2
    g = torch.exp(-0.5 * (r / sigma) ** 2)
    return g / g.sum()


def ssim(x: Tensor, y: Tensor, data_range: float = 255.0) -> Tensor:
    """Per-image SSIM (float64, shape N) of two uint8 N x C x H x W batches (see the module
    docstring; scikit-image's Gaussian SSIM with population statistics, mean over channels)."""
    _check_pair(x, y)
    return ssim_planes(x.double(), y.double(), data_range, "gaussian")


def ssim_skimage(x: Tensor, y: Tensor, data_range: float = 255.0) -> Tensor:
    """Per-image SSIM of two uint8 batches under scikit-image's defaults: a uniform 7 x 7
    window and sample (N - 1) statistics, mean over channels. ``data_range`` 510 on these
    [0, 255] values is ``data_range=2.0`` on the same images scaled to [0, 1]."""
    _check_pair(x, y)
    return ssim_planes(x.double(), y.double(), data_range, "uniform")


def ssim_luma(x: Tensor, y: Tensor) -> Tensor:
    """Per-image Gaussian SSIM (as ``ssim``) of the BT.601 luma of two uint8 RGB batches."""
    _check_pair(x, y)
    return ssim_planes(luma(x), luma(y), 255.0, "gaussian")


def ssim_planes(a: Tensor, b: Tensor, data_range: float, window: Literal["gaussian", "uniform"]) -> Tensor:
    """Per-image SSIM of float64 N x C x H x W batches: per channel, averaged over the positions
    where the window fits, then over channels. ``gaussian``: 11 x 11, sigma 1.5, population
    statistics; ``uniform``: 7 x 7 mean, sample statistics (scikit-image's ``cov_norm``)."""
    n, c, h, w = a.shape
    size = SSIM_WINDOW if window == "gaussian" else SSIM_UNIFORM_WINDOW
    if min(h, w) < size:
        raise ValueError(f"SSIM needs images of at least {size}x{size}, got {h}x{w}")
    if window == "gaussian":
        g, cov_norm = _gaussian_window(device=a.device), 1.0
    else:
        g, cov_norm = torch.full((size,), 1.0 / size, dtype=torch.float64, device=a.device), size**2 / (size**2 - 1)
    gh, gw = g.view(1, 1, 1, -1), g.view(1, 1, -1, 1)

    def blur(t: Tensor) -> Tensor:  # separable, valid positions only (scikit-image crops the rest)
        return F.conv2d(F.conv2d(t, gh), gw)

    a, b = a.reshape(n * c, 1, h, w), b.reshape(n * c, 1, h, w)
    stacked = blur(torch.cat([a, b, a * a, b * b, a * b]))
    mu_a, mu_b, aa, bb, ab = stacked.split(n * c)
    var_a, var_b, cov = (aa - mu_a**2) * cov_norm, (bb - mu_b**2) * cov_norm, (ab - mu_a * mu_b) * cov_norm
    c1, c2 = (SSIM_K1 * data_range) ** 2, (SSIM_K2 * data_range) ** 2
    s = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))
    return s.reshape(n, c, -1).mean(2).mean(1)


def lpips_distance(model: torch.nn.Module, x: Tensor, y: Tensor) -> Tensor:
    """Per-image LPIPS (float64, shape N) of two uint8 N x C x H x W batches with an ``lpips``
    model (``study.measure.weights.load_lpips``), fed the images scaled to [-1, 1]."""
    _check_pair(x, y)
    with torch.no_grad():
        d = model(x.float() / 127.5 - 1, y.float() / 127.5 - 1)
    return d.flatten().double()


# --------------------------------------------------------------------------------------------
# Frechet distance
# --------------------------------------------------------------------------------------------
_EIGH_CACHE: dict[str, tuple[np.ndarray, np.ndarray]] = {}


def _eigh(s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """eigh of a symmetric matrix, memoised by content (the reference covariance is shared by
    every run evaluated under a protocol; its 2048 x 2048 decomposition is the costly part)."""
    key = hashlib.sha1(s.tobytes()).hexdigest() + str(s.shape)
    if key not in _EIGH_CACHE:
        if len(_EIGH_CACHE) >= 4:
            _EIGH_CACHE.pop(next(iter(_EIGH_CACHE)))
        _EIGH_CACHE[key] = np.linalg.eigh((s + s.T) / 2)
    return _EIGH_CACHE[key]


def frechet_distance(mu1: Any, s1: Any, mu2: Any, s2: Any) -> float:
    """||mu1 - mu2||^2 + tr(S1) + tr(S2) - 2 tr sqrt(S1 S2) in float64.

    With S1 = R R^T (R = V sqrt(w) over the eigenpairs of S1 above rank tolerance), the non-zero
    eigenvalues of S1 S2 are those of the small symmetric PSD matrix R^T S2 R (k x k, k the rank of
    S1: n - 1 for a set of n <= 2048 images). Working in the range of S1 keeps the rounding noise of
    its null space out of the square roots (where it would add sqrt(eps)-sized terms per dimension):
    a set against itself gives 0 to ~1e-12. Eigenvalues below ``max * size * eps`` (S1's and those
    of R^T S2 R) count as zero, the rank tolerance numpy's ``matrix_rank`` uses."""
    mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
    s1, s2 = np.asarray(s1, np.float64), np.asarray(s2, np.float64)
    if mu1.shape != mu2.shape or s1.shape != s2.shape or s1.shape != (mu1.size, mu1.size):
        raise ValueError(f"shapes do not match: {mu1.shape} {s1.shape} {mu2.shape} {s2.shape}")
    eps = np.finfo(np.float64).eps
    w, v = _eigh(s1)
    keep = w > max(w.max(), 0.0) * len(w) * eps
    r = v[:, keep] * np.sqrt(w[keep])
    m = r.T @ s2 @ r
    ev = np.linalg.eigvalsh((m + m.T) / 2) if len(m) else np.zeros(0)
    ev = ev[ev > max(ev.max(initial=0.0), 0.0) * max(len(ev), 1) * eps]
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(s1) + np.trace(s2) - 2 * np.sqrt(ev).sum())


class FeatureStats:
    """Running mean and covariance of feature rows in float64: each batch's mean and centred
    scatter are merged (Chan et al.), so the result does not depend on how rows are batched."""

    def __init__(self) -> None:
        self.n = 0
        self._mean: Tensor | None = None
        self._m2: Tensor | None = None

    def update(self, features: Tensor) -> None:
        f = features.detach().double().flatten(1)
        b = f.shape[0]
        if b == 0:
            return
        mb = f.mean(0)
        centred = f - mb
        m2b = centred.T @ centred
        if self._mean is None or self._m2 is None:
            self.n, self._mean, self._m2 = b, mb, m2b
            return
        n = self.n + b
        delta = mb - self._mean
        self._mean = self._mean + delta * (b / n)
        self._m2 = self._m2 + m2b + torch.outer(delta, delta) * (self.n * b / n)
        self.n = n

    def mean(self) -> np.ndarray:
        if self._mean is None:
            raise ValueError("a mean needs at least 1 row")
        return self._mean.cpu().numpy()

    def cov(self) -> np.ndarray:
        if self._m2 is None or self.n < 2:
            raise ValueError("a covariance needs at least 2 rows")
        return (self._m2 / (self.n - 1)).cpu().numpy()


# --------------------------------------------------------------------------------------------
# Inception features (torch-fidelity's extractor, fed uint8 batches)
# --------------------------------------------------------------------------------------------
def inception_extractor(weights_path: str | Path, device: Any = "cpu") -> torch.nn.Module:
    """torch-fidelity's ``inception-v3-compat`` with the pool3 output, loaded from a local file."""
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    model = FeatureExtractorInceptionV3(FID_EXTRACTOR, [FID_LAYER], feature_extractor_weights_path=str(weights_path))
    return model.to(torch.device(device)).eval()


def inception_features(extractor: torch.nn.Module, images: Tensor) -> Tensor:
    """Pool3 features (N x 2048, float32) of a uint8 N x 3 x H x W batch."""
    with torch.no_grad():
        (features,) = extractor(images)
    return features


class PngFolder(Dataset):
    """The ``*.png`` files of a folder (sorted by name) as uint8 3 x H x W tensors, read as
    torch-fidelity reads them (PIL, RGB)."""

    def __init__(self, folder: str | Path):
        self.files = sorted(p for p in Path(folder).iterdir() if p.suffix.lower() == ".png")
        if not self.files:
            raise FileNotFoundError(f"no .png files in {folder}")

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> Tensor:
        from PIL import Image

        with Image.open(self.files[i]) as im:
            return torch.from_numpy(np.array(im.convert("RGB"))).permute(2, 0, 1).contiguous()


class Uint8Images(Dataset):
    """An N x 3 x H x W uint8 tensor as a Dataset of its images."""

    def __init__(self, images: Tensor):
        if images.dtype != torch.uint8 or images.dim() != 4:
            raise TypeError("expected an N x 3 x H x W uint8 tensor")
        self.images = images

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> Tensor:
        return self.images[i]


ImageSource = Dataset | Tensor | str | Path


def as_uint8_dataset(source: ImageSource) -> Dataset:
    """A Dataset of uint8 3 x H x W tensors from a Dataset, an N x 3 x H x W uint8 tensor or a
    folder of PNG files."""
    if isinstance(source, (str, Path)):
        return PngFolder(source)
    if isinstance(source, Tensor):
        return Uint8Images(source)
    return source


def write_pngs(images: Tensor, folder: str | Path, start: int = 0) -> None:
    """Save a uint8 N x 3 x H x W batch as ``<index:06d>.png`` (lossless)."""
    from PIL import Image

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for i, img in enumerate(images.cpu()):
        Image.fromarray(img.permute(1, 2, 0).numpy()).save(folder / f"{start + i:06d}.png")


def with_progress(iterable: Iterable, total: int, enabled: bool, desc: str) -> Iterator:
    """``iterable`` unchanged, with a tqdm bar counting images when ``enabled``."""
    if not enabled:
        yield from iterable
        return
    from tqdm import tqdm

    with tqdm(total=total, desc=desc, unit="img", leave=False, dynamic_ncols=True) as bar:
        for item in iterable:
            yield item
            bar.update(len(item) if isinstance(item, Tensor) else len(item[0]))


def feature_stats(
    source: ImageSource,
    extractor: torch.nn.Module,
    *,
    batch_size: int = 64,
    device: Any = "cpu",
    progress: bool = False,
    desc: str = "features",
) -> FeatureStats:
    """Pool3 statistics of every image of ``source`` (see ``as_uint8_dataset``)."""
    ds = as_uint8_dataset(source)
    device = torch.device(device)
    stats = FeatureStats()
    loader = DataLoader(ds, batch_size=batch_size, shuffle=False, num_workers=0, pin_memory=device.type == "cuda")
    for batch in with_progress(loader, len(ds), progress, desc):  # type: ignore[arg-type]
        stats.update(inception_features(extractor, batch.to(device, non_blocking=True)))
    return stats


def fid_between(
    a: ImageSource,
    b: ImageSource,
    *,
    weights_path: str | Path | None = None,
    device: Any = "cpu",
    batch_size: int = 64,
    progress: bool = False,
    extractor: torch.nn.Module | None = None,
) -> float:
    """FID between two image sets (in-memory uint8 datasets/tensors or PNG folders)."""
    extractor = extractor or inception_extractor(weights_path or weights.inception_weights_path(), device)
    sa = feature_stats(a, extractor, batch_size=batch_size, device=device, progress=progress, desc="set 1")
    sb = feature_stats(b, extractor, batch_size=batch_size, device=device, progress=progress, desc="set 2")
    return frechet_distance(sa.mean(), sa.cov(), sb.mean(), sb.cov())
