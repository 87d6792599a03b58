"""Run folders: where a run's records live, its config, its status and the records of its job.

The folder's layout is a contract (docs/architecture.md, "Run folders"); every record is written
atomically (``study/store/files.py``). The launcher and the job both write ``status.json``, so
every update is a read-modify-write under the folder's lock; which state a run is in is
``study/store/state.py``'s one rule.
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
    "index_path",
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
def init_run(root: Path, cfg: cfgmod.ExperimentConfig, rid: str) -> Path:
    """Create (or reuse) the run folder of ``cfg`` (run id ``rid``: ``study.kinds.registry.run_id``):
    config.yaml and a pending status."""
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
    run id, seed and axes; ``paper_row``, the label of the paper row it is compared with; and what
    its run kind records beside it (``v.fields``: the kind, the runs it needs, the dataset, the
    resolution its numbers are measured at, the latent shape; ``study.kinds``)."""
    return {
        "index": v.index,
        "name": v.name,
        "run_id": v.run_id,
        "seed": v.seed,
        "source": v.source,
        "axes": {k: list(x) if isinstance(x, tuple) else x for k, x in v.axes.items()},
        "aliases": list(v.aliases),
        **v.fields,
        "paper_row": paper_row,
    }


def index_path(root: Path, study: str, profile: str | None = None) -> Path:
    """The study's index: results/<study>/index.json, results/<study>/index-<profile>.json under a
    profile (each profile keeps its own, so a profile's launch never replaces the study's)."""
    return study_dir(root, study) / (f"index-{profile}.json" if profile else "index.json")


def linear_reference_path(root: Path, study: str) -> Path:
    """results/<study>/linear_reference.json: PCA of the study's latent size, the reference row of
    its report (study/evaluation/linear_reference.py)."""
    return study_dir(root, study) / "linear_reference.json"


def write_index(root: Path, study: str, variants: list[Any], **meta: Any) -> Path:
    """The study's index (``index_path`` of ``meta["profile"]``): the study's variants and
    ``meta``, what the report needs of the study file (``study.studyfile.record.study_record``:
    description, spec, profile, seeds, order, paper). A variant's ``paper_row`` is its label in
    ``meta["paper"]["rows"]``."""
    rows = (meta.get("paper") or {}).get("rows") or {}
    path = index_path(root, study, meta.get("profile"))
    records = [variant_record(v, rows.get(v.name)) for v in variants]
    write_json_atomic(path, {"study": study, **meta, "variants": records})
    link_tensorboard(root, study_dir(root, study), records)  # results/<study>/tensorboard (study/store/media.py)
    return path


def read_index(root: Path, study: str, profile: str | None = None) -> dict[str, Any] | None:
    """The study's index under ``profile`` (``index_path``; None: not written yet)."""
    return read_json(index_path(root, study, profile))
