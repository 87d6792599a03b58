"""The run store: one folder per run, atomic records, and `collect` into one tidy DataFrame.

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

Every record is written to a temporary file in the same folder, flushed, fsynced and renamed
over the target, so a reader sees the old or the new record, never half of one; a kill -9 at any
point leaves no torn file. ``metrics.jsonl`` is append-only; a torn last line (a kill during an
append) is skipped by the reader. A record that cannot be parsed is reported by path and skipped.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any, Iterator

import pandas as pd
import yaml

from study import config as C

RESULTS_ENV = "LITEVAE_RESULTS"
STATES = ("pending", "submitted", "running", "requeued", "completed", "failed", "cancelled")
FINAL_STATES = ("completed", "failed", "cancelled")


class CorruptRecord(UserWarning):
    """A record that could not be read: reported by path, skipped."""


def results_root(root: str | Path | None = None) -> Path:
    """``root``, else $LITEVAE_RESULTS, else ./results."""
    return Path(root or os.environ.get(RESULTS_ENV) or "results")


def run_dir(root: Path, run_id: str) -> Path:
    return root / "runs" / run_id


def study_dir(root: Path, study: str) -> Path:
    return root / study


# --------------------------------------------------------------------------------------------
# atomic writes
# --------------------------------------------------------------------------------------------
def write_bytes_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_json_atomic(path: Path, obj: Any) -> None:
    write_bytes_atomic(path, (json.dumps(obj, indent=1, sort_keys=True, allow_nan=True) + "\n").encode())


def write_text_atomic(path: Path, text: str) -> None:
    write_bytes_atomic(path, text.encode())


def read_json(path: Path) -> Any | None:
    """The parsed record, None when absent; a corrupt file warns with its path and gives None."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    try:
        return json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        warnings.warn(f"corrupt record skipped: {path} ({e})", CorruptRecord, stacklevel=2)
        return None


def append_jsonl(path: Path, record: dict[str, Any]) -> None:
    """Append one line; a torn last line from a crash is skipped by ``read_jsonl``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    line = (json.dumps(record, sort_keys=True) + "\n").encode()
    with open(path, "ab") as f:
        f.write(line)
        f.flush()


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    try:
        lines = path.read_bytes().splitlines()
    except FileNotFoundError:
        return []
    out = []
    for i, line in enumerate(lines):
        try:
            out.append(json.loads(line))
        except (json.JSONDecodeError, UnicodeDecodeError):
            if i != len(lines) - 1:  # a torn last line is expected after a kill; others are not
                warnings.warn(f"corrupt line {i + 1} skipped: {path}", CorruptRecord, stacklevel=2)
    return out


def truncate_jsonl(path: Path, keep: int) -> None:
    """Keep the records whose ``step`` <= ``keep`` (on resume, drop what the checkpoint lost)."""
    records = [r for r in read_jsonl(path) if r.get("step", 0) <= keep]
    write_text_atomic(path, "".join(json.dumps(r, sort_keys=True) + "\n" for r in records))


# --------------------------------------------------------------------------------------------
# runs
# --------------------------------------------------------------------------------------------
def init_run(root: Path, cfg: C.ExperimentConfig) -> Path:
    """Create (or reuse) the run folder of ``cfg``: config.yaml and a pending status."""
    rid = C.run_id(cfg)
    folder = run_dir(root, rid)
    path = folder / "config.yaml"
    text = yaml.safe_dump({"run_id": rid, "config": C.to_dict(cfg)}, sort_keys=False)
    if not path.exists() or path.read_text() != text:
        # The id hashes identity fields only: refresh the rest (intervals, paths, eval protocol).
        write_text_atomic(path, text)
    if read_json(folder / "status.json") is None:
        write_json_atomic(folder / "status.json", {"state": "pending", "attempts": 0, "job_ids": [],
                                                   "run_id": rid, "updated": time.time()})
    return folder


def read_config(folder: Path) -> C.ExperimentConfig:
    doc = yaml.safe_load((folder / "config.yaml").read_text())
    return C.from_dict(doc["config"])


@contextlib.contextmanager
def _locked(folder: Path) -> Iterator[None]:
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
    with _locked(folder):
        status = read_status(folder)
        status.update(fields, updated=time.time())
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
def variant_record(v: Any) -> dict[str, Any]:
    return {"index": v.index, "name": v.name, "run_id": v.run_id, "seed": v.seed, "source": v.source,
            "axes": {k: list(x) if isinstance(x, tuple) else x for k, x in v.axes.items()},
            "aliases": list(v.aliases)}


def write_index(root: Path, study: str, variants: list[Any], **meta: Any) -> Path:
    path = study_dir(root, study) / "index.json"
    write_json_atomic(path, {"study": study, **meta, "variants": [variant_record(v) for v in variants]})
    return path


def read_index(root: Path, study: str) -> dict[str, Any] | None:
    return read_json(study_dir(root, study) / "index.json")


def collect(root: Path, study: str, variants: list[dict[str, Any]]) -> pd.DataFrame:
    """One row per (variant, seed, eval protocol): the varied axes as columns, every metric as a
    column, status and failure reason kept. A run without an evaluation still has its row."""
    rows: list[dict[str, Any]] = []
    for v in variants:
        folder = run_dir(root, v["run_id"])
        status = read_json(folder / "status.json") or {"state": "missing" if not folder.exists() else "pending"}
        base = {"study": study, "index": v["index"], "name": v["name"], "run_id": v["run_id"],
                "seed": v["seed"], **{k: _cell(x) for k, x in v["axes"].items()},
                "state": "completed" if (folder / "DONE").exists() else status.get("state"),
                "reason": status.get("error") or status.get("reason"),
                "attempts": status.get("attempts", 0), "step": status.get("step")}
        complexity = read_json(folder / "complexity.json") or {}
        for key in ("encoder_params", "decoder_params", "encoder_gmacs", "throughput_img_s", "peak_mem_mb"):
            if key in complexity:
                base[key] = complexity[key]
        evals = read_evals(folder)
        if not evals:
            rows.append(base | {"eval_id": None})
            continue
        for eval_id, record in evals.items():
            row = base | {"eval_id": eval_id}
            for metric, value in (record.get("metrics") or {}).items():
                row[metric] = value
            for metric, reason in (record.get("unavailable") or {}).items():
                row[f"{metric}_unavailable"] = reason
            rows.append(row)
    return pd.DataFrame(rows)


def _cell(value: Any) -> Any:
    return "-".join(map(str, value)) if isinstance(value, list) else value


def write_results(root: Path, study: str, frame: pd.DataFrame) -> Path:
    path = study_dir(root, study) / "results.csv"
    write_text_atomic(path, frame.to_csv(index=False))
    return path
