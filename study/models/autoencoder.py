"""The full autoencoder: an encoder (LiteVAE or SD-VAE) that outputs the moments of a diagonal
Gaussian posterior over an nz x H/8 x W/8 latent, and the SD decoder (Sec. 3, Eq. 1).

    x in [-1, 1] --encoder--> (mean, log-variance) --[1x1 quant conv]--> q(z|x)
    z ~ q(z|x) (or its mean) --[1x1 post-quant conv]--> decoder --> x_hat

The 1x1 quant / post-quant convs of LDM are optional (``AutoencoderArgs.quant_conv``): Table 17
shows they hurt LiteVAE, so its presets leave them out; the SD-VAE presets keep them, as LDM does.

The builders take plain arguments (arguments.py): ``build_autoencoder(registry.preset_args(
"LiteVAE-B"))`` is the paper's LiteVAE-B; ``study.config.autoencoder_args`` composes them from an
experiment's config.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from study.models.arguments import AutoencoderArgs, DecoderArgs, DWTArgs, EncoderArgs, LiteVAEArgs, SDEncoderArgs
from study.models.dwt_encoder import Deterministic, DWTEncoder
from study.models.litevae import EncoderConfigError, InputShapeError, LiteVAEEncoder, check_input
from study.models.registry import preset_args
from study.models.sdvae import SDDecoder, SDEncoder

__all__ = [
    "Autoencoder",
    "DiagonalGaussian",
    "EncoderConfigError",
    "InputShapeError",
    "build_autoencoder",
    "build_encoder",
    "build_decoder",
    "build_preset",
]

LOGVAR_MIN, LOGVAR_MAX = -30.0, 20.0


class DiagonalGaussian:
    """The LDM posterior N(mean, diag(exp(logvar))) from moments (N, 2*nz, h, w): the first nz
    channels are the mean, the last nz the log-variance, clamped to [-30, 20]."""

    def __init__(self, moments: Tensor):
        self.mean, logvar = torch.chunk(moments, 2, dim=1)
        self.logvar = logvar.clamp(LOGVAR_MIN, LOGVAR_MAX)
        self.std = torch.exp(0.5 * self.logvar)
        self.var = torch.exp(self.logvar)

    def sample(self, generator: torch.Generator | None = None) -> Tensor:
        """z = mean + std * eps, eps ~ N(0, I) (reparameterised: differentiable in the moments)."""
        eps = torch.randn(self.mean.shape, generator=generator, device=self.mean.device, dtype=self.mean.dtype)
        return self.mean + self.std * eps

    def mode(self) -> Tensor:
        return self.mean

    def kl(self) -> Tensor:
        """KL(q || N(0, I)) per sample, summed over C, H, W (LDM convention): shape (N,)."""
        return 0.5 * torch.sum(self.mean.square() + self.var - 1.0 - self.logvar, dim=(1, 2, 3))


class Autoencoder(nn.Module):
    """``encode(x) -> DiagonalGaussian``, ``decode(z) -> x_hat``, ``forward(x) -> (x_hat, q)``."""

    def __init__(self, encoder: nn.Module, decoder: SDDecoder, latent_channels: int, quant_conv: bool = False):
        super().__init__()
        self.latent_channels = latent_channels
        self.encoder = encoder
        self.decoder = decoder
        nz = latent_channels
        self.quant_conv = nn.Conv2d(2 * nz, 2 * nz, 1) if quant_conv else nn.Identity()
        self.post_quant_conv = nn.Conv2d(nz, nz, 1) if quant_conv else nn.Identity()

    def encode(self, x: Tensor) -> DiagonalGaussian | Deterministic:
        """q(z|x): a diagonal Gaussian, or the point mass of a fixed DWT latent (Tables 11, 12)."""
        check_input(x)
        if isinstance(self.encoder, DWTEncoder):
            return self.encoder.encode(x)
        return DiagonalGaussian(self.quant_conv(self.encoder(x)))

    def decode(self, z: Tensor) -> Tensor:
        return self.decoder(self.post_quant_conv(z))

    def forward(
        self, x: Tensor, sample_posterior: bool = True, generator: torch.Generator | None = None
    ) -> tuple[Tensor, DiagonalGaussian | Deterministic]:
        posterior = self.encode(x)
        z = posterior.sample(generator) if sample_posterior else posterior.mode()
        return self.decode(z), posterior

    @property
    def last_layer(self) -> Tensor:
        """The decoder's final conv weight (the adaptive adversarial weight of Eq. 2 uses it)."""
        weight = self.decoder.conv_out.weight
        assert isinstance(weight, Tensor)
        return weight

    def encoder_modules(self) -> list[nn.Module]:
        """What runs in ``encode``: the encoder and the quant conv (counted as encoder params)."""
        return [self.encoder, self.quant_conv]

    def decoder_modules(self) -> list[nn.Module]:
        """What runs in ``decode``: the post-quant conv and the decoder."""
        return [self.post_quant_conv, self.decoder]


def build_encoder(args: EncoderArgs, latent_channels: int) -> nn.Module:
    """The encoder ``args`` describe, with 2 * latent_channels outputs (mean, log-variance); a
    DWT encoder outputs the latent itself (latent_channels, fixed by its variant)."""
    if isinstance(args, LiteVAEArgs):
        return LiteVAEEncoder(
            latent_channels,
            args.widths,
            levels=tuple(args.levels),
            wavelet=args.wavelet,
            aggregator=args.aggregator,
            shared_extractors=args.shared_extractors,
            num_res_blocks=args.num_res_blocks,
            dropout=args.dropout,
            extractor=args.extractor,
            head=args.head,
        )
    if isinstance(args, DWTArgs):
        encoder = DWTEncoder(args.variant)
        if encoder.latent_channels != latent_channels:
            raise EncoderConfigError(
                f"the {args.variant} latent has {encoder.latent_channels} channels, not {latent_channels}"
            )
        return encoder
    if isinstance(args, SDEncoderArgs):
        return SDEncoder(
            latent_channels, args.channels, tuple(args.channel_mult), args.num_res_blocks, dropout=args.dropout
        )
    raise EncoderConfigError(
        f"no encoder is built from {type(args).__name__}; allowed: LiteVAEArgs, SDEncoderArgs, DWTArgs"
    )


def build_decoder(args: DecoderArgs, latent_channels: int, checkpoint: bool = False) -> SDDecoder:
    """The SD decoder; ``checkpoint``: activation checkpointing in training (the same numbers)."""
    return SDDecoder(
        latent_channels,
        args.channels,
        tuple(args.channel_mult),
        args.blocks_per_level,
        args.mid_attention,
        args.norm,
        checkpoint=checkpoint,
    )


def build_autoencoder(args: AutoencoderArgs, checkpoint_decoder: bool = False) -> Autoencoder:
    """The autoencoder ``args`` describe (``study.config.autoencoder_args`` composes them)."""
    nz = args.latent_channels
    decoder = build_decoder(args.decoder, nz, checkpoint_decoder)
    return Autoencoder(build_encoder(args.encoder, nz), decoder, nz, args.quant_conv)


def build_preset(name: str, latent_channels: int = 4) -> Autoencoder:
    """The paper's model ``name`` (a key of ``registry.PRESETS``) with the SD decoder."""
    return build_autoencoder(preset_args(name, latent_channels))
