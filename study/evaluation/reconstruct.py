"""Reconstructions of image files as PNGs, through the evaluation protocol's pixels (the named
``eval.preprocess``, the posterior mean, the metrics' uint8 quantisation); optionally the input
crop beside each. Output names and errors: docs/evaluation.md, "Reconstructing image files".
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from study.data.datasets import IMAGE_SUFFIXES, FolderEval, check_resolution, list_images, to_tensor
from study.data.preprocess import DEFAULT_PREPROCESS, PREPROCESS
from study.measure.metrics import to_uint8
from study.models.autoencoder import Autoencoder


class ReconstructError(ValueError):
    """An input that is neither an image file nor a folder, or two inputs with one output name."""


def plan_outputs(inputs: Sequence[str | Path], out_dir: str | Path) -> list[tuple[Path, str, Path]]:
    """(folder, file relative to it, output PNG) for every input image, in input order."""
    out = Path(out_dir)
    planned: list[tuple[Path, str, Path]] = []
    seen: dict[Path, Path] = {}
    for item in inputs:
        path = Path(item).expanduser()
        if path.is_dir():
            pairs = [(path, rel) for rel in list_images(path)]
        elif path.is_file():
            if path.suffix.lower() not in IMAGE_SUFFIXES:
                raise ReconstructError(f"{path}: not an image file ({', '.join(IMAGE_SUFFIXES)})")
            pairs = [(path.parent, path.name)]
        else:
            raise ReconstructError(f"{path}: no such image file or folder")
        for folder, rel in pairs:
            target = out / Path(rel).with_suffix(".png")
            source = folder / rel
            if target in seen:
                raise ReconstructError(f"{seen[target]} and {source} would both be written to {target}")
            seen[target] = source
            planned.append((folder, rel, target))
    if not planned:
        raise ReconstructError("no input images given")
    return planned


def input_path(target: Path) -> Path:
    """Where ``save_inputs`` writes the image behind the reconstruction ``target``: ``x.png`` ->
    ``x.input.png``."""
    return target.with_name(target.stem + ".input.png")


@torch.no_grad()
def reconstruct_files(
    autoencoder: Autoencoder,
    inputs: Sequence[str | Path],
    out_dir: str | Path,
    resolution: int,
    device: torch.device | str = "cpu",
    preprocess: str = DEFAULT_PREPROCESS,
    save_inputs: bool = False,
) -> list[Path]:
    """Write the reconstruction of every input image (files, or folders searched recursively)
    as a resolution x resolution PNG under ``out_dir``, and with ``save_inputs`` the image the
    autoencoder read as ``<name>.input.png`` beside it; returns the reconstructions' paths, in order."""
    check_resolution(resolution, "reconstruct --resolution")
    if preprocess not in PREPROCESS:
        raise ReconstructError(f"reconstruct --preprocess: {preprocess!r} is not one of {', '.join(PREPROCESS)}")
    planned = plan_outputs(inputs, out_dir)
    if save_inputs:
        targets = {target: folder / rel for folder, rel, target in planned}
        for folder, rel, target in planned:
            if input_path(target) in targets:
                raise ReconstructError(
                    f"{folder / rel}'s input image and {targets[input_path(target)]}'s reconstruction "
                    f"would both be written to {input_path(target)}"
                )
    was_training = autoencoder.training
    autoencoder.eval()
    written = []
    try:
        for folder, rel, target in planned:
            seen = FolderEval(folder, [rel], resolution, preprocess).pixels(0)
            x = to_tensor(seen).unsqueeze(0).to(device)
            x_hat = autoencoder.decode(autoencoder.encode(x).mean)
            pixels = to_uint8(x_hat)[0].permute(1, 2, 0).cpu().numpy()
            target.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(np.ascontiguousarray(pixels)).save(target)
            if save_inputs:
                Image.fromarray(np.ascontiguousarray(seen)).save(input_path(target))
            written.append(target)
    finally:
        autoencoder.train(was_training)
    return written
