"""Training step time: the harness's training loop (study/autoencoder/loop.py: batches, per-sample
noise, the step, logging) against a bare PyTorch loop doing the same forward and backward passes
on the same model (LiteVAE-B + SD decoder + UNet discriminator, the same builders and Adam) on a
fixed batch, in the same run, interleaved; and the training loader's images/s per worker at
256x256 from a folder of JPEGs (the sample photos, written to a temporary folder).

    python benchmarks/bench_train.py [--model paper|smoke] [--resolution R] [--batch B] [--steps 6]
                                     [--rounds 2] [--device cpu] [--compile] [--record]

``--model smoke`` (the default on the CPU, where the paper's model takes minutes a step on two
cores) is LiteVAE-S with the smoke study's narrow decoder (ablations/base/smoke_cpu.yaml), at
32x32, batch 8; ``paper`` (the default on CUDA) LiteVAE-B with the SD decoder, 256x256, batch 16.

The loss is what both loops compute: L1 + KL + the UNet discriminator's hinge terms (the
perceptual and the high-frequency losses of Table 9 are off for both, so the bare loop needs no
harness code). The harness's figure is the median of the step times its metrics.jsonl logs after
``--warmup`` steps; the bare loop's the median of its own. Target: harness / bare within 10% on
the CPU. On CUDA the model FLOP utilisation against the card's bf16 peak (``--peak-tflops``) is
printed: 3 x the forward FLOPs of encoder, decoder and discriminator per image, times images/s.
``--record`` writes the harness's seconds per image to benchmarks/step_times.json
(study.measure.cost.record_step_time), under the key of the paper's configuration at this
resolution.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from study import (
    config,  # noqa: E402
    store,  # noqa: E402
)
from study.autoencoder import losses  # noqa: E402
from study.autoencoder.loop import _build, train
from study.data.loader import StepBatches, step_loader  # noqa: E402
from study.kinds.registry import run_id
from study.models.autoencoder import build_autoencoder  # noqa: E402
from study.models.discriminators import build_discriminator  # noqa: E402
from study.trainer import accelerate  # noqa: E402
from study.trainer.context import Context, use_bf16  # noqa: E402

# The smoke study's model (ablations/base/smoke_cpu.yaml): what a CPU trains in seconds a step.
SMOKE_MODEL = {
    "model.encoder.preset": "S",
    "model.decoder.channels": 32,
    "model.decoder.channel_mult": [1, 1, 2, 2],
    "model.decoder.blocks_per_level": 1,
    "model.decoder.mid_attention": False,
    "loss.discriminator_channels": 16,
}


def experiment(resolution: int, batch: int, steps: int, *, compile: bool = False, **extra) -> config.ExperimentConfig:
    """LiteVAE-B + SD decoder + UNet discriminator (on from step 0), L1 + KL + adversarial."""
    return config.validate(
        config.apply_overrides(
            config.model_preset("LiteVAE-B"),
            {
                "loss.lpips_weight": 0.0,
                "loss.wavelet_weight": 0.0,
                "loss.gaussian_weight": 0.0,
                "loss.discriminator": "unet",
                "loss.discriminator_start": 0,
                "data.kind": "samples",
                "data.resolution": resolution,
                "train.batch_size": batch,
                "train.steps": steps,
                "train.log_every": 1,
                "train.val_every": 10**9,
                "train.checkpoint_every": 10**9,
                "train.compile": compile,
            }
            | extra,
        )
    )


def training_flops_per_image(cfg: config.ExperimentConfig, resolution: int) -> float:
    """3 x forward FLOPs (forward + backward) of encoder + decoder + discriminator, per image."""
    with torch.device("meta"):
        ae = build_autoencoder(config.autoencoder_args(cfg.model))
        disc = build_discriminator(cfg.loss.discriminator, cfg.loss.discriminator_channels)
        x = torch.empty(1, 3, resolution, resolution)
        with FlopCounterMode(display=False) as counter:
            z = ae.encode(x).mean
            disc(ae.decode(z))
    return 3.0 * counter.get_total_flops()


def harness_step_seconds(cfg: config.ExperimentConfig, device: torch.device, warmup: int) -> list[float]:
    """The step times (s) of the real training loop, from the images/s it logs every
    train.log_every steps (so each figure averages that many steps, with one log's cost among
    them), leaving out the figures of the first ``warmup`` steps."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = store.init_run(Path(tmp), cfg, run_id(cfg))
        train(cfg, folder, ctx=Context(device), progress=False)
        logged = [r for r in store.read_jsonl(folder / "metrics.jsonl") if "images_per_s" in r]
    return [cfg.train.batch_size / r["images_per_s"] for r in logged if r["step"] > warmup]


