"""The evaluation job: rFID, PSNR, SSIM and LPIPS of a trained autoencoder under an explicit,
hashed protocol, one record per (run, protocol) in ``<run>/eval/<protocol_id>.json``, with its
gallery beside it. The protocol and the record: docs/evaluation.md, "The evaluation job".
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from study import config as cfgmod
from study import store
from study.autoencoder.trained import MissingCheckpoint, load_trained
from study.config import metric_specs
from study.data import eval_sets
from study.evaluation import gallery as galleries
from study.evaluation.protocol import (
    SAMPLE_SEED,
    protocol,
    protocol_id,
    reference_id,
)
from study.evaluation.references import load_reference, save_reference
from study.measure import latent_stats
from study.measure import metrics as metric_fns
from study.measure import registry as metric_registry
from study.measure import weights as weight_files
from study.store.media import gallery_dir
from study.trainer.accelerate import full_fp32

Loader = Callable[[Path, cfgmod.ExperimentConfig, torch.device], torch.nn.Module]


# --------------------------------------------------------------------------------------------
# the protocol
# --------------------------------------------------------------------------------------------


# --------------------------------------------------------------------------------------------
# the reference statistics cache
# --------------------------------------------------------------------------------------------


# --------------------------------------------------------------------------------------------
# what the metrics need, and their running values
# --------------------------------------------------------------------------------------------
@dataclass
class _Instruments:
    """The networks the wanted metrics need (study/measure/registry.py), loaded once, and what
    could not be loaded."""

    tools: metric_registry.Tools = field(default_factory=metric_registry.Tools)
    reference_path: Path | None = None  # where the originals' Inception statistics are cached
    unavailable: dict[str, str] = field(default_factory=dict)
    missing_weights: list[str] = field(default_factory=list)


def _instruments(
    ev: cfgmod.EvalConfig,
    p: dict[str, Any],
    n: int,
    device: torch.device,
    weights_dir: str | Path | None,
    cache_dir: Path,
) -> _Instruments:
    inst = _Instruments()
    loaded: dict[str, torch.nn.Module | str] = {}  # need key -> its network, or why it is missing
    for name in ev.metrics:
        m = metric_registry.metric(name)
        if n < m.min_images:
            inst.unavailable[name] = f"unavailable: {m.spec.heading} needs at least {m.min_images} images"
            continue
        for need in m.spec.needs:
            key = metric_registry.need_key(need, ev)
            if key not in loaded:
                try:
                    loaded[key] = metric_registry.load(key, device, weights_dir)
                except weight_files.MissingWeightsError as e:
                    loaded[key] = f"unavailable: {e}"
                    inst.missing_weights.append(metric_registry.weights_of(key))
            got = loaded[key]
            if isinstance(got, str):
                inst.unavailable[name] = got
            else:
                inst.tools.models[need] = got
    if "rfid" in ev.metrics and "rfid" not in inst.unavailable:
        inst.reference_path = cache_dir / f"{reference_id(p, n)}.npz"
        inst.tools.reference = load_reference(inst.reference_path, n)
    return inst


class _Tally:
    """The wanted metrics' running values over the batches of the eval set: the per-image values
    of each per-image metric (its mean and spread both come from them), and each set metric."""

    def __init__(self, wanted: Iterable[str], inst: _Instruments):
        self.inst = inst
        self.wanted = [name for name in wanted if name not in inst.unavailable]
        self.per_image: dict[str, list[Tensor]] = {}
        self.sets: dict[str, metric_registry.SetMetric] = {}
        for base, reduce in dict.fromkeys(metric_specs.split_name(name) for name in self.wanted):
            accumulate = metric_registry.metric(base).accumulate
            if reduce != "value":
                self.per_image[base] = []
            elif accumulate is not None:
                self.sets[base] = accumulate(inst.tools)

    def update(self, a: Tensor, b: Tensor) -> None:
        """Originals ``a`` and reconstructions ``b``, uint8 N x 3 x H x W."""
        for name, values in self.per_image.items():
            per_image = metric_registry.metric(name).per_image
            assert per_image is not None
            values.append(per_image(a, b, self.inst.tools).cpu())
        for acc in self.sets.values():
            acc.update(a, b)

    def results(self) -> dict[str, float]:
        """Each wanted metric's value: a per-image metric's mean (or, as ``<name>_std``, its
        population standard deviation), a set metric's value."""
        out = {}
        for name in self.wanted:
            base, reduce = metric_specs.split_name(name)
            if reduce == "value":
                out[name] = self.sets[base].value()
            elif self.per_image[base]:
                values = torch.cat(self.per_image[base])
                out[name] = float(values.std(correction=0) if reduce == "std" else values.mean())
        return out

    def new_reference(self) -> tuple[np.ndarray, np.ndarray] | None:
        """The originals' Inception statistics when this evaluation computed them (to be cached)."""
        fid = self.sets.get("rfid")
        return fid.reference if isinstance(fid, metric_registry.FidTally) and fid.computed else None


