"""The evaluation set: a folder apart from the training data (``eval.path``, ``eval.list``), or the
training data's hold-out; its images in a fixed order, resized by ``eval.preprocess``, and the
size check before training. Details: docs/data.md, "The evaluation set".
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from torch.utils.data import Dataset

from study.config import DataConfig, EvalConfig
from study.data import datasets

_FORMAT = 1


def _ordered(files: list[str]) -> list[str]:
    return sorted(files, key=lambda f: (datasets.split_hash(f), f))


def _files(ev: EvalConfig) -> list[str]:
    return _ordered(datasets.image_files(ev.path, ev.list, where="eval.list"))


def _where(ev: EvalConfig) -> str:
    return f"the evaluation set {ev.name!r} ({ev.path}{', list ' + ev.list if ev.list else ''})"


def set_size(data: DataConfig, ev: EvalConfig, resolution: int) -> int:
    """How many images the evaluation set holds (without decoding any)."""
    if ev.path:
        return len(_files(ev))
    if data.kind == "folder":
        return len(datasets.folder_split(data, resolution)[2])
    return len(datasets.eval_crops(resolution))


def resolve_count(data: DataConfig, ev: EvalConfig, resolution: int) -> int:
    """``eval.num_images`` as a number, checked against the set; DataError naming both."""
    size = set_size(data, ev, resolution)
    if ev.num_images == "all":
        return size
    if ev.num_images > size:
        where = (
            _where(ev)
            if ev.path
            else (
                f"the held-out split of {data.path} (data.val_fraction={data.val_fraction})"
                if data.kind == "folder"
                else f"the held-out strips of {datasets._SAMPLES_WHERE}"
            )
        )
        raise datasets.DataError(
            f"eval.num_images is {ev.num_images} but {where} holds {size} images "
            f"at {resolution}x{resolution}; lower eval.num_images or use 'all'"
        )
    return int(ev.num_images)


def check_size(data: DataConfig, ev: EvalConfig, resolution: int) -> int:
    """The check a job (and a launch, where the folder is reachable) makes before training."""
    return resolve_count(data, ev, resolution)


def evaluation_set(data: DataConfig, ev: EvalConfig, resolution: int) -> Dataset:
    """The images an evaluation reads (float 3 x R x R in [-1, 1], center crops by ``eval.preprocess``
    for folders; the sample photos keep their grid)."""
    n = resolve_count(data, ev, resolution)
    if not ev.path:
        return datasets.eval_set(data, resolution, n, ev.preprocess)
    datasets.check_resolution(resolution, str(ev.path))
    return datasets.FolderEval(Path(ev.path).expanduser(), _files(ev)[:n], resolution, ev.preprocess)


def fingerprint(data: DataConfig, ev: EvalConfig, resolution: int) -> str:
    """What the evaluation images are, as one line for the protocol's hash: the set's name and a
    digest of its file list (not its location), the order and crop rules (``eval.preprocess``), the
    resolution."""
    if not ev.path:
        return datasets.dataset_fingerprint(data, resolution, ev.preprocess)
    files = _files(ev)
    digest = hashlib.sha256("\n".join(files).encode("utf-8")).hexdigest()[:16]
    return (
        f"eval-v{_FORMAT} folder name={ev.name} split={'list' if ev.list else 'all files'} "
        f"files={len(files)} sha256={digest} order=split-hash "
        f"crop={datasets.crop_rule(ev.preprocess)} resolution={resolution}"
    )


def describe(data: DataConfig, ev: EvalConfig) -> dict[str, str | None]:
    """The set's identity for the protocol record: name and split, never its path."""
    if ev.path:
        return {"name": ev.name, "split": "list" if ev.list else "all files", "source": "eval.path"}
    return {"name": data.name, "split": "held-out", "source": "data (training source's hold-out)"}