def bare_step_seconds(cfg: config.ExperimentConfig, device: torch.device, warmup: int) -> list[float]:
    """The same passes written out in plain PyTorch on one fixed batch: encode, sample, decode,
    the frozen discriminator on the reconstruction, L1 + KL + hinge generator loss, backward,
    Adam; then the discriminator on real and detached fake, hinge loss, backward, Adam."""
    torch.manual_seed(cfg.seed)
    fmt = accelerate.memory_format(device)
    accelerate.configure_device(device)
    ae, disc, _, opt_ae, opt_d = _build(cfg, device, fmt)
    if cfg.train.compile:
        accelerate.compile_networks(device, ae.encoder, ae.decoder, disc)
    bf16, lw = use_bf16(cfg, device), cfg.loss
    b, r, nz = cfg.train.batch_size, cfg.data.resolution, cfg.model.latent_channels
    x = (torch.rand(b, 3, r, r) * 2 - 1).to(device, memory_format=fmt)
    noise = torch.randn(b, nz, r // 8, r // 8).to(device)
    times = []
    for _ in range(cfg.train.steps):
        tic = time.perf_counter()
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            q = ae.encode(x)
            x_hat = ae.decode(q.mean + q.std * noise)
            disc.requires_grad_(False)
            fake = disc(x_hat)
        kl = 0.5 * (q.mean.float() ** 2 + q.logvar.float().exp() - 1 - q.logvar.float()).sum(dim=(1, 2, 3)).mean()
        g = -sum(t.float().mean() for t in fake) / len(fake)
        loss = (x - x_hat.float()).abs().mean() + lw.kl_weight * kl / x[0].numel() + lw.adversarial_weight * g
        opt_ae.zero_grad(set_to_none=True)
        loss.backward()
        opt_ae.step()
        disc.requires_grad_(True)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            real, fake = disc(x), disc(x_hat.detach())
        d_loss = losses.hinge_d_loss([t.float() for t in real], [t.float() for t in fake])
        opt_d.zero_grad(set_to_none=True)
        d_loss.backward()
        opt_d.step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - tic)
    return times[warmup:]


def step_comparison(
    cfg: config.ExperimentConfig, device: torch.device, warmup: int, rounds: int
) -> tuple[float, float]:
    """Median step seconds of the harness and of the bare loop, ``rounds`` of each, alternated."""
    harness: list[float] = []
    bare: list[float] = []
    for _ in range(rounds):  # per round, its median: a load change on a shared machine hits one round
        harness.append(statistics.median(harness_step_seconds(cfg, device, warmup)))
        bare.append(statistics.median(bare_step_seconds(cfg, device, warmup)))
    print(
        "  per round (ms): harness " + " ".join(f"{t * 1e3:.0f}" for t in harness),
        "| bare " + " ".join(f"{t * 1e3:.0f}" for t in bare),
    )
    return statistics.median(harness), statistics.median(bare)


def jpeg_folder(folder: Path, copies: int = 2) -> Path:
    """The sample photos as quality-90 JPEGs (``copies`` of each, under other names)."""
    from PIL import Image

    from study.data.datasets import sample_photos

    folder.mkdir(parents=True, exist_ok=True)
    for name, photo in sample_photos().items():
        for k in range(copies):
            Image.fromarray(photo).convert("RGB").save(folder / f"{name}-{k}.jpg", quality=90)
    return folder


def loader_images_per_s(folder: Path, resolution: int, batch: int, workers: int, batches: int) -> float:
    """The training loader's images/s over ``batches`` batches after its first (worker start-up)."""
    cfg = config.validate(
        config.apply_overrides(
            config.ExperimentConfig(),
            {
                "data.kind": "folder",
                "data.path": str(folder),
                "data.resolution": resolution,
                "train.batch_size": batch,
                "train.steps": batches + 1,
            },
        )
    )
    it = iter(step_loader(StepBatches(cfg, Context(torch.device("cpu"))), 0, batches + 1, torch.device("cpu"), workers))
    next(it)
    tic = time.perf_counter()
    for _ in range(batches):
        next(it)
    return batches * batch / (time.perf_counter() - tic)


def jpeg_decode_rates(folder: Path, passes: int = 3) -> dict[str, float]:
    """Images/s decoding the folder's JPEGs with PIL and with torchvision (the training path)."""
    from study.data import files as image_files

    files = sorted(folder.glob("*.jpg"))
    rates: dict[str, list[float]] = {"PIL": [], "torchvision": []}
    saved = image_files.JPEG_DECODER
    try:
        for _ in range(passes):
            for decoder, label in (("pil", "PIL"), ("torchvision", "torchvision")):
                image_files.JPEG_DECODER = decoder
                tic = time.perf_counter()
                for f in files:
                    image_files.decode_image(f)
                rates[label].append(len(files) / (time.perf_counter() - tic))
    finally:
        image_files.JPEG_DECODER = saved
    return {k: statistics.median(v) for k, v in rates.items()}