@contextlib.contextmanager
def _eval_mode(module: torch.nn.Module) -> Iterator[None]:
    """``module`` in eval mode inside the block; the caller's mode restored after."""
    was_training = module.training
    module.eval()
    try:
        yield
    finally:
        module.train(was_training)


def _reconstruct(
    autoencoder: torch.nn.Module, x: Tensor, generator: torch.Generator | None, latents: list[Tensor] | None = None
) -> tuple[Tensor, Tensor]:
    """(originals, reconstructions) as uint8: the posterior mean decoded, or a sample drawn
    from ``generator``; the posterior means are appended to ``latents`` (Table 6) if given."""
    ae: Any = autoencoder  # study.models.autoencoder.Autoencoder: encode, decode
    posterior = ae.encode(x)
    if latents is not None:
        latents.append(posterior.mode().float().cpu())
    z = posterior.mode() if generator is None else posterior.sample(generator)
    return metric_fns.to_uint8(x), metric_fns.to_uint8(ae.decode(z))


# --------------------------------------------------------------------------------------------
# evaluate one run
# --------------------------------------------------------------------------------------------
def _content_fingerprint(ds: Dataset) -> str:
    """A stand-in dataset fingerprint for datasets passed in directly: the sha256 of the images'
    uint8 pixels (cheap for the small sets tests and benchmarks use)."""
    h = hashlib.sha256()
    n = len(ds)  # type: ignore[arg-type]
    for i in range(n):
        img = ds[i]
        h.update(str(tuple(img.shape)).encode())
        h.update((img if img.dtype == torch.uint8 else metric_fns.to_uint8(img)).contiguous().numpy().tobytes())
    return f"in-memory n={n} uint8-sha256={h.hexdigest()[:16]}"


def still_unavailable(record: dict[str, Any], directory: Any) -> bool:
    """True when every weights file the record lacked is still missing (so reusing it is right);
    False when one has been staged since, and the record should be completed."""
    for name in record.get("missing_weights") or []:
        try:
            weight_files.resolve(name, directory)
            return False
        except (weight_files.MissingWeightsError, KeyError):
            pass
    return True


def _save_gallery(ae: Any, cfg: cfgmod.ExperimentConfig, folder: Path, device: Any, ds: Any, force: bool) -> None:
    """The first ``eval.gallery_images`` of the eval set reconstructed (study/evaluation/gallery.py),
    when the metrics are computed (``force``) or the gallery is missing (evaluated before it)."""
    k = cfg.eval.gallery_images
    if k and (force or not galleries.is_saved(folder, k)):
        ds = ds if ds is not None else eval_sets.evaluation_set(cfg.data, cfg.eval, cfgmod.eval_resolution(cfg))
        gen = torch.Generator(device).manual_seed(SAMPLE_SEED) if cfg.eval.posterior == "sample" else None
        with _eval_mode(ae), torch.no_grad():  # a sample: drawn from its own seeded generator
            x = galleries.first_images(ds, k).to(device).float()
            galleries.save(folder, *_reconstruct(ae, x, gen), {"posterior": cfg.eval.posterior}, k)


