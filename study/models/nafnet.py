"""NAFNet blocks as LiteVAE's feature extractor F_l (Table 18; Chen et al., "Simple Baselines for
Image Restoration", ECCV 2022, Sec. 3 and Fig. 3): 3x3 conv 12 -> width, ``num_blocks`` NAFBlocks,
3x3 conv width -> 12, no resampling (F_l's interface).

The block, its parameter count and the width rule that fills the paper gap (Table 18 gives no
width or depth): docs/models.md, "NAFNet feature extractors".
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

BANDS_PER_LEVEL = 12  # LL + 3 detail bands for each of R, G, B: F_l's input and output


class UnknownNAFNetShape(ValueError):
    """A UNet extractor configuration with no matching NAFNet shape in ``NAFNET_FOR_UNET``."""


# --------------------------------------------------------------------------------------------
# the parts of a NAFBlock
# --------------------------------------------------------------------------------------------
class LayerNorm2d(nn.Module):
    """LayerNorm over the channel dimension of an (N, C, H, W) map, per pixel, with a learned
    per-channel scale (init 1) and shift (init 0)."""

    def __init__(self, channels: int, eps: float = 1e-6):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: Tensor) -> Tensor:
        mean = x.mean(dim=1, keepdim=True)
        centred = x - mean
        var = centred.square().mean(dim=1, keepdim=True)
        y = centred * torch.rsqrt(var + self.eps)
        return y * self.weight.view(1, -1, 1, 1) + self.bias.view(1, -1, 1, 1)


class SimpleGate(nn.Module):
    """(N, 2c, H, W) -> (N, c, H, W): the first half of the channels times the second."""

    def forward(self, x: Tensor) -> Tensor:
        first, second = x.chunk(2, dim=1)
        return first * second


class SimplifiedChannelAttention(nn.Module):
    """SCA: x * W(pool(x)), pool the global average over H and W, W a 1x1 conv with bias."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        return x * self.conv(F.adaptive_avg_pool2d(x, 1))


# --------------------------------------------------------------------------------------------
# the block
# --------------------------------------------------------------------------------------------
class NAFBlock(nn.Module):
    """The NAFNet block (see the module docstring): an attention branch and a gated feed-forward
    branch, each residual with a zero-initialised per-channel scale."""

    expand = 2  # DW_Expand = FFN_Expand = 2 (Chen et al., Sec. 3)

    def __init__(self, channels: int, dropout: float = 0.0):
        super().__init__()
        c, wide = channels, self.expand * channels
        self.channels = channels
        # attention branch
        self.norm1 = LayerNorm2d(c)
        self.conv1 = nn.Conv2d(c, wide, 1)
        self.dwconv = nn.Conv2d(wide, wide, 3, padding=1, groups=wide)
        self.gate = SimpleGate()
        self.sca = SimplifiedChannelAttention(wide // 2)
        self.conv2 = nn.Conv2d(wide // 2, c, 1)
        # feed-forward branch
        self.norm2 = LayerNorm2d(c)
        self.conv3 = nn.Conv2d(c, wide, 1)
        self.conv4 = nn.Conv2d(wide // 2, c, 1)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.beta = nn.Parameter(torch.zeros(1, c, 1, 1))
        self.gamma = nn.Parameter(torch.zeros(1, c, 1, 1))

    def forward(self, x: Tensor) -> Tensor:
        h = self.gate(self.dwconv(self.conv1(self.norm1(x))))
        h = self.dropout(self.conv2(self.sca(h)))
        y = x + self.beta * h
        h = self.dropout(self.conv4(self.gate(self.conv3(self.norm2(y)))))
        return y + self.gamma * h

    def extra_repr(self) -> str:
        return f"channels={self.channels}"


# --------------------------------------------------------------------------------------------
# the extractor and its widths per LiteVAE preset
# --------------------------------------------------------------------------------------------
class NAFNetExtractor(nn.Module):
    """F_l made of NAFBlocks: (N, in, h, w) -> (N, out, h, w), no resampling, no skips beyond
    the blocks' own residuals."""

    def __init__(
        self,
        in_channels: int = BANDS_PER_LEVEL,
        out_channels: int = BANDS_PER_LEVEL,
        width: int = 48,
        num_blocks: int = 14,
        dropout: float = 0.0,
    ):
        super().__init__()
        if width < 1 or num_blocks < 0:
            raise ValueError(f"width must be >= 1 and num_blocks >= 0, got {width}, {num_blocks}")
        self.width, self.num_blocks = width, num_blocks
        self.conv_in = nn.Conv2d(in_channels, width, 3, padding=1)
        self.blocks = nn.Sequential(*(NAFBlock(width, dropout) for _ in range(num_blocks)))
        self.conv_out = nn.Conv2d(width, out_channels, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv_out(self.blocks(self.conv_in(x)))


@dataclass(frozen=True)
class NAFNetShape:
    width: int
    num_blocks: int


# Paper gap (Table 18 gives no NAFNet configuration): 14 blocks, one per residual block of the UNet
# F_l it replaces (with the paper's 2 blocks per multiplier), and the width (a multiple of 16)
# closest in parameters to that UNet; see the module docstring for the counts. Keyed by the UNet
# F_l's (channels, multipliers) of the LiteVAE presets (study.models.registry.PRESETS).
NAFNET_FOR_UNET: dict[tuple[int, tuple[int, ...]], NAFNetShape] = {
    (16, (1, 2, 2)): NAFNetShape(48, 14),  # LiteVAE-S
    (32, (1, 2, 3)): NAFNetShape(128, 14),  # LiteVAE-B
    (64, (1, 2, 4)): NAFNetShape(320, 14),  # LiteVAE-M and LiteVAE-L
}


def nafnet_extractor(
    unet_channels: int,
    unet_mult: tuple[int, ...],
    in_channels: int = BANDS_PER_LEVEL,
    out_channels: int = BANDS_PER_LEVEL,
    dropout: float = 0.0,
) -> NAFNetExtractor:
    """The NAFNet F_l that stands in for the UNet F_l of width ``unet_channels`` and multipliers
    ``unet_mult`` (a LiteVAE preset's ``extractor_channels``, ``extractor_mult``)."""
    key = (unet_channels, tuple(unet_mult))
    if key not in NAFNET_FOR_UNET:
        raise UnknownNAFNetShape(
            f"no NAFNet extractor for a UNet F_l of {unet_channels} channels "
            f"and multipliers {tuple(unet_mult)}; known: " + ", ".join(f"{c}, {m}" for c, m in NAFNET_FOR_UNET)
        )
    shape = NAFNET_FOR_UNET[key]
    return NAFNetExtractor(in_channels, out_channels, shape.width, shape.num_blocks, dropout)
