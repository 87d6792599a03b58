"""The Stable Diffusion autoencoder (LDM KL-f8): the baseline encoder, VAE-Small, and the decoder
that every model in the study uses (LiteVAE keeps the SD decoder, Sec. 3), with GroupNorm or SMC
(Table 4). Structure and parameter counts: docs/models.md, "The SD-VAE encoder and decoder".
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
import torch.utils.checkpoint
from torch import Tensor, nn

from study.models.blocks import AttentionBlock, Norm, ResBlock, check_norm, norm_conv, norm_silu


class Downsample(nn.Module):
    """Halve H and W with a stride-2 3x3 conv after padding one row/column at the bottom/right."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2, padding=0)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(F.pad(x, (0, 1, 0, 1)))


class Upsample(nn.Module):
    """Double H and W: nearest-neighbour upsampling, then a 3x3 conv."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class SDEncoder(nn.Module):
    """LDM KL-f8 encoder: (N, 3, H, W) -> moments (N, 2*nz, H/8, W/8)."""

    def __init__(
        self,
        latent_channels: int = 4,
        channels: int = 128,
        channel_mult: tuple[int, ...] = (1, 2, 4, 4),
        num_res_blocks: int = 2,
        dropout: float = 0.0,
        mid_attention: bool = True,
    ):
        super().__init__()
        self.latent_channels = latent_channels
        self.conv_in = nn.Conv2d(3, channels, 3, padding=1)
        width = channels
        self.down = nn.ModuleList()
        for level, mult in enumerate(channel_mult):
            stage = nn.Sequential()
            for _ in range(num_res_blocks):
                stage.append(ResBlock(width, channels * mult, dropout))
                width = channels * mult
            if level != len(channel_mult) - 1:
                stage.append(Downsample(width))
            self.down.append(stage)
        self.mid = nn.Sequential(
            ResBlock(width, width, dropout),
            AttentionBlock(width) if mid_attention else nn.Identity(),
            ResBlock(width, width, dropout),
        )
        self.norm_out, self.conv_out = norm_conv("groupnorm", width, 2 * latent_channels)

    def forward(self, x: Tensor) -> Tensor:
        h = self.conv_in(x)
        for stage in self.down:
            h = stage(h)
        h = self.mid(h)
        return self.conv_out(norm_silu(self.norm_out, h))


class SDDecoder(nn.Module):
    """LDM KL-f8 decoder: latent (N, nz, h, w) -> image (N, 3, 2^(L-1) h, 2^(L-1) w)."""

    def __init__(
        self,
        latent_channels: int = 4,
        channels: int = 128,
        channel_mult: tuple[int, ...] = (1, 2, 4, 4),
        blocks_per_level: int = 3,
        mid_attention: bool = True,
        norm: Norm = "groupnorm",
        dropout: float = 0.0,
        checkpoint: bool = False,
    ):
        super().__init__()
        check_norm(norm)
        self.norm = norm
        # Activation checkpointing: with gradients on, the middle and each level keep only their
        # input and recompute their activations in the backward pass (same numbers, less memory).
        self.checkpoint = checkpoint
        width = channels * channel_mult[-1]
        self.conv_in = nn.Conv2d(latent_channels, width, 3, padding=1)
        self.mid = nn.Sequential(
            ResBlock(width, width, dropout, norm),
            AttentionBlock(width, norm) if mid_attention else nn.Identity(),
            ResBlock(width, width, dropout, norm),
        )
        self.up = nn.ModuleList()
        for level in reversed(range(len(channel_mult))):
            stage = nn.Sequential()
            for _ in range(blocks_per_level):
                stage.append(ResBlock(width, channels * channel_mult[level], dropout, norm))
                width = channels * channel_mult[level]
            if level != 0:
                stage.append(Upsample(width))
            self.up.append(stage)
        self.norm_out, self.conv_out = norm_conv(norm, width, 3)

    def forward(self, z: Tensor) -> Tensor:
        h = self._run(self.mid, self.conv_in(z))
        for stage in self.up:
            h = self._run(stage, h)
        return self.conv_out(norm_silu(self.norm_out, h))

    def _run(self, stage: nn.Module, h: Tensor) -> Tensor:
        if self.checkpoint and torch.is_grad_enabled():
            out: Tensor = torch.utils.checkpoint.checkpoint(stage, h, use_reentrant=False)
            return out
        return stage(h)
