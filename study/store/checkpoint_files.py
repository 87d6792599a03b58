"""Where a ``model.init`` checkpoint's weights are on disk, and their sha256 (a run's identity).

A checkpoint is a diffusers ``AutoencoderKL`` folder (its weights file beside ``config.json``), a
torch file (``.ckpt``, ``.pt``, ``.pth``, ``.bin``), a ``.safetensors`` file, or one of our runs
(its folder, or its id under ``<results>/runs/``: its ``checkpoints/last.pt``). Reading the
tensors is study/autoencoder/pretrained.py's job; this module only finds the file and hashes it
(no torch), so a study file can be expanded without the training stage.

``checkpoint_sha256`` is the sha256 of the file that holds the weights, cached per (path, size,
mtime) in a process.
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from study.store.runs import results_root, run_dir

Kind = Literal["diffusers", "torch", "safetensors", "run"]

# The trainer's checkpoint inside a run folder (study/trainer/checkpoints.py writes it).
RUN_CHECKPOINT = "checkpoints/last.pt"
DIFFUSERS_WEIGHTS = (
    "diffusion_pytorch_model.safetensors",
    "diffusion_pytorch_model.bin",
    "diffusion_pytorch_model.fp16.safetensors",
    "diffusion_pytorch_model.fp16.bin",
)
TORCH_SUFFIXES = (".ckpt", ".pt", ".pth", ".bin")


class CheckpointError(ValueError):
    """A checkpoint that cannot be found or read: the message names the path and why."""


@dataclass(frozen=True)
class Checkpoint:
    """Where a ``model.init`` points: ``file`` holds the weights, ``kind`` says how to read it."""

    source: str
    file: Path
    kind: Kind


def resolve(path: str | Path, root: str | Path | None = None) -> Checkpoint:
    """The checkpoint that ``path`` names: a file, a diffusers folder, a run folder, or a run id
    under ``<root>/runs`` (root: as ``study.store.results_root``). CheckpointError if none."""
    source = str(path)
    p = Path(path).expanduser()
    if p.is_dir():
        if (p / "config.json").is_file():
            for name in DIFFUSERS_WEIGHTS:
                if (p / name).is_file():
                    return Checkpoint(source, p / name, "diffusers")
            raise CheckpointError(
                f"{p}: a diffusers folder (config.json) without weights; expected " + " or ".join(DIFFUSERS_WEIGHTS)
            )
        if (p / RUN_CHECKPOINT).is_file():
            return Checkpoint(source, p / RUN_CHECKPOINT, "run")
        raise CheckpointError(f"{p}: neither a diffusers folder (config.json) nor a run folder ({RUN_CHECKPOINT})")
    if p.is_file():
        if p.suffix == ".safetensors":
            return Checkpoint(source, p, "safetensors")
        if p.suffix in TORCH_SUFFIXES:
            return Checkpoint(source, p, "torch")
        raise CheckpointError(
            f"{p}: unknown checkpoint type {p.suffix!r}; expected .safetensors, "
            + ", ".join(TORCH_SUFFIXES)
            + ", a diffusers folder or a run"
        )
    if source and "/" not in source and source not in (".", ".."):
        run = run_dir(results_root(root), source)
        if (run / RUN_CHECKPOINT).is_file():
            return Checkpoint(source, run / RUN_CHECKPOINT, "run")
        if run.is_dir():
            raise CheckpointError(f"run {source}: no checkpoint yet ({run / RUN_CHECKPOINT} is missing)")
    raise CheckpointError(
        f"{source}: no such checkpoint file or folder, and no run of that id under {results_root(root) / 'runs'}"
    )


def checkpoint_sha256(path: str | Path, root: str | Path | None = None) -> str:
    """The sha256 (hex) of the file that holds the checkpoint's weights (see ``resolve``)."""
    file = resolve(path, root).file.resolve()
    stat = file.stat()
    return _file_sha256(str(file), stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=64)
def _file_sha256(file: str, size: int, mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with open(file, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
