"""Helpers for the launcher tests and benchmarks/bench_launch.py: tiny study files, the command
line in a subprocess, and a counting `sbatch` shim.

A tiny variant (LiteVAE-S with a 32-channel decoder, 32x32 crops of the sample photos, batch 4,
no discriminator, PSNR/SSIM only) trains a step in about 0.3 s on one CPU thread and needs no
downloaded weights, so a whole job (start, train, evaluate, complexity) takes seconds.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]

# LiteVAE-S with a narrow decoder, no LPIPS: trains on 32x32 sample crops in seconds.
TINY_MODEL: dict[str, Any] = {
    "model.encoder.preset": "S",
    "model.latent_channels": 4,
    "model.decoder.channels": 32,
    "model.decoder.channel_mult": [1, 1, 2, 2],
    "model.decoder.blocks_per_level": 1,
    "model.decoder.mid_attention": False,
    "loss.lpips_weight": 0.0,
}

TINY_SET: dict[str, Any] = {
    **TINY_MODEL,
    "loss.discriminator": "none",
    "data.kind": "samples",
    "data.resolution": 32,
    "train.steps": 8,
    "train.batch_size": 4,
    "train.num_workers": 0,
    "train.log_every": 1,
    "train.val_every": 1000,
    "train.val_images": 8,
    "train.checkpoint_every": 5,
    "eval.num_images": 8,
    "eval.batch_size": 8,
    "eval.metrics": ["psnr", "ssim"],
}

# one CPU per job: two jobs run at once on the 2-core node, and the job sets torch's threads to 1
RESOURCES: dict[str, Any] = {"gpus": 0, "cpus_per_gpu": 1, "mem_gb": 1, "timeout_min": 10}


def write_study(folder: Path, study: str, *, set: dict[str, Any] | None = None, **keys: Any) -> Path:
    """A study file ``folder/<study>.yaml`` of tiny variants; ``keys`` are further top-level keys
    (grid, zip, variants, seeds, resources, ...). ``resources`` defaults to RESOURCES."""
    varied = {k for k in keys.get("grid", {})} | {k for group in keys.get("zip", []) for k in group}
    fixed = {k: v for k, v in (TINY_SET | (set or {})).items() if k not in varied}  # varied in one place only
    doc: dict[str, Any] = {"study": study, "set": fixed}
    doc.update(keys)
    doc.setdefault("resources", dict(RESOURCES))
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{study}.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def cli_env(results: Path | None = None, path_prefix: Path | None = None, **extra: str) -> dict[str, str]:
    """The environment for the command line and the jobs it starts: this repository importable
    (jobs inherit the environment through sbatch), one torch thread outside SLURM."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env["OMP_NUM_THREADS"] = "1"
    if results is not None:
        env["LITEVAE_RESULTS"] = str(results)
    if path_prefix is not None:
        env["PATH"] = f"{path_prefix}{os.pathsep}{env.get('PATH', '')}"
    env.update(extra)
    return env


def cli_command(*args: str) -> list[str]:
    return [sys.executable, str(REPO / "run_study.py"), *args]


def run_cli(*args: str, env: dict[str, str], timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run(
        cli_command(*args), cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL
    )


def status_json(spec: Path, env: dict[str, str]) -> dict[str, dict[str, Any]]:
    """`run_study.py status SPEC --json`, as {variant name: row}."""
    proc = run_cli("status", str(spec), "--json", env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return {row["name"]: row for row in json.loads(proc.stdout)["runs"]}


def sbatch_shim(folder: Path) -> tuple[Path, Path]:
    """A folder holding an `sbatch` that appends one line per call to a log, then execs the real
    sbatch. Put the folder first on PATH; returns (folder, log)."""
    real = shutil.which("sbatch")
    if real is None:
        raise RuntimeError("sbatch is not on PATH")
    folder.mkdir(parents=True, exist_ok=True)
    log = folder / "sbatch_calls.log"
    log.touch()
    shim = folder / "sbatch"
    shim.write_text(f'#!/bin/sh\necho "$$ $*" >> "{log}"\nexec "{real}" "$@"\n')
    shim.chmod(shim.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return folder, log


def sbatch_calls(log: Path) -> list[str]:
    return [line for line in log.read_text().splitlines() if line.strip()]
