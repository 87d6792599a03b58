"""The LDL artifact loss of Table 15 (Liang et al., CVPR 2022, Sec. 3): a per-pixel artifact map
from the residual's local and global variance, refined against an EMA model's reconstruction,
weighting an L1 distance. The equations, the details taken from the authors' code and the paper
gaps (detached map, weight): docs/models.md, "The LDL artifact loss, equation by equation".
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

LDL_WINDOW = 7  # LDL Sec. 3.2: local window n = 7
LDL_ALPHA = 5.0  # LDL Sec. 3.2: delta = var(R)^(1/alpha), alpha = 5


class LDLError(ValueError):
    """Inputs the artifact map cannot be computed from (shapes, an image smaller than the window)."""


def residual_map(x: Tensor, x_hat: Tensor) -> Tensor:
    """R = sum over channels of |x - x_hat| on [0, 1] images, from [-1, 1] inputs: N x 1 x H x W."""
    return ((x - x_hat).abs() / 2.0).sum(1, keepdim=True)


def local_variance(r: Tensor, window: int = LDL_WINDOW) -> Tensor:
    """Unbiased variance of ``r`` (N x 1 x H x W) over a ``window`` x ``window`` neighbourhood of each
    pixel, reflect-padded at the border: N x 1 x H x W."""
    pad = (window - 1) // 2
    if window % 2 != 1 or min(r.shape[-2:]) <= pad:
        raise LDLError(
            f"window {window} must be odd with (window - 1) / 2 < H and W (reflect padding); "
            f"got an image of {tuple(r.shape[-2:])}"
        )
    patches = F.pad(r, (pad, pad, pad, pad), mode="reflect").unfold(2, window, 1).unfold(3, window, 1)
    return patches.var(dim=(-2, -1), unbiased=True)


@torch.no_grad()
def artifact_map(
    x: Tensor, x_hat: Tensor, x_hat_ema: Tensor, window: int = LDL_WINDOW, alpha: float = LDL_ALPHA
) -> Tensor:
    """M_refine (N x 1 x H x W, detached): delta * local variance of R, zero where R < R_ema."""
    if not (x.shape == x_hat.shape == x_hat_ema.shape) or x.ndim != 4:
        raise LDLError(
            f"x, x_hat, x_hat_ema must be N x C x H x W of one shape, got "
            f"{tuple(x.shape)}, {tuple(x_hat.shape)}, {tuple(x_hat_ema.shape)}"
        )
    x, x_hat, x_hat_ema = x.float(), x_hat.float(), x_hat_ema.float()
    r, r_ema = residual_map(x, x_hat), residual_map(x, x_hat_ema)
    delta = r.var(dim=(1, 2, 3), unbiased=True, keepdim=True) ** (1.0 / alpha)
    m = delta * local_variance(r, window)
    return torch.where(r < r_ema, torch.zeros_like(m), m)


def ldl_loss(x: Tensor, x_hat: Tensor, x_hat_ema: Tensor, window: int = LDL_WINDOW, alpha: float = LDL_ALPHA) -> Tensor:
    """L_artif = mean over N, C, H, W of |M_refine * x - M_refine * x_hat| (float32, autocast off);
    ``x_hat_ema`` is the EMA autoencoder's reconstruction of ``x`` (computed without gradients)."""
    with torch.autocast(device_type=x.device.type, enabled=False):
        m = artifact_map(x, x_hat, x_hat_ema.detach(), window, alpha)
        return (m * x.float() - m * x_hat.float()).abs().mean()
