"""The denoising UNet of latent diffusion (Rombach et al. 2022, the LDM repository's ``UNetModel``,
itself ADM's UNet): unconditional, predicting the noise of a latent x_t at timestep t.

The paper names only "the original model from Rombach et al." (a paper gap): ``UNetArgs`` defaults
to the LDM repository's KL-f8 256 config. The network and where ours differs from LDM's code (odd
latent sizes, GroupNorm groups): docs/diffusion.md, "The denoiser".
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class UNetShapeError(ValueError):
    """A UNet configuration whose widths, heads or levels do not fit together."""


@dataclass(frozen=True)
class UNetArgs:
    """The UNet's plain arguments; defaults are LDM's KL-f8 256 model (lsun_churches-ldm-kl-8.yaml)."""

    in_channels: int = 4  # unet_config in_channels: the latent's channels (KL-f8 z_channels 4; ours 4 or 12)
    out_channels: int = 4  # unet_config out_channels: eps has the latent's shape
    model_channels: int = 192  # unet_config model_channels
    channel_mult: tuple[int, ...] = (1, 2, 2, 4, 4)  # unet_config channel_mult: 32, 16, 8, 4, 2
    num_res_blocks: int = 2  # unet_config num_res_blocks
    attention_resolutions: tuple[int, ...] = (1, 2, 4, 8)  # unet_config: down-sampling rates 1..8 (32..4)
    num_heads: int = 8  # unet_config num_heads (head width = channels // 8)
    num_head_channels: int | None = None  # UNetModel default -1: heads fixed by num_heads, not width
    use_scale_shift_norm: bool = True  # unet_config use_scale_shift_norm
    resblock_updown: bool = True  # unet_config resblock_updown
    conv_resample: bool = True  # UNetModel default (used only when resblock_updown is False)
    dropout: float = 0.0  # UNetModel default (the config sets none)
    max_period: float = 10000.0  # timestep_embedding default in ldm/modules/diffusionmodules/util.py


UNET_PRESETS: dict[str, UNetArgs] = {
    "ldm-kl8": UNetArgs(),
    # our choice for CPU smoke runs on 4x4 / 8x8 latents: two levels, one block, attention at ds 2
    "tiny": UNetArgs(model_channels=32, channel_mult=(1, 2), num_res_blocks=1, attention_resolutions=(2,), num_heads=4),
}


# --------------------------------------------------------------------------------------------
# parts
# --------------------------------------------------------------------------------------------
class GroupNorm32(nn.GroupNorm):
    """GroupNorm (eps 1e-5) computed in float32 and cast back, as LDM's GroupNorm32 (also when the
    module itself has been cast to bf16 / fp16)."""

    def __init__(self, channels: int):
        super().__init__(math.gcd(32, channels), channels)

    def forward(self, x: Tensor) -> Tensor:
        weight = None if self.weight is None else self.weight.float()
        bias = None if self.bias is None else self.bias.float()
        return F.group_norm(x.float(), self.num_groups, weight, bias, self.eps).type(x.dtype)


def zero_init(module: nn.Module) -> nn.Module:
    for p in module.parameters():
        nn.init.zeros_(p)
    return module


def timestep_embedding(t: Tensor, dim: int, max_period: float = 10000.0) -> Tensor:
    """Sinusoidal embedding [cos(t w_i), sin(t w_i)], w_i = max_period^(-i / (dim/2)) (Vaswani et al. 2017)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    args = t.float()[:, None] * freqs[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    return F.pad(emb, (0, dim % 2))


class Resample(nn.Module):
    """x2 down (average pool, or a stride-2 conv) or up (nearest, optionally then a conv); a down
    step rounds odd sizes up, so a 1x1 map stays 1x1."""

    def __init__(self, channels: int, direction: str, use_conv: bool):
        super().__init__()
        self.direction = direction
        stride = 2 if direction == "down" else 1
        self.conv = nn.Conv2d(channels, channels, 3, stride=stride, padding=1) if use_conv else None

    def forward(self, x: Tensor) -> Tensor:
        if self.direction == "up":
            x = F.interpolate(x, scale_factor=2.0, mode="nearest")
        elif self.conv is None:
            return F.avg_pool2d(x, 2, 2, ceil_mode=True)
        return x if self.conv is None else self.conv(x)


class ResBlock(nn.Module):
    """ADM's residual block with the timestep as FiLM scale/shift of the second norm; optionally
    resampling both paths between the first norm and conv (``resblock_updown``)."""

    def __init__(
        self,
        channels: int,
        emb_channels: int,
        out_channels: int | None = None,
        dropout: float = 0.0,
        scale_shift: bool = True,
        resample: str | None = None,
    ):
        super().__init__()
        out = out_channels or channels
        self.scale_shift = scale_shift
        self.norm1, self.conv1 = GroupNorm32(channels), nn.Conv2d(channels, out, 3, padding=1)
        self.resample = Resample(channels, resample, use_conv=False) if resample else nn.Identity()
        self.emb = nn.Linear(emb_channels, 2 * out if scale_shift else out)
        self.norm2, self.dropout = GroupNorm32(out), nn.Dropout(dropout)
        self.conv2 = zero_init(nn.Conv2d(out, out, 3, padding=1))
        self.skip = nn.Identity() if out == channels else nn.Conv2d(channels, out, 1)

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        h = self.conv1(self.resample(F.silu(self.norm1(x))))
        x = self.resample(x)
        e = self.emb(F.silu(emb)).type(h.dtype)[:, :, None, None]
        if self.scale_shift:
            scale, shift = e.chunk(2, dim=1)
            h = self.norm2(h) * (1 + scale) + shift
        else:
            h = self.norm2(h + e)
        h = self.conv2(self.dropout(F.silu(h)))
        return self.skip(x) + h


class AttentionBlock(nn.Module):
    """Multi-head self-attention over the H*W positions, softmax(q k^T / sqrt(d)) v, residual, with
    a zero-initialised output projection. The qkv channels are laid out per head (q, k, v of head
    0, then head 1, ...), LDM's default "legacy" order."""

    def __init__(self, channels: int, heads: int):
        super().__init__()
        if channels % heads:
            raise UNetShapeError(f"{channels} channels do not split into {heads} attention heads")
        self.heads = heads
        self.norm = GroupNorm32(channels)
        self.qkv = nn.Conv1d(channels, 3 * channels, 1)
        self.proj = zero_init(nn.Conv1d(channels, channels, 1))

    def forward(self, x: Tensor) -> Tensor:
        b, c, height, width = x.shape
        flat = x.reshape(b, c, height * width)
        qkv = self.qkv(self.norm(flat)).reshape(b, self.heads, 3 * c // self.heads, height * width)
        q, k, v = (part.transpose(2, 3) for part in qkv.chunk(3, dim=2))  # each (b, heads, T, d)
        h = F.scaled_dot_product_attention(q, k, v).transpose(2, 3).reshape(b, c, height * width)
        return (flat + self.proj(h)).reshape(b, c, height, width)


class EmbedSequential(nn.Sequential):
    """A sequence of layers; the ResBlocks among them also receive the timestep embedding."""

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:  # type: ignore[override]
        for layer in self:
            x = layer(x, emb) if isinstance(layer, ResBlock) else layer(x)
        return x


# --------------------------------------------------------------------------------------------
# the UNet
# --------------------------------------------------------------------------------------------
class LDMUNet(nn.Module):
    """eps_theta(x_t, t): the LDM UNetModel without conditioning (see the module docstring)."""

    def __init__(self, args: UNetArgs):
        super().__init__()
        check_unet_args(args)
        self.args = args
        width, emb = args.model_channels, 4 * args.model_channels  # time_embed_dim = 4 x model_channels
        self.time_embed = nn.Sequential(nn.Linear(width, emb), nn.SiLU(), nn.Linear(emb, emb))
        self.input_blocks, skips = _down_path(args, emb)
        deepest = skips[-1]
        self.middle_block = EmbedSequential(
            _res(args, emb, deepest),
            AttentionBlock(deepest, _heads(args, deepest)),
            _res(args, emb, deepest),
        )
        self.output_blocks = _up_path(args, emb, skips)
        self.out = nn.Sequential(
            GroupNorm32(width), nn.SiLU(), zero_init(nn.Conv2d(width, args.out_channels, 3, padding=1))
        )

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        """x: (B, C, H, W) noisy latents; t: (B,) or scalar integer timesteps -> eps, shaped as x."""
        t = torch.as_tensor(t, device=x.device).expand(x.shape[0])
        sinusoid = timestep_embedding(t, self.args.model_channels, self.args.max_period)
        emb = self.time_embed(sinusoid.to(next(self.time_embed.parameters()).dtype))
        h, skips = x, []
        for block in self.input_blocks:
            h = block(h, emb)
            skips.append(h)
        h = self.middle_block(h, emb)
        for block in self.output_blocks:
            skip = skips.pop()
            h = torch.cat([h[..., : skip.shape[-2], : skip.shape[-1]], skip], dim=1)  # crop: our size rule
            h = block(h, emb)
        return self.out(h.type(x.dtype))


def build_unet(args: UNetArgs) -> LDMUNet:
    return LDMUNet(args)


def check_unet_args(args: UNetArgs) -> None:
    if not args.channel_mult or args.num_res_blocks < 1 or args.model_channels < 1:
        raise UNetShapeError(f"a UNet needs levels, blocks and width: {args}")
    if args.num_head_channels is None and args.num_heads < 1:
        raise UNetShapeError(f"num_heads must be positive when num_head_channels is unset, got {args.num_heads}")
    for width in {args.model_channels * m for m in args.channel_mult}:
        heads = _heads(args, width)
        if heads < 1 or width % heads:
            raise UNetShapeError(f"width {width} does not split into attention heads ({args})")


def _heads(args: UNetArgs, channels: int) -> int:
    """num_heads heads, or channels // num_head_channels when a head width is fixed (UNetModel)."""
    return args.num_heads if args.num_head_channels is None else channels // args.num_head_channels


def _res(args: UNetArgs, emb: int, channels: int, out: int | None = None, resample: str | None = None) -> ResBlock:
    return ResBlock(channels, emb, out, args.dropout, args.use_scale_shift_norm, resample)


def _resample(args: UNetArgs, emb: int, channels: int, direction: str) -> nn.Module:
    """Between levels: a resampling ResBlock (``resblock_updown``) or a plain (conv) resampling."""
    if args.resblock_updown:
        return _res(args, emb, channels, resample=direction)
    return Resample(channels, direction, args.conv_resample)


def _level_block(args: UNetArgs, emb: int, channels: int, out: int, ds: int) -> list[nn.Module]:
    layers: list[nn.Module] = [_res(args, emb, channels, out)]
    if ds in args.attention_resolutions:
        layers.append(AttentionBlock(out, _heads(args, out)))
    return layers


def _down_path(args: UNetArgs, emb: int) -> tuple[nn.ModuleList, list[int]]:
    """The encoder half; returns its blocks and the width of every block's output (the skips)."""
    blocks = nn.ModuleList([EmbedSequential(nn.Conv2d(args.in_channels, args.model_channels, 3, padding=1))])
    widths, ch, ds = [args.model_channels], args.model_channels, 1
    for level, mult in enumerate(args.channel_mult):
        for _ in range(args.num_res_blocks):
            blocks.append(EmbedSequential(*_level_block(args, emb, ch, mult * args.model_channels, ds)))
            ch = mult * args.model_channels
            widths.append(ch)
        if level != len(args.channel_mult) - 1:
            blocks.append(EmbedSequential(_resample(args, emb, ch, "down")))
            widths.append(ch)
            ds *= 2
    return blocks, widths


def _up_path(args: UNetArgs, emb: int, skips: list[int]) -> nn.ModuleList:
    """The decoder half: each block takes the previous output concatenated with one skip."""
    skips, blocks = list(skips), nn.ModuleList()
    ch, ds = skips[-1], 2 ** (len(args.channel_mult) - 1)
    for level, mult in reversed(list(enumerate(args.channel_mult))):
        for i in range(args.num_res_blocks + 1):
            layers = _level_block(args, emb, ch + skips.pop(), mult * args.model_channels, ds)
            ch = mult * args.model_channels
            if level and i == args.num_res_blocks:
                layers.append(_resample(args, emb, ch, "up"))
                ds //= 2
            blocks.append(EmbedSequential(*layers))
    return blocks
