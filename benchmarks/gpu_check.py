"""The GPU check (benchmarks/gpu_check.sh): what the harness does on one device, in one run,
as ratios and absolutes.

1. Table 3: encoder throughput at batch 32 and 256x256, fp32 and bf16 (channels_last), every
   LiteVAE preset against the SD-VAE encoder, beside the paper's ratios
   (results/paper/litevae_complexity.csv, via study.measure.complexity.paper_rows).
2. Training: images/s and model FLOP utilisation of LiteVAE-B + SD decoder + UNet discriminator
   at 256x256 in bf16 through the harness's training loop, eager and with ``train.compile``.
3. The training loader's images/s per worker at 256x256 from a folder of JPEGs.
4. Inception-v3 pool3 features (torch-fidelity's extractor, fp32, the rFID protocol): images/s.

    python benchmarks/gpu_check.py [--device cuda] [--reduced] [--peak-tflops N]

``--reduced`` (the default on a CPU) runs the same sections at tiny sizes (a small model, 32x32,
batch 2, a few steps), so that the whole check takes well under 3 minutes on a CPU: its numbers
only show that every path runs. Targets on a GPU (issue 15): LiteVAE-B / SD-VAE encoder throughput
>= 3x in bf16 (paper: 1.90x on a Quadro RTX 6000) and training MFU >= 35% of the card's bf16 peak.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_encoders  # noqa: E402
import bench_train  # noqa: E402

from study.measure import metrics  # noqa: E402
from study.measure.complexity import BASELINE, paper_rows  # noqa: E402
from study.trainer import accelerate  # noqa: E402

# Dense bf16 peaks (TFLOP/s, no sparsity) from the vendors' data sheets, by a substring of
# torch.cuda.get_device_name; --peak-tflops overrides.
PEAK_BF16 = {"H200": 989.0, "H100": 989.0, "A100": 312.0, "L40S": 362.0, "A10G": 70.0, "L4": 121.0, "RTX 6000": 130.0}


@dataclass(frozen=True)
class Sizes:
    """What each section measures at: the full check or the reduced (CPU) one."""

    encoder_res: int
    encoder_batch: int
    encoder_repeats: int
    train_res: int
    train_batch: int
    train_steps: int
    train_model: dict
    loader_res: int
    loader_batches: int
    loader_workers: tuple[int, ...]
    inception_batch: int
    inception_batches: int


FULL = Sizes(256, 32, 10, 256, 16, 12, {}, 256, 8, (1, 2, 4, 8), 64, 8)
# A model a CPU trains in seconds (the smoke study's sizes): the path, not the figure.
TINY_MODEL = {
    "model.encoder.preset": "S",
    "model.decoder.channels": 32,
    "model.decoder.channel_mult": [1, 1, 2, 2],
    "model.decoder.blocks_per_level": 1,
    "model.decoder.mid_attention": False,
    "loss.discriminator_channels": 8,
}
REDUCED = Sizes(32, 2, 1, 32, 2, 3, TINY_MODEL, 64, 2, (0, 1), 2, 1)


def encoder_table(device: torch.device, s: Sizes) -> float:
    """Table 3's throughput ratios in fp32 and bf16; returns LiteVAE-B / SD-VAE in bf16."""
    paper = paper_rows()
    base_paper = paper[BASELINE]["throughput_img_s"]
    ratio_b = float("nan")
    for precision in ("fp32", "bf16"):
        res = bench_encoders.run_setting(
            device.type, precision, True, s.encoder_res, s.encoder_batch, s.encoder_repeats, warmup=2
        )
        base = res[BASELINE]["img_s"]
        print(
            f"\n[Table 3] encoders, {precision}, channels_last, batch {s.encoder_batch}, {s.encoder_res}x{s.encoder_res}"
        )
        print(f"  {'model':<10} {'img/s':>9} {'x SD-VAE':>9} {'paper':>7}")
        for name in (*bench_encoders.LITE, BASELINE):
            ours = res[name]["img_s"]
            theirs = paper[name]["throughput_img_s"] / base_paper
            print(f"  {name:<10} {ours:9.1f} {ours / base:8.2f}x {theirs:6.2f}x")
        if precision == "bf16":
            ratio_b = res["LiteVAE-B"]["img_s"] / base
    print(f"  LiteVAE-B / SD-VAE in bf16: {ratio_b:.2f}x (target >= 3x on a GPU; paper 1.90x)")
    return ratio_b


