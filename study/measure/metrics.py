"""Evaluation: rFID, PSNR, SSIM and LPIPS under an explicit, hashed protocol.

The protocol (``protocol(cfg)``) is everything that decides what a number means: the dataset and
split (the data module's fingerprint), the image count, the resolution, the resize and crop, the
quantisation, the posterior mean or a sample, each metric's definition, the sha256 of the weights
each metric loads and the library versions. ``protocol_id`` hashes it; ``evaluate`` writes one
record per (run, protocol id) to ``results/runs/<run>/eval/<protocol_id>.json``, so a new protocol
adds a record beside the old ones and never retrains, and an old record is never mistaken for a
new one. See docs/evaluation.md.

Conventions (the LDM pipeline the paper cites, LITEVAE.md "Evaluation protocol"):

- Images are compared as uint8: ``round((clamp(x, -1, 1) + 1) * 127.5)`` for the originals (the
  eval set's float crops) and for the reconstructions alike, as if both were saved as PNG.
- rFID: torch-fidelity's Inception-v3 (``inception-v3-compat``, TF-1.x bilinear resize to 299,
  pool3, 2048 features) between all originals and all reconstructions; mean and unbiased covariance
  accumulated in float64 (a batched Chan/Welford merge, so neither depends on the batch size);
  the Frechet distance takes ``tr sqrt(S1 S2)`` from the eigenvalues of ``R^T S2 R`` where
  ``S1 = R R^T`` (real, and stable for the rank-deficient covariances of small sets). The originals' statistics
  are cached per reference id (the protocol fields that change them) under
  ``results/cache/fid_ref/<reference_id>.npz``.
- PSNR: per image ``10 log10(255^2 / MSE)`` over C x H x W of the uint8 values, then the mean over
  images (an exact reconstruction is +inf, and so is the mean then: reported, not hidden).
- SSIM: per channel with an 11 x 11 Gaussian window (sigma 1.5), K1 = 0.01, K2 = 0.03, L = 255,
  population (biased) variances, averaged over the positions where the window fits in the image,
  then over channels, then over images: scikit-image's ``structural_similarity(gaussian_weights=True,
  sigma=1.5, use_sample_covariance=False, data_range=255, channel_axis=0)``.
- LPIPS: the ``lpips`` package (v0.1 linear layers) on the uint8-quantised images scaled to
  [-1, 1], backbone ``eval.lpips_net`` (default AlexNet: the lpips authors' recommendation for
  use as a metric; the training loss uses VGG, and a model is not scored by the network it was
  optimised against). Mean over images.

Metrics whose weights are missing or corrupt are recorded in ``unavailable`` with the reason, never
as numbers; the others still run.
"""
from __future__ import annotations

import hashlib
import io
import os
import time
from importlib import metadata
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from study import config as C
from study import store
from study.measure import weights as W

PROTOCOL_VERSION = 1
FID_EXTRACTOR = "inception-v3-compat"
FID_LAYER = "2048"
SAMPLE_SEED = 0
SSIM_WINDOW, SSIM_SIGMA, SSIM_K1, SSIM_K2 = 11, 1.5, 0.01, 0.03


