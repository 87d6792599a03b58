#!/usr/bin/env python
"""rFID throughput: our pipeline (study.measure.metrics) against torch-fidelity called directly, on the
same uint8 images, in the same process, alternating which goes first.

    python benchmarks/bench_eval.py [--n 32] [--res 64] [--batch 32] [--device cpu|cuda] [--repeats 2]

Both sides load the same Inception file and compute FID between N originals and N perturbed
copies from scratch (feature extractor construction, 2N forward passes at 299x299, statistics,
Frechet distance); images/s counts all 2N images. torch-fidelity runs with its defaults except
cuda, batch size, weights path and its disk cache (off), and once more with save_cpu_ram=True
(no DataLoader worker processes; its default is up to 4, which costs on a small CPU machine). The real Inception weights are used when
staged (`run_study.py weights fetch`), else a randomly initialised one of the same architecture
(the cost is the same; the FID values are then only good for checking agreement).
Target: our images/s within 10% of torch-fidelity's.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from study.measure import metrics  # noqa: E402
from study.measure import weights as weight_files  # noqa: E402
from study.measure.stand_ins import make_random_inception  # noqa: E402


def images(n: int, res: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    low = torch.rand(n, 3, max(res // 8, 2), max(res // 8, 2), generator=g)
    x = F.interpolate(low, size=res, mode="bicubic", align_corners=False).clamp(0, 1) * 2 - 1
    noisy = x + 0.1 * torch.randn(x.shape, generator=g)
    return metrics.to_uint8(x), metrics.to_uint8(noisy)


def ours(real, fake, weights_path, device, batch) -> float:
    extractor = metrics.inception_extractor(weights_path, device)
    return metrics.fid_between(real, fake, extractor=extractor, device=device, batch_size=batch)


def torch_fidelity(real, fake, weights_path, device, batch, save_cpu_ram=False) -> float:
    from torch_fidelity import calculate_metrics

    out = calculate_metrics(
        input1=metrics.Uint8Images(real),
        input2=metrics.Uint8Images(fake),
        fid=True,
        cuda=torch.device(device).type == "cuda",
        batch_size=batch,
        feature_extractor_weights_path=str(weights_path),
        cache=False,
        verbose=False,
        save_cpu_ram=save_cpu_ram,
    )
    return out["frechet_inception_distance"]


def torch_fidelity_in_process(real, fake, weights_path, device, batch) -> float:
    """save_cpu_ram=True: no DataLoader worker processes, like our in-memory loop."""
    return torch_fidelity(real, fake, weights_path, device, batch, save_cpu_ram=True)


def timed(fn, *args) -> tuple[float, float]:
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    t = time.perf_counter()
    value = fn(*args)
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - t, value


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=32, help="images per side")
    ap.add_argument("--res", type=int, default=64)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    # torch-fidelity's default 4 loader workers on a small machine: DataLoader warns; not our point
    warnings.filterwarnings("ignore", message="This DataLoader will create")

    try:
        weights_path, which = weight_files.inception_weights_path(), "staged torch-fidelity weights"
    except weight_files.MissingWeightsError:
        weights_path = make_random_inception(Path(tempfile.mkdtemp()) / "inception-random.pth")
        which = "random-init Inception (real weights not staged; same cost)"
    real, fake = images(args.n, args.res)
    print(
        f"rFID throughput: {args.n} + {args.n} images {args.res}x{args.res}, batch {args.batch}, "
        f"device {args.device} ({torch.cuda.get_device_name() if args.device.startswith('cuda') else 'CPU'}, "
        f"{torch.get_num_threads()} threads), torch {torch.__version__}; {which}"
    )

    # warm-up (allocator, kernels, file cache), untimed
    warm = slice(0, min(4, args.n))
    ours(real[warm], fake[warm], weights_path, args.device, args.batch)
    torch_fidelity(real[warm], fake[warm], weights_path, args.device, args.batch)

    methods = [
        ("ours", ours),
        ("torch-fidelity", torch_fidelity),
        ("torch-fidelity, save_cpu_ram", torch_fidelity_in_process),
    ]
    times = {name: [] for name, _ in methods}
    values = {}
    for r in range(args.repeats):
        order = methods
        for name, fn in order if r % 2 == 0 else order[::-1]:
            seconds, values[name] = timed(fn, real, fake, weights_path, args.device, args.batch)
            times[name].append(seconds)
    # best of the repeats: on a shared machine the slow outliers are other people's work
    rate = {k: 2 * args.n / min(v) for k, v in times.items()}
    for name in times:
        runs = ", ".join(f"{t:.2f}" for t in times[name])
        print(f"  {name:<28} {rate[name]:8.2f} images/s   (best of {args.repeats}: {runs} s)   FID {values[name]:.6f}")
    for other in ("torch-fidelity", "torch-fidelity, save_cpu_ram"):
        ratio = rate["ours"] / rate[other]
        rel = abs(values["ours"] - values[other]) / max(abs(values[other]), 1e-12)
        print(
            f"  ours / {other} = {ratio:.3f} ({'within' if ratio >= 0.9 else 'NOT within'} the 10% target); "
            f"FID relative difference {rel:.1e}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
