"""Run folders: where a run's records live, its config, its status and the records of its job.

Layout (DESIGN.md, "Identity and storage", a contract)::

    results/runs/<id>/config.yaml        the resolved experiment config
                      status.json        state, job ids, attempts, step, heartbeat, error tail
                      metrics.jsonl      training history, one JSON object per logged step
                      checkpoints/       the trainer's
                      eval/<eval_id>.json one record per evaluation protocol
                      complexity.json    params, MACs, throughput, memory
                      DONE               written last, when the run is complete
    results/<study>/index.json           the variants a launch planned
    results/<study>/results.csv          what `collect` gathered

Every record is written atomically (``study/store/files.py``). ``status.json`` is what a run's
writers (the launcher, the job) said last; what state a run is in, given that record and the
scheduler, is ``study/store/state.py``'s one rule. The launcher and the job both write the
status, so every update is a read-modify-write under the folder's lock.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from pathlib import Path
from typing import Any, Iterator

import yaml

from study import config as cfgmod
from study.store.files import read_json, write_json_atomic, write_text_atomic
from study.store.media import link_tensorboard

__all__ = [
    "RESULTS_ENV",
    "append_job_id",
    "init_run",
    "is_done",
    "locked",
    "mark_done",
    "read_config",
    "read_evals",
    "read_index",
    "read_status",
    "results_root",
    "run_dir",
    "study_dir",
    "update_status",
    "variant_record",
    "write_complexity",
    "write_eval",
    "write_index",
]

RESULTS_ENV = "LITEVAE_RESULTS"


def results_root(root: str | Path | None = None) -> Path:
    """``root``, else $LITEVAE_RESULTS, else ./results."""
    return Path(root or os.environ.get(RESULTS_ENV) or "results")


def run_dir(root: Path, run_id: str) -> Path:
    return root / "runs" / run_id


def study_dir(root: Path, study: str) -> Path:
    return root / study


# --------------------------------------------------------------------------------------------
# runs
# --------------------------------------------------------------------------------------------
def init_run(root: Path, cfg: cfgmod.ExperimentConfig) -> Path:
    """Create (or reuse) the run folder of ``cfg``: config.yaml and a pending status."""
    rid = cfgmod.run_id(cfg)
    folder = run_dir(root, rid)
    path = folder / "config.yaml"
    text = yaml.safe_dump({"run_id": rid, "config": cfgmod.to_dict(cfg)}, sort_keys=False)
    if not path.exists() or path.read_text() != text:
        # The id hashes identity fields only: refresh the rest (intervals, paths, eval protocol).
        write_text_atomic(path, text)
    if read_json(folder / "status.json") is None:
        write_json_atomic(
            folder / "status.json",
            {"state": "pending", "attempts": 0, "job_ids": [], "run_id": rid, "updated": time.time()},
        )
    return folder


def read_config(folder: Path) -> cfgmod.ExperimentConfig:
    doc = yaml.safe_load((folder / "config.yaml").read_text())
    return cfgmod.from_dict(doc["config"])


@contextlib.contextmanager
def locked(folder: Path) -> Iterator[None]:
    """The folder's lock (flock on ``.lock``), held for a read-modify-write of its status."""
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".lock", "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def read_status(folder: Path) -> dict[str, Any]:
    return read_json(folder / "status.json") or {"state": "pending", "attempts": 0, "job_ids": []}


def update_status(folder: Path, **fields: Any) -> dict[str, Any]:
    """Read-modify-write status.json under a file lock (the launcher and the job both write)."""
    with locked(folder):
        status = read_status(folder)
        status.update(fields, updated=time.time())
        write_json_atomic(folder / "status.json", status)
    return status


