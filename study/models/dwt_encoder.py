"""The non-learned encoder of Tables 11 and 12 (LiteVAE App. B): the latent is a fixed Haar
wavelet transform of the image, and only the decoder trains.

    "dwt"   the 3-level Haar transform's lowest level: [LL_3, details_3] / 2^3 of each RGB channel,
            12 channels at H/8 (Tables 11 and 12, nz = 12)
    "dwt2"  the level-2 bands [LL_2, details_2] / 2^2 (12 channels at H/4), moved to H/8 by
            space-to-depth with block 2: 48 channels (Table 12, "DWT-2", nz = 48)

Channel order follows the LiteVAE encoder's wavelet input (study.models.litevae): the three LL
channels (R, G, B), then the detail bands channel-major (R's B0, B1, B2, then G's, then B's; band
order as in study.models.wavelets). Space-to-depth is ``torch.pixel_unshuffle``: output channel
4k + 2i + j holds input channel k at offset (i, j) inside every 2x2 cell, so DWT-2's 48 values per
latent pixel are exactly level 2's 12 x 2 x 2 values, rearranged.

Scaling (paper gap: App. B does not say whether the latent is scaled). We divide level-l bands by
2^l, as the LiteVAE encoder does for its inputs (LITEVAE.md): the orthonormal Haar LL grows by 2 per
level, and LL_l / 2^l is the mean of the image over each 2^l x 2^l cell, so the LL channels keep the
image's range [-1, 1] and the detail channels are smaller. The "dwt" latent is then bit-for-bit the
level-3 input of LiteVAE's F_3. Any fixed scale is absorbed by the decoder's first convolution;
this one keeps the latent on the scale of the image.

Why "dwt2" holds no less than "dwt": LL_2's four values in a 2x2 cell determine LL_3 and the three
level-3 details there (one more Haar step, an orthonormal 4x4 map), so the 48-channel latent is an
invertible per-pixel linear map (a fixed 1x1 convolution) of [level-3 bands, space-to-depth of
level-2 details], the other reading of "adds the higher-frequency sub-bands" -- the decoder's
first convolution absorbs the difference exactly.

A deterministic latent. The encoder has no parameters and returns a point mass, ``Deterministic``,
with the interface of the autoencoder's DiagonalGaussian posterior (mean, logvar, std, var,
sample, mode, kl):
- sampling is the identity: ``sample()`` and ``mode()`` return the mean, ``std`` and ``var`` are
  zero, so the training loop's reparameterisation ``mean + std * noise`` returns the mean, and
  evaluating from "sample" equals evaluating from "mean";
- the KL term is identically 0: ``kl()`` returns zeros. KL(point mass || N(0, I)) is not a finite
  number, and no parameter could change it, so the term is dropped (its gradient would be zero
  anyway). ``logvar`` is -inf (log 0): code that recomputes the Gaussian KL from (mean, logvar)
  gets +inf and fails loudly instead of adding a clamp-dependent constant (at the DiagonalGaussian
  clamp, logvar = -30, it would be 14.5 nats per latent value plus mean^2 / 2).
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from study.models.wavelets import DWT

DWTVariant = Literal["dwt", "dwt2"]
DWT_VARIANTS: tuple[DWTVariant, ...] = ("dwt", "dwt2")
DWT_LATENT_CHANNELS = {"dwt": 12, "dwt2": 48}
DWT_LEVEL = {"dwt": 3, "dwt2": 2}  # the Haar level whose bands form the latent
DOWNSAMPLING = 8  # the latent is H/8 x W/8, as every other encoder's


class UnknownDWTVariant(ValueError):
    """A DWT encoder variant other than "dwt" or "dwt2"."""


class DWTInputError(ValueError):
    """An input that is not N x 3 x H x W with H and W multiples of 8."""


# --------------------------------------------------------------------------------------------
# the posterior of a deterministic latent
# --------------------------------------------------------------------------------------------
class Deterministic:
    """The point-mass posterior q(z|x) = delta(z - mean), with DiagonalGaussian's interface."""

    def __init__(self, mean: Tensor):
        self.mean = mean
        self.std = torch.zeros_like(mean)
        self.var = self.std
        self.logvar = torch.full_like(mean, float("-inf"))

    def sample(self, generator: torch.Generator | None = None) -> Tensor:
        """The mean: sampling a point mass is the identity (``generator`` is not drawn from)."""
        return self.mean

    def mode(self) -> Tensor:
        return self.mean

    def kl(self) -> Tensor:
        """Identically 0, shape (N,): the KL term is dropped (see the module docstring)."""
        return self.mean.new_zeros(self.mean.shape[0])


# --------------------------------------------------------------------------------------------
# the encoder
# --------------------------------------------------------------------------------------------
class DWTEncoder(nn.Module):
    """Image (N, 3, H, W) in [-1, 1] -> the fixed latent (N, 12 | 48, H/8, W/8). No parameters.

    ``forward`` returns the latent itself (not 2*nz moments); ``encode`` wraps it in a
    ``Deterministic`` posterior.
    """

    def __init__(self, variant: DWTVariant = "dwt"):
        super().__init__()
        if variant not in DWT_VARIANTS:
            raise UnknownDWTVariant(f"unknown DWT encoder variant {variant!r}; allowed: " + ", ".join(DWT_VARIANTS))
        self.variant = variant
        self.level = DWT_LEVEL[variant]
        self.latent_channels = DWT_LATENT_CHANNELS[variant]
        self.dwt = DWT(self.level)

    def level_bands(self, x: Tensor) -> Tensor:
        """[LL_l, details_l] / 2^l at the latent's level l: (N, 12, H/2^l, W/2^l)."""
        ll, bands = self.dwt.pyramid(x)[-1]
        return torch.cat([ll, bands.flatten(1, 2)], dim=1) * (0.5**self.level)

    def forward(self, x: Tensor) -> Tensor:
        if x.ndim != 4 or x.shape[1] != 3 or x.shape[-2] % DOWNSAMPLING or x.shape[-1] % DOWNSAMPLING:
            raise DWTInputError(f"expected N x 3 x H x W with H, W multiples of {DOWNSAMPLING}, got {tuple(x.shape)}")
        bands = self.level_bands(x)
        return bands if self.level == 3 else F.pixel_unshuffle(bands, 2 ** (3 - self.level))

    def encode(self, x: Tensor) -> Deterministic:
        return Deterministic(self(x))

    def extra_repr(self) -> str:
        return f"variant={self.variant!r}, latent_channels={self.latent_channels}"
