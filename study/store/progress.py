"""How a run is going: its progress record and one status row per run for `status`.

The trainer's watch (study/trainer/watch.py) writes ``<run>/progress.json`` atomically at each log
step: ``step``, ``total_steps``, ``images_per_s`` (since the last log step), ``eta_s`` (the steps
left at this attempt's mean pace so far, validation and evaluation included), ``loss`` (the last
logged training loss), ``val`` (the last validation: step, PSNR, resolution), ``best`` (the best
protocol figure during training per weights and metric, with its step), ``divergence``, ``host``
and ``time``. ``status_rows`` joins it with the run's state (``study/store/state.py``'s rule) and
status record; a running run whose last record is older than ``stall_after_s`` is ``stalled``.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Sequence

from study.store.files import read_json, write_json_atomic
from study.store.state import State, run_states

__all__ = ["PROGRESS", "STALL_AFTER_S", "read_progress", "status_rows", "write_progress"]

PROGRESS = "progress.json"
# Ours: a log line every 50 steps comes every few minutes even on a slow GPU; half an hour
# without one, while the job is running, is a hung job (a dead data mount, a stuck collective).
STALL_AFTER_S = 1800.0


def write_progress(folder: Path, record: dict[str, Any]) -> None:
    write_json_atomic(folder / PROGRESS, record)


def read_progress(folder: Path) -> dict[str, Any] | None:
    """The run's last progress record (None: it has not logged yet)."""
    return read_json(folder / PROGRESS)


def status_rows(
    folders: Sequence[Path], *, now: float | None = None, stall_after_s: float = STALL_AFTER_S
) -> list[dict[str, Any]]:
    """One row per run folder: ``run_id``, ``state``, ``reason``, ``job_id``, ``attempts``,
    ``requeues`` (attempts after the first), ``step``, ``total_steps``, ``images_per_s``,
    ``eta_s``, ``loss``, ``val_psnr``, ``val_step``, ``best``, ``diverged_step``,
    ``divergence``, ``host``, ``log_age_s`` (seconds since the last progress record or
    heartbeat), ``stalled`` and ``log`` (the job's log file). ``eta_s`` is None unless running."""
    now = time.time() if now is None else now
    rows = []
    for folder, run in zip(folders, run_states(folders)):
        status, progress = run.record, read_progress(folder) or {}
        last = progress.get("time") or status.get("heartbeat")
        age = now - float(last) if last else None
        val = progress.get("val") or {}
        divergence = status.get("divergence")
        running = run.state is State.RUNNING
        rows.append(
            {
                "run_id": folder.name,
                "state": run.state.value,
                "reason": run.reason,
                "job_id": run.job_id,
                "attempts": run.attempts,
                "requeues": max(run.attempts - 1, 0),
                "step": run.step if run.step is not None else progress.get("step"),
                "total_steps": progress.get("total_steps", status.get("total_steps")),
                "images_per_s": progress.get("images_per_s"),
                "eta_s": progress.get("eta_s") if running else None,
                "loss": progress.get("loss", status.get("loss")),
                "val_psnr": val.get("psnr", status.get("psnr")),
                "val_step": val.get("step"),
                "best": status.get("best") or progress.get("best") or {},
                "diverged_step": divergence.get("step") if divergence else None,
                "divergence": divergence,
                "host": progress.get("host") or status.get("host"),
                "log_age_s": age,
                "stalled": bool(running and age is not None and age > stall_after_s),
                "log": status.get("log"),
            }
        )
    return rows