# --------------------------------------------------------------------------------------------
# images
# --------------------------------------------------------------------------------------------
def to_uint8(x: Tensor) -> Tensor:
    """[-1, 1] floats -> uint8 [0, 255], rounded to nearest (values outside are clipped)."""
    return ((x.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)


def _check_pair(x: Tensor, y: Tensor) -> None:
    if x.shape != y.shape or x.dim() != 4:
        raise ValueError(f"expected two N x C x H x W batches of one shape, got {tuple(x.shape)} "
                         f"and {tuple(y.shape)}")
    if x.dtype != torch.uint8 or y.dtype != torch.uint8:
        raise TypeError(f"expected uint8 images, got {x.dtype} and {y.dtype} (see to_uint8)")


def psnr(x: Tensor, y: Tensor) -> Tensor:
    """Per-image PSNR in dB (float64, shape N) of two uint8 N x C x H x W batches, peak 255."""
    _check_pair(x, y)
    mse = (x.double() - y.double()).pow(2).flatten(1).mean(1)
    return 10 * torch.log10(255.0**2 / mse)  # mse == 0 -> +inf


def _gaussian_window(size: int = SSIM_WINDOW, sigma: float = SSIM_SIGMA, dtype=torch.float64,
                     device: Any = None) -> Tensor:
    r = torch.arange(size, dtype=dtype, device=device) - (size - 1) / 2
    g = torch.exp(-0.5 * (r / sigma) ** 2)
    return g / g.sum()


def ssim(x: Tensor, y: Tensor, data_range: float = 255.0) -> Tensor:
    """Per-image SSIM (float64, shape N) of two uint8 N x C x H x W batches (see the module
    docstring; scikit-image's Gaussian SSIM with population statistics, mean over channels)."""
    _check_pair(x, y)
    n, c, h, w = x.shape
    if min(h, w) < SSIM_WINDOW:
        raise ValueError(f"SSIM needs images of at least {SSIM_WINDOW}x{SSIM_WINDOW}, got {h}x{w}")
    a = x.double().reshape(n * c, 1, h, w)
    b = y.double().reshape(n * c, 1, h, w)
    g = _gaussian_window(device=x.device)
    gh, gw = g.view(1, 1, 1, -1), g.view(1, 1, -1, 1)

    def blur(t: Tensor) -> Tensor:  # separable, valid positions only (scikit-image crops the rest)
        return F.conv2d(F.conv2d(t, gh), gw)

    stacked = blur(torch.cat([a, b, a * a, b * b, a * b]))
    mu_a, mu_b, aa, bb, ab = stacked.split(n * c)
    var_a, var_b, cov = aa - mu_a**2, bb - mu_b**2, ab - mu_a * mu_b
    c1, c2 = (SSIM_K1 * data_range) ** 2, (SSIM_K2 * data_range) ** 2
    s = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))
    return s.reshape(n, c, -1).mean(2).mean(1)


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
        if self.n == 0:
            self.n, self._mean, self._m2 = b, mb, m2b
            return
        n = self.n + b
        delta = mb - self._mean
        self._mean = self._mean + delta * (b / n)
        self._m2 = self._m2 + m2b + torch.outer(delta, delta) * (self.n * b / n)
        self.n = n

    def mean(self) -> np.ndarray:
        return self._mean.cpu().numpy()

    def cov(self) -> np.ndarray:
        if self.n < 2:
            raise ValueError("a covariance needs at least 2 rows")
        return (self._m2 / (self.n - 1)).cpu().numpy()


# --------------------------------------------------------------------------------------------
# Inception features (torch-fidelity's extractor, fed uint8 batches)
# --------------------------------------------------------------------------------------------
def inception_extractor(weights_path: str | Path, device: Any = "cpu"):
    """torch-fidelity's ``inception-v3-compat`` with the pool3 output, loaded from a local file."""
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    model = FeatureExtractorInceptionV3(FID_EXTRACTOR, [FID_LAYER],
                                        feature_extractor_weights_path=str(weights_path))
    return model.to(torch.device(device)).eval()


def inception_features(extractor, images: Tensor) -> Tensor:
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


class _Uint8Tensor(Dataset):
    def __init__(self, images: Tensor):
        self.images = images

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> Tensor:
        return self.images[i]


def as_uint8_dataset(source: Dataset | Tensor | str | Path) -> Dataset:
    """A Dataset of uint8 3 x H x W tensors from a Dataset, an N x 3 x H x W uint8 tensor or a
    folder of PNG files."""
    if isinstance(source, (str, Path)):
        return PngFolder(source)
    if isinstance(source, Tensor):
        if source.dtype != torch.uint8 or source.dim() != 4:
            raise TypeError("expected an N x 3 x H x W uint8 tensor")
        return _Uint8Tensor(source)
    return source


def write_pngs(images: Tensor, folder: str | Path, start: int = 0) -> None:
    """Save a uint8 N x 3 x H x W batch as ``<index:06d>.png`` (lossless)."""
    from PIL import Image

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for i, img in enumerate(images.cpu()):
        Image.fromarray(img.permute(1, 2, 0).numpy()).save(folder / f"{start + i:06d}.png")


