"""Launching a study's variants through submitit: ``slurm`` (job arrays), ``local`` (a queue of at
most N jobs at once, each with its own GPUs) and ``debug`` (in process, for pdb), after the
preflight, under a study-level lock. Which runs are (re)submitted: docs/slurm.md, "The
launcher's rules".
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import os
import re
import shutil
import socket
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import submitit

from study import store
from study.data import listing
from study.launch import ordering, preflight
from study.launch.job import RunJob
from study.launch.ordering import Decision
from study.store.media import link_tensorboard
from study.studyfile.grid import Variant
from study.studyfile.parse import Resources, StudyFile, resource_problem
from study.studyfile.record import study_record

EXECUTORS = ("slurm", "local", "debug")
IO_THREADS = 16  # run records written at once: their fsyncs share the filesystem's journal commits


class LaunchError(RuntimeError):
    """A launch that cannot go ahead (bad resources, a launch already in progress)."""


class LaunchLocked(LaunchError):
    """Another launch of the same study is submitting right now."""


class PreflightFailed(LaunchError):
    """The checks before the launch found problems (study/launch/preflight.py): nothing was
    created or submitted."""

    def __init__(self, found: preflight.Preflight):
        self.found = found
        super().__init__(found.refusal())


@dataclass
class LaunchOptions:
    executor: str = "local"
    dry_run: bool = False
    retry_failed: bool = False
    max_parallel: int = 1
    resources: Resources = field(default_factory=Resources)
    only: frozenset[str] | None = None  # the run ids to launch (``--only``); None: every variant
    weights_said: bool = False  # which metric weights are not staged was said already (the demo's fetch)


@dataclass
class LaunchReport:
    study: str
    decisions: list[Decision]
    job_ids: dict[str, str] = field(default_factory=dict)  # run id -> job id
    arrays: int = 0
    failed: dict[str, str] = field(default_factory=dict)  # run id -> reason (local/debug)
    preflight: preflight.Preflight | None = None  # what the checks before the launch found

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
def _each(fn: Any, items: list[Any]) -> list[Any]:
    """fn over items in threads (file writes of many run folders)."""
    if len(items) < 2:
        return [fn(x) for x in items]
    with ThreadPoolExecutor(min(IO_THREADS, len(items))) as pool:
        return list(pool.map(fn, items))


def decide(
    root: Path, variants: list[Variant], retry_failed: bool, only: frozenset[str] | None = None
) -> list[Decision]:
    """Submit or skip each variant, by its run's state (one squeue call for all of them); a
    variant outside ``only`` (run ids; None: all) is skipped."""
    runs = store.run_states([store.run_dir(root, v.run_id) for v in variants])
    decisions = []
    for v, run in zip(variants, runs):
        if only is not None and v.run_id not in only:
            decisions.append(Decision(v, "skip", "not in --only"))
        elif run.state is store.State.COMPLETED:
            decisions.append(Decision(v, "skip", "completed"))
        elif run.state in store.ACTIVE:
            decisions.append(Decision(v, "skip", f"{run.state} (job {run.job_id or '?'})"))
        elif run.state is store.State.LOST:
            decisions.append(Decision(v, "submit", f"lost: {run.reason}"))
        elif run.state in (store.State.FAILED, store.State.CANCELLED, store.State.DIVERGED):
            reason = run.reason or run.state
            decisions.append(
                Decision(v, "submit", f"retry: {reason}")
                if retry_failed
                else Decision(v, "skip", f"{run.state}: {reason} (use --retry-failed)")
            )
        else:
            decisions.append(Decision(v, "submit", "new"))
    return decisions


def wait(
    root: Path, variants: list[Variant], poll_s: float = 5.0, progress: bool = True, timeout_s: float | None = None
) -> dict[str, store.State]:
    """Wait until every run is completed, failed, cancelled or lost; a bar counts them. Returns
    the final state of each run id."""
    from tqdm import tqdm

    start = time.time()
    bar = tqdm(total=len(variants), desc="runs finished", disable=not progress, dynamic_ncols=True)
    folders = [store.run_dir(root, v.run_id) for v in variants]
    while True:
        states = {v.run_id: run.state for v, run in zip(variants, store.run_states(folders))}
        done = sum(s in store.FINAL for s in states.values())
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
            raise LaunchLocked(
                f"another launch of study {study!r} is submitting ({holder}); "
                f"wait for it to finish, then launch again: runs it submitted are skipped"
            ) from None
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
    params: dict[str, Any] = {
        "timeout_min": r.timeout_min,
        "nodes": r.nodes,
        "tasks_per_node": tasks,
        "cpus_per_task": r.cpus_per_gpu,
        "mem_gb": r.mem_gb,
        "slurm_array_parallelism": r.array_parallelism,
    }
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


def launch(
    spec: StudyFile,
    variants: list[Variant],
    root: Path,
    opts: LaunchOptions,
    log: Any = print,
    record: dict[str, Any] | None = None,
) -> LaunchReport:
    """Submit the variants not yet done; ``record``: the study-level fields of the index
    (``study.studyfile.record.study_record``; None: the spec's, without profile or --set)."""
    if opts.executor not in EXECUTORS:
        raise LaunchError(f"--executor: got {opts.executor!r}; allowed: {', '.join(EXECUTORS)}")
    decisions = decide(root, variants, opts.retry_failed, opts.only)
    todo = [d.variant for d in decisions if d.action == "submit"]
    checked = preflight.check(spec.study, todo, opts.executor, opts.resources)
    if opts.dry_run:  # reads only: no lock file, no run folder
        return LaunchReport(spec.study, decisions, preflight=checked)
    if not checked.ok:  # before the lock: a refused launch creates nothing
        raise PreflightFailed(checked)
    for line in checked.lines(opts.weights_said):
        log(line)
    with study_lock(root, spec.study):
        decisions = ordering.hold_for_needed(root, decide(root, variants, opts.retry_failed, opts.only), opts.executor)
        report = LaunchReport(spec.study, decisions, preflight=checked)
        todo = report.submitted
        if not todo:
            return report
        listing.persist(root / ".cache" / "listings")  # the file lists the checks read: shared by the jobs
        index_before = _snapshot(store.index_path(root, spec.study, (record or {}).get("profile")))
        store.write_index(
            root, spec.study, variants, **(record if record is not None else study_record(spec, variants))
        )
        new = [v for v in todo if not store.run_dir(root, v.run_id).exists()]
        folders = dict(zip([v.run_id for v in todo], _each(lambda v: store.init_run(root, v.config, v.run_id), todo)))
        link_tensorboard(root, store.study_dir(root, spec.study), [store.variant_record(v) for v in variants])
        logs = store.study_dir(root, spec.study) / "logs"
        parallel, threads = _local_share(opts, len(todo)) if opts.executor == "local" else (1, None)
        jobs = [RunJob(folders[v.run_id], v.run_id, opts.resources.max_requeue, threads) for v in todo]
        _each(
            lambda v: store.update_status(folders[v.run_id], needs=list(ordering.needs_of(v))),
            ordering.waiting_runs(todo),
        )
        if opts.executor == "slurm":
            try:
                _submit_all_slurm(report, root, todo, jobs, folders, logs, opts.resources, log)
            except Exception as e:  # sbatch refused or absent: the runs it did not take leave no trace
                _roll_back(root, [v for v in new if v.run_id not in report.job_ids], index_before, bool(report.job_ids))
                raise LaunchError(_submission_error(e, report)) from e
            return report
        # marked while the lock is held: a second launch that takes the lock next skips them
        host = socket.gethostname()
        _each(
            lambda v: store.update_status(
                folders[v.run_id],
                state="submitted",
                executor=opts.executor,
                launcher_pid=os.getpid(),
                launcher_host=host,
                error=None,
                reason=None,
            ),
            todo,
        )
    # local and debug run outside the lock: their runs are marked submitted by a live launcher;
    # the autoencoders first, then the diffusion runs whose autoencoder is done
    later = {v.run_id for v in ordering.waiting_runs(todo)}
    before = [(v, job) for v, job in zip(todo, jobs) if v.run_id not in later]
    _run_here(report, [v for v, _ in before], [job for _, job in before], folders, logs, opts, parallel, log)
    ready = [
        (v, job)
        for v, job in zip(todo, jobs)
        if v.run_id in later and ordering.needed_ready(root, v, report.failed, log)
    ]
    _run_here(report, [v for v, _ in ready], [job for _, job in ready], folders, logs, opts, parallel, log)
    return report


def _submit_all_slurm(
    report: LaunchReport,
    root: Path,
    todo: list[Variant],
    jobs: list[RunJob],
    folders: dict[str, Path],
    logs: Path,
    r: Resources,
    log: Any,
) -> None:
    """The runs that need none first, then each group that waits for others (``afterok``)."""
    first = [i for i, v in enumerate(todo) if not ordering.needs_of(v)]
    _submit_slurm(report, [todo[i] for i in first], [jobs[i] for i in first], folders, logs, r, log)
    for needed, idx in ordering.dependency_groups(root, todo, report.job_ids).items():
        waiting = dataclasses.replace(r, sbatch=r.sbatch + ordering.afterok(needed))
        _submit_slurm(report, [todo[i] for i in idx], [jobs[i] for i in idx], folders, logs, waiting, log)


def _snapshot(path: Path) -> tuple[Path, bytes | None]:
    return path, path.read_bytes() if path.exists() else None


def _roll_back(root: Path, created: list[Variant], index: tuple[Path, bytes | None], some_submitted: bool) -> None:
    """Remove the run folders this launch created for runs that were not submitted, and put the
    index back as it was when nothing was submitted."""
    for v in created:
        shutil.rmtree(store.run_dir(root, v.run_id), ignore_errors=True)
    path, before = index
    if some_submitted:
        return
    if before is None:
        path.unlink(missing_ok=True)
    else:
        store.write_bytes_atomic(path, before)


def _submission_error(e: Exception, report: LaunchReport) -> str:
    first = (str(e).strip().splitlines() or [type(e).__name__])[-1]
    done = f"; {len(report.job_ids)} run(s) were submitted before it" if report.job_ids else "; nothing was submitted"
    return f"--executor slurm: the submission failed ({type(e).__name__}: {first}){done}, no other run folder was kept"


def _local_share(opts: LaunchOptions, runs: int | None = None) -> tuple[int, int]:
    """(jobs at once, torch threads of each) for the local executor: at most --max-parallel,
    ``runs`` (the runs to start) and as many as the GPUs allow; the cores split between them
    (oversubscribed cores make torch's thread pools spin against each other)."""
    import torch

    parallel = max(1, min(opts.max_parallel, runs or opts.max_parallel))
    visible = torch.cuda.device_count()
    if opts.resources.gpus and visible:
        parallel = min(parallel, max(1, visible // opts.resources.gpus))
    return parallel, max(1, (os.cpu_count() or 1) // parallel)


def _submit_slurm(
    report: LaunchReport,
    todo: list[Variant],
    jobs: list[RunJob],
    folders: dict[str, Path],
    logs: Path,
    r: Resources,
    log: Any,
) -> None:
    if not todo:
        return
    ex = slurm_executor(logs, r)
    size = max_array_size()
    for start in range(0, len(todo), size):
        chunk = list(range(start, min(start + size, len(todo))))
        with ex.batch():
            submitted = [ex.submit(jobs[i]) for i in chunk]
        report.arrays += 1

        def record(item: tuple[int, Any]) -> None:
            i, job = item
            store.append_job_id(
                folders[todo[i].run_id],
                str(job.job_id),
                state="submitted",
                executor="slurm",
                log=str(job.paths.stderr),
                error=None,
                reason=None,
            )

        _each(record, list(zip(chunk, submitted)))
        for i, job in zip(chunk, submitted):
            report.job_ids[todo[i].run_id] = str(job.job_id)
    log(f"submitted {len(todo)} run(s) in {report.arrays} array(s) of at most {size}")


def _run_here(
    report: LaunchReport,
    todo: list[Variant],
    jobs: list[RunJob],
    folders: dict[str, Path],
    logs: Path,
    opts: LaunchOptions,
    parallel: int,
    log: Any,
) -> None:
    if opts.executor == "debug":
        debug = submitit.AutoExecutor(folder=logs / "debug", cluster="debug")
        for v, job in zip(todo, jobs):
            log(f"[{v.index}] {v.name} ({v.run_id})")
            try:
                debug.submit(job).result()
            except Exception as e:  # a failed variant never stops the others
                report.failed[v.run_id] = f"{type(e).__name__}: {e}"
                log(f"  failed: {report.failed[v.run_id]}")
        return
    # LocalExecutor itself: AutoExecutor refuses its `visible_gpus` parameter
    ex = submitit.LocalExecutor(folder=logs / "%j")
    gpus = opts.resources.gpus
    import torch

    visible = list(range(torch.cuda.device_count()))
    pending = list(zip(todo, jobs))
    running: list[tuple[Variant, Any, list[int]]] = []
    free = list(visible)
    while pending or running:
        while pending and len(running) < parallel:
            v, job = pending.pop(0)
            mine = [free.pop(0) for _ in range(min(gpus, len(free)))] if visible else []
            ex.update_parameters(
                timeout_min=opts.resources.timeout_min,
                gpus_per_node=len(mine),
                tasks_per_node=1,
                visible_gpus=tuple(mine),
            )
            handle = ex.submit(job)
            store.append_job_id(folders[v.run_id], str(handle.job_id), log=str(handle.paths.stderr))
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
                    report.failed[v.run_id] = (
                        f"{type(e).__name__}: {str(e).strip().splitlines()[-1] if str(e).strip() else e}"
                    )
                    log(f"[{v.index}] {v.name} failed: {report.failed[v.run_id]}")
