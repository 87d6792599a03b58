"""The originals' cached Inception statistics, one file per reference id."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from study import store


def load_reference(path: Path, n: int) -> tuple[np.ndarray, np.ndarray] | None:
    """The cached (mu, sigma) at ``path`` (named by its reference id), or None when absent,
    unreadable or made for another reference."""
    try:
        with np.load(path) as z:
            if str(z["reference_id"]) != path.stem or int(z["n"]) != n:
                return None
            return z["mu"].astype(np.float64), z["sigma"].astype(np.float64)
    except (OSError, KeyError, ValueError):
        return None


def save_reference(path: Path, n: int, mu: np.ndarray, sigma: np.ndarray) -> None:
    buf = io.BytesIO()
    np.savez(buf, mu=mu, sigma=sigma, n=np.int64(n), reference_id=np.str_(path.stem))
    store.write_bytes_atomic(path, buf.getvalue())