def feature_stats(source: Dataset | Tensor | str | Path, extractor, *, batch_size: int = 64,
                  device: Any = "cpu", progress: bool = False, desc: str = "features") -> FeatureStats:
    """Pool3 statistics of every image of ``source`` (see ``as_uint8_dataset``)."""
    ds = as_uint8_dataset(source)
    device = torch.device(device)
    stats = FeatureStats()
    loader = DataLoader(ds, batch_size=batch_size, shuffle=False, num_workers=0,
                        pin_memory=device.type == "cuda")
    for batch in _progress(loader, len(ds), progress, desc):
        stats.update(inception_features(extractor, batch.to(device, non_blocking=True)))
    return stats


def fid_between(a: Dataset | Tensor | str | Path, b: Dataset | Tensor | str | Path, *,
                weights_path: str | Path | None = None, device: Any = "cpu", batch_size: int = 64,
                progress: bool = False, extractor=None) -> float:
    """FID between two image sets (in-memory uint8 datasets/tensors or PNG folders)."""
    extractor = extractor or inception_extractor(weights_path or W.inception_weights_path(), device)
    sa = feature_stats(a, extractor, batch_size=batch_size, device=device, progress=progress, desc="set 1")
    sb = feature_stats(b, extractor, batch_size=batch_size, device=device, progress=progress, desc="set 2")
    return frechet_distance(sa.mean(), sa.cov(), sb.mean(), sb.cov())


def _progress(iterable: Iterable, total: int, enabled: bool, desc: str) -> Iterator:
    if not enabled:
        yield from iterable
        return
    from tqdm import tqdm

    with tqdm(total=total, desc=desc, unit="img", leave=False, dynamic_ncols=True) as bar:
        for item in iterable:
            yield item
            bar.update(len(item) if isinstance(item, Tensor) else len(item[0]))


# --------------------------------------------------------------------------------------------
# the protocol
# --------------------------------------------------------------------------------------------
def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


def eval_resolution(cfg: C.ExperimentConfig) -> int:
    """``eval.resolution``, else ``data.resolution`` (EvalConfig's documented default)."""
    return cfg.eval.resolution or cfg.data.resolution


def protocol(cfg: C.ExperimentConfig, *, fingerprint: str | None = None) -> dict[str, Any]:
    """The evaluation protocol of ``cfg`` as plain JSON data (its hash is ``protocol_id``).

    ``fingerprint`` stands in for ``study.data.dataset_fingerprint`` when the images come from
    elsewhere (``evaluate(dataset=...)``)."""
    ev, data = cfg.eval, cfg.data
    resolution = eval_resolution(cfg)
    if fingerprint is None:
        from study.training.data import dataset_fingerprint

        fingerprint = dataset_fingerprint(data, resolution)
    metrics = sorted(ev.metrics)
    p: dict[str, Any] = {
        "version": PROTOCOL_VERSION,
        "dataset": {"kind": data.kind, "name": data.name, "split": "held-out",
                    "val_fraction": data.val_fraction if data.kind == "folder" else None,
                    "fingerprint": fingerprint},
        "num_images": ev.num_images,
        "resolution": resolution,
        "resize": "shorter side to the resolution, PIL bicubic" if data.kind == "folder"
                  else "square grid crops resized to the resolution, PIL bicubic",
        "crop": "center" if data.kind == "folder" else "held-out grid (see dataset.fingerprint)",
        "quantisation": "uint8 round((clamp(x,-1,1)+1)*127.5), originals and reconstructions",
        "posterior": ev.posterior,
        "metrics": metrics,
        "versions": {"torch": ".".join(torch.__version__.split("+")[0].split(".")[:2])},
    }
    if ev.posterior == "sample":
        p["sample_seed"] = SAMPLE_SEED
    if "rfid" in metrics:
        p["rfid"] = {"extractor": f"torch-fidelity {FID_EXTRACTOR}", "features": f"pool3 ({FID_LAYER})",
                     "weights_sha256": W.expected_sha256("inception"),
                     "statistics": "float64 mean and unbiased covariance; all originals vs all "
                                   "reconstructions"}
        p["versions"]["torch-fidelity"] = _version("torch-fidelity")
    if "lpips" in metrics:
        backbone = W.LPIPS_BACKBONES[ev.lpips_net]
        linear = W.lpips_linear_path(ev.lpips_net)
        p["lpips"] = {"net": ev.lpips_net, "version": "0.1",
                      "backbone_sha256": W.expected_sha256(backbone),
                      "linear_sha256": W.sha256_file(linear) if linear.is_file() else None,
                      "input": "uint8-quantised images scaled to [-1, 1]", "reduce": "mean over images"}
        p["versions"]["lpips"] = _version("lpips")
        p["versions"]["torchvision"] = _version("torchvision")
    if "psnr" in metrics:
        p["psnr"] = "uint8 [0, 255]; per image 10*log10(255^2/MSE over CxHxW); mean over images"
    if "ssim" in metrics:
        p["ssim"] = {"window": f"gaussian {SSIM_WINDOW}x{SSIM_WINDOW} sigma {SSIM_SIGMA}",
                     "k1": SSIM_K1, "k2": SSIM_K2, "data_range": 255, "covariance": "population",
                     "reduce": "mean over valid window positions, channels, images"}
    return p


