#!/usr/bin/env python
"""`plan` at scale (issue 22): a grid of ten axes (resolution, preset, aggregator, shared
extractors, latent channels, decoder norm, KL weight, batch, lr, steps) planned with its cost.

    python benchmarks/bench_plan.py [--axes 10] [--profile] [--against DIR] [--check 20]

Each phase runs as its own process (as a user runs it, imports included) and prints its wall
and CPU seconds: the baseline, expanding the grid into variants (what any plan needs); `plan
FILE --json` on a cold cost cache (every network counted); the same on the warm cache. Ratios
are against the baseline of the same run and against the goal (< 10 s cold). ``--axes N`` keeps
the first N axes (10: 131 072 variants; 6: 512). ``--against DIR``: the same cold plan run by
another checkout (e.g. ``git worktree add /tmp/before HEAD~1``), timed in the same run.
``--check N``: the counts of N variants drawn at random are compared with
``study.measure.complexity``'s (counted directly, one resolution at a time). Shared machines
vary: compare CPU seconds, and only within one run. Not a timed test: a benchmark reports.
"""

from __future__ import annotations

import argparse
import math
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
GOAL_S = 10.0
AXES = {
    "data.resolution": [64, 128, 192, 256],
    "preset": ["LiteVAE-S", "LiteVAE-B", "LiteVAE-M", "LiteVAE-L"],
    "model.encoder.aggregator": ["unet", "vit"],
    "model.encoder.shared_extractors": [False, True],
    "model.latent_channels": [4, 8, 12, 16],
    "model.decoder.norm": ["groupnorm", "smc"],
    "loss.kl_weight": [1e-6, 1e-5, 1e-4, 1e-3],
    "train.batch_size": [8, 16, 32, 64],
    "train.lr": [5e-5, 1e-4, 2e-4, 4e-4],
    "train.steps": [50_000, 100_000, 150_000, 200_000],
}
EXPAND = "import sys; from study.studyfile.grid import expand; from study.studyfile.parse import load_study; expand(load_study(sys.argv[1]))"


def write_grid(folder: Path, axes: int) -> Path:
    """The study file: the repository's ImageNet-128 base with the first ``axes`` axes as a grid."""
    base = folder / "base" / "imagenet128.yaml"
    base.parent.mkdir(parents=True)
    base.write_text((ROOT / "ablations" / "base" / "imagenet128.yaml").read_text())
    doc = {"study": "bench_plan", "base": "base/imagenet128.yaml", "grid": dict(list(AXES.items())[:axes])}
    path = folder / "grid.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def timed(argv: list[str], where: Path = ROOT) -> tuple[float, float]:
    """(wall, CPU) seconds of a child process run in ``where``; its output is discarded."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(argv, cwd=where, check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--axes", type=int, default=10, choices=range(1, len(AXES) + 1))
    p.add_argument("--profile", action="store_true", help="write a cProfile of the cold plan to plan.prof")
    p.add_argument("--against", type=Path, help="another checkout whose cold plan is timed too (before/after)")
    p.add_argument("--check", type=int, default=0, metavar="N", help="compare N variants' counts with complexity's")
    args = p.parse_args(argv)
    n = math.prod(len(v) for v in list(AXES.values())[: args.axes])
    with tempfile.TemporaryDirectory(prefix="bench_plan_") as tmp:
        spec = write_grid(Path(tmp), args.axes)
        results = Path(tmp) / "results"
        results.mkdir()
        plan = [sys.executable, "run_study.py", "plan", str(spec), "--json", "--results", str(results)]
        base_wall, base_cpu = timed([sys.executable, "-c", EXPAND, str(spec)])
        print(f"{n} variants; baseline (expansion alone): {base_wall:.1f} s wall, {base_cpu:.1f} s cpu")
        profile = [sys.executable, "-m", "cProfile", "-o", "plan.prof"] + plan[1:] if args.profile else plan
        phases = [("plan --json, cold cache", profile, ROOT), ("plan --json, warm cache", plan, ROOT)]
        if args.against is not None:
            other = Path(tmp) / "results_against"
            other.mkdir()
            phases.append((f"plan --json, cold cache, {args.against}", plan[:-1] + [str(other)], args.against))
        for label, command, where in phases:
            wall, cpu = timed(command, where)
            print(
                f"{label}: {wall:.1f} s wall, {cpu:.1f} s cpu; x{wall / base_wall:.2f} the baseline, "
                f"x{wall / GOAL_S:.2f} the goal ({GOAL_S:.0f} s)"
            )
        if args.check:
            print(check(spec, results, args.check))
    return 0


def check(spec: Path, results: Path, n: int) -> str:
    """The plan's counts of ``n`` variants drawn at random against ``complexity``'s."""
    import json
    import random

    sys.path.insert(0, str(ROOT))
    from study.measure import complexity
    from study.studyfile.grid import expand
    from study.studyfile.parse import load_study

    out = subprocess.run(
        [sys.executable, "run_study.py", "plan", str(spec), "--json", "--results", str(results)],
        cwd=ROOT, check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip
    planned = {v["id"]: v["cost"] for v in json.loads(out)["variants"]}
    variants = random.Random(0).sample(expand(load_study(spec)), n)
    wrong = 0
    for v in variants:
        c, model, r = planned[v.run_id], v.config.model, v.config.data.resolution
        wrong += round(c["encoder_gmacs"] * 1e9) != complexity.encoder_macs(model, r)
        wrong += round(c["decoder_gmacs"] * 1e9) != complexity.decoder_macs(model, r)
    return f"counts of {n} variants drawn at random against complexity's: {2 * n - wrong} of {2 * n} equal"


if __name__ == "__main__":
    raise SystemExit(main())
