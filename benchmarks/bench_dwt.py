"""Our 3-level Haar DWT against pytorch_wavelets' DWTForward(wave='haar'), forward + backward,
in the same run (target: at least 2x faster, 4x if possible).

    python benchmarks/bench_dwt.py [--batch 16] [--resolution 256] [--repeats 30] [--threads N]
                                   [--devices cpu cuda]

Both transforms see the same input and the same upstream gradient (a fixed random tensor per
output). Timed passes alternate between the two, so a change in machine load affects both alike;
we print the median per pass and the ratio of medians.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import warnings
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from study.models.wavelets import haar_dwt  # noqa: E402

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from pytorch_wavelets import DWTForward  # noqa: E402


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--resolution", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--devices", nargs="+", default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    devices = args.devices or (["cpu"] + (["cuda"] if torch.cuda.is_available() else []))
    print(
        f"3-level Haar DWT forward + backward, batch {args.batch} x 3 x {args.resolution}^2, "
        f"median of {args.repeats}; torch {torch.__version__}, CPU threads {torch.get_num_threads()}"
    )
    for device in devices:
        x = torch.randn(args.batch, 3, args.resolution, args.resolution, device=device, requires_grad=True)
        reference = DWTForward(J=3, wave="haar", mode="zero").to(device)
        yl, yh = reference(x)
        grads = [torch.randn_like(yl)] + [torch.randn_like(h) for h in yh]

        def ours(x=x, grads=grads):
            yl, yh = haar_dwt(x, 3)
            torch.autograd.backward([yl, *yh], grads)

        def theirs(x=x, grads=grads, reference=reference):
            yl, yh = reference(x)
            torch.autograd.backward([yl, *yh], grads)

        runs = {"ours": ours, "pytorch_wavelets": theirs}
        times: dict[str, list[float]] = {k: [] for k in runs}
        for f in runs.values():  # warm-up
            f()
            f()
        for _ in range(args.repeats):
            for name, f in runs.items():
                x.grad = None
                sync(device)
                start = time.perf_counter()
                f()
                sync(device)
                times[name].append(time.perf_counter() - start)
        med = {k: statistics.median(v) * 1e3 for k, v in times.items()}
        ratio = med["pytorch_wavelets"] / med["ours"]
        print(
            f"{device}: ours {med['ours']:.2f} ms, pytorch_wavelets {med['pytorch_wavelets']:.2f} ms "
            f"(medians) -> ours is {ratio:.2f}x faster (target >= 2x, stretch >= 4x)"
        )


if __name__ == "__main__":
    main()
