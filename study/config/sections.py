"""The typed experiment config: one dataclass per section, the paper's defaults.

Every field a study file can set is a field here, addressed by a dotted key such as
``model.decoder.norm``. Defaults follow LiteVAE (Sadat et al., NeurIPS 2024, arXiv 2405.14477);
where the paper is silent the default is the project's choice and the field's comment says
"paper gap" and what was chosen, usually the LDM KL-f8 recipe the paper says it follows.

A field whose metadata says ``identity=False`` (log and checkpoint intervals, paths, worker
counts) does not change what is trained, so it is left out of the run id (see ``identity``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal

from study.models import registry
from study.models.arguments import AutoencoderArgs, DecoderArgs, DWTArgs, EncoderArgs, LiteVAEArgs


class ConfigError(ValueError):
    """A bad override: ``key`` (dotted path), ``value`` and ``allowed`` say what and why."""

    def __init__(self, key: str, value: Any, allowed: str):
        self.key, self.value, self.allowed = key, value, allowed
        super().__init__(f"{key}: got {value!r}; allowed: {allowed}")


def _not_identity(default: Any) -> Any:
    """A field that does not change what is trained (left out of the run id)."""
    if isinstance(default, (list, dict, set)):
        return field(default_factory=lambda: type(default)(default), metadata={"identity": False})
    return field(default=default, metadata={"identity": False})


# --------------------------------------------------------------------------------------------
# model
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class EncoderConfig:
    # litevae, sdvae, or the fixed Haar latent of Tables 11, 12 (App. B): dwt (nz 12), dwt2 (nz 48).
    kind: Literal["litevae", "sdvae", "dwt", "dwt2"] = "litevae"
    # LiteVAE presets of Tables 23/24 (used when kind == litevae).
    preset: Literal["S", "B", "M", "L"] = "B"
    # Which Haar levels feed the encoder: all three, or e.g. (2, 3) as in Table 21.
    levels: tuple[int, ...] = (1, 2, 3)
    # Haar by default (the paper); other pywt families go through pytorch-wavelets.
    wavelet: str = "haar"
    # Feature aggregation: the UNet of the paper, or a ViT (Table 20).
    aggregator: Literal["unet", "vit"] = "unet"
    # One feature extractor shared by every level (Table 19) instead of one per level.
    shared_extractors: bool = False
    # The feature extractor F_l: the paper's UNet, or NAFNet blocks (Table 18; paper gap: NAFNet's
    # widths are not given, see study.models.nafnet).
    extractor: Literal["unet", "nafnet"] = "unet"
    # Residual blocks per channel multiplier in F_l and F_agg: 2 reproduces Tables 2/3 exactly.
    num_res_blocks: int = 2
    dropout: float = 0.0
    # SD-VAE encoder width (used when kind == sdvae): "full" is LDM KL-f8 (34.16 M, Table 3),
    # "small" is VAE-Small of Table 2b (about 6.75 M; paper gap: its widths are not given).
    sd_width: Literal["full", "small"] = "full"


@dataclass(frozen=True)
class DecoderConfig:
    # Table 4: GroupNorm (LDM) or self-modulated convolution (Eq. 3).
    norm: Literal["groupnorm", "smc"] = "groupnorm"
    # LDM KL-f8 decoder: 128 channels, multipliers (1, 2, 4, 4), 3 residual blocks per level,
    # 49.49 M parameters. A smoke run narrows it.
    channels: int = 128
    channel_mult: tuple[int, ...] = (1, 2, 4, 4)
    blocks_per_level: int = 3
    mid_attention: bool = True


@dataclass(frozen=True)
class ModelConfig:
    # Latent channels nz: the paper uses 4 and 12 (the ablation baseline is 16x16x12 at 128).
    latent_channels: int = 4
    # 1x1 quant / post-quant convs around the latent (Table 17: they hurt LiteVAE, off).
    quant_conv: bool = False
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    decoder: DecoderConfig = field(default_factory=DecoderConfig)
    # A pretrained checkpoint the weights start from (study/autoencoder/pretrained.py): a diffusers
    # AutoencoderKL folder, an LDM .ckpt, a .safetensors file or one of our runs. Its location is
    # not identity; the sha256 of its weights is (filled in from the file when the study expands).
    init: str = _not_identity("")
    init_sha256: str = ""


# --------------------------------------------------------------------------------------------
# loss
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class LossConfig:
    # Eq. 1: L1 + LPIPS + KL + adversarial. Paper gap: no weights given; LDM KL-f8 values.
    l1_weight: float = 1.0
    # Table 14: the perceptual term, LPIPS (LDM's) or ESRGAN's VGG19 conv5_4 features
    # (study/autoencoder/perceptual.py); ``lpips_weight`` weighs whichever is chosen.
    perceptual: Literal["lpips", "esrgan"] = "lpips"
    lpips_weight: float = 1.0
    kl_weight: float = 1e-6
    # Table 10: the UNet discriminator of Schonfeld et al. (2020); none disables the GAN.
    discriminator: Literal["none", "patchgan", "stylegan", "unet"] = "unet"
    # Paper gap: the discriminator's size is not given; its first layer's width (LDM's PatchGAN
    # has 64 filters; the StyleGAN and UNet discriminators double it per level from there).
    discriminator_channels: int = 64
    # Table 16: hinge and logistic work equally well; hinge is LDM's.
    adversarial_loss: Literal["hinge", "logistic"] = "hinge"
    # Table 8: LiteVAE uses a constant weight instead of the adaptive weight of Esser et al.
    adversarial_weight_mode: Literal["constant", "adaptive"] = "constant"
    # Ours (paper gap): LDM's disc_weight 0.5 (a constant here, the adaptive ratio's factor otherwise).
    adversarial_weight: float = 0.5
    # Ours (paper gap): LDM starts the discriminator at step 50001.
    discriminator_start: int = 50_001
    # Table 9: Charbonnier loss on the level-1 Haar detail bands (paper gap: weight 0.1).
    wavelet_weight: float = 0.1
    # Ours (paper gap): the Charbonnier epsilon, 1e-3 as in LapSRN (Lai et al., CVPR 2017).
    charbonnier_eps: float = 1e-3
    # Table 9: L1 between x - G(x) and x_hat - G(x_hat) (paper gap: weight 0.1, 5x5, sigma 1).
    gaussian_weight: float = 0.1
    gaussian_kernel: int = 5
    gaussian_sigma: float = 1.0
    # Table 15: LDL's artifact loss (study/autoencoder/ldl.py) against the EMA model's reconstruction;
    # 0: off. Needs train.ema_decay > 0. Paper gap: no weight given; 1.0 (LDL's own weight).
    ldl_weight: float = 0.0


# --------------------------------------------------------------------------------------------
# train / data / eval
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Stage:
    """One resolution stage: train ``steps`` steps at ``resolution`` (Table 5: 128 then 256)."""

    resolution: int
    steps: int


@dataclass(frozen=True)
class TrainConfig:
    # Paper: 100k steps for ImageNet-256 and FFHQ (200k for ImageNet-128). 0: no training, the
    # run only measures its model's complexity (Table 3).
    steps: int = 100_000
    # Empty: one stage of ``steps`` at data.resolution. Otherwise the stages run in order and
    # their steps must add up to ``steps`` (Table 5: [{128, 100000}, {256, 50000}]).
    stages: tuple[Stage, ...] = ()
    # Paper: batch 16 (on two GPUs), Adam lr 1e-4, betas (0.5, 0.9) for the autoencoder. The
    # discriminator's learning rate is ours (paper gap): the same 1e-4 and betas, as LDM uses one lr.
    batch_size: int = 16
    lr: float = 1e-4
    betas: tuple[float, ...] = (0.5, 0.9)
    discriminator_lr: float = 1e-4
    # auto: bf16 autocast on CUDA, fp32 on CPU.
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    # An EMA of the autoencoder's weights (study/trainer/ema.py), updated after every step;
    # 0: off. LDL (loss.ldl_weight) needs it; evaluation can use it (eval.weights: ema).
    ema_decay: float = 0.0
    checkpoint_every: int = _not_identity(1000)
    log_every: int = _not_identity(50)
    val_every: int = _not_identity(1000)
    val_images: int = _not_identity(64)
    num_workers: int = _not_identity(4)
    # Live curves also to this Weights & Biases project when wandb is installed (study/trainer/live_log.py).
    wandb_project: str = _not_identity("")
    # Speed (study/trainer/accelerate.py). compile: torch.compile the encoder, decoder and
    # discriminator (one with spectral norms, UNet or StyleGAN, stays eager: accelerate.py says
    # why); the same maths with another float rounding, so it is part of the run id (left out at
    # its default, so the ids of before it stay).
    compile: bool = False
    # Each step's batch_size samples in grad_accum equal micro-batches (per DDP rank), gradients
    # summed before the one optimiser step: the same update up to float summation order, except
    # batch statistics (PatchGAN's BatchNorm, StyleGAN's minibatch std, the adaptive weight of
    # Eq. 2), which see a micro-batch, as they see one rank's slice under DDP, and the spectral
    # norms' power iteration (UNet, StyleGAN discriminators), one per forward pass, so one per
    # micro-batch. Identity when != 1.
    grad_accum: int = 1
    # Activation checkpointing of the SD decoder (recomputed in the backward pass): the same
    # numbers, less memory, about a third more decoder compute. Not identity.
    checkpoint_decoder: bool = _not_identity(False)


@dataclass(frozen=True)
class DataConfig:
    # samples: random crops of the photographs shipped inside scikit-image (no download);
    # folder: an image folder (recursive; jpg, png, webp) at ``path``.
    kind: Literal["samples", "folder"] = "samples"
    # The dataset's name is part of the run id; its path is not (moving it does not retrain).
    # With a split list, let the name say which split (e.g. "ffhq-train60k").
    name: str = "samples"
    path: str = _not_identity("")
    # Optional text file of image paths relative to ``path``, one a line (the usual split files,
    # e.g. FFHQ's first 60k, CelebA-HQ's train list); empty: every image below ``path``.
    list: str = _not_identity("")
    resolution: int = 256
    hflip: bool = True
    # Fraction of the images held out for validation and evaluation (deterministic split).
    val_fraction: float = 0.1


@dataclass(frozen=True)
class EvalConfig:
    """The evaluation protocol: not part of the run id; it has an id of its own."""

    # The evaluation set, apart from the training data (LDM: the ImageNet validation folder).
    # Empty path: the training folder's own hold-out (data.val_fraction), or the held-out strips
    # of the sample photos. ``name`` names the set in the protocol id, with a digest of its file
    # list; its location is not part of it (moving the folder changes nothing).
    path: str = ""
    list: str = ""
    name: str = ""
    # LDM convention: the 50k validation images, shorter side resized, center crop. "all": the
    # whole evaluation set.
    num_images: int | Literal["all"] = 50_000
    # None: data.resolution.
    resolution: int | None = None
    metrics: tuple[str, ...] = ("rfid", "psnr", "ssim", "lpips")
    # Reconstructions are decoded from the posterior mean (LDM) or a sample.
    posterior: Literal["mean", "sample"] = "mean"
    lpips_net: Literal["alex", "vgg"] = "alex"
    # The trained weights evaluated: the model's, or their EMA (needs train.ema_decay > 0).
    weights: Literal["model", "ema"] = "model"
    batch_size: int = _not_identity(32)
    # The first gallery_images of the eval set, reconstructed into <run>/gallery/<protocol id>/
    # for the report (study/evaluation/gallery.py); pictures, not numbers, so not in the protocol id.
    gallery_images: int = _not_identity(8)
    # Table 6: MMD of the posterior-mean latents to N(0, I) and per-channel statistics. Paper gap:
    # the sample size, repeats and kernel bandwidths of its MMD are not given; our choices.
    latent_stats: bool = False
    mmd_samples: int = 1000
    mmd_repeats: int = 10
    mmd_bandwidths: tuple[float, ...] = (25.0, 50.0, 100.0, 250.0, 500.0)


METRICS = ("rfid", "psnr", "ssim", "lpips")


# --------------------------------------------------------------------------------------------
# diffusion (Tables 7, 13): a latent diffusion model on a frozen autoencoder's latents
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class DiffusionConfig:
    """The second kind of run (``task: diffusion``). The paper (Sec. 5.3, Tables 7 and 13) says
    only that its UNet is "identical to the original model from Rombach et al."; every default
    here is the LDM repository's published KL-f8 256 config,
    ``configs/latent-diffusion/lsun_churches-ldm-kl-8.yaml`` (paper gap), unless it says "ours"."""

    # The frozen autoencoder, as written in the study file: a variant of this study, "FILE.yaml
    # VARIANT" (another study's variant), a run id, or a checkpoint path (a diffusers folder, an
    # LDM .ckpt, a .safetensors file: described by this variant's `model` section, evaluated as
    # it is). Not identity: ``autoencoder_id`` (the autoencoder's run id, filled in when the
    # study expands) is.
    autoencoder: str = _not_identity("")
    autoencoder_id: str = ""
    # The denoiser: the LDM UNet of that config, or a tiny one for CPU smoke runs
    # (study.models.ldm_unet.UNET_PRESETS).
    unet: Literal["ldm-kl8", "tiny"] = "ldm-kl8"
    # The DDPM schedule and objective (config: timesteps 1000, linear_start 0.0015, linear_end
    # 0.0155, eps prediction, loss_type l1).
    timesteps: int = 1000
    linear_start: float = 0.0015
    linear_end: float = 0.0155
    loss: Literal["l1", "l2"] = "l1"
    # The latent a training sample uses: a draw from the posterior (LDM's encode_first_stage ->
    # sample) or its mean.
    latent: Literal["sample", "mean"] = "sample"
    # None: 1 / std over the latent cache, measured (LDM's scale_by_std: SD-VAE's 0.18215).
    scale_factor: float | None = None
    # Ours (paper gap: no steps given): 200k steps. The config: batch 96; base_learning_rate 5e-5,
    # "set to target_lr by starting main.py with '--scale_lr False'" (its comment), so used as it
    # is; AdamW (LDM's DDPM.configure_optimizers); a linear warm-up over 10k steps from 1e-6 x lr,
    # then constant (its LambdaLinearScheduler).
    steps: int = 200_000
    batch_size: int = 96
    lr: float = 5e-5
    warmup_steps: int = 10_000
    # LDM keeps an EMA of the UNet (LitEma: decay 0.9999, ramped as min(decay, (1+n)/(10+n)))
    # and samples with it.
    ema_decay: float = 0.9999
    # Images encoded into the latent cache of a sample-photo dataset (a folder's whole training
    # list is encoded); ours.
    cache_images: int = 1024
    # Generation FID (its own protocol id): N samples with DDIM (Song et al. 2021), eta 0, against
    # the training set's Inception statistics (LDM's convention: FID against the training images).
    # 50k samples is the field's convention; 200 DDIM steps as LDM reports FFHQ (Rombach et al.
    # 2022, Table 1: 200 steps for FFHQ, 500 for CelebA-HQ; table7.yaml sets 500 for CelebA-HQ).
    # At most timesteps / 2 (LDM's uniform DDIM steps are shifted by one).
    num_samples: int = _not_identity(50_000)
    sampler_steps: int = _not_identity(200)
    eta: float = _not_identity(0.0)
    reference_images: int | Literal["all"] = _not_identity("all")
    sample_batch_size: int = _not_identity(100)


@dataclass(frozen=True)
class ExperimentConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    data: DataConfig = field(default_factory=DataConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    # autoencoder: train and evaluate an autoencoder; diffusion: train a latent diffusion model on
    # a frozen autoencoder's latents and measure its generation FID (``diffusion``).
    task: Literal["autoencoder", "diffusion"] = "autoencoder"
    diffusion: DiffusionConfig = field(default_factory=DiffusionConfig)
    seed: int = 0


# --------------------------------------------------------------------------------------------
# named presets (Tables 2, 3) and the model builders' arguments, from study.models.registry
# --------------------------------------------------------------------------------------------
def _preset_overrides(p: registry.Preset) -> dict[str, Any]:
    """What ``preset: NAME`` sets: encoder kind and size; quant convs only where kept (SD-VAE, as LDM)."""
    size_key = "model.encoder.preset" if p.kind == "litevae" else "model.encoder.sd_width"
    return {"model.encoder.kind": p.kind, size_key: p.size} | ({"model.quant_conv": True} if p.quant_conv else {})


MODEL_PRESETS: dict[str, dict[str, Any]] = {name: _preset_overrides(p) for name, p in registry.PRESETS.items()}


def autoencoder_args(model: ModelConfig) -> AutoencoderArgs:
    """What ``models.autoencoder.build_autoencoder`` takes: the size's widths from the registry, options on top."""
    enc, dec = model.encoder, model.decoder
    encoder: EncoderArgs
    if enc.kind == "sdvae":
        encoder = dataclasses.replace(registry.sd_encoder_args(enc.sd_width), dropout=enc.dropout)
    elif enc.kind in ("dwt", "dwt2"):
        encoder = DWTArgs(enc.kind)
    else:
        encoder = LiteVAEArgs(
            registry.litevae_widths(enc.preset),
            levels=tuple(enc.levels),
            wavelet=enc.wavelet,
            aggregator=enc.aggregator,
            shared_extractors=enc.shared_extractors,
            num_res_blocks=enc.num_res_blocks,
            dropout=enc.dropout,
            extractor=enc.extractor,
        )
    decoder = DecoderArgs(dec.channels, tuple(dec.channel_mult), dec.blocks_per_level, dec.mid_attention, dec.norm)
    return AutoencoderArgs(encoder, model.latent_channels, model.quant_conv, decoder)