def append_job_id(folder: Path, job_id: str | None, *, new_attempt: bool = False, **fields: Any) -> dict[str, Any]:
    """Record the run's job: ``job_id`` appended to ``job_ids`` unless already there (a requeued
    SLURM job keeps its id; a local job and its launcher both record it), ``attempts`` counted
    up when ``new_attempt`` (the job starts the run's code), ``fields`` merged; one locked write."""
    with locked(folder):
        status = read_status(folder)
        job_ids = [str(j) for j in status.get("job_ids") or []]
        if job_id is not None and str(job_id) not in job_ids:
            job_ids.append(str(job_id))
        if new_attempt:
            fields["attempts"] = int(status.get("attempts", 0)) + 1
        status.update(fields, job_ids=job_ids, updated=time.time())
        write_json_atomic(folder / "status.json", status)
    return status


def write_eval(folder: Path, eval_id: str, record: dict[str, Any]) -> None:
    write_json_atomic(folder / "eval" / f"{eval_id}.json", record)


def read_evals(folder: Path) -> dict[str, dict[str, Any]]:
    try:
        names = sorted(os.listdir(folder / "eval"))
    except FileNotFoundError:
        return {}
    out = {}
    for name in names:
        if name.endswith(".json") and not name.startswith("."):
            record = read_json(folder / "eval" / name)
            if record is not None:
                out[name[:-5]] = record
    return out


def write_complexity(folder: Path, record: dict[str, Any]) -> None:
    write_json_atomic(folder / "complexity.json", record)


def mark_done(folder: Path) -> None:
    """The last write of a completed run."""
    update_status(folder, state="completed", finished=time.time(), error=None)
    write_text_atomic(folder / "DONE", f"{time.time()}\n")


def is_done(folder: Path) -> bool:
    return (folder / "DONE").exists()


# --------------------------------------------------------------------------------------------
# studies
# --------------------------------------------------------------------------------------------
def variant_record(v: Any, paper_row: str | None = None) -> dict[str, Any]:
    """One variant of a study's index (``v``: a ``study.studyfile.grid.Variant``): its name, aliases,
    run id, seed and axes; what its config trains and evaluates on (``dataset``; ``resolution``,
    the one its numbers are measured at: eval.resolution, else data.resolution; ``latent``, H/8 x
    W/8 x channels there); and ``paper_row``, the label of the paper row it is compared with. A
    diffusion run adds ``task`` and ``autoencoder_id`` (its latent is its autoencoder's)."""
    cfg = v.config
    res = cfg.eval.resolution or cfg.data.resolution
    return {
        "index": v.index,
        "name": v.name,
        "run_id": v.run_id,
        "seed": v.seed,
        "source": v.source,
        "axes": {k: list(x) if isinstance(x, tuple) else x for k, x in v.axes.items()},
        "aliases": list(v.aliases),
        "dataset": cfg.data.name,
        "resolution": res,
        "latent": f"{res // 8}x{res // 8}x{cfg.model.latent_channels}",
        "paper_row": paper_row,
    } | (
        {"task": "diffusion", "autoencoder_id": cfg.diffusion.autoencoder_id, "latent": None}
        if cfg.task == "diffusion"
        else {}
    )


def write_index(root: Path, study: str, variants: list[Any], **meta: Any) -> Path:
    """results/<study>/index.json: the study's variants and ``meta``, what the report needs of the
    study file (``study.studyfile.record.study_record``: description, spec, profile, seeds, order,
    paper). A variant's ``paper_row`` is its label in ``meta["paper"]["rows"]``."""
    rows = (meta.get("paper") or {}).get("rows") or {}
    path = study_dir(root, study) / "index.json"
    records = [variant_record(v, rows.get(v.name)) for v in variants]
    write_json_atomic(path, {"study": study, **meta, "variants": records})
    link_tensorboard(root, study_dir(root, study), records)  # results/<study>/tensorboard (study/store/media.py)
    return path


def read_index(root: Path, study: str) -> dict[str, Any] | None:
    """results/<study>/index.json (None: not written yet)."""
    return read_json(study_dir(root, study) / "index.json")