def record(cfg: config.ExperimentConfig, device: torch.device, seconds_per_image: float, meta: dict) -> str:
    """The harness's figure into the step-time table (study.measure.cost)."""
    from study.measure.cost import record_step_time, step_time_key, step_times_path

    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    key = step_time_key(cfg, cfg.data.resolution, name)
    record_step_time(step_times_path(), name, key, seconds_per_image, meta, write_json=store.write_json_atomic)
    return f"{name} / {key}"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", choices=("paper", "smoke"), default=None, help="default: paper on CUDA, smoke on CPU")
    p.add_argument("--resolution", type=int, default=None, help="default: 256 (paper), 32 (smoke)")
    p.add_argument("--batch", type=int, default=None, help="default: 16 (paper), 8 (smoke)")
    p.add_argument("--steps", type=int, default=9, help="steps per round and loop")
    p.add_argument("--warmup", type=int, default=3, help="steps of each round left out of the median")
    p.add_argument("--log-every", type=int, default=3, help="the harness's train.log_every (its timing interval)")
    p.add_argument("--rounds", type=int, default=5, help="harness and bare loop alternated this often")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--compile", action="store_true", help="train.compile: true for both loops")
    p.add_argument("--peak-tflops", type=float, default=989.0, help="the card's dense bf16 peak")
    p.add_argument("--loader-batches", type=int, default=3)
    p.add_argument("--record", action="store_true", help="write the harness's s/image to the step-time table")
    args = p.parse_args()
    device = torch.device(args.device)
    smoke = (args.model or ("paper" if device.type == "cuda" else "smoke")) == "smoke"
    args.resolution = args.resolution or (32 if smoke else 256)
    args.batch = args.batch or (8 if smoke else 16)
    extra = SMOKE_MODEL if smoke else {}
    cfg = experiment(
        args.resolution, args.batch, args.steps, compile=args.compile, **extra, **{"train.log_every": args.log_every}
    )
    model = "LiteVAE-S + the smoke study's decoder" if smoke else "LiteVAE-B + SD decoder"
    print(
        f"{model} + UNet disc, {args.resolution}x{args.resolution}, batch {args.batch}, {device}, "
        f"{'bf16' if use_bf16(cfg, device) else 'fp32'}{', compiled' if args.compile else ''}, torch threads "
        f"{torch.get_num_threads()}; median of steps {args.warmup + 1}..{args.steps} over {args.rounds} rounds "
        f"(the harness timed over its log intervals of {args.log_every} steps)"
    )
    harness, bare = step_comparison(cfg, device, args.warmup, args.rounds)
    print(f"  harness training step: {harness * 1e3:9.1f} ms  ({args.batch / harness:8.2f} images/s)")
    print(f"  bare PyTorch loop:     {bare * 1e3:9.1f} ms  ({args.batch / bare:8.2f} images/s)")
    print(f"  harness / bare: {harness / bare:.3f} (target <= 1.10 on the CPU)")
    if device.type == "cuda":
        flops = training_flops_per_image(cfg, args.resolution)
        mfu = args.batch / harness * flops / (args.peak_tflops * 1e12)
        print(f"  MFU {mfu:.1%} of {args.peak_tflops:.0f} TFLOP/s bf16 ({flops / 1e9:.1f} GFLOP per image)")
    with tempfile.TemporaryDirectory() as tmp:
        folder = jpeg_folder(Path(tmp) / "jpegs")
        rates = jpeg_decode_rates(folder)
        print(
            f"JPEG decoding, {len(list(folder.glob('*.jpg')))} files: "
            + ", ".join(f"{k} {v:.1f} img/s" for k, v in rates.items())
        )
        print(f"training loader at 256x256 from the JPEG folder, batch 8, {args.loader_batches} batches:")
        for workers in (0, 1, 2):
            rate = loader_images_per_s(folder, 256, 8, workers, args.loader_batches)
            print(f"  {workers} workers: {rate:7.1f} images/s = {rate / max(workers, 1):7.1f} per worker")
    if args.record:
        meta = {"batch": args.batch, "steps": args.steps, "rounds": args.rounds, "torch": torch.__version__}
        print("recorded", record(cfg, device, harness / args.batch, meta))


if __name__ == "__main__":
    main()
