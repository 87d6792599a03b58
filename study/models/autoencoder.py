"""The full autoencoder: an encoder (LiteVAE or SD-VAE) that outputs the moments of a diagonal
Gaussian posterior over an nz x H/8 x W/8 latent, and the SD decoder (Sec. 3, Eq. 1).

    x in [-1, 1] --encoder--> (mean, log-variance) --[1x1 quant conv]--> q(z|x)
    z ~ q(z|x) (or its mean) --[1x1 post-quant conv]--> decoder --> x_hat

The 1x1 quant / post-quant convs of LDM are optional (``ModelConfig.quant_conv``): Table 17 shows
they hurt LiteVAE, so its presets leave them out; the SD-VAE presets keep them, as LDM does.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from study.config import ModelConfig
from study.models.litevae import (LITEVAE_PRESETS, EncoderConfigError, InputShapeError,
                                  LiteVAEEncoder, check_input)
from study.models.sdvae import SD_ENCODER_WIDTHS, SDDecoder, SDEncoder

__all__ = ["Autoencoder", "DiagonalGaussian", "EncoderConfigError", "InputShapeError",
           "build_autoencoder", "build_encoder", "build_decoder"]

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
        eps = torch.randn(self.mean.shape, generator=generator, device=self.mean.device,
                          dtype=self.mean.dtype)
        return self.mean + self.std * eps

    def mode(self) -> Tensor:
        return self.mean

    def kl(self) -> Tensor:
        """KL(q || N(0, I)) per sample, summed over C, H, W (LDM convention): shape (N,)."""
        return 0.5 * torch.sum(self.mean.square() + self.var - 1.0 - self.logvar, dim=(1, 2, 3))


class Autoencoder(nn.Module):
    """``encode(x) -> DiagonalGaussian``, ``decode(z) -> x_hat``, ``forward(x) -> (x_hat, q)``."""

    def __init__(self, encoder: nn.Module, decoder: SDDecoder, latent_channels: int,
                 quant_conv: bool = False):
        super().__init__()
        self.latent_channels = latent_channels
        self.encoder = encoder
        self.decoder = decoder
        nz = latent_channels
        self.quant_conv = nn.Conv2d(2 * nz, 2 * nz, 1) if quant_conv else nn.Identity()
        self.post_quant_conv = nn.Conv2d(nz, nz, 1) if quant_conv else nn.Identity()

    def encode(self, x: Tensor) -> DiagonalGaussian:
        check_input(x)
        return DiagonalGaussian(self.quant_conv(self.encoder(x)))

    def decode(self, z: Tensor) -> Tensor:
        return self.decoder(self.post_quant_conv(z))

    def forward(self, x: Tensor, sample_posterior: bool = True,
                generator: torch.Generator | None = None) -> tuple[Tensor, DiagonalGaussian]:
        posterior = self.encode(x)
        z = posterior.sample(generator) if sample_posterior else posterior.mode()
        return self.decode(z), posterior

    @property
    def last_layer(self) -> Tensor:
        """The decoder's final conv weight (the adaptive adversarial weight of Eq. 2 uses it)."""
        return self.decoder.conv_out.weight

    def encoder_modules(self) -> list[nn.Module]:
        """What runs in ``encode``: the encoder and the quant conv (counted as encoder params)."""
        return [self.encoder, self.quant_conv]

    def decoder_modules(self) -> list[nn.Module]:
        """What runs in ``decode``: the post-quant conv and the decoder."""
        return [self.post_quant_conv, self.decoder]


def build_encoder(model_cfg: ModelConfig) -> nn.Module:
    """The encoder ``model_cfg.encoder`` describes, with 2 * latent_channels outputs."""
    enc, nz = model_cfg.encoder, model_cfg.latent_channels
    if enc.kind == "litevae":
        if enc.preset not in LITEVAE_PRESETS:
            raise EncoderConfigError(f"unknown LiteVAE preset {enc.preset!r}; allowed: "
                                     + ", ".join(LITEVAE_PRESETS))
        return LiteVAEEncoder(nz, LITEVAE_PRESETS[enc.preset], levels=tuple(enc.levels),
                              wavelet=enc.wavelet, aggregator=enc.aggregator,
                              shared_extractors=enc.shared_extractors,
                              num_res_blocks=enc.num_res_blocks, dropout=enc.dropout)
    if enc.kind == "sdvae":
        if enc.sd_width not in SD_ENCODER_WIDTHS:
            raise EncoderConfigError(f"unknown SD encoder width {enc.sd_width!r}; allowed: "
                                     + ", ".join(SD_ENCODER_WIDTHS))
        channels, mult = SD_ENCODER_WIDTHS[enc.sd_width]
        return SDEncoder(nz, channels, mult, dropout=enc.dropout)
    raise EncoderConfigError(f"unknown encoder kind {enc.kind!r}; allowed: litevae, sdvae")


def build_decoder(model_cfg: ModelConfig) -> SDDecoder:
    dec = model_cfg.decoder
    return SDDecoder(model_cfg.latent_channels, dec.channels, tuple(dec.channel_mult),
                     dec.blocks_per_level, dec.mid_attention, dec.norm)


def build_autoencoder(model_cfg: ModelConfig) -> Autoencoder:
    """The autoencoder a ``ModelConfig`` describes (see study.config.MODEL_PRESETS)."""
    return Autoencoder(build_encoder(model_cfg), build_decoder(model_cfg),
                       model_cfg.latent_channels, model_cfg.quant_conv)
