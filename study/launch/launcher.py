"""Launching a study's variants through submitit: ``slurm`` (job arrays), ``local`` (a queue of
at most N jobs at once, each with its own GPUs) and ``debug`` (in process, for pdb).

Rules: completed runs are skipped; runs whose job is still queued or running are skipped; failed
or cancelled runs are resubmitted only with ``retry_failed``; ``dry_run`` submits nothing. A
study-level lock (``results/<study>/.launch.lock``) makes a second launch of the same study fail
with a clear message while the first is submitting, so no run is submitted twice. A variant that
fails never stops the others. ``slurm`` returns once the arrays are submitted; ``local`` and
``debug`` return when their jobs have finished.
"""
from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import os
import re
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import submitit

from study import store
from study.spec.grid import Variant
from study.launch.job import THREADS_ENV, RunJob
from study.spec.studyfile import Resources, StudySpec, resource_problem

EXECUTORS = ("slurm", "local", "debug")
ACTIVE = ("submitted", "running", "requeued")
QUEUE_SNAPSHOT_TTL_S = 2.0  # how old a squeue listing may be when it says a job is still there
IO_THREADS = 16  # run records written at once: their fsyncs share the filesystem's journal commits


class LaunchError(RuntimeError):
    """A launch that cannot go ahead (bad resources, a launch already in progress)."""


class LaunchLocked(LaunchError):
    """Another launch of the same study is submitting right now."""


@dataclass
class LaunchOptions:
    executor: str = "local"
    dry_run: bool = False
    retry_failed: bool = False
    max_parallel: int = 1
    resources: Resources = field(default_factory=Resources)


@dataclass
class Decision:
    variant: Variant
    action: str   # "submit", "skip"
    why: str


@dataclass
class LaunchReport:
    study: str
    decisions: list[Decision]
    job_ids: dict[str, str] = field(default_factory=dict)   # run id -> job id
    arrays: int = 0
    failed: dict[str, str] = field(default_factory=dict)    # run id -> reason (local/debug)

    @property
    def submitted(self) -> list[Variant]:
        return [d.variant for d in self.decisions if d.action == "submit"]


def merge_resources(base: Resources, **overrides: Any) -> Resources:
    """The study's resources with command-line overrides (None = keep); validated."""
    changes = {k: v for k, v in overrides.items() if v is not None}
    r = dataclasses.replace(base, **changes)
    problem = resource_problem(r)
    if problem:
        key, value, allowed = problem
        raise LaunchError(f"{key}: got {value!r}; allowed: {allowed}")
    return r


