#!/usr/bin/env python
"""Harness speed: expand a 10,000-variant grid and collect 10,000 synthetic run records.

    python benchmarks/bench_harness.py [--variants 10000] [--repeat 3] [--profile]

Prints the best of ``--repeat`` timings of each phase beside its target (expansion under 1 s,
collection under 3 s on a 2-core machine) and the ratio time / target. The records are
synthetic: a status.json, one eval record, a complexity.json and a DONE marker per run, with
every tenth run failed (its status carries the reason, no eval). ``--profile`` prints the top of
a cProfile of each phase. Not a timed test: a benchmark reports, it does not assert.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import pstats
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from study import store  # noqa: E402
from study.studyfile.grid import expand, expected_count  # noqa: E402
from study.studyfile.parse import load_study  # noqa: E402

EXPAND_TARGET_S, COLLECT_TARGET_S = 1.0, 3.0


def axis_sizes(n: int) -> list[int]:
    """Four axis lengths whose product is ``n`` (10,000 -> 10 x 10 x 10 x 10)."""
    sizes = [1, 1, 1, 1]
    rest, i = n, 0
    for p in (2, 3, 5, 7):
        while rest % p == 0:
            sizes[i % 4] *= p
            rest //= p
            i += 1
    if rest != 1:
        raise SystemExit(f"--variants {n}: use a number of the form 2^a 3^b 5^c 7^d")
    return sizes


def write_study(folder: Path, n: int) -> Path:
    a, b, c, d = axis_sizes(n)
    doc = {
        "study": "bench",
        "description": "a synthetic 4-axis grid for benchmarks/bench_harness.py",
        "set": {"loss.discriminator": "unet"},
        "grid": {
            "train.steps": [1000 * (i + 1) for i in range(a)],
            "train.batch_size": [i + 1 for i in range(b)],
            "train.lr": [round((i + 1) * 1e-5, 8) for i in range(c)],
            "model.latent_channels": [i + 1 for i in range(d)],
        },
        "seeds": [0],
    }
    path = folder / "bench.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def write_records(root: Path, variants: list) -> None:
    """Synthetic run folders (plain writes: setting up is not what is measured)."""
    for i, v in enumerate(variants):
        folder = store.run_dir(root, v.run_id)
        (folder / "eval").mkdir(parents=True)
        failed = i % 10 == 9
        status = {
            "state": "failed" if failed else "completed",
            "attempts": 1 + failed,
            "job_ids": [f"{1000 + i}_0"],
            "run_id": v.run_id,
            "step": v.config.train.steps,
            "error": "RuntimeError: CUDA out of memory" if failed else None,
            "updated": 0.0,
        }
        (folder / "status.json").write_text(json.dumps(status))
        (folder / "complexity.json").write_text(
            json.dumps(
                {
                    "encoder_params": 6.2e6 + i,
                    "decoder_params": 4.9e7,
                    "encoder_gmacs": 4.0,
                    "throughput_img_s": 300.0,
                    "peak_mem_mb": 900.0,
                }
            )
        )
        if not failed:
            (folder / "eval" / "ev0123456789.json").write_text(
                json.dumps(
                    {
                        "eval_id": "ev0123456789",
                        "metrics": {"rfid": 1.0 + i * 1e-4, "psnr": 30.0, "ssim": 0.9, "lpips": 0.1},
                    }
                )
            )
            (folder / "DONE").write_text("0\n")


def best_of(repeat: int, fn):
    """The best wall time and the best CPU time of ``repeat`` calls (on a shared machine the CPU
    time says what the code costs, the wall time what a user waits), and the last result."""
    best, best_cpu, result = float("inf"), float("inf"), None
    for _ in range(repeat):
        t0, c0 = time.perf_counter(), time.process_time()
        result = fn()
        best = min(best, time.perf_counter() - t0)
        best_cpu = min(best_cpu, time.process_time() - c0)
    return best, best_cpu, result


def show_profile(fn) -> None:
    prof = cProfile.Profile()
    prof.runcall(fn)
    pstats.Stats(prof).sort_stats("cumulative").print_stats(15)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--variants", type=int, default=10_000)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--profile", action="store_true")
    args = p.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="bench_harness_") as tmp:
        tmp = Path(tmp)
        spec = load_study(write_study(tmp, args.variants))
        t_expand, cpu_expand, variants = best_of(args.repeat, lambda: expand(spec))
        assert len(variants) == expected_count(spec) == args.variants, (len(variants), args.variants)
        print(
            f"expand  {len(variants):>6} variants: {t_expand:7.3f} s wall, {cpu_expand:6.3f} s cpu  "
            f"(target < {EXPAND_TARGET_S:.0f} s, ratio {t_expand / EXPAND_TARGET_S:.2f})"
        )

        root = tmp / "results"
        write_records(root, variants)
        records = [store.variant_record(v) for v in variants]
        t_collect, cpu_collect, frame = best_of(args.repeat, lambda: store.collect(root, spec.study, records))
        assert len(frame) == len(variants), len(frame)
        print(
            f"collect {len(frame):>6} records:  {t_collect:7.3f} s wall, {cpu_collect:6.3f} s cpu  "
            f"(target < {COLLECT_TARGET_S:.0f} s, ratio {t_collect / COLLECT_TARGET_S:.2f})"
        )
        failed = int((frame["state"] == "failed").sum())
        print(
            f"        ({failed} failed rows with their reason, {frame.shape[1]} columns; "
            f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)"
        )

        if args.profile:
            print("\n--- expand ---")
            show_profile(lambda: expand(spec))
            print("\n--- collect ---")
            show_profile(lambda: store.collect(root, spec.study, records))
    return 0


if __name__ == "__main__":
    sys.exit(main())
