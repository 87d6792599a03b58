"""Image batches in the format of ADM's evaluation suite (Dhariwal & Nichol 2021, guided-diffusion
``evaluations/evaluator.py``), so a diffusion run's gFID can be checked with the field's own tool.

The suite reads an ``.npz`` whose ``arr_0`` is a uint8 array N x H x W x 3 (``np.savez`` of the
images, what LDM's ``scripts/sample_diffusion.py`` writes too); it computes Inception statistics
from it unless the file also holds ``mu`` and ``sigma`` (its published reference batches). We write
``arr_0`` only, so the suite measures both batches with its own network. A batch of 50k images at
256 x 256 is about 10 GB: the writer streams it into an uncompressed zip member, batch by batch,
instead of holding it in memory, and renames the finished file into place (no half-written file
under the final name).
"""

from __future__ import annotations

import os
import shutil
import zipfile
from pathlib import Path
from types import TracebackType

import numpy as np
import torch

ARRAY = "arr_0"  # the member ADM's evaluator opens (np.savez's name for its first array)


class AdmBatchError(ValueError):
    """Images that do not fit the batch being written (shape, dtype, or count)."""


class AdmBatchWriter:
    """Write ``count`` uint8 images of ``resolution`` x ``resolution`` to ``path`` as ADM's
    ``arr_0`` (N x H x W x 3), from N x 3 x H x W uint8 tensors given to ``add`` in order.
    Use as a context manager: the file appears under ``path`` only when all ``count`` images
    were written and the block ended without an exception."""

    def __init__(self, path: Path, count: int, resolution: int):
        self.path, self.count, self.shape = Path(path), count, (count, resolution, resolution, 3)
        self.written = 0
        self._tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")

    def __enter__(self) -> AdmBatchWriter:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._zip = zipfile.ZipFile(self._tmp, "w", compression=zipfile.ZIP_STORED, allowZip64=True)
        self._member = self._zip.open(f"{ARRAY}.npy", "w", force_zip64=True)
        header = {
            "descr": np.lib.format.dtype_to_descr(np.dtype(np.uint8)),
            "fortran_order": False,
            "shape": self.shape,
        }
        np.lib.format.write_array_header_1_0(self._member, header)
        return self

    def add(self, images: torch.Tensor) -> None:
        """Append a batch of uint8 images, N x 3 x H x W (as the harness's metrics see them)."""
        if images.dtype != torch.uint8 or images.ndim != 4 or tuple(images.shape[1:]) != (3, *self.shape[1:3]):
            raise AdmBatchError(f"{self.path}: expected uint8 N x 3 x {self.shape[1]} x {self.shape[2]}, "
                                f"got {images.dtype} {tuple(images.shape)}")  # fmt: skip
        if self.written + len(images) > self.count:
            raise AdmBatchError(f"{self.path}: more than the {self.count} images announced")
        self._member.write(np.ascontiguousarray(images.permute(0, 2, 3, 1).cpu().numpy()).tobytes())
        self.written += len(images)

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self._member.close()
        self._zip.close()
        if kind is None and self.written != self.count:
            self._tmp.unlink(missing_ok=True)
            raise AdmBatchError(f"{self.path}: {self.written} images written, {self.count} announced")
        if kind is not None:
            self._tmp.unlink(missing_ok=True)
            return
        os.replace(self._tmp, self.path)


def link_or_copy(source: Path, target: Path) -> None:
    """``target`` as a hard link to ``source`` (no second copy of a large batch on disk), or a
    copy where the file system refuses links; an existing ``target`` is replaced."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    tmp.unlink(missing_ok=True)
    try:
        os.link(source, tmp)
    except OSError:
        shutil.copyfile(source, tmp)
    os.replace(tmp, target)
