"""What the model builders take: plain, frozen arguments (numbers, tuples, strings).

The preset registry (registry.py) holds the paper's values of these; ``study.config`` composes them
from an experiment's ``ModelConfig`` (``autoencoder_args``); autoencoder.py builds the modules. This
module imports nothing, torch included, so a model can be named and described (by the config, the
study file, the command line) without loading torch.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, TypeAlias


@dataclass(frozen=True)
class LiteVAEWidths:
    """The widths of one LiteVAE size (Tables 23, 24): F_l and F_agg base channels and multipliers."""

    extractor_channels: int
    extractor_mult: tuple[int, ...]
    aggregator_channels: int
    aggregator_mult: tuple[int, ...]


@dataclass(frozen=True)
class LiteVAEArgs:
    """The LiteVAE encoder (Sec. 3.1-3.2); defaults are the paper's model."""

    widths: LiteVAEWidths
    levels: tuple[int, ...] = (1, 2, 3)  # Table 21 feeds only (2, 3)
    wavelet: str = "haar"
    aggregator: Literal["unet", "vit"] = "unet"  # Table 20
    shared_extractors: bool = False  # Table 19
    num_res_blocks: int = 2  # 2 reproduces the counts of Tables 2, 3
    dropout: float = 0.0
    extractor: Literal["unet", "nafnet"] = "unet"  # F_l: the UNet, or NAFNet (Table 18)
    head: Literal["conv", "norm_act_conv"] = "conv"  # the feature UNets' output head (litevae.py)


@dataclass(frozen=True)
class DWTArgs:
    """The fixed Haar latent of Tables 11, 12 (App. B): "dwt" (nz 12) or "dwt2" (nz 48); no parameters."""

    variant: Literal["dwt", "dwt2"] = "dwt"


@dataclass(frozen=True)
class SDEncoderArgs:
    """The SD-VAE (LDM KL-f8) encoder; defaults are LDM's (34.16 M parameters, Table 3)."""

    channels: int = 128
    channel_mult: tuple[int, ...] = (1, 2, 4, 4)
    num_res_blocks: int = 2
    dropout: float = 0.0


EncoderArgs: TypeAlias = LiteVAEArgs | SDEncoderArgs | DWTArgs  # what build_encoder takes


@dataclass(frozen=True)
class DecoderArgs:
    """The SD decoder every model uses (Sec. 3); defaults are LDM KL-f8's (49.49 M, nz = 4)."""

    channels: int = 128
    channel_mult: tuple[int, ...] = (1, 2, 4, 4)
    blocks_per_level: int = 3
    mid_attention: bool = True
    norm: Literal["groupnorm", "smc"] = "groupnorm"  # Table 4


@dataclass(frozen=True)
class AutoencoderArgs:
    """Encoder + diagonal Gaussian over an nz x H/8 x W/8 latent + decoder (Eq. 1)."""

    encoder: EncoderArgs
    latent_channels: int = 4  # nz: the paper uses 4 and 12
    quant_conv: bool = False  # LDM's 1x1 quant convs (Table 17: off)
    decoder: DecoderArgs = field(default_factory=DecoderArgs)
