"""The job: what one submitit task runs for one variant, given only its run folder. ``RunJob`` is
the picklable callable every executor submits; called, it does what the run's kind does
(``study.kinds``) and survives preemption by checkpointing and requeueing. Details:
docs/slurm.md, "The job a task runs".
"""

from __future__ import annotations

import os
import socket
import threading
import time
import traceback
from pathlib import Path
from typing import Any

import submitit

from study import store
from study.data import listing

REQUEUE_WAIT_S = 600.0


class RunJob(submitit.helpers.Checkpointable):
    def __init__(self, folder: str | Path, run_id: str, max_requeue: int = 3, threads: int | None = None):
        self.folder = str(folder)
        self.run_id = run_id
        self.max_requeue = max_requeue
        self.threads = threads
        self._stop: threading.Event | None = None
        self._thread: threading.Thread | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {"folder": self.folder, "run_id": self.run_id, "max_requeue": self.max_requeue, "threads": self.threads}

    def __setstate__(self, state: dict[str, Any]) -> None:
        RunJob.__init__(self, **state)

    def __repr__(self) -> str:
        return f"RunJob({self.folder!r}, {self.run_id!r})"

    def __call__(self) -> dict[str, Any]:
        self._stop = threading.Event()
        outcome: dict[str, Any] = {}

        def work() -> None:
            try:
                outcome["value"] = run(Path(self.folder), stop=self._stop, threads=self.threads)
            except BaseException as e:  # handed to the main thread
                outcome["error"] = e

        self._thread = threading.Thread(target=work, name=f"train-{self.run_id}", daemon=True)
        self._thread.start()
        while self._thread.is_alive():
            self._thread.join(0.2)  # short waits: submitit's signal handler runs in between
        if "error" in outcome:
            raise outcome["error"]
        return outcome["value"]

    # submitit takes None as "do not requeue" (core/job_environment.py), though typed otherwise
    def checkpoint(  # type: ignore[override]
        self, *args: Any, **kwargs: Any
    ) -> submitit.helpers.DelayedSubmission | None:
        folder = Path(self.folder)
        if self._stop is not None and self._thread is not None:
            self._stop.set()
            self._thread.join(REQUEUE_WAIT_S)
        status = store.read_status(folder)
        if status.get("attempts", 0) > self.max_requeue:
            store.update_status(
                folder,
                state="failed",
                error=f"preempted after {status.get('attempts')} attempts (max_requeue "
                f"{self.max_requeue}); not requeued",
            )
            return None
        store.update_status(folder, state="requeued", reason=f"preempted at step {status.get('step')}")
        return submitit.helpers.DelayedSubmission(RunJob(self.folder, self.run_id, self.max_requeue, self.threads))


def _job_id() -> str | None:
    try:
        return str(submitit.JobEnvironment().job_id)
    except RuntimeError:  # not inside a submitit job (the debug executor)
        return os.environ.get("SLURM_JOB_ID")


def _setup_distributed() -> None:
    """DDP from submitit's environment when the job has several tasks."""
    try:
        env = submitit.JobEnvironment()
    except RuntimeError:
        return
    if env.num_tasks <= 1:
        return
    import torch
    import torch.distributed as dist

    submitit.helpers.TorchDistributedEnvironment().export(set_cuda_visible_devices=False)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")


def torch_threads(threads: int | None) -> int | None:
    """The torch thread count of a job: ``threads`` when given, else SLURM's CPUs per task,
    else None (torch's default)."""
    if threads:
        return threads
    cpus = os.environ.get("SLURM_CPUS_PER_TASK")
    return int(cpus) if cpus else None


def run(
    folder: Path, stop: threading.Event | None = None, progress: bool = True, threads: int | None = None
) -> dict[str, Any]:
    """Run one job through its run kind's body (``study.kinds``); every outcome is recorded in its
    status."""
    import torch

    from study.kinds.base import Job
    from study.kinds.registry import kind_of
    from study.trainer.context import Preempted, default_context
    from study.trainer.watch import Diverged

    if store.is_done(folder):
        return {"run_id": folder.name, "state": "completed", "skipped": True}
    cfg = store.read_config(folder)
    listing.use_cache(folder.parent.parent / ".cache" / "listings")  # <results>/.cache: shared by all runs
    n = torch_threads(threads)
    if n:
        torch.set_num_threads(n)
    _setup_distributed()
    ctx = default_context()
    if ctx.main:
        store.append_job_id(
            folder,
            _job_id(),
            new_attempt=True,
            state="running",
            host=socket.gethostname(),
            pid=os.getpid(),
            started=time.time(),
            heartbeat=time.time(),
            error=None,
            reason=None,
        )
    try:
        summary = kind_of(cfg).run(Job(cfg, folder, ctx, stop, progress))
        if ctx.main:
            store.mark_done(folder)
        return {"run_id": folder.name, "state": "completed", **summary}
    except Preempted:
        raise
    except BaseException as e:
        if ctx.main:  # a divergence (study/trainer/watch.py) is a state of its own, not a failure
            tail = "".join(traceback.format_exception(e)[-6:])
            state = "diverged" if isinstance(e, Diverged) else "failed"
            store.update_status(folder, state=state, error=f"{type(e).__name__}: {e}", traceback=tail)
        raise