@dataclass
class Measured:
    """What one pass over an eval set measured: the metrics, those that could not be measured
    (with the weights files they lack), how rFID's reference statistics were had (computed and
    cached, or reused; None without rFID), and the posterior means when ``eval.latent_stats``."""

    metrics: dict[str, float]
    unavailable: dict[str, str]
    missing_weights: list[str]
    reference_cache: str | None
    latents: Tensor | None


def measure(
    autoencoder: torch.nn.Module,
    cfg: cfgmod.ExperimentConfig,
    p: dict[str, Any],
    dataset: Dataset,
    device: torch.device,
    *,
    weights_dir: str | Path | None,
    cache_dir: Path,
    num_workers: int = 0,
    progress: bool = False,
    label: str = "eval",
) -> Measured:
    """The metrics of ``cfg.eval`` over ``dataset`` under protocol ``p``; writes no record (the
    originals' Inception statistics are cached in ``cache_dir``). ``evaluate`` and the protocol
    metrics during training (study/evaluation/during.py) both measure through it."""
    ev, n = cfg.eval, len(dataset)  # type: ignore[arg-type]
    inst = _instruments(ev, p, n, device, weights_dir, cache_dir)
    loader = DataLoader(
        dataset, batch_size=ev.batch_size, shuffle=False, num_workers=num_workers, pin_memory=device.type == "cuda"
    )
    generator = torch.Generator(device).manual_seed(SAMPLE_SEED) if ev.posterior == "sample" else None
    tally = _Tally(ev.metrics, inst)
    latents: list[Tensor] | None = [] if ev.latent_stats else None
    # fp32 features (the protocol): TF32 off on CUDA even after training in this process turned it on
    with _eval_mode(autoencoder), torch.no_grad(), full_fp32(device):
        for x in metric_fns.with_progress(loader, n, progress, label):
            tally.update(*_reconstruct(autoencoder, x.to(device, non_blocking=True).float(), generator, latents))
    results = tally.results()
    reference_cache = None
    if inst.reference_path is not None:  # rFID measured: its originals' statistics reused or computed now
        computed = tally.new_reference()
        if computed is not None:
            save_reference(inst.reference_path, n, *computed)
        reference_cache = "computed" if computed is not None else "reused"
    return Measured(
        results,
        inst.unavailable,
        inst.missing_weights,
        reference_cache,
        None if latents is None else torch.cat(latents),
    )


