"""The building blocks every network here shares: normalisation (GroupNorm or none, with
self-modulated convolution, LiteVAE Eq. 3), the pre-activation residual block and single-head
spatial attention. The normalisation rule and the group count: docs/models.md, "The shared
building blocks".
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

Norm = Literal["groupnorm", "smc"]
NORMS = ("groupnorm", "smc")


class UnknownNorm(ValueError):
    """A normalisation kind other than "groupnorm" or "smc"."""


def check_norm(norm: str) -> str:
    if norm not in NORMS:
        raise UnknownNorm(f"unknown normalisation {norm!r}; allowed: {', '.join(NORMS)}")
    return norm


# --------------------------------------------------------------------------------------------
# GroupNorm with the project's group rule
# --------------------------------------------------------------------------------------------
def num_groups(channels: int, preferred: int = 32) -> int:
    """gcd(32, C) groups: 32 where the paper's GroupNorm(32) is possible, fewer where not."""
    return math.gcd(preferred, channels)


def group_norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(num_groups(channels), channels, eps=1e-6, affine=True)


# --------------------------------------------------------------------------------------------
# self-modulated convolution, Eq. 3
# --------------------------------------------------------------------------------------------
class SMConv2d(nn.Module):
    """Self-modulated convolution (LiteVAE Eq. 3, the StyleGAN2 modulated convolution with
    demodulation, where the style is a learned vector instead of a mapping of w):

        w'_oik = g * s_i * w_oik / sqrt( sum_{i,k} (s_i * w_oik)^2 + eps ),   eps = 1e-8

    with learned per-input-channel scales s (init 1), a learned scalar gain g (init 1) and a
    bias. The scales do not depend on the input, so the modulated weight is computed once per
    forward and applied as one ordinary convolution (no grouped per-sample conv is needed).
    Every output channel's effective weight has Euclidean norm |g| (up to eps).
    """

    eps = 1e-8

    def __init__(
        self, in_channels: int, out_channels: int, kernel_size: int = 3, padding: int | None = None, bias: bool = True
    ):
        super().__init__()
        self.in_channels, self.out_channels, self.kernel_size = in_channels, out_channels, kernel_size
        self.padding = kernel_size // 2 if padding is None else padding
        weight = torch.empty(out_channels, in_channels, kernel_size, kernel_size)
        nn.init.kaiming_uniform_(weight, a=math.sqrt(5))
        self.weight = nn.Parameter(weight)
        self.scale = nn.Parameter(torch.ones(in_channels))  # s_i
        self.gain = nn.Parameter(torch.ones(()))  # g
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None

    def effective_weight(self) -> Tensor:
        """w' of Eq. 3, shape (out, in, k, k)."""
        w = self.weight * self.scale.view(1, -1, 1, 1)
        demod = torch.rsqrt(w.square().sum(dim=(1, 2, 3), keepdim=True) + self.eps)
        return w * (demod * self.gain)

    def forward(self, x: Tensor) -> Tensor:
        return F.conv2d(x, self.effective_weight().to(x.dtype), self.bias, padding=self.padding)

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
            f"padding={self.padding}, bias={self.bias is not None}"
        )


def norm_conv(norm: Norm, in_channels: int, out_channels: int, kernel_size: int = 3) -> tuple[nn.Module, nn.Module]:
    """The (normalisation, convolution) pair that reads a feature map: GroupNorm + Conv2d, or
    no normalisation + SMConv2d."""
    if check_norm(norm) == "groupnorm":
        return group_norm(in_channels), nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2)
    return nn.Identity(), SMConv2d(in_channels, out_channels, kernel_size)


def norm_silu(norm: nn.Module, x: Tensor) -> Tensor:
    """SiLU(norm(x)). Where the norm made a new tensor, SiLU overwrites it in place (saves one
    allocation per block; autograd-safe: GroupNorm's backward does not need its output)."""
    y = norm(x)
    return F.silu(y, inplace=y is not x)


# --------------------------------------------------------------------------------------------
# residual block
# --------------------------------------------------------------------------------------------
class ResBlock(nn.Module):
    """Pre-activation residual block (ADM / LDM, no time embedding):

        h = conv1(SiLU(norm1(x)));  h = conv2(dropout(SiLU(norm2(h))));  out = skip(x) + h

    skip is a 1x1 convolution when the width changes, else the identity. With ``norm="smc"``
    both norms vanish and conv1/conv2 are SMC (the paper's SiLU -> SMC -> SiLU -> SMC); the 1x1
    skip stays an ordinary convolution (no normalisation precedes it).
    """

    def __init__(self, in_channels: int, out_channels: int, dropout: float = 0.0, norm: Norm = "groupnorm"):
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        self.norm1, self.conv1 = norm_conv(norm, in_channels, out_channels)
        self.norm2, self.conv2 = norm_conv(norm, out_channels, out_channels)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.skip = nn.Conv2d(in_channels, out_channels, 1) if in_channels != out_channels else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        h = self.conv1(norm_silu(self.norm1, x))
        h = self.conv2(self.dropout(norm_silu(self.norm2, h)))
        return h.add_(self.skip(x))  # in place on conv2's fresh output (autograd-safe)


# --------------------------------------------------------------------------------------------
# single-head spatial self-attention (the LDM mid block)
# --------------------------------------------------------------------------------------------
class AttentionBlock(nn.Module):
    """Single-head self-attention over the H*W positions, with a residual connection:

        h = norm(x);  q, k, v = 1x1 convs of h;  out = x + proj(softmax(q k^T / sqrt(C)) v)

    With ``norm="smc"`` the GroupNorm is dropped and q, k, v become 1x1 SMC convolutions (the
    project's rule: every conv that a GroupNorm preceded becomes SMC), so the attention logits
    are computed from demodulated, gain-controlled projections; proj stays an ordinary conv.
    """

    def __init__(self, channels: int, norm: Norm = "groupnorm"):
        super().__init__()
        self.channels = channels
        self.norm, self.q = norm_conv(norm, channels, channels, kernel_size=1)
        _, self.k = norm_conv(norm, channels, channels, kernel_size=1)
        _, self.v = norm_conv(norm, channels, channels, kernel_size=1)
        self.proj = nn.Conv2d(channels, channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        n, c, h, w = x.shape
        y = self.norm(x)
        q, k, v = (conv(y).flatten(2).transpose(1, 2).unsqueeze(1) for conv in (self.q, self.k, self.v))
        out = F.scaled_dot_product_attention(q, k, v)  # (N, 1, HW, C)
        out = out.squeeze(1).transpose(1, 2).reshape(n, c, h, w)
        return x + self.proj(out)