def _hash(obj: Any) -> str:
    return hashlib.sha256(C.canonical_json(obj).encode()).hexdigest()[:12]


def protocol_id(p: dict[str, Any]) -> str:
    """12 hex digits of the sha256 of the protocol's canonical JSON."""
    return _hash(p)


def reference_id(p: dict[str, Any], num_images: int) -> str:
    """The key of the originals' cached Inception statistics: the protocol fields that change
    them (dataset, count, resolution, resize, crop, quantisation, extractor and its weights,
    versions), not the posterior or the other metrics, so runs and protocols share them."""
    keep = {k: p[k] for k in ("version", "dataset", "resolution", "resize", "crop", "quantisation", "rfid")}
    keep["num_images"] = num_images
    keep["versions"] = {k: v for k, v in p["versions"].items() if k in ("torch", "torch-fidelity")}
    return _hash(keep)


def _load_reference(path: Path, ref_id: str, n: int) -> tuple[np.ndarray, np.ndarray] | None:
    try:
        with np.load(path) as z:
            if str(z["reference_id"]) != ref_id or int(z["n"]) != n:
                return None
            return z["mu"].astype(np.float64), z["sigma"].astype(np.float64)
    except (OSError, KeyError, ValueError):
        return None


def _save_reference(path: Path, ref_id: str, n: int, mu: np.ndarray, sigma: np.ndarray) -> None:
    buf = io.BytesIO()
    np.savez(buf, mu=mu, sigma=sigma, n=np.int64(n), reference_id=np.str_(ref_id))
    store.write_bytes_atomic(path, buf.getvalue())


# --------------------------------------------------------------------------------------------
# evaluate one run
# --------------------------------------------------------------------------------------------
def _content_fingerprint(ds: Dataset) -> str:
    """A stand-in dataset fingerprint for datasets passed in directly: the sha256 of the images'
    uint8 pixels (cheap for the small sets tests and benchmarks use)."""
    h = hashlib.sha256()
    for i in range(len(ds)):
        img = ds[i]
        h.update(str(tuple(img.shape)).encode())
        h.update((img if img.dtype == torch.uint8 else to_uint8(img)).contiguous().numpy().tobytes())
    return f"in-memory n={len(ds)} uint8-sha256={h.hexdigest()[:16]}"


def _still_unavailable(record: dict[str, Any], directory: Any) -> bool:
    """True when every weights file the record lacked is still missing (so reusing it is right);
    False when one has been staged since, and the record should be completed."""
    for name in record.get("missing_weights") or []:
        try:
            W.resolve(name, directory)
            return False
        except (W.MissingWeightsError, KeyError):
            pass
    return True