def evaluate(
    autoencoder: torch.nn.Module,
    cfg: cfgmod.ExperimentConfig,
    run_folder: str | Path,
    device: Any = "cpu",
    progress: bool = True,
    *,
    force: bool = False,
    dataset: Dataset | None = None,
    weights_dir: str | Path | None = None,
    cache_dir: str | Path | None = None,
    num_workers: int | None = None,
) -> dict[str, Any]:
    """Evaluate ``autoencoder`` on the eval set of ``cfg`` under ``protocol(cfg)`` and write the
    record to ``run_folder/eval/<protocol_id>.json``.

    An existing record of the same protocol id is returned as is (``force`` recomputes), unless
    it lacks a metric whose weights have been staged since. ``dataset`` replaces
    ``study.data.eval_sets.evaluation_set`` (float 3 x H x W in [-1, 1]; its pixels are hashed into the
    protocol). ``cache_dir`` holds the originals' Inception statistics (default
    ``<results>/cache/fid_ref``, where ``<results>`` is the parent of the ``runs`` folder). The
    returned dict is the record plus ``"reused": bool`` (not stored)."""
    start = time.time()
    run_folder, device, ev = Path(run_folder), torch.device(device), cfg.eval
    p = protocol(cfg, fingerprint=_content_fingerprint(dataset) if dataset is not None else None)
    pid = protocol_id(p)
    existing = store.read_evals(run_folder).get(pid)
    fresh = force or existing is None or existing.get("protocol") != p or not still_unavailable(existing, weights_dir)
    _save_gallery(autoencoder, cfg, gallery_dir(run_folder, pid), device, dataset, force=fresh)
    if existing is not None and not fresh:
        return {**existing, "reused": True}

    if dataset is None:
        dataset = eval_sets.evaluation_set(cfg.data, ev, cfgmod.eval_resolution(cfg))
    n = len(dataset)  # type: ignore[arg-type]
    cache = Path(cache_dir) if cache_dir else run_folder.parent.parent / "cache" / "fid_ref"
    if num_workers is None:
        num_workers = min(cfg.train.num_workers, os.cpu_count() or 1) if device.type == "cuda" else 0
    measured = measure(
        autoencoder, cfg, p, dataset, device, weights_dir=weights_dir, cache_dir=cache, num_workers=num_workers,
        progress=progress, label=f"eval {run_folder.name}",
    )  # fmt: skip
    results = dict(measured.metrics)
    latent_details: dict[str, Any] | None = None
    if measured.latents is not None:  # Table 6
        latent_metrics, latent_details = latent_stats.table6_summary(
            measured.latents, ev.mmd_bandwidths, ev.mmd_repeats, ev.mmd_samples
        )
        results.update(latent_metrics)

    record = {
        "protocol_id": pid,
        "protocol": p,
        "metrics": {k: results[k] for k in sorted(results)},
        "unavailable": measured.unavailable,
        "missing_weights": measured.missing_weights,
        "num_images": n,
        "created": time.time(),
        "seconds": round(time.time() - start, 3),
        "device": str(device),
        "batch_size": ev.batch_size,
        "reference_cache": measured.reference_cache,
    }
    if latent_details is not None:
        record["latent_stats"] = latent_details
    store.write_eval(run_folder, pid, record)
    return {**record, "reused": False}


# --------------------------------------------------------------------------------------------
# evaluate the runs of a study again
# --------------------------------------------------------------------------------------------
def evaluate_study(
    variants: list[Any],
    root: Path,
    *,
    overrides: dict[str, Any] | None = None,
    device: Any = None,
    force: bool = False,
    progress: bool = True,
    load: Loader | None = None,
    echo: Callable[[dict[str, Any]], None] | None = None,
) -> list[dict[str, Any]]:
    """Evaluate every completed run of ``variants`` (objects with ``run_id``, ``name``, ``config``)
    under its config's eval section with ``overrides`` applied; one summary row per variant.
    Runs that are not completed are skipped (a half-trained model must not get a record that a
    later evaluation of the finished model would reuse), and so are runs that train nothing
    (``train.steps`` 0: Table 3 measures encoders); a completed run without a checkpoint is a
    "failed" row with the reason. ``load`` (folder, config, device) -> the trained autoencoder;
    default ``study.autoencoder.trained.load_trained``; ``echo`` is handed each row as it is made."""
    load = load or load_trained
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    rows = []
    for v in variants:
        folder = store.run_dir(root, v.run_id)
        row: dict[str, Any] = {"run_id": v.run_id, "name": v.name}
        cfg = cfgmod.validate(cfgmod.apply_overrides(v.config, overrides or {}))
        if not store.is_done(folder):
            rows.append(row | {"state": "skipped", "reason": "run not completed"})
        elif cfg.train.steps == 0 and not cfg.model.init:
            rows.append(row | {"state": "skipped", "reason": "nothing trained (train.steps 0)"})
        else:
            try:
                autoencoder = load(folder, cfg, device)
            except MissingCheckpoint as e:
                rows.append(row | {"state": "failed", "reason": str(e)})
            else:
                record = evaluate(autoencoder, cfg, folder, device, progress=progress, force=force)
                rows.append(
                    row
                    | {
                        "state": "reused" if record["reused"] else "evaluated",
                        "protocol_id": record["protocol_id"],
                        "metrics": record["metrics"],
                        "unavailable": record["unavailable"],
                    }
                )
        if echo:
            echo(rows[-1])
    return rows
