"""Training throughput: LiteVAE-B + SD decoder + UNet discriminator against the same training
step with the SD-VAE encoder, both measured in this run through the real training loop
(study/train.py), as the median of the images/s it logs after a warm-up.

    python benchmarks/bench_train.py [--resolution 64] [--batch 4] [--steps 8] [--device cpu]

On CUDA it also prints the model FLOP utilisation against the card's bf16 peak (--peak-tflops,
default 989 for an H100 SXM): 3 x the forward FLOPs of encoder, decoder and discriminator per
image (forward + backward), times images/s.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from study import config as C  # noqa: E402
from study import store  # noqa: E402
from study.models.autoencoder import build_autoencoder  # noqa: E402
from study.models.discriminators import build_discriminator  # noqa: E402
from study.training.loop import Context, train  # noqa: E402


def experiment(preset: str, resolution: int, batch: int, steps: int) -> C.ExperimentConfig:
    cfg = C.model_preset(preset)
    return C.validate(
        C.apply_overrides(
            cfg,
            {
                "loss.lpips_weight": 0.0,
                "loss.discriminator": "unet",
                "loss.discriminator_start": 0,
                "data.kind": "samples",
                "data.resolution": resolution,
                "train.batch_size": batch,
                "train.steps": steps,
                "train.log_every": 1,
                "train.val_every": 10**9,
                "train.checkpoint_every": 10**9,
            },
        )
    )


def training_flops_per_image(cfg: C.ExperimentConfig, resolution: int) -> float:
    """3 x forward FLOPs (forward + backward) of encoder + decoder + discriminator, per image."""
    with torch.device("meta"):
        ae = build_autoencoder(C.autoencoder_args(cfg.model))
        disc = build_discriminator(cfg.loss.discriminator, cfg.loss.discriminator_channels)
        x = torch.empty(1, 3, resolution, resolution)
        with FlopCounterMode(display=False) as counter:
            z = ae.encode(x).mean
            disc(ae.decode(z))
    return 3.0 * counter.get_total_flops()


def images_per_s(cfg: C.ExperimentConfig, device: torch.device, warmup: int) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        folder = store.init_run(Path(tmp), cfg)
        train(cfg, folder, ctx=Context(device), progress=False)
        rates = [r["images_per_s"] for r in store.read_jsonl(folder / "metrics.jsonl") if "images_per_s" in r]
    return statistics.median(rates[warmup:])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--resolution", type=int, default=64)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--steps", type=int, default=8)
    p.add_argument("--warmup", type=int, default=2, help="logged steps left out of the median")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--peak-tflops", type=float, default=989.0, help="the card's dense bf16 peak")
    args = p.parse_args()
    device = torch.device(args.device)
    print(
        f"training step, {args.resolution}x{args.resolution}, batch {args.batch}, {device}, "
        f"torch threads {torch.get_num_threads()}, median of steps {args.warmup + 1}..{args.steps}"
    )
    rows = {}
    for preset in ("SD-VAE", "LiteVAE-B"):
        cfg = experiment(preset, args.resolution, args.batch, args.steps)
        rate = images_per_s(cfg, device, args.warmup)
        flops = training_flops_per_image(cfg, args.resolution)
        rows[preset] = rate
        line = f"  {preset:10s} + SD decoder + UNet disc: {rate:8.2f} images/s"
        if device.type == "cuda":
            line += f"   MFU {rate * flops / (args.peak_tflops * 1e12):.1%} of {args.peak_tflops:.0f} TFLOP/s bf16"
        print(line)
    print(
        f"  LiteVAE-B / SD-VAE training throughput: {rows['LiteVAE-B'] / rows['SD-VAE']:.2f}x "
        "(the decoder and discriminator are shared, so the encoder's saving is diluted)"
    )


if __name__ == "__main__":
    main()