def evaluate(autoencoder: torch.nn.Module, cfg: C.ExperimentConfig, run_folder: str | Path,
             device: Any = "cpu", progress: bool = True, *, force: bool = False,
             dataset: Dataset | None = None, weights_dir: str | Path | None = None,
             cache_dir: str | Path | None = None, num_workers: int | None = None) -> dict[str, Any]:
    """Evaluate ``autoencoder`` on the eval set of ``cfg`` under ``protocol(cfg)`` and write the
    record to ``run_folder/eval/<protocol_id>.json``.

    An existing record of the same protocol id is returned as is (``force`` recomputes), unless
    it lacks a metric whose weights have been staged since. ``dataset`` replaces
    ``study.data.eval_set`` (float 3 x H x W in [-1, 1]; its pixels are hashed into the protocol).
    ``cache_dir`` holds the originals' Inception statistics (default ``<results>/cache/fid_ref``,
    where ``<results>`` is the parent of the ``runs`` folder). The returned dict is the record plus
    ``"reused": bool`` (not stored)."""
    start = time.time()
    run_folder = Path(run_folder)
    device = torch.device(device)
    ev = cfg.eval
    resolution = eval_resolution(cfg)
    fingerprint = _content_fingerprint(dataset) if dataset is not None else None
    p = protocol(cfg, fingerprint=fingerprint)
    pid = protocol_id(p)

    existing = store.read_evals(run_folder).get(pid)
    if (existing is not None and not force and existing.get("protocol") == p
            and _still_unavailable(existing, weights_dir)):
        return {**existing, "reused": True}

    if dataset is None:
        from study.training.data import eval_set

        dataset = eval_set(cfg.data, resolution, ev.num_images)
    n = len(dataset)
    wanted = set(ev.metrics)
    unavailable: dict[str, str] = {}
    missing_weights: list[str] = []

    extractor = None
    reference = None
    ref_path = None
    if "rfid" in wanted:
        if n < 2:
            unavailable["rfid"] = "unavailable: rFID needs at least 2 images"
        else:
            try:
                extractor = inception_extractor(W.resolve("inception", weights_dir).path, device)
            except W.MissingWeightsError as e:
                unavailable["rfid"] = f"unavailable: {e}"
                missing_weights.append("inception")
        if extractor is not None:
            ref_id = reference_id(p, n)
            root = Path(cache_dir) if cache_dir else run_folder.parent.parent / "cache" / "fid_ref"
            ref_path = root / f"{ref_id}.npz"
            reference = _load_reference(ref_path, ref_id, n)

    lpips_model = None
    if "lpips" in wanted:
        try:
            lpips_model = W.load_lpips(ev.lpips_net, device, weights_dir)
        except W.MissingWeightsError as e:
            unavailable["lpips"] = f"unavailable: {e}"
            missing_weights.append(W.LPIPS_BACKBONES[ev.lpips_net])

    if num_workers is None:
        num_workers = min(cfg.train.num_workers, os.cpu_count() or 1) if device.type == "cuda" else 0
    loader = DataLoader(dataset, batch_size=ev.batch_size, shuffle=False, num_workers=num_workers,
                        pin_memory=device.type == "cuda")
    generator = torch.Generator(device).manual_seed(SAMPLE_SEED) if ev.posterior == "sample" else None
    real_stats = FeatureStats() if extractor is not None and reference is None else None
    fake_stats = FeatureStats() if extractor is not None else None
    values: dict[str, list[Tensor]] = {"psnr": [], "ssim": [], "lpips": []}

    was_training = autoencoder.training
    autoencoder.eval()
    try:
        with torch.no_grad():
            desc = f"eval {run_folder.name}"
            for x in _progress(loader, n, progress, desc):
                x = x.to(device, non_blocking=True).float()
                posterior = autoencoder.encode(x)
                z = posterior.mode() if generator is None else posterior.sample(generator)
                x_hat = autoencoder.decode(z)
                a, b = to_uint8(x), to_uint8(x_hat)
                if "psnr" in wanted:
                    values["psnr"].append(psnr(a, b).cpu())
                if "ssim" in wanted:
                    values["ssim"].append(ssim(a, b).cpu())
                if lpips_model is not None:
                    d = lpips_model(a.float() / 127.5 - 1, b.float() / 127.5 - 1)
                    values["lpips"].append(d.flatten().double().cpu())
                if real_stats is not None:
                    real_stats.update(inception_features(extractor, a))
                if fake_stats is not None:
                    fake_stats.update(inception_features(extractor, b))
    finally:
        autoencoder.train(was_training)

    results: dict[str, float] = {}
    for name in ("psnr", "ssim", "lpips"):
        if values[name]:
            results[name] = float(torch.cat(values[name]).mean())
    reference_cache = None
    if fake_stats is not None:
        if reference is None:
            reference = (real_stats.mean(), real_stats.cov())
            _save_reference(ref_path, ref_path.stem, n, *reference)
            reference_cache = "computed"
        else:
            reference_cache = "reused"
        results["rfid"] = frechet_distance(reference[0], reference[1], fake_stats.mean(), fake_stats.cov())

    record = {
        "protocol_id": pid,
        "protocol": p,
        "metrics": {k: results[k] for k in sorted(results)},
        "unavailable": unavailable,
        "missing_weights": missing_weights,
        "num_images": n,
        "created": time.time(),
        "seconds": round(time.time() - start, 3),
        "device": str(device),
        "batch_size": ev.batch_size,
        "reference_cache": reference_cache,
    }
    store.write_eval(run_folder, pid, record)
    return {**record, "reused": False}


