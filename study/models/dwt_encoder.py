"""The non-learned encoder of Tables 11 and 12 (LiteVAE App. B): the latent is a fixed Haar wavelet
transform of the image (``dwt``: level 3's 12 bands at H/8; ``dwt2``: level 2's 12 bands moved to
H/8 by space-to-depth, 48 channels), and only the decoder trains. ``Deterministic`` is its point-mass
posterior (sampling is the identity, the KL is 0).

The channel order, the scaling (a paper gap) and why the posterior is a point mass:
docs/models.md, "The non-learned DWT encoder".
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
