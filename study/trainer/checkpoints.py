"""A run's last checkpoint with its RNG states, written atomically; shared by every kind of run."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import torch

from study import store

CHECKPOINT = "checkpoints/last.pt"


def write_checkpoint(folder: Path, state: dict[str, Any]) -> None:
    """``state`` with the CPU and CUDA RNG states, written atomically as the run's last
    checkpoint (autoencoder and diffusion runs alike)."""
    state = state | {
        "rng_cpu": torch.get_rng_state(),
        "rng_cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
    }
    buf = io.BytesIO()
    torch.save(state, buf)
    store.write_bytes_atomic(folder / CHECKPOINT, buf.getvalue())


def restore_rng(state: dict[str, Any]) -> None:
    """The RNG states a checkpoint saved (``write_checkpoint``)."""
    torch.set_rng_state(state["rng_cpu"])
    if state["rng_cuda"] is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["rng_cuda"])


def load_checkpoint(folder: Path) -> dict[str, Any] | None:
    path = folder / CHECKPOINT
    if not path.exists():
        return None
    return torch.load(path, map_location="cpu", weights_only=False)
