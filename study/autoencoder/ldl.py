"""The LDL loss (Table 15): Liang, Zeng and Zhang, "Details or Artifacts: A Locally Discriminative
Learning Approach to Realistic Image Super-Resolution", CVPR 2022 (arXiv 2203.09195), Sec. 3.

GAN-trained generators produce both realistic details and artifacts; LDL tells them apart by the
local statistics of the residual and penalises only the artifacts. For a target x, the current
model's reconstruction x_hat and an EMA model's reconstruction x_hat_ema (paper notation in
brackets; I^HR = x, I^SR = x_hat):

    R        = sum_c |x - x_hat|                     residual map, one channel     [R = I^HR - I^SR]
    M        = var_{7x7}(R)                          local variance at each pixel  [pixel level]
    delta    = var(R)^(1/alpha),  alpha = 5          global (patch-level) scale    [patch level]
    M~       = delta * M                             the artifact map
    M_refine = 0 where R < R_ema, else M~            R_ema = sum_c |x - x_hat_ema|
    L_artif  = || M_refine * x - M_refine * x_hat ||_1

These are the residual, local-variance, patch-scale, artifact-map, refinement and loss equations
of LDL's Sec. 3 (artifact map generation and refinement with the EMA model, then the loss); we cite
them by section because their equation numbers could not be checked here (no copy of the paper
offline). The details the paper's text leaves open follow the authors' released implementation
(csjliang/LDL, also in BasicSR), as facts of the method:

- R is the absolute residual summed over the RGB channels (one map per image, applied to every
  channel); the local variance is the unbiased variance over a 7x7 window with reflect padding at
  the border; var(R) is the unbiased variance over the whole map of each image; alpha = 5.
- Refinement: a pixel where the current model is already closer to the target than the EMA model
  (R < R_ema, strictly) is a detail being learnt and gets weight 0; elsewhere the map stands.
- Units: LDL's images are in [0, 1] and its map is not scale-equivariant (delta has power 1/5), so
  the map is computed on (x + 1) / 2; the loss itself is on our [-1, 1] images (mean over N, C, H,
  W, the convention of ``study/autoencoder/losses.py``), so its weight is relative to our L1 term.
- Gradients (paper gap): the map is a weight and is detached; the released code lets gradients
  flow through it, where var(R)^(1/5) has an infinite derivative at a zero residual. With the map
  detached, d L / d x_hat = -M_refine * sign(x - x_hat) / (N C H W).
- Weight (paper gap): LDL adds L_artif with weight 1 to an ESRGAN-style loss whose L1 weight is
  1e-2; LiteVAE's Table 15 gives no weight. The proposed default ``loss.ldl_weight`` is 1.0,
  relative to our L1 weight of 1.
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