# --------------------------------------------------------------------------------------------
# evaluate the runs of a study (the `evaluate SPEC` command)
# --------------------------------------------------------------------------------------------
def parse_protocol_overrides(items: Iterable[str]) -> dict[str, Any]:
    """``KEY=VALUE`` strings (YAML values) -> ``{"eval.KEY": value}``. Only ``eval.*`` keys are
    allowed: anything else would change what was trained, i.e. be another run."""
    import yaml

    out: dict[str, Any] = {}
    keys = {k for k in C.config_keys() if k.startswith("eval.")}
    for item in items:
        if "=" not in item:
            raise C.ConfigError("--protocol", item, "KEY=VALUE, e.g. num_images=1000")
        key, raw = item.split("=", 1)
        key = key.strip()
        key = key if key.startswith("eval.") else f"eval.{key}"
        if key not in keys:
            raise C.ConfigError(f"--protocol {key}", raw, "one of " + ", ".join(sorted(keys))
                                + C.suggest(key, keys))
        out[key] = yaml.safe_load(raw)
    return out


def evaluate_study(variants: list[Any], root: Path, *, overrides: dict[str, Any] | None = None,
                   device: Any = None, force: bool = False, progress: bool = True,
                   load: Callable[[Path, C.ExperimentConfig, torch.device], torch.nn.Module] | None = None,
                   echo: Callable[[str], None] | None = None) -> list[dict[str, Any]]:
    """Evaluate every completed run of ``variants`` (objects with ``run_id``, ``name``, ``config``)
    under its config's eval section with ``overrides`` applied; one summary row per variant.
    Runs that are not completed are skipped (a half-trained model must not get a record that a
    later evaluation of the finished model would reuse)."""
    if load is None:
        from study.training.loop import load_trained as load
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    rows = []
    for v in variants:
        folder = store.run_dir(root, v.run_id)
        row: dict[str, Any] = {"run_id": v.run_id, "name": v.name}
        if not store.is_done(folder):
            rows.append(row | {"state": "skipped", "reason": "run not completed"})
            continue
        cfg = C.validate(C.apply_overrides(v.config, overrides or {}))
        record = evaluate(load(folder, cfg, device), cfg, folder, device, progress=progress, force=force)
        rows.append(row | {"state": "reused" if record["reused"] else "evaluated",
                           "protocol_id": record["protocol_id"], "metrics": record["metrics"],
                           "unavailable": record["unavailable"]})
        if echo:
            echo(format_row(rows[-1]))
    return rows


def format_row(row: dict[str, Any]) -> str:
    if row["state"] == "skipped":
        return f"{row['name']} ({row['run_id']}): skipped, {row['reason']}"
    parts = [f"{k}={v:.4g}" for k, v in row["metrics"].items()]
    parts += [f"{k}: {v}" for k, v in row["unavailable"].items()]
    return f"{row['name']} ({row['run_id']}) eval/{row['protocol_id']}.json [{row['state']}]: " + "; ".join(parts)