# --------------------------------------------------------------------------------------------
# what to submit
# --------------------------------------------------------------------------------------------
def alive_slurm_jobs(job_ids: list[str]) -> set[str]:
    """The given job ids that SLURM still has queued or running."""
    if not job_ids:
        return set()
    try:
        out = subprocess.run(["squeue", "-h", "-o", "%i", "-j", ",".join(job_ids)], capture_output=True,
                             text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return set()
    alive = set()
    for line in out.stdout.split():
        alive.add(line.split("_")[0] if "_[" in line else line)
        alive.add(line)
    return alive


_queue_snapshot: tuple[float, frozenset[str]] = (float("-inf"), frozenset())


def queued_slurm_ids() -> frozenset[str]:
    """Every job id and array task id (``squeue -r``) of this user that SLURM has queued or
    running, from one squeue call at most QUEUE_SNAPSHOT_TTL_S old: deciding over (or waiting
    on) a study of 500 runs asks squeue once, not 500 times."""
    global _queue_snapshot
    now = time.monotonic()
    if now - _queue_snapshot[0] > QUEUE_SNAPSHOT_TTL_S:
        try:
            out = subprocess.run(["squeue", "-h", "-r", "--me", "-o", "%i"], capture_output=True, text=True,
                                 timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            return frozenset()
        if out.returncode != 0:
            return frozenset()
        _queue_snapshot = (now, frozenset(out.stdout.split()))
    return _queue_snapshot[1]


def _each(fn: Any, items: list[Any]) -> list[Any]:
    """fn over items in threads (file writes of many run folders)."""
    if len(items) < 2:
        return [fn(x) for x in items]
    with ThreadPoolExecutor(min(IO_THREADS, len(items))) as pool:
        return list(pool.map(fn, items))


def decide(root: Path, variants: list[Variant], retry_failed: bool) -> list[Decision]:
    decisions = []
    for v in variants:
        folder = store.run_dir(root, v.run_id)
        status = effective_status(folder)
        state = status.get("state", "pending")
        if state == "completed":
            decisions.append(Decision(v, "skip", "completed"))
        elif state in ACTIVE:
            decisions.append(Decision(v, "skip", f"{state} (job {(status.get('job_ids') or ['?'])[-1]})"))
        elif state in ("failed", "cancelled"):
            reason = status.get("error") or status.get("reason") or state
            decisions.append(Decision(v, "submit", f"retry: {reason}") if retry_failed
                             else Decision(v, "skip", f"{state}: {reason} (use --retry-failed)"))
        else:
            decisions.append(Decision(v, "submit", "new"))
    return decisions


def _still_active(status: dict[str, Any]) -> bool:
    """Whether the run's last job may still be running (a lost job counts as failed)."""
    if status.get("executor") == "slurm":
        ids = [str(j) for j in status.get("job_ids") or []][-1:]
        if not ids:
            return True
        # the snapshot may predate the job: only its "still there" is taken without asking again
        return ids[0] in queued_slurm_ids() or bool(alive_slurm_jobs(ids))
    pid = status.get("launcher_pid") or status.get("pid")
    if pid:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, 0)
            return True
        return False
    return True


def sacct_state(job_id: str) -> tuple[str, str] | None:
    """(state, reason) of a SLURM job from accounting, e.g. ("CANCELLED", "cancelled by 0")."""
    try:
        out = subprocess.run(["sacct", "-n", "-X", "-P", "-j", str(job_id), "-o", "State,Reason,ExitCode"],
                             capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    lines = [l for l in out.splitlines() if l.strip()]
    if not lines:
        return None
    state, reason, code = (lines[-1].split("|") + ["", "", ""])[:3]
    return state.strip(), f"{state.strip().lower()} (sacct; reason {reason or 'None'}, exit {code})"


def effective_status(folder: Path) -> dict[str, Any]:
    """The run's status from its folder first; for a run whose job is gone without saying so
    (cancelled, killed, node failure), SLURM accounting's word second."""
    status = store.read_status(folder)
    if store.is_done(folder):
        return status | {"state": "completed"}
    if status.get("state") in ACTIVE and not _still_active(status):
        ids = [str(j) for j in status.get("job_ids") or []]
        found = sacct_state(ids[-1]) if ids and status.get("executor") == "slurm" else None
        if found:
            state, reason = found
            if state.startswith("CANCELLED"):
                return status | {"state": "cancelled", "error": reason}
            if not state.startswith(("PENDING", "RUNNING", "REQUEUED", "COMPLETING", "CONFIGURING")):
                return status | {"state": "failed", "error": status.get("error") or reason}
            return status
        return status | {"state": "failed", "error": status.get("error") or "job lost: no longer running"}
    return status


def wait(root: Path, variants: list[Variant], poll_s: float = 5.0, progress: bool = True,
         timeout_s: float | None = None) -> dict[str, str]:
    """Wait until every run is completed, failed or cancelled; a bar counts them. Returns the
    final state of each run id."""
    from tqdm import tqdm

    start = time.time()
    bar = tqdm(total=len(variants), desc="runs finished", disable=not progress, dynamic_ncols=True)
    while True:
        states = {v.run_id: effective_status(store.run_dir(root, v.run_id)).get("state", "pending")
                  for v in variants}
        done = sum(s in store.FINAL_STATES for s in states.values())
        bar.n = done
        counts: dict[str, int] = {}
        for s in states.values():
            counts[s] = counts.get(s, 0) + 1
        bar.set_postfix(counts, refresh=True)
        if done == len(variants) or (timeout_s is not None and time.time() - start > timeout_s):
            bar.close()
            return states
        time.sleep(poll_s)


@contextlib.contextmanager
def study_lock(root: Path, study: str) -> Iterator[None]:
    folder = store.study_dir(root, study)
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".launch.lock", "a+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            holder = f.read().strip() or "another process"
            raise LaunchLocked(f"another launch of study {study!r} is submitting ({holder}); "
                               f"wait for it to finish, then launch again: runs it submitted are skipped") from None
        f.seek(0)
        f.truncate()
        f.write(f"pid {os.getpid()} since {time.strftime('%H:%M:%S')}")
        f.flush()
        try:
            yield
        finally:
            f.seek(0)
            f.truncate()
            fcntl.flock(f, fcntl.LOCK_UN)


# --------------------------------------------------------------------------------------------
# executors
# --------------------------------------------------------------------------------------------
def max_array_size() -> int:
    """The cluster's MaxArraySize (scontrol show config); 1001 is SLURM's default."""
    try:
        out = subprocess.run(["scontrol", "show", "config"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.TimeoutExpired):
        return 1001
    m = re.search(r"^MaxArraySize\s*=\s*(\d+)", out, re.M)
    return int(m.group(1)) if m else 1001


def slurm_executor(folder: Path, r: Resources) -> submitit.AutoExecutor:
    ex = submitit.AutoExecutor(folder=folder / "%j", cluster="slurm")
    tasks = max(r.gpus, 1)  # one task per GPU: DDP from submitit's distributed environment
    params: dict[str, Any] = {"timeout_min": r.timeout_min, "nodes": r.nodes, "tasks_per_node": tasks,
                              "cpus_per_task": r.cpus_per_gpu, "mem_gb": r.mem_gb,
                              "slurm_array_parallelism": r.array_parallelism}
    if r.gpus:
        params["gpus_per_node"] = r.gpus
    for key in ("partition", "account", "qos", "constraint"):
        if getattr(r, key):
            params[f"slurm_{key}"] = getattr(r, key)
    extra = {}
    for arg in r.sbatch:
        key, _, value = arg[2:].partition("=")
        extra[key.replace("-", "_")] = value or True
    if extra:
        params["slurm_additional_parameters"] = extra
    ex.update_parameters(**params)
    return ex


def launch(spec: StudySpec, variants: list[Variant], root: Path, opts: LaunchOptions,
           log: Any = print) -> LaunchReport:
    if opts.executor not in EXECUTORS:
        raise LaunchError(f"--executor: got {opts.executor!r}; allowed: {', '.join(EXECUTORS)}")
    if opts.dry_run:  # reads only: no lock file, no run folder
        return LaunchReport(spec.study, decide(root, variants, opts.retry_failed))
    with study_lock(root, spec.study):
        decisions = decide(root, variants, opts.retry_failed)
        report = LaunchReport(spec.study, decisions)
        todo = report.submitted
        if not todo:
            return report
        store.write_index(root, spec.study, variants, spec=str(spec.path))
        folders = dict(zip([v.run_id for v in todo], _each(lambda v: store.init_run(root, v.config), todo)))
        logs = store.study_dir(root, spec.study) / "logs"
        jobs = [RunJob(folders[v.run_id], v.run_id, opts.resources.max_requeue) for v in todo]
        if opts.executor == "slurm":
            _submit_slurm(report, todo, jobs, folders, logs, opts.resources, log)
            return report
        # marked while the lock is held: a second launch that takes the lock next skips them
        _each(lambda v: store.update_status(folders[v.run_id], state="submitted", executor=opts.executor,
                                            launcher_pid=os.getpid(), error=None, reason=None), todo)
    # local and debug run outside the lock: their runs are marked submitted by a live launcher
    _run_here(report, todo, jobs, folders, logs, opts, log)
    return report


def _submit_slurm(report: LaunchReport, todo: list[Variant], jobs: list[RunJob], folders: dict[str, Path],
                  logs: Path, r: Resources, log: Any) -> None:
    ex = slurm_executor(logs, r)
    size = max_array_size()
    for start in range(0, len(todo), size):
        chunk = list(range(start, min(start + size, len(todo))))
        with ex.batch():
            submitted = [ex.submit(jobs[i]) for i in chunk]
        report.arrays += 1

        def record(item: tuple[int, Any]) -> None:
            i, job = item
            folder = folders[todo[i].run_id]
            status = store.read_status(folder)
            store.update_status(folder, state="submitted", executor="slurm",
                                job_ids=list(status.get("job_ids") or []) + [str(job.job_id)],
                                log=str(job.paths.stderr), error=None, reason=None)

        _each(record, list(zip(chunk, submitted)))
        for i, job in zip(chunk, submitted):
            report.job_ids[todo[i].run_id] = str(job.job_id)
    log(f"submitted {len(todo)} run(s) in {report.arrays} array(s) of at most {size}")


def _run_here(report: LaunchReport, todo: list[Variant], jobs: list[RunJob], folders: dict[str, Path],
              logs: Path, opts: LaunchOptions, log: Any) -> None:
    if opts.executor == "debug":
        ex = submitit.AutoExecutor(folder=logs / "debug", cluster="debug")
        for v, job in zip(todo, jobs):
            log(f"[{v.index}] {v.name} ({v.run_id})")
            try:
                ex.submit(job).result()
            except Exception as e:  # a failed variant never stops the others
                report.failed[v.run_id] = f"{type(e).__name__}: {e}"
                log(f"  failed: {report.failed[v.run_id]}")
        return
    # LocalExecutor itself: AutoExecutor refuses its `visible_gpus` parameter
    ex = submitit.LocalExecutor(folder=logs / "%j")
    gpus = opts.resources.gpus
    import torch
    visible = list(range(torch.cuda.device_count()))
    parallel = max(1, opts.max_parallel)
    if gpus and visible:
        parallel = min(parallel, max(1, len(visible) // gpus))
    # Oversubscribed cores make torch's thread pools spin against each other: split them.
    os.environ[THREADS_ENV] = str(max(1, (os.cpu_count() or 1) // parallel))
    pending = list(zip(todo, jobs))
    running: list[tuple[Variant, Any, list[int]]] = []
    free = list(visible)
    while pending or running:
        while pending and len(running) < parallel:
            v, job = pending.pop(0)
            mine = [free.pop(0) for _ in range(min(gpus, len(free)))] if visible else []
            ex.update_parameters(timeout_min=opts.resources.timeout_min, gpus_per_node=len(mine),
                                 tasks_per_node=1, visible_gpus=tuple(mine))
            handle = ex.submit(job)
            previous = list(store.read_status(folders[v.run_id]).get("job_ids") or [])
            store.update_status(folders[v.run_id], job_ids=previous + [str(handle.job_id)],
                                log=str(handle.paths.stderr))
            report.job_ids[v.run_id] = str(handle.job_id)
            running.append((v, handle, mine))
            log(f"[{v.index}] {v.name} ({v.run_id}) started as job {handle.job_id}")
        time.sleep(0.5)
        for item in list(running):
            v, handle, mine = item
            if handle.done():
                running.remove(item)
                free.extend(mine)
                try:
                    handle.result()
                    log(f"[{v.index}] {v.name} done")
                except Exception as e:
                    report.failed[v.run_id] = f"{type(e).__name__}: {str(e).strip().splitlines()[-1] if str(e).strip() else e}"
                    log(f"[{v.index}] {v.name} failed: {report.failed[v.run_id]}")
