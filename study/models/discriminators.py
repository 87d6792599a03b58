"""The three discriminators of Table 10: PatchGAN, a StyleGAN2-style residual discriminator and a
UNet discriminator, each mapping images to a list of logit tensors. Their structure and sizes
(ours; the paper gives none): docs/models.md, "The three discriminators' structure".
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.parametrizations import spectral_norm

DISCRIMINATORS = ("none", "patchgan", "stylegan", "unet")


class UnknownDiscriminator(ValueError):
    """A discriminator kind outside none|patchgan|stylegan|unet."""


# --------------------------------------------------------------------------------------------
# PatchGAN
# --------------------------------------------------------------------------------------------
class PatchGAN(nn.Module):
    """4x4 convs: stride 2 to 64 filters, then ``layers - 1`` stride-2 convs doubling the width
    (capped at 8x), one stride-1 conv, and a stride-1 conv to one logit per patch; BatchNorm
    after every conv except the first and the last, LeakyReLU(0.2)."""

    def __init__(self, in_channels: int = 3, filters: int = 64, layers: int = 3):
        super().__init__()
        seq: list[nn.Module] = [nn.Conv2d(in_channels, filters, 4, 2, 1), nn.LeakyReLU(0.2)]
        width = filters
        for n in range(1, layers + 1):
            out = filters * min(2**n, 8)
            stride = 2 if n < layers else 1
            seq += [nn.Conv2d(width, out, 4, stride, 1, bias=False), nn.BatchNorm2d(out), nn.LeakyReLU(0.2)]
            width = out
        seq.append(nn.Conv2d(width, 1, 4, 1, 1))
        self.net = nn.Sequential(*seq)
        self.apply(_gan_init)

    def forward(self, x: Tensor) -> list[Tensor]:
        return [self.net(x)]


def _gan_init(m: nn.Module) -> None:
    """The DCGAN initialisation LDM uses for PatchGAN: N(0, 0.02) convs, N(1, 0.02) BatchNorm."""
    if isinstance(m, nn.Conv2d):
        nn.init.normal_(m.weight, 0.0, 0.02)
    elif isinstance(m, nn.BatchNorm2d):
        nn.init.normal_(m.weight, 1.0, 0.02)
        nn.init.zeros_(m.bias)


# --------------------------------------------------------------------------------------------
# StyleGAN2-style residual discriminator
# --------------------------------------------------------------------------------------------
class DownResBlock(nn.Module):
    """StyleGAN2's residual discriminator block: (conv3x3 -> lrelu -> conv3x3 -> lrelu -> down)
    plus a (down -> 1x1 conv) skip, summed and scaled by 1/sqrt(2). ``down`` halves the size
    with 2x2 average pooling, or is skipped when ``downsample`` is False."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, in_channels, 3, padding=1)
        self.conv2 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.skip = nn.Conv2d(in_channels, out_channels, 1, bias=False)

    def forward(self, x: Tensor, downsample: bool) -> Tensor:
        h = F.leaky_relu(self.conv1(x), 0.2)
        h = F.leaky_relu(self.conv2(h), 0.2)
        s = x
        if downsample:
            h, s = F.avg_pool2d(h, 2), F.avg_pool2d(s, 2)
        return (self.skip(s) + h) / math.sqrt(2.0)


