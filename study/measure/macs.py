"""Multiply-accumulates counted fast: one network built once on the meta device, its forward run at
each resolution asked for under ``MacCounter``, a lean counting mode whose totals are
``FlopCounterMode``'s. What it leaves out: docs/performance.md, "Counting multiply-accumulates
fast".
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import flop_registry

from study.config import ModelConfig, autoencoder_args
from study.models.autoencoder import build_decoder, build_encoder
from study.models.discriminators import build_discriminator
from study.models.dwt_encoder import DWTEncoder
from study.models.ldm_unet import UNET_PRESETS, build_unet

ATEN = torch.ops.aten
LATENT_DOWNSAMPLING = 8  # every encoder's latent is H/8 x W/8 (study/models/dwt_encoder.py: DOWNSAMPLING)
# What FlopCounterMode hands back to the tensor (NotImplemented): queries of a tensor's layout.
_QUERIES = frozenset(
    {
        ATEN.is_contiguous.default,
        ATEN.is_contiguous.memory_format,
        ATEN.is_strides_like_format.default,
        ATEN.is_non_overlapping_and_dense.default,
        ATEN.size.default,
        ATEN.sym_size.default,
        ATEN.stride.default,
        ATEN.sym_stride.default,
        ATEN.storage_offset.default,
        ATEN.sym_storage_offset.default,
        ATEN.numel.default,
        ATEN.sym_numel.default,
        ATEN.dim.default,
        torch.ops.prim.layout.default,
    }
)


class MacCounter(TorchDispatchMode):
    """The FLOPs of every op run while it is active, summed in ``flops`` (see the module docstring)."""

    def __init__(self) -> None:
        super().__init__()
        self.flops = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        kwargs = kwargs or {}
        if func in _QUERIES:
            return NotImplemented
        packet = func._overloadpacket
        if packet is ATEN.native_group_norm:  # (x, weight, bias, N, C, HxW, group, eps) -> out, mean, rstd
            x, n, groups = args[0], args[3], args[6]
            return torch.empty_like(x), x.new_empty((n, groups)), x.new_empty((n, groups))
        formula = flop_registry.get(packet)
        if formula is None and func is not torch.ops.prim.device.default:
            with self:  # as FlopCounterMode: an op without a formula is counted through its parts
                out = func.decompose(*args, **kwargs)
                if out is not NotImplemented:
                    return out
        out = func(*args, **kwargs)
        if formula is not None:
            self.flops += formula(*args, **kwargs, out_val=out)
        return out


def count_macs(forward: Callable[[], object]) -> int:
    """MACs (FLOPs / 2) of ``forward()``, run on the meta device without gradients."""
    with torch.device("meta"), torch.no_grad(), MacCounter() as counter:
        forward()
    return counter.flops // 2


def _call(forward: Callable[[torch.Tensor], object], *shape: int) -> Callable[[], object]:
    """``forward`` of an empty (meta) tensor of ``shape`` x ``shape[-1]``."""
    return lambda: forward(torch.empty(*shape, shape[-1]))


def _build(make: Callable[[], nn.Module]) -> nn.Module:
    with torch.device("meta"):
        return make()


def parameters(module: nn.Module | None) -> int:
    return 0 if module is None else sum(p.numel() for p in module.parameters())


def encoder_module(model_cfg: ModelConfig) -> nn.Module:
    """What ``Autoencoder.encode`` runs, without building the decoder: encoder [+ quant conv]."""
    args = autoencoder_args(model_cfg)
    encoder = build_encoder(args.encoder, args.latent_channels)
    if args.quant_conv:
        nz = args.latent_channels
        return nn.Sequential(encoder, nn.Conv2d(2 * nz, 2 * nz, 1))
    return encoder


def decoder_path(model_cfg: ModelConfig) -> nn.Module:
    """What ``Autoencoder.decode`` runs, on the meta device: the post-quant conv and the decoder."""
    args = autoencoder_args(model_cfg)
    nz = model_cfg.latent_channels

    def make() -> nn.Module:
        decoder = build_decoder(args.decoder, nz)
        return nn.Sequential(nn.Conv2d(nz, nz, 1), decoder) if args.quant_conv else decoder

    return _build(make)


def encoder_counts(model_cfg: ModelConfig, resolutions: Iterable[int]) -> tuple[int, dict[int, int]]:
    """(parameters of the encoder path, {resolution: MACs of encoding one image}): one build."""
    encoder = _build(lambda: encoder_module(model_cfg))
    forward = encoder.encode if isinstance(encoder, DWTEncoder) else encoder  # as Autoencoder.encode
    return parameters(encoder), {r: count_macs(_call(forward, 1, 3, r)) for r in sorted(set(resolutions))}


def decoder_counts(model_cfg: ModelConfig, resolutions: Iterable[int]) -> tuple[int, dict[int, int]]:
    """(parameters of the decoder path, {resolution: MACs of decoding one image's latent})."""
    decoder = decoder_path(model_cfg)
    nz = model_cfg.latent_channels
    side = LATENT_DOWNSAMPLING
    return parameters(decoder), {r: count_macs(_call(decoder, 1, nz, r // side)) for r in sorted(set(resolutions))}


def discriminator_counts(kind: str, channels: int, resolutions: Iterable[int]) -> tuple[int, dict[int, int]]:
    """(parameters, {resolution: MACs of judging one image}) of ``loss.discriminator``; 0 for none."""
    with torch.device("meta"):
        disc = build_discriminator(kind, channels)
    if disc is None:
        return 0, dict.fromkeys(resolutions, 0)
    return parameters(disc), {r: count_macs(_call(disc, 1, 3, r)) for r in sorted(set(resolutions))}


def denoiser_counts(unet: str, latent_channels: int, resolutions: Iterable[int]) -> tuple[int, dict[int, int]]:
    """(parameters, {image resolution: MACs of one denoising step on one latent}) of the
    ``diffusion.unet`` preset on a latent of ``latent_channels`` (study/diffusion/train.py's build)."""
    args = dataclasses.replace(UNET_PRESETS[unet], in_channels=latent_channels, out_channels=latent_channels)
    net = _build(lambda: build_unet(args))

    def step(resolution: int) -> int:
        side = resolution // LATENT_DOWNSAMPLING
        return count_macs(lambda: net(torch.empty(1, latent_channels, side, side), torch.zeros((), dtype=torch.long)))

    return parameters(net), {r: step(r) for r in sorted(set(resolutions))}