def training(device: torch.device, s: Sizes, peak: float | None) -> None:
    """Harness training images/s and MFU, eager and compiled (bf16 autocast)."""
    model = "LiteVAE-S, a narrow SD decoder (reduced)" if s.train_model else "LiteVAE-B + SD decoder"
    print(f"\n[training] {model} + UNet disc, {s.train_res}x{s.train_res}, batch {s.train_batch}, bf16")
    for compiled in (False, True):
        cfg = bench_train.experiment(
            s.train_res, s.train_batch, s.train_steps, compile=compiled, **s.train_model, **{"train.precision": "bf16"}
        )
        if compiled and s.train_model:
            print("  compiled: skipped in the reduced check (Inductor takes minutes on a CPU; tests/test_compile.py)")
            continue
        if compiled and (why := accelerate.compile_support(device)) is not None:
            print(f"  compiled: skipped ({why})")
            continue
        tic = time.perf_counter()
        times = bench_train.harness_step_seconds(cfg, device, warmup=min(4, s.train_steps - 2))
        rate = s.train_batch / statistics.median(times)
        line = f"  {'compiled' if compiled else 'eager':<9} {rate:9.2f} images/s"
        if peak:
            flops = bench_train.training_flops_per_image(cfg, s.train_res)
            line += f"   MFU {rate * flops / (peak * 1e12):6.1%} of {peak:.0f} TFLOP/s (target >= 35%)"
        print(line + f"   ({time.perf_counter() - tic:.0f} s with warm-up and compilation)")


def loader(s: Sizes) -> None:
    """The training loader's images/s per worker from a JPEG folder."""
    print(f"\n[loader] training batches of 8 at {s.loader_res}x{s.loader_res} from a folder of JPEGs")
    with tempfile.TemporaryDirectory() as tmp:
        folder = bench_train.jpeg_folder(Path(tmp) / "jpegs")
        for workers in s.loader_workers:
            rate = bench_train.loader_images_per_s(folder, s.loader_res, 8, workers, s.loader_batches)
            print(f"  {workers} workers: {rate:8.1f} images/s = {rate / max(workers, 1):7.1f} per worker")


def inception(device: torch.device, s: Sizes) -> None:
    """Inception pool3 features per second, fp32 (TF32 off), batched on the device."""
    from study.measure import weights as weight_files
    from study.measure.stand_ins import make_random_inception

    try:
        path, which = weight_files.inception_weights_path(), "the FID weights"
    except weight_files.MissingWeightsError:
        path, which = make_random_inception(Path(tempfile.mkdtemp()) / "inception.pth"), "random stand-in weights"
    extractor = metrics.inception_extractor(path, device)
    x = torch.randint(0, 256, (s.inception_batch, 3, 256, 256), dtype=torch.uint8, device=device)
    with accelerate.full_fp32(device):
        metrics.inception_features(extractor, x)
        bench_encoders._sync(device.type)
        tic = time.perf_counter()
        for _ in range(s.inception_batches):
            feats = metrics.inception_features(extractor, x)
        bench_encoders._sync(device.type)
    rate = s.inception_batch * s.inception_batches / (time.perf_counter() - tic)
    print(
        f"\n[inception] pool3 features, batch {s.inception_batch}, 256x256 uint8, {feats.dtype}: {rate:.1f} images/s ({which})"
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--reduced", action="store_true", help="tiny sizes (the default on a CPU)")
    p.add_argument("--peak-tflops", type=float, default=None, help="the card's dense bf16 peak")
    args = p.parse_args()
    device = torch.device(args.device)
    sizes = REDUCED if args.reduced or device.type == "cpu" else FULL
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    peak = args.peak_tflops or next((v for k, v in PEAK_BF16.items() if k in name), None)
    print(f"gpu_check on {name} ({'reduced' if sizes is REDUCED else 'full'}); torch {torch.__version__}")
    tic = time.perf_counter()
    encoder_table(device, sizes)
    training(device, sizes, peak if device.type == "cuda" else None)
    loader(sizes)
    inception(device, sizes)
    print(f"\ngpu_check done in {time.perf_counter() - tic:.0f} s")


if __name__ == "__main__":
    main()
