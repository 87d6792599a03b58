"""Latent statistics (Table 6): the MMD between posterior-mean latents and N(0, I) samples under
RBF kernels, and the per-channel statistics a latent diffusion model needs (its scale factor).
The estimator, the kernel convention and the other paper gaps: docs/models.md, "The MMD of
Table 6 in detail".
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

TABLE6_BANDWIDTHS: tuple[float, ...] = (25.0, 50.0, 100.0, 250.0, 500.0)  # Table 6


class LatentStatsError(ValueError):
    """Inputs the statistics cannot be computed from (too few samples, mismatched dimensions)."""


# --------------------------------------------------------------------------------------------
# MMD with RBF kernels
# --------------------------------------------------------------------------------------------
def rbf_kernel(sq_dist: Tensor, bandwidth: float) -> Tensor:
    """k = exp(-||x - y||^2 / (2 h^2)), h = ``bandwidth`` (Gretton et al. 2012's Gaussian kernel)."""
    return torch.exp(-sq_dist / (2.0 * float(bandwidth) ** 2))


def _sq_dists(a: Tensor, b: Tensor) -> Tensor:
    """Pairwise squared Euclidean distances, float64, clamped at 0 against rounding."""
    aa = (a * a).sum(1, keepdim=True)
    bb = (b * b).sum(1, keepdim=True)
    return (aa + bb.T - 2.0 * a @ b.T).clamp_min_(0.0)


def mmd_rbf(
    x: Tensor, y: Tensor, bandwidths: Sequence[float] = TABLE6_BANDWIDTHS, unbiased: bool = True
) -> dict[float, float]:
    """MMD^2 between samples ``x`` (m x d) and ``y`` (n x d) for each RBF bandwidth.

    ``unbiased``: MMD^2_u (diagonals excluded, needs m, n >= 2); else the biased MMD^2_b."""
    x, y = x.reshape(len(x), -1).double(), y.reshape(len(y), -1).double()
    if x.shape[1] != y.shape[1]:
        raise LatentStatsError(f"dimension mismatch: x has {x.shape[1]}, y has {y.shape[1]}")
    m, n = len(x), len(y)
    if min(m, n) < (2 if unbiased else 1):
        raise LatentStatsError(f"MMD needs at least 2 samples on each side, got {m} and {n}")
    dxx, dyy, dxy = _sq_dists(x, x), _sq_dists(y, y), _sq_dists(x, y)
    out = {}
    for h in bandwidths:
        kxx, kyy, kxy = rbf_kernel(dxx, h), rbf_kernel(dyy, h), rbf_kernel(dxy, h)
        if unbiased:
            xx = (kxx.sum() - kxx.diagonal().sum()) / (m * (m - 1))
            yy = (kyy.sum() - kyy.diagonal().sum()) / (n * (n - 1))
        else:
            xx, yy = kxx.sum() / m**2, kyy.sum() / n**2
        out[float(h)] = float(xx + yy - 2.0 * kxy.sum() / (m * n))
    return out


@dataclass(frozen=True)
class MMDResult:
    """MMD^2 per bandwidth over repeats: what Table 6 reports as mean +- std."""

    mean: dict[float, float]
    std: dict[float, float]
    repeats: int
    samples_per_repeat: int
    dimension: int
    unbiased: bool


def latent_mmd(
    latents: Tensor,
    bandwidths: Sequence[float] = TABLE6_BANDWIDTHS,
    repeats: int = 10,
    samples_per_repeat: int = 1000,
    seed: int = 0,
    unbiased: bool = True,
) -> MMDResult:
    """MMD^2 between flattened latents (N x C x h x w, or N x d) and N(0, I_d) samples, per
    bandwidth, as mean and std (ddof 1) over ``repeats`` (the module docstring's protocol)."""
    flat = latents.reshape(len(latents), -1).double().cpu()
    if repeats < 2:
        raise LatentStatsError(f"repeats must be >= 2 for a std, got {repeats}")
    k = min(samples_per_repeat, len(flat))
    g = torch.Generator().manual_seed(seed)
    runs: dict[float, list[float]] = {float(h): [] for h in bandwidths}
    for _ in range(repeats):
        x = flat[torch.randperm(len(flat), generator=g)[:k]]
        y = torch.randn(k, flat.shape[1], generator=g, dtype=torch.float64)
        for h, value in mmd_rbf(x, y, bandwidths, unbiased).items():
            runs[h].append(value)
    values = {h: torch.tensor(v, dtype=torch.float64) for h, v in runs.items()}
    return MMDResult(
        mean={h: float(v.mean()) for h, v in values.items()},
        std={h: float(v.std()) for h, v in values.items()},
        repeats=repeats,
        samples_per_repeat=k,
        dimension=flat.shape[1],
        unbiased=unbiased,
    )


# --------------------------------------------------------------------------------------------
# per-channel statistics and the diffusion scale factor
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ChannelStats:
    """Per-channel mean and std of the latents (over N, h, w), the std over all values, and the
    scale factor 1/std that a latent diffusion model multiplies its latents by."""

    mean: tuple[float, ...]
    std: tuple[float, ...]
    std_all: float
    scale_factor: float


def channel_stats(latents: Tensor) -> ChannelStats:
    """Statistics of N x C x h x w latents in float64. Stds are the sample std (ddof 1); the scale
    factor is 1 / std over every value, mean included: LDM (Rombach et al. 2022) rescales its
    latents to unit variance by their component-wise std, which its code takes as 1 / std of the
    flattened latents of a first batch (its ``scale_factor``)."""
    if latents.ndim != 4 or latents.numel() < 2:
        raise LatentStatsError(f"expected N x C x h x w latents, got shape {tuple(latents.shape)}")
    z = latents.detach().double().cpu()
    per_channel = z.transpose(0, 1).reshape(z.shape[1], -1)
    std_all = float(z.std())
    if std_all == 0.0:
        raise LatentStatsError("the latents are constant: no scale factor")
    return ChannelStats(
        mean=tuple(per_channel.mean(1).tolist()),
        std=tuple(per_channel.std(1).tolist()),
        std_all=std_all,
        scale_factor=1.0 / std_all,
    )


# --------------------------------------------------------------------------------------------
# Table 6 of one evaluation: flat metrics and the per-channel lists
# --------------------------------------------------------------------------------------------
def metric_name(bandwidth: float) -> str:
    """The metric key of one bandwidth's MMD: ``mmd_25`` for 25.0 (``mmd_25_std`` its std)."""
    return f"mmd_{float(bandwidth):g}"


def table6_summary(
    latents: Tensor,
    bandwidths: Sequence[float] = TABLE6_BANDWIDTHS,
    repeats: int = 10,
    samples_per_repeat: int = 1000,
    seed: int = 0,
) -> tuple[dict[str, float], dict[str, object]]:
    """(metrics, details) of N x C x h x w posterior-mean latents: ``mmd_<h>`` and ``mmd_<h>_std``
    per bandwidth and ``latent_scale_factor``; the details hold the per-channel mean and std and
    the MMD's sample counts."""
    mmd = latent_mmd(latents, bandwidths, repeats, samples_per_repeat, seed)
    stats = channel_stats(latents)
    metrics: dict[str, float] = {"latent_scale_factor": stats.scale_factor}
    for h in mmd.mean:
        metrics[metric_name(h)] = mmd.mean[h]
        metrics[metric_name(h) + "_std"] = mmd.std[h]
    details: dict[str, object] = {
        "channel_mean": list(stats.mean),
        "channel_std": list(stats.std),
        "std_all": stats.std_all,
        "mmd_repeats": mmd.repeats,
        "mmd_samples_per_repeat": mmd.samples_per_repeat,
        "dimension": mmd.dimension,
        "num_latents": len(latents),
    }
    return metrics, details
