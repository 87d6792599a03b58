"""Protocol metrics during training (``eval.during``): the run's evaluation protocol on the first
``eval.during.num_images`` images of its eval set, measured by the trainer's watch every
``eval.during.every`` steps (study/trainer/watch.py) through the callback ``during_evaluator``
makes. The trainer sits below the evaluation, so the job builds the callback and hands it in.

Each measurement is the protocol's (``measure`` of study/evaluation/evaluate.py: the same
metrics, resize, quantisation and weights) on the subset, with its own protocol id (the subset's
image count is part of it); no record is written under ``eval/``, so the final evaluation (the
last step's, the paper's) stays the run's only one. rFID on N images is reported as ``rfid@N``:
FID is biased upward on few images, so it is comparable only with the same N. A metric whose
weights are missing is reported in ``unavailable`` with the reason, never as a number.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any, Callable

import torch
from torch.utils.data import Dataset

from study import config as cfgmod
from study.data import eval_sets
from study.evaluation.evaluate import measure
from study.evaluation.protocol import protocol, protocol_id

OnEval = Callable[[int, torch.nn.Module, str], dict[str, Any]]


def subset_config(cfg: cfgmod.ExperimentConfig, weights: str) -> cfgmod.ExperimentConfig:
    """The run's config with the eval section of the subset: ``eval.during.num_images`` images,
    the given weights (model or ema), no latent statistics (Table 6 is the final evaluation's)."""
    ev = dataclasses.replace(
        cfg.eval,
        num_images=cfg.eval.during.num_images,
        weights="ema" if weights == "ema" else "model",
        latent_stats=False,
        gallery_images=0,
    )
    return dataclasses.replace(cfg, eval=ev)


def named(metrics: dict[str, Any], n: int) -> dict[str, Any]:
    """``rfid`` renamed ``rfid@<n>``; the other metrics as they are."""
    return {f"rfid@{n}" if k == "rfid" else k: v for k, v in metrics.items()}


def during_evaluator(
    cfg: cfgmod.ExperimentConfig,
    run_folder: Path,
    device: torch.device,
    *,
    weights_dir: str | Path | None = None,
    cache_dir: Path | None = None,
) -> OnEval:
    """The trainer's ``on_eval`` for ``cfg``: (step, module, weights) -> ``protocol_id``,
    ``num_images``, ``metrics``, ``unavailable``, ``seconds``. The subset is read once, at the
    first call; the originals' Inception statistics are cached as the final evaluation's are
    (``<results>/cache/fid_ref``), per subset."""
    cache = cache_dir or run_folder.parent.parent / "cache" / "fid_ref"
    subset: list[Dataset] = []

    def on_eval(step: int, module: torch.nn.Module, weights: str) -> dict[str, Any]:
        start = time.time()
        sub = subset_config(cfg, weights)
        if not subset:
            subset.append(eval_sets.evaluation_set(sub.data, sub.eval, cfgmod.eval_resolution(sub)))
        p = protocol(sub)
        m = measure(module, sub, p, subset[0], device, weights_dir=weights_dir, cache_dir=cache)
        n = len(subset[0])  # type: ignore[arg-type]
        return {
            "protocol_id": protocol_id(p),
            "num_images": n,
            "metrics": named(m.metrics, n),
            "unavailable": named(m.unavailable, n),
            "seconds": round(time.time() - start, 3),
        }

    return on_eval
