"""LiteVAE-S/B/M/L encoder throughput and peak memory as ratios to the SD-VAE encoder, measured in
the same run, beside the paper's ratios (Table 3) and the ratio of multiply-accumulates.

    python benchmarks/bench_encoders.py [--resolution 256] [--batch N] [--repeats N]
                                        [--devices cpu cuda] [--threads N]

On the CPU it runs fp32 with contiguous and with channels_last tensors; on CUDA (when present)
fp32 and bf16 autocast with channels_last. The timed passes of all encoders are interleaved
(round-robin), so that a machine whose load changes during the run affects every model alike;
each model's throughput is batch / median pass time. Targets for LiteVAE-B / SD-VAE throughput:
>= 3.5x on CPU, >= 2.5x on CUDA (paper: 129 / 68 = 1.90x on a Quadro RTX 6000; MACs:
SD-VAE / B = 3.58x).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from study.measure.complexity import (  # noqa: E402
    BASELINE,
    _autocast,
    _sync,
    encoder_macs,
    encoder_path,
    model_config,
    paper_rows,
    peak_memory_mb,
)
from study.models.registry import PRESETS  # noqa: E402

LITE = tuple(name for name, p in PRESETS.items() if p.kind == "litevae")  # LiteVAE-S, B, M, L


def run_setting(
    device: str, precision: str, channels_last: bool, resolution: int, batch: int, repeats: int, warmup: int
) -> dict[str, dict[str, float]]:
    names = (*LITE, BASELINE)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    torch.manual_seed(0)
    encoders = {n: encoder_path(model_config(n)).to(device, memory_format=fmt).eval() for n in names}
    x = (torch.rand(batch, 3, resolution, resolution, device=device) * 2 - 1).contiguous(memory_format=fmt)
    memory = {n: peak_memory_mb(encoders[n], x, precision) for n in names}
    times: dict[str, list[float]] = {n: [] for n in names}
    with torch.inference_mode(), _autocast(device, precision):
        for _ in range(warmup):
            for n in names:
                encoders[n](x)
        for _ in range(repeats):
            for n in names:
                _sync(device)
                start = time.perf_counter()
                encoders[n](x)
                _sync(device)
                times[n].append(time.perf_counter() - start)
    return {n: {"img_s": batch / statistics.median(times[n]), "mem": memory[n]} for n in names}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--resolution", type=int, default=256)
    parser.add_argument("--batch", type=int, default=None, help="default: 4 on CPU, 32 on CUDA")
    parser.add_argument("--repeats", type=int, default=None, help="default: 3 on CPU, 20 on CUDA")
    parser.add_argument("--devices", nargs="+", default=None, help="default: cpu, and cuda if present")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads on CPU")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    devices = args.devices or (["cpu"] + (["cuda"] if torch.cuda.is_available() else []))

    paper = paper_rows()
    macs = {n: encoder_macs(model_config(n), args.resolution) for n in (*LITE, BASELINE)}
    print(f"resolution {args.resolution}; torch {torch.__version__}; CPU threads {torch.get_num_threads()}")
    print(
        f"paper (Table 3, batch 32, Quadro RTX 6000): B / SD-VAE throughput "
        f"{paper['LiteVAE-B']['throughput_img_s']:.0f} / {paper[BASELINE]['throughput_img_s']:.0f} = "
        f"{paper['LiteVAE-B']['throughput_img_s'] / paper[BASELINE]['throughput_img_s']:.2f}x; "
        f"MACs SD-VAE / B = {macs[BASELINE] / 1e9:.1f} / {macs['LiteVAE-B'] / 1e9:.1f} = "
        f"{macs[BASELINE] / macs['LiteVAE-B']:.2f}x"
    )
    for device in devices:
        on_cpu = torch.device(device).type == "cpu"
        batch = args.batch or (4 if on_cpu else 32)
        repeats = args.repeats or (3 if on_cpu else 20)
        warmup = 1 if on_cpu else 5
        settings = [("fp32", False), ("fp32", True)] if on_cpu else [("fp32", False), ("bf16", True)]
        for precision, channels_last in settings:
            res = run_setting(device, precision, channels_last, args.resolution, batch, repeats, warmup)
            base = res[BASELINE]
            name = torch.cuda.get_device_name(device) if not on_cpu else "cpu"
            print(
                f"\n{name}, {precision}, {'channels_last' if channels_last else 'contiguous'}, "
                f"batch {batch}, median of {repeats}"
            )
            print(
                f"{'model':<10} {'img/s':>8} {'x SD-VAE':>9} {'paper':>6} {'MACs SD/x':>10} "
                f"{'mem MB':>8} {'mem/SD':>7} {'paper':>6}"
            )
            for n in (*LITE, BASELINE):
                p = paper.get(n, {})
                print(
                    f"{n:<10} {res[n]['img_s']:8.2f} {res[n]['img_s'] / base['img_s']:8.2f}x "
                    f"{p['throughput_img_s'] / paper[BASELINE]['throughput_img_s']:5.2f}x "
                    f"{macs[BASELINE] / macs[n]:9.2f}x {res[n]['mem']:8.0f} "
                    f"{res[n]['mem'] / base['mem']:6.2f}x "
                    f"{p['gpu_memory_mb'] / paper[BASELINE]['gpu_memory_mb']:5.2f}x"
                )
            b = res["LiteVAE-B"]["img_s"] / base["img_s"]
            target = 3.5 if on_cpu else 2.5
            print(
                f"LiteVAE-B / SD-VAE throughput {b:.2f}x (target >= {target}x): {'met' if b >= target else 'NOT met'}"
            )


if __name__ == "__main__":
    main()