def minibatch_stddev(x: Tensor, group_size: int = 4) -> Tensor:
    """Append one channel holding the standard deviation of the features across groups of
    samples (StyleGAN2), averaged over channels and positions. The group is the largest
    divisor of the batch that is at most ``group_size``."""
    n, c, h, w = x.shape
    g = max(d for d in range(1, min(group_size, n) + 1) if n % d == 0)
    y = x.float().reshape(g, n // g, c, h, w)
    y = (y.var(dim=0, unbiased=False) + 1e-8).sqrt()  # (n/g, c, h, w)
    y = y.mean(dim=(1, 2, 3)).to(x.dtype)  # (n/g,)
    y = y.view(1, n // g, 1, 1, 1).expand(g, n // g, 1, h, w).reshape(n, 1, h, w)
    return torch.cat([x, y], dim=1)


class StyleGANDiscriminator(nn.Module):
    FINAL = 4  # spatial size of the last feature map

    def __init__(
        self, in_channels: int = 3, widths: tuple[int, ...] = (64, 128, 256, 256, 256, 256), mbstd_group: int = 4
    ):
        super().__init__()
        self.mbstd_group = mbstd_group
        self.from_rgb = nn.Conv2d(in_channels, widths[0], 1)
        self.blocks = nn.ModuleList([DownResBlock(a, b) for a, b in zip(widths[:-1], widths[1:])])
        top = widths[-1]
        self.conv = nn.Conv2d(top + 1, top, 3, padding=1)
        self.fc = nn.Linear(top * self.FINAL * self.FINAL, top)
        self.out = nn.Linear(top, 1)

    def forward(self, x: Tensor) -> list[Tensor]:
        h = F.leaky_relu(self.from_rgb(x), 0.2)
        for block in self.blocks:
            h = block(h, downsample=h.shape[-1] > self.FINAL and h.shape[-2] > self.FINAL)
        h = F.adaptive_avg_pool2d(h, self.FINAL)
        h = F.leaky_relu(self.conv(minibatch_stddev(h, self.mbstd_group)), 0.2)
        h = F.leaky_relu(self.fc(h.flatten(1)), 0.2)
        return [self.out(h)]


# --------------------------------------------------------------------------------------------
# UNet discriminator (Schonfeld et al. 2020)
# --------------------------------------------------------------------------------------------
def _sn(module: nn.Module) -> nn.Module:
    return spectral_norm(module)


class EncoderBlock(nn.Module):
    """BigGAN discriminator block: ReLU -> conv3x3 -> ReLU -> conv3x3 -> avgpool, with a
    1x1 conv -> avgpool skip (pre-activation omitted on the first block, which sees RGB)."""

    def __init__(self, in_channels: int, out_channels: int, preactivation: bool = True):
        super().__init__()
        self.preactivation = preactivation
        self.conv1 = _sn(nn.Conv2d(in_channels, out_channels, 3, padding=1))
        self.conv2 = _sn(nn.Conv2d(out_channels, out_channels, 3, padding=1))
        self.skip = _sn(nn.Conv2d(in_channels, out_channels, 1))

    def forward(self, x: Tensor) -> Tensor:
        h = F.relu(x) if self.preactivation else x
        h = self.conv2(F.relu(self.conv1(h)))
        return F.avg_pool2d(h, 2) + F.avg_pool2d(self.skip(x), 2)


class DecoderBlock(nn.Module):
    """ReLU -> nearest x2 -> conv3x3 -> ReLU -> conv3x3, with a nearest x2 -> 1x1 conv skip."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.conv1 = _sn(nn.Conv2d(in_channels, out_channels, 3, padding=1))
        self.conv2 = _sn(nn.Conv2d(out_channels, out_channels, 3, padding=1))
        self.skip = _sn(nn.Conv2d(in_channels, out_channels, 1))

    def forward(self, x: Tensor) -> Tensor:
        up = F.interpolate(x, scale_factor=2.0, mode="nearest")
        h = self.conv2(F.relu(self.conv1(F.interpolate(F.relu(x), scale_factor=2.0, mode="nearest"))))
        return h + self.skip(up)


class UNetDiscriminator(nn.Module):
    def __init__(self, in_channels: int = 3, widths: tuple[int, ...] = (64, 128, 256, 512)):
        super().__init__()
        self.encoder = nn.ModuleList()
        width = in_channels
        for i, w in enumerate(widths):
            self.encoder.append(EncoderBlock(width, w, preactivation=i > 0))
            width = w
        self.image_head = _sn(nn.Linear(width, 1))
        self.decoder = nn.ModuleList()
        # Decoder block i upsamples to the size of encoder output len-2-i and concatenates it.
        for i, w in enumerate(reversed(widths[:-1])):
            self.decoder.append(DecoderBlock(width if i == 0 else 2 * width, w))
            width = w
        self.last = DecoderBlock(2 * width, widths[0])
        self.pixel_head = _sn(nn.Conv2d(widths[0], 1, 1))

    def forward(self, x: Tensor) -> list[Tensor]:
        features = []
        h = x
        for block in self.encoder:
            h = block(h)
            features.append(h)
        image_logits = self.image_head(F.relu(h).sum(dim=(2, 3)))  # (N, 1)
        features.pop()
        for block in self.decoder:
            h = torch.cat([block(h), features.pop()], dim=1)
        pixel_logits = self.pixel_head(F.relu(self.last(h)))  # (N, 1, H, W)
        return [image_logits, pixel_logits]


# --------------------------------------------------------------------------------------------
# selection
# --------------------------------------------------------------------------------------------
def build_discriminator(kind: str, channels: int = 64) -> nn.Module | None:
    """The discriminator ``LossConfig.discriminator`` names, its first layer ``channels`` wide
    (``LossConfig.discriminator_channels``; 64 gives the sizes documented above); None for "none"."""
    if kind == "none":
        return None
    c = channels
    if kind == "patchgan":
        return PatchGAN(filters=c)
    if kind == "stylegan":
        return StyleGANDiscriminator(widths=(c, 2 * c, 4 * c, 4 * c, 4 * c, 4 * c))
    if kind == "unet":
        return UNetDiscriminator(widths=(c, 2 * c, 4 * c, 8 * c))
    raise UnknownDiscriminator(f"unknown discriminator {kind!r}; allowed: {', '.join(DISCRIMINATORS)}")
