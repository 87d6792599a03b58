"""The typed experiment config: one dataclass per section, the paper's defaults.

Every field a study file can set is a field here, addressed by a dotted key such as
``model.decoder.norm``. Defaults follow LiteVAE (Sadat et al., NeurIPS 2024, arXiv 2405.14477);
where the paper is silent the default is the project's choice and the field's comment says
"paper gap" and what was chosen, usually the LDM KL-f8 recipe the paper says it follows.

Each field declares its part in the run id (study/config/fields.py): ``not_identity`` (log and
checkpoint intervals, paths, worker counts: they do not change what is trained), or
``identity_field`` with the value or the conditions at which it is left out of the id.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal

from study.config.fields import identity_field, is_in, not_identity, not_in
from study.config.metric_specs import PAPER_METRICS
from study.models import registry
from study.models.arguments import AutoencoderArgs, DecoderArgs, DWTArgs, EncoderArgs, LiteVAEArgs


class ConfigError(ValueError):
    """A bad override: ``key`` (dotted path), ``value`` and ``allowed`` say what and why."""

    def __init__(self, key: str, value: Any, allowed: str):
        self.key, self.value, self.allowed = key, value, allowed
        super().__init__(f"{key}: got {value!r}; allowed: {allowed}")


# When identity fields are left out of the run id. Fields one encoder kind uses are left out for
# the others, so an SD-VAE crossed with the LiteVAE presets is one run; the fixed DWT latents
# (Tables 11, 12) have no network, so every encoder field but kind goes; without a discriminator
# its settings go.
NOT_LITEVAE = not_in("model.encoder.kind", "litevae")
NOT_SDVAE = not_in("model.encoder.kind", "sdvae")
FIXED_LATENT = is_in("model.encoder.kind", "dwt", "dwt2")
NO_DISCRIMINATOR = is_in("loss.discriminator", "none")


# --------------------------------------------------------------------------------------------
# model
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class EncoderConfig:
    # litevae, sdvae, or the fixed Haar latent of Tables 11, 12 (App. B): dwt (nz 12), dwt2 (nz 48).
    kind: Literal["litevae", "sdvae", "dwt", "dwt2"] = "litevae"
    # LiteVAE presets of Tables 23/24 (used when kind == litevae).
    preset: Literal["S", "B", "M", "L"] = identity_field("B", omit_when=(NOT_LITEVAE,))
    # Which Haar levels feed the encoder: all three, or e.g. (2, 3) as in Table 21.
    levels: tuple[int, ...] = identity_field((1, 2, 3), omit_when=(NOT_LITEVAE,))
    # Haar by default (the paper); other pywt families go through pytorch-wavelets.
    wavelet: str = identity_field("haar", omit_when=(NOT_LITEVAE,))
    # Feature aggregation: the UNet of the paper, or a ViT (Table 20).
    aggregator: Literal["unet", "vit"] = identity_field("unet", omit_when=(NOT_LITEVAE,))
    # One feature extractor shared by every level (Table 19) instead of one per level.
    shared_extractors: bool = identity_field(False, omit_when=(NOT_LITEVAE,))
    # The feature extractor F_l: the paper's UNet, or NAFNet blocks (Table 18; paper gap: NAFNet's
    # widths are not given, see study.models.nafnet). Added later: left out of the id at unet.
    extractor: Literal["unet", "nafnet"] = identity_field("unet", omit_at="unet", omit_when=(NOT_LITEVAE,))
    # The output head of F_l and F_agg: a plain 3x3 conv, as the pseudocode in the paper's appendix;
    # norm_act_conv: GroupNorm -> SiLU -> conv (ADM's head), this harness's before issue 20.
    head: Literal["conv", "norm_act_conv"] = identity_field("conv", omit_when=(NOT_LITEVAE,))
    # Residual blocks per channel multiplier in F_l and F_agg: 2 reproduces Tables 2/3 exactly.
    num_res_blocks: int = identity_field(2, omit_when=(NOT_LITEVAE,))
    dropout: float = identity_field(0.0, omit_when=(FIXED_LATENT,))
    # SD-VAE encoder width (used when kind == sdvae): "full" is LDM KL-f8 (34.16 M, Table 3),
    # "small" is VAE-Small of Table 2b (about 6.75 M; paper gap: its widths are not given).
    sd_width: Literal["full", "small"] = identity_field("full", omit_when=(NOT_SDVAE,))


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
    init: str = not_identity("")
    init_sha256: str = identity_field("", omit_at="")  # no pretrained start: the ids of before model.init stay


# --------------------------------------------------------------------------------------------
# loss
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class LossConfig:
    # Eq. 1: L1 + LPIPS + KL + adversarial. Paper gap: no weights given; LDM KL-f8 values.
    l1_weight: float = 1.0
    # Table 14: the perceptual term, LPIPS (LDM's) or ESRGAN's VGG19 conv5_4 features
    # (study/autoencoder/perceptual.py); ``lpips_weight`` weighs whichever is chosen.
    perceptual: Literal["lpips", "esrgan"] = identity_field("lpips", omit_at="lpips")  # added later
    lpips_weight: float = 1.0
    kl_weight: float = 1e-6
    # Table 10: the UNet discriminator of Schonfeld et al. (2020); none disables the GAN.
    discriminator: Literal["none", "patchgan", "stylegan", "unet"] = "unet"
    # Paper gap: the discriminator's size is not given; its first layer's width (LDM's PatchGAN
    # has 64 filters; the StyleGAN and UNet discriminators double it per level from there).
    discriminator_channels: int = identity_field(64, omit_when=(NO_DISCRIMINATOR,))
    # Table 16: hinge and logistic work equally well; hinge is LDM's.
    adversarial_loss: Literal["hinge", "logistic"] = identity_field("hinge", omit_when=(NO_DISCRIMINATOR,))
    # Table 8: LiteVAE uses a constant weight instead of the adaptive weight of Esser et al.
    adversarial_weight_mode: Literal["constant", "adaptive"] = identity_field("constant", omit_when=(NO_DISCRIMINATOR,))
    # The adaptive weight's gradient ratio on L1 + LPIPS only, as LDM's calculate_adaptive_weight(
    # nll_loss, ...) (ldm/modules/losses/contperceptual.py); "all": on every reconstruction term
    # (Table 9's and LDL's too), this harness's rule before issue 20. Used in adaptive mode only.
    adaptive_weight_terms: Literal["l1_lpips", "all"] = identity_field(
        "l1_lpips", omit_when=(is_in("loss.adversarial_weight_mode", "constant"),)
    )
    # Ours (paper gap): LDM's disc_weight 0.5 (a constant here, the adaptive ratio's factor otherwise).
    adversarial_weight: float = identity_field(0.5, omit_when=(NO_DISCRIMINATOR,))
    # Ours (paper gap): LDM starts the discriminator at step 50001.
    discriminator_start: int = identity_field(50_001, omit_when=(NO_DISCRIMINATOR,))
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
    ldl_weight: float = identity_field(0.0, omit_at=0.0)  # added later


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
    discriminator_lr: float = identity_field(1e-4, omit_when=(NO_DISCRIMINATOR,))
    # What the discriminator's step judges as fake: a fresh reconstruction by the autoencoder just
    # updated, as LDM (its Lightning loop runs training_step again for the discriminator's
    # optimiser, decoding again: ldm/models/autoencoder.py, AutoencoderKL.training_step), or
    # "stale": the autoencoder step's own reconstructions, this harness's shortcut before issue 20
    # (one forward pass less per step).
    discriminator_input: Literal["fresh", "stale"] = identity_field("fresh", omit_when=(NO_DISCRIMINATOR,))
    # auto: bf16 autocast on CUDA, fp32 on CPU.
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    # An EMA of the autoencoder's weights (study/trainer/ema.py), updated after every step;
    # 0: off. LDL (loss.ldl_weight) needs it; evaluation can use it (eval.weights: ema).
    ema_decay: float = identity_field(0.0, omit_at=0.0)  # added later
    checkpoint_every: int = not_identity(1000)
    log_every: int = not_identity(50)
    val_every: int = not_identity(1000)
    val_images: int = not_identity(64)
    num_workers: int = not_identity(4)
    # Live curves also to this Weights & Biases project when wandb is installed (study/trainer/live_log.py).
    wandb_project: str = not_identity("")
    # Speed (study/trainer/accelerate.py). compile: torch.compile the encoder, decoder and
    # discriminator (one with spectral norms, UNet or StyleGAN, stays eager: accelerate.py says
    # why); the same maths with another float rounding, so it is part of the run id (left out at
    # its default, so the ids of before it stay).
    compile: bool = identity_field(False, omit_at=False)
    # Each step's batch_size samples in grad_accum equal micro-batches (per DDP rank), gradients
    # summed before the one optimiser step: the same update up to float summation order, except
    # batch statistics (PatchGAN's BatchNorm, StyleGAN's minibatch std, the adaptive weight of
    # Eq. 2), which see a micro-batch, as they see one rank's slice under DDP, and the spectral
    # norms' power iteration (UNet, StyleGAN discriminators), one per forward pass, so one per
    # micro-batch. Identity when != 1.
    grad_accum: int = identity_field(1, omit_at=1)  # added later
    # Activation checkpointing of the SD decoder (recomputed in the backward pass): the same
    # numbers, less memory, about a third more decoder compute. Not identity.
    checkpoint_decoder: bool = not_identity(False)
    # The divergence watch (study/trainer/watch.py; paper gap: the paper names no rule; ours).
    # A validation PSNR this many dB below the run's best (at the same resolution) is a
    # divergence: the variants of any one ablation table differ by at most 0.82 dB (Table 2a),
    # so a 5 dB fall is no recipe's effect.
    divergence_psnr_drop: float = not_identity(5.0)
    # Steps the discriminator may win outright (its loss ~0 while the generator's adversarial
    # loss grows) before the run is called diverged: two validation intervals at val_every 1000.
    divergence_patience: int = not_identity(2000)
    # Stop a diverged run: a collapsed GAN does not recover (BigGAN, Brock et al., ICLR 2019,
    # Sec. 4.2: they stop at the checkpoint before the collapse).
    stop_on_divergence: bool = not_identity(True)


@dataclass(frozen=True)
class DataConfig:
    # samples: random crops of the photographs shipped inside scikit-image (no download);
    # folder: an image folder (recursive; jpg, png, webp) at ``path``.
    kind: Literal["samples", "folder"] = "samples"
    # The dataset's name is part of the run id; its path is not (moving it does not retrain).
    # With a split list, let the name say which split (e.g. "ffhq-train60k").
    name: str = "samples"
    path: str = not_identity("")
    # Optional text file of image paths relative to ``path``, one a line (the usual split files,
    # e.g. FFHQ's first 60k, CelebA-HQ's train list); empty: every image below ``path``.
    list: str = not_identity("")
    resolution: int = 256
    hflip: bool = True
    # Fraction of the images held out for validation and evaluation (deterministic split). The
    # sample photos have a fixed held-out region instead: left out of an autoencoder run's id
    # there (a diffusion run's id has always kept it).
    val_fraction: float = identity_field(0.1, omit_when=(is_in("data.kind", "samples"), is_in("task", "autoencoder")))


@dataclass(frozen=True)
class DuringConfig:
    """Protocol metrics while training (study/evaluation/during.py): on the first
    ``num_images`` of the eval set, every ``every`` steps; neither trains anything differently."""

    # 0: off.
    every: int = not_identity(0)
    # Ours (the paper evaluates only the final model): 1000 images. FID on few images is biased
    # upward (Chong and Forsyth, CVPR 2020), so the subset's rFID is named rfid@N and is
    # comparable only with itself.
    num_images: int = not_identity(1000)


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
    # Names from study.config.metric_specs (the metric registry); default: the paper's four.
    metrics: tuple[str, ...] = PAPER_METRICS
    # Reconstructions are decoded from the posterior mean (LDM) or a sample.
    posterior: Literal["mean", "sample"] = "mean"
    # How a folder's images are resized and cropped (study/data/preprocess.py, docs/conventions.md):
    # "ldm", the LDM protocol the paper follows (taming's ImagePaths: albumentations
    # SmallestMaxSize + CenterCrop); "adm", "torchvision" and "pil_bicubic" reproduce other harnesses.
    # The sample photos keep their own grid crops.
    preprocess: Literal["ldm", "adm", "torchvision", "pil_bicubic"] = "ldm"
    lpips_net: Literal["alex", "vgg"] = "alex"
    # The trained weights evaluated: the model's, or their EMA (needs train.ema_decay > 0).
    weights: Literal["model", "ema"] = "model"
    batch_size: int = not_identity(32)
    # The first gallery_images of the eval set, reconstructed into <run>/gallery/<protocol id>/
    # for the report (study/evaluation/gallery.py); pictures, not numbers, so not in the protocol id.
    gallery_images: int = not_identity(8)
    # Table 6: MMD of the posterior-mean latents to N(0, I) and per-channel statistics. Paper gap:
    # the sample size, repeats and kernel bandwidths of its MMD are not given; our choices.
    latent_stats: bool = False
    mmd_samples: int = 1000
    mmd_repeats: int = 10
    mmd_bandwidths: tuple[float, ...] = (25.0, 50.0, 100.0, 250.0, 500.0)
    # Protocol metrics during training (eval.during.every, eval.during.num_images).
    during: DuringConfig = field(default_factory=DuringConfig)


METRICS = PAPER_METRICS  # the paper's four; every name eval.metrics accepts: metric_specs.names()


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
    autoencoder: str = not_identity("")
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
    # LDM keeps an EMA of the UNet (LitEma, ldm/modules/ema.py: decay 0.9999, ramped as
    # min(decay, (1+n)/(10+n)) with n the update's number from 1) and samples with it.
    ema_decay: float = 0.9999
    # Images encoded into the latent cache of a sample-photo dataset (a folder's whole training
    # list is encoded); ours.
    cache_images: int = 1024
    # The version of what a diffusion run computes beyond its fields, part of its id so that a run
    # recorded by an older harness is never reused as this one. 2 (issue 20): the EMA ramp counts
    # as LitEma, and a folder's latent cache and FID reference take its whole list (1: the ramp one
    # update behind, data.val_fraction kept back).
    recipe: Literal[2] = 2
    # Generation FID (its own protocol id): N samples with DDIM (Song et al. 2021) against the
    # training set's Inception statistics (LDM's convention: FID against the training images).
    # 50k samples is the field's convention. The sampler as LDM's README lists its FFHQ model:
    # 200 DDIM steps, eta 1 (its CelebA-HQ model: 200 steps, eta 0, set in table7.yaml; the LDM
    # paper's Table 1 gives CelebA-HQ 500 steps). At most timesteps / 2 (LDM's uniform DDIM steps
    # are shifted by one).
    num_samples: int = not_identity(50_000)
    sampler_steps: int = not_identity(200)
    eta: float = not_identity(1.0)
    reference_images: int | Literal["all"] = not_identity("all")
    sample_batch_size: int = not_identity(100)
    # The precision DDIM samples in (the generation protocol records it): fp32 with TF32 off, as
    # LDM's scripts/sample_diffusion.py (no autocast); bf16: autocast, faster, other numbers.
    sample_precision: Literal["fp32", "bf16"] = not_identity("fp32")


@dataclass(frozen=True)
class ExperimentConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    data: DataConfig = field(default_factory=DataConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    # The kind of run, a task of the run-kind registry (study/kinds/registry.py, checked there):
    # autoencoder (train, evaluate, measure; or evaluate a model.init, or measure only) or
    # diffusion (a latent diffusion model on a frozen autoencoder's latents, generation FID).
    task: str = "autoencoder"
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
            head=enc.head,
        )
    decoder = DecoderArgs(dec.channels, tuple(dec.channel_mult), dec.blocks_per_level, dec.mid_attention, dec.norm)
    return AutoencoderArgs(encoder, model.latent_channels, model.quant_conv, decoder)
