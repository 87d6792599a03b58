"""The demo's first stage: the weights files its runs need (the evaluation metrics' networks, and a
perceptual training loss's when its weight is > 0), fetched with a progress bar before anything
trains, so that every metric of the report is a number. Offline, one notice, and the study's index
records ``weights_unstaged`` (which files, why); the report says so once above its table.
"""

from __future__ import annotations

from typing import Any

from study.config import metric_specs
from study.measure import registry as metric_registry
from study.measure import weights as weight_files
from study.studyfile.grid import Variant

INDEX_FLAG = "weights_unstaged"  # the index's field: {"names": [...], "reason": "..."} or None
FETCH_TIMEOUT_S = 20.0  # a connection that does not answer in this long counts as offline


def needed_weights(variants: list[Variant]) -> list[str]:
    """The weights files (names of study.measure.weights.REGISTRY) the variants' runs load, in
    registry order."""
    names: set[str] = set()
    for v in variants:
        ev = v.config.eval
        for metric in ev.metrics:
            for need in metric_specs.spec(metric).needs:
                names.add(metric_registry.weights_of(metric_registry.need_key(need, ev)))
        loss = v.config.loss
        if loss.lpips_weight > 0:
            names.add("vgg19" if loss.perceptual == "esrgan" else "vgg16")
    return [name for name in weight_files.REGISTRY if name in names]


def stage(variants: list[Variant], *, timeout: float = FETCH_TIMEOUT_S, progress: bool = True) -> dict[str, Any]:
    """Fetch what the variants need into the weights directory (files already there and verified
    are kept); print what happened; return the index field: ``{INDEX_FLAG: None}`` when every file
    is staged, else the names not staged and the first reason (one notice printed)."""
    names = needed_weights(variants)
    if not names:
        return {INDEX_FLAG: None}
    folder = weight_files.weights_dir()
    print(f"metric weights ({', '.join(names)}) into {folder}:", flush=True)
    results = weight_files.fetch(None, names, timeout=timeout, progress=progress)
    for r in results:
        if r.state != "failed":
            print(f"  {r.state:<10} {r.name}", flush=True)
    failed = [r for r in results if r.state == "failed"]
    if not failed:
        return {INDEX_FLAG: None}
    missing = [r.name for r in failed]
    print(
        f"offline: {', '.join(missing)} could not be fetched ({failed[0].reason.split(' (')[0]}); the metrics "
        f"that need them will read n/a. Later, where there is network: `{weight_files.FETCH_HINT}`, then "
        "`python run_study.py evaluate` of this study (nothing retrains).",
        flush=True,
    )
    return {INDEX_FLAG: {"names": missing, "reason": failed[0].reason}}
