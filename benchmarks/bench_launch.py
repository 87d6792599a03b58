#!/usr/bin/env python
"""Submission speed of the slurm executor: a 500-variant study onto the real SLURM cluster.

    eval "$(sudo bash tools/slurm_cluster.sh start)"      # the one-node cluster (docs/slurm.md)
    python benchmarks/bench_launch.py [--variants 500] [--repeat 1]

What it measures: `study.launch.launcher.launch()` with the slurm executor, in process, from the moment
it is called until it returns: deciding what to submit (every run new), writing the study index
and 500 run folders (config.yaml + status.json, each written atomically with an fsync), pickling
500 jobs, the `sbatch` calls, and recording each run's job id in its status.json. Python start-up
and imports are not included (they are the same ~2 s for any study size).

The jobs are real tiny variants submitted with `--hold` (an extra sbatch option the study file
passes through), so SLURM accepts and queues all of them but starts none: the node is not
loaded while the benchmark runs, and every job is cancelled (`scancel`) right after. `sbatch`
is counted by a shim put first on PATH that logs each call (and the time spent in it) and runs
the real sbatch; the queue is then checked to hold exactly one task per variant.

A second launch of the same study (everything already submitted: it must submit nothing) is
timed too: that is the cost of deciding over 500 queued runs.

Targets: at most ceil(variants / MaxArraySize) sbatch calls, and under 10 s in all. Prints the
numbers and the ratios to the targets; a benchmark reports, it does not assert.
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import yaml  # noqa: E402

from study.launch import launcher as launch  # noqa: E402
from study.studyfile.grid import expand  # noqa: E402
from study.studyfile.parse import load_study  # noqa: E402

TARGET_S = 10.0
TINY_SET = {  # the variant of tests/launch_helpers.py (never run here: the jobs are held)
    "model.encoder.preset": "S",
    "model.latent_channels": 4,
    "model.decoder.channels": 32,
    "model.decoder.channel_mult": [1, 1, 2, 2],
    "model.decoder.blocks_per_level": 1,
    "model.decoder.mid_attention": False,
    "loss.lpips_weight": 0.0,
    "loss.discriminator": "none",
    "data.kind": "samples",
    "data.resolution": 32,
    "train.steps": 8,
    "train.batch_size": 4,
    "train.num_workers": 0,
    "eval.num_images": 8,
    "eval.metrics": ["psnr", "ssim"],
}


def sh(*cmd: str) -> str:
    return subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=120).stdout


def default_partition() -> str:
    parts = [p for p in sh("sinfo", "-h", "-o", "%P").split() if p.endswith("*")]
    if not parts:
        raise SystemExit("no default partition (is the cluster up? see docs/slurm.md)")
    return parts[0].rstrip("*")


def counting_sbatch(folder: Path) -> Path:
    """An `sbatch` that logs '<microseconds spent> <args>' per call and runs the real one."""
    real = shutil.which("sbatch")
    if real is None:
        raise SystemExit("sbatch not found: install and start the cluster (docs/slurm.md)")
    log = folder / "sbatch.log"
    log.touch()
    shim = folder / "sbatch"
    shim.write_text(
        "#!/bin/bash\n"
        "t0=$(date +%s%N)\n"
        f'"{real}" "$@"\n'
        "rc=$?\n"
        "t1=$(date +%s%N)\n"
        f'echo "$(( (t1 - t0) / 1000 )) $*" >> "{log}"\n'
        "exit $rc\n"
    )
    shim.chmod(0o755)
    os.environ["PATH"] = f"{folder}{os.pathsep}{os.environ['PATH']}"
    return log


def write_study(folder: Path, n: int, partition: str) -> Path:
    doc = {
        "study": "bench_launch",
        "description": "benchmarks/bench_launch.py: submission only",
        "set": TINY_SET,
        "seeds": list(range(n)),
        "resources": {
            "gpus": 0,
            "cpus_per_gpu": 1,
            "mem_gb": 1,
            "timeout_min": 10,
            "partition": partition,
            "sbatch": ["--hold"],
        },
    }
    path = folder / "bench_launch.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def queued_tasks(array_ids: set[str]) -> list[str]:
    out = sh("squeue", "-h", "-r", "-o", "%i")
    return [j for j in out.split() if j.split("_")[0] in array_ids]


def once(n: int, partition: str) -> dict:
    with tempfile.TemporaryDirectory(prefix="bench_launch_") as tmp:
        tmp_path = Path(tmp)
        log = counting_sbatch(tmp_path)
        spec = load_study(write_study(tmp_path, n, partition))
        variants = expand(spec)
        opts = launch.LaunchOptions(executor="slurm", resources=launch.merge_resources(spec.resources))
        root = tmp_path / "results"
        arrays: set[str] = set()
        try:
            t0 = time.perf_counter()
            report = launch.launch(spec, variants, root, opts, log=lambda *_: None)
            submit_s = time.perf_counter() - t0
            arrays = {j.split("_")[0] for j in report.job_ids.values()}
            calls = [line.split(" ", 1) for line in log.read_text().splitlines() if line.strip()]
            tasks = queued_tasks(arrays)
            t0 = time.perf_counter()
            again = launch.launch(spec, variants, root, opts, log=lambda *_: None)
            relaunch_s = time.perf_counter() - t0
            calls_after = len([line for line in log.read_text().splitlines() if line.strip()])
        finally:
            if arrays:
                subprocess.run(["scancel", *sorted(arrays)], check=False, timeout=120)
        return {
            "submit_s": submit_s,
            "sbatch_calls": len(calls),
            "sbatch_s": sum(int(c[0]) for c in calls) / 1e6,
            "arrays": report.arrays,
            "runs_submitted": len(report.submitted),
            "job_ids": len(set(report.job_ids.values())),
            "queued_tasks": len(tasks),
            "relaunch_s": relaunch_s,
            "relaunch_submitted": len(again.submitted),
            "relaunch_sbatch_calls": calls_after - len(calls),
        }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--variants", type=int, default=500)
    p.add_argument("--repeat", type=int, default=1, help="independent fresh launches; the best is reported")
    args = p.parse_args()
    if not os.environ.get("SLURM_CONF"):
        conf = Path(os.environ.get("SLURM_BASE", "/tmp/litevae-slurm")) / "etc" / "slurm.conf"
        if conf.exists():
            os.environ["SLURM_CONF"] = str(conf)
    try:
        sh("scontrol", "ping")
    except (OSError, subprocess.CalledProcessError) as e:
        raise SystemExit(f"the SLURM cluster does not answer ({e}); start it: bash tools/slurm_cluster.sh start") from e
    partition, size = default_partition(), launch.max_array_size()
    runs = [once(args.variants, partition) for _ in range(args.repeat)]
    best = min(runs, key=lambda r: r["submit_s"])
    allowed = math.ceil(args.variants / size)
    print(
        f"slurm launch of {args.variants} variants (jobs held, then cancelled); partition {partition}, "
        f"MaxArraySize {size}, {os.cpu_count()} cores; best of {args.repeat}"
    )
    print(
        f"  submission (launch() call)   {best['submit_s']:7.2f} s   target < {TARGET_S:.0f} s   "
        f"ratio {best['submit_s'] / TARGET_S:.2f}"
    )
    print(f"    of which inside sbatch      {best['sbatch_s']:7.2f} s")
    print(
        f"  sbatch calls                 {best['sbatch_calls']:7d}     target <= {allowed}   "
        f"ratio {best['sbatch_calls'] / allowed:.2f}"
    )
    print(
        f"  arrays / distinct job ids     {best['arrays']} / {best['job_ids']}; "
        f"tasks in the queue {best['queued_tasks']}; runs submitted {best['runs_submitted']}"
    )
    print(
        f"  relaunch (nothing to submit) {best['relaunch_s']:7.2f} s   "
        f"submitted {best['relaunch_submitted']}, sbatch calls {best['relaunch_sbatch_calls']}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
