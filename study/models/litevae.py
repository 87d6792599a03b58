"""The LiteVAE encoder (Sec. 3.1-3.2, Fig. 2): a multi-level Haar DWT, one feature-extraction UNet
per level, pooling to H/8 and an aggregation network (UNet or ViT) to the latent's mean and
log-variance; the widths of its sizes are in registry.py. The structure and its ablation axes:
docs/models.md, "The LiteVAE encoder's structure".
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from study.models.arguments import LiteVAEWidths
from study.models.blocks import ResBlock, group_norm, norm_silu
from study.models.nafnet import nafnet_extractor
from study.models.vit import ViTAggregator
from study.models.wavelets import DWT

BANDS_PER_LEVEL = 12  # LL + 3 detail bands for each of R, G, B
DOWNSAMPLING = 8  # f = 8: the latent is H/8 x W/8 (three Haar levels)


class InputShapeError(ValueError):
    """An input whose height or width is not a multiple of the encoder's downsampling factor."""


class EncoderConfigError(ValueError):
    """An encoder option outside what the architecture supports (e.g. a wavelet level > 3)."""


HEADS = ("conv", "norm_act_conv")  # the feature UNet's output head (see the module docstring)


def check_input(x: Tensor, factor: int = DOWNSAMPLING) -> None:
    if x.ndim != 4 or x.shape[1] != 3 or x.shape[-2] % factor or x.shape[-1] % factor:
        raise InputShapeError(f"expected N x 3 x H x W with H, W multiples of {factor}, got {tuple(x.shape)}")


# --------------------------------------------------------------------------------------------
# the feature-extraction / aggregation UNet
# --------------------------------------------------------------------------------------------
class FeatureUNet(nn.Module):
    """An ADM UNet with no resampling and no attention (F_l and F_agg of Sec. 3.2)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        channels: int,
        channel_mult: tuple[int, ...],
        num_res_blocks: int = 2,
        dropout: float = 0.0,
        head: str = "conv",
    ):
        super().__init__()
        if head not in HEADS:
            raise EncoderConfigError(f"unknown feature UNet head {head!r}; allowed: {', '.join(HEADS)}")
        self.conv_in = nn.Conv2d(in_channels, channels, 3, padding=1)
        skip_widths = []
        width = channels
        self.down = nn.ModuleList()
        for mult in channel_mult:
            for _ in range(num_res_blocks):
                self.down.append(ResBlock(width, channels * mult, dropout))
                width = channels * mult
                skip_widths.append(width)
        self.mid = nn.Sequential(ResBlock(width, width, dropout), ResBlock(width, width, dropout))
        self.up = nn.ModuleList()
        for mult in reversed(channel_mult):
            for _ in range(num_res_blocks):
                self.up.append(ResBlock(width + skip_widths.pop(), channels * mult, dropout))
                width = channels * mult
        self.norm_out = group_norm(width) if head == "norm_act_conv" else None
        self.conv_out = nn.Conv2d(width, out_channels, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        h = self.conv_in(x)
        skips = []
        for block in self.down:
            h = block(h)
            skips.append(h)
        h = self.mid(h)
        for block in self.up:
            h = block(torch.cat([h, skips.pop()], dim=1))
        return self.conv_out(h if self.norm_out is None else norm_silu(self.norm_out, h))


# --------------------------------------------------------------------------------------------
# the encoder
# --------------------------------------------------------------------------------------------
class LiteVAEEncoder(nn.Module):
    """Image (N, 3, H, W) -> moments (N, 2*nz, H/8, W/8) (Fig. 2).

    ``widths``: F_l and F_agg channels and multipliers (``registry.litevae_widths("B")``).
    ``levels``: the Haar levels that feed the encoder (default 1, 2, 3; Table 21 uses 2, 3).
    ``shared_extractors``: one F shared by every level instead of one per level (Table 19).
    ``aggregator``: "unet" (the paper) or "vit" (Table 20; see vit.py).
    ``extractor``: "unet" (the paper's F_l) or "nafnet" (Table 18; see nafnet.py).
    ``wavelet``: "haar" (the paper) or another PyWavelets family, transformed with periodic
    extension so that level l is exactly H/2^l.
    ``head``: the output head of every feature UNet (F_l and F_agg): "conv" (the paper's
    pseudocode) or "norm_act_conv" (GroupNorm -> SiLU -> conv).
    """

    def __init__(
        self,
        latent_channels: int,
        widths: LiteVAEWidths,
        levels: tuple[int, ...] = (1, 2, 3),
        wavelet: str = "haar",
        aggregator: str = "unet",
        shared_extractors: bool = False,
        num_res_blocks: int = 2,
        dropout: float = 0.0,
        extractor: str = "unet",
        head: str = "conv",
    ):
        super().__init__()
        if extractor not in ("unet", "nafnet"):
            raise EncoderConfigError(f"unknown extractor {extractor!r}; allowed: unet, nafnet")
        if not levels or len(set(levels)) != len(levels) or not set(levels) <= {1, 2, 3}:
            raise EncoderConfigError(f"levels must be distinct values from 1, 2, 3; got {levels}")
        self.levels = tuple(sorted(levels))
        self.latent_channels = latent_channels
        self.dwt = DWT(max(self.levels), wave=wavelet, mode="zero" if wavelet == "haar" else "periodization")

        def make_extractor() -> nn.Module:
            if extractor == "nafnet":
                return nafnet_extractor(
                    widths.extractor_channels, widths.extractor_mult, BANDS_PER_LEVEL, BANDS_PER_LEVEL, dropout
                )
            return FeatureUNet(
                BANDS_PER_LEVEL,
                BANDS_PER_LEVEL,
                widths.extractor_channels,
                widths.extractor_mult,
                num_res_blocks,
                dropout,
                head,
            )

        self.shared_extractors = shared_extractors
        self.extractors = nn.ModuleList(
            [make_extractor()] if shared_extractors else [make_extractor() for _ in self.levels]
        )

        agg_in = BANDS_PER_LEVEL * len(self.levels)
        if aggregator == "unet":
            self.aggregator: nn.Module = FeatureUNet(
                agg_in,
                2 * latent_channels,
                widths.aggregator_channels,
                widths.aggregator_mult,
                num_res_blocks,
                dropout,
                head,
            )
        elif aggregator == "vit":
            self.aggregator = ViTAggregator(agg_in, 2 * latent_channels)
        else:
            raise EncoderConfigError(f"unknown aggregator {aggregator!r}; allowed: unet, vit")

    def wavelet_inputs(self, x: Tensor) -> list[Tensor]:
        """For each selected level l: [LL_l, details_l] / 2^l, (N, 12, H/2^l, W/2^l)."""
        pyramid = self.dwt.pyramid(x)
        inputs = []
        for level in self.levels:
            ll, bands = pyramid[level - 1]
            inputs.append(torch.cat([ll, bands.flatten(1, 2)], dim=1) * (0.5**level))
        return inputs

    def forward(self, x: Tensor) -> Tensor:
        check_input(x)
        features = []
        for i, (level, inp) in enumerate(zip(self.levels, self.wavelet_inputs(x))):
            f = self.extractors[0 if self.shared_extractors else i](inp)
            pool = 2 ** (3 - level)
            features.append(F.avg_pool2d(f, pool) if pool > 1 else f)
        return self.aggregator(torch.cat(features, dim=1))
