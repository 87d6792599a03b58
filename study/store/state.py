"""The one rule for a run's state: what `status`, `wait`, `launch`'s decisions, `collect` and the
report all say a run is, from its folder first and its job's scheduler second.

The states (``State``), the rule (``run_states``) and how SLURM accounting maps onto them are
listed in docs/architecture.md, "Run states".
"""

from __future__ import annotations

import enum
import os
import socket
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from study.store.files import read_json
from study.store.runs import is_done, read_status, update_status

__all__ = [
    "ACTIVE",
    "FINAL",
    "QUEUE_SNAPSHOT_TTL_S",
    "RunState",
    "SLURM_STATES",
    "State",
    "mark_cancelled",
    "pid_alive",
    "queued_slurm_jobs",
    "run_state",
    "run_states",
    "sacct_states",
    "slurm_end_state",
]

QUEUE_SNAPSHOT_TTL_S = 2.0  # how old a squeue listing may be when it says a job is still there
SCHEDULER_TIMEOUT_S = 30


class State(enum.StrEnum):
    """A run's state (the module docstring says what each means); equal to its name as a string."""

    MISSING = "missing"  # no run folder
    PENDING = "pending"  # a folder, no job yet
    SUBMITTED = "submitted"  # a job, not started
    RUNNING = "running"  # a live job runs the run's code
    REQUEUED = "requeued"  # checkpointed, waiting to start again
    COMPLETED = "completed"  # DONE written
    FAILED = "failed"  # raised, out of requeues, or died of itself: --retry-failed
    CANCELLED = "cancelled"  # somebody cancelled it: --retry-failed
    LOST = "lost"  # its job vanished without a word: a plain launch resubmits it
    DIVERGED = "diverged"  # training diverged and stopped: --retry-failed


ACTIVE = frozenset({State.SUBMITTED, State.RUNNING, State.REQUEUED})  # a job is on it
FINAL = frozenset({State.COMPLETED, State.FAILED, State.CANCELLED, State.LOST, State.DIVERGED})  # no job will change it
_RECORDED_ACTIVE = ("submitted", "running", "requeued", "completed")  # "completed" without DONE
_STANDS = ("failed", "cancelled", "diverged")  # rule 2: what the job said of itself

# sacct's State (first word) -> the run's state; None: still queued or running
SLURM_STATES: dict[str, State | None] = {
    **dict.fromkeys(
        (
            "PENDING",
            "RUNNING",
            "REQUEUED",
            "REQUEUE_FED",
            "REQUEUE_HOLD",
            "RESIZING",
            "SUSPENDED",
            "COMPLETING",
            "CONFIGURING",
            "STAGE_OUT",
            "SIGNALING",
            "RESV_DEL_HOLD",
            "SPECIAL_EXIT",
        ),
        None,
    ),
    "CANCELLED": State.CANCELLED,
    **dict.fromkeys(("FAILED", "OUT_OF_MEMORY", "TIMEOUT", "COMPLETED"), State.FAILED),
    **dict.fromkeys(("NODE_FAIL", "BOOT_FAIL", "PREEMPTED", "DEADLINE", "REVOKED", "LAUNCH_FAILED"), State.LOST),
}


@dataclass(frozen=True)
class RunState:
    """A run's state, why (an error, sacct's word, what was lost), its last job and the status
    record it was read from (empty for a missing run)."""

    state: State
    reason: str | None = None
    job_id: str | None = None
    record: dict[str, Any] = field(default_factory=dict)

    @property
    def attempts(self) -> int:
        return int(self.record.get("attempts", 0))

    @property
    def step(self) -> int | None:
        return self.record.get("step")


def run_state(folder: Path) -> RunState:
    return run_states([folder])[0]


def run_states(folders: Sequence[Path]) -> list[RunState]:
    """The state of each run folder (the rule of this module's docstring). SLURM is asked once
    for all of them: one squeue listing, one sacct call for the jobs that are gone."""
    known: list[RunState | None] = []
    records: list[dict[str, Any]] = []
    for folder in folders:
        state, record = _from_record(folder)
        known.append(state)
        records.append(record)
    asking = [i for i, s in enumerate(known) if s is None]
    slurm = [i for i in asking if records[i].get("executor") == "slurm"]
    verdicts = dict(zip(slurm, _ask_slurm([records[i] for i in slurm])))
    for i in asking:
        if i not in verdicts:
            verdicts[i] = _ask_local(records[i])
    states = [known[i] or _after_asking(folders[i], records[i], verdicts[i]) for i in range(len(folders))]
    return _after_needed(folders, states)


_WAITING = frozenset({State.SUBMITTED, State.CANCELLED, State.LOST})
_DEAD = frozenset({State.FAILED, State.CANCELLED, State.LOST, State.DIVERGED})


def _needed(record: dict[str, Any]) -> list[str]:
    """The run ids a run's record says it needs (``launch`` writes them; an older record: one id)."""
    needs = record.get("needs") or []
    return [needs] if isinstance(needs, str) else [str(n) for n in needs]


def _after_needed(folders: Sequence[Path], states: list[RunState]) -> list[RunState]:
    """Rule 5: a run that cannot start because a run it needs will never be done."""
    waiting = [
        i
        for i, s in enumerate(states)
        if _needed(s.record) and s.state in _WAITING and s.record.get("state") == "submitted"
    ]
    if not waiting:
        return states
    pairs = [(i, folders[i].parent / r) for i in waiting for r in _needed(states[i].record)]
    for (i, needed), needed_state in zip(pairs, run_states([f for _, f in pairs])):
        if needed_state.state in _DEAD and states[i].state is not State.FAILED:
            why = f"needed run {needed.name} {needed_state.state}: {needed_state.reason or 'no reason recorded'}"
            states[i] = RunState(State.FAILED, why, states[i].job_id, states[i].record)
    return states


def mark_cancelled(folder: Path, reason: str) -> None:
    """Record that somebody cancelled the run's job (``run_study.py cancel``): by rule 2 it stays
    cancelled, which a plain launch skips and ``--retry-failed`` resubmits."""
    update_status(folder, state=State.CANCELLED.value, reason=reason, error=None)


def _last_job(record: dict[str, Any]) -> str | None:
    ids = record.get("job_ids") or []
    return str(ids[-1]) if ids else None


def _from_record(folder: Path) -> tuple[RunState | None, dict[str, Any]]:
    """The state the folder alone settles (steps 1, 2 and 4), or None: ask the job's executor."""
    if not folder.is_dir():
        return RunState(State.MISSING), {}
    record = read_json(folder / "status.json") or {}
    job = _last_job(record)
    if is_done(folder):
        return RunState(State.COMPLETED, None, job, record), record
    recorded = record.get("state")
    if recorded in _STANDS:
        return RunState(State(recorded), record.get("error") or record.get("reason") or recorded, job, record), record
    if recorded in _RECORDED_ACTIVE:
        return None, record
    return RunState(State.PENDING, None, job, record), record


@dataclass(frozen=True)
class _Verdict:
    """What the executor says of a run's job: alive (True), gone (False, with the state its end
    makes of the run) or not known (None)."""

    alive: bool | None
    end: State = State.LOST
    detail: str = ""


def _after_asking(folder: Path, record: dict[str, Any], verdict: _Verdict) -> RunState:
    recorded = State.RUNNING if record["state"] == "completed" else State(record["state"])
    job = _last_job(record)
    if verdict.alive is not False:
        return RunState(recorded, record.get("reason") or verdict.detail or None, job, record)
    if is_done(folder):  # written while we asked
        return RunState(State.COMPLETED, None, job, read_status(folder))
    now = read_status(folder)
    if now.get("state") in _STANDS:
        return RunState(State(now["state"]), now.get("error") or now.get("reason") or now["state"], _last_job(now), now)
    end = State.LOST if recorded is State.REQUEUED and verdict.end is State.FAILED else verdict.end
    if end is State.LOST:
        return RunState(end, f"job {job or '?'} no longer queued or running ({verdict.detail})", job, record)
    reason = record.get("error") or verdict.detail
    if recorded is State.SUBMITTED and end is State.FAILED:
        reason += "; the job ended before the run started (see its log)"
    return RunState(end, reason, job, record)


# --------------------------------------------------------------------------------------------
# asking the executors
# --------------------------------------------------------------------------------------------
def pid_alive(pid: int) -> bool:
    """Whether a process of this id exists on this host (another user's counts)."""
    if pid <= 0:  # 0 and negative ids name process groups
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _ask_local(record: dict[str, Any]) -> _Verdict:
    """The launcher's process while the run is submitted, the job's once it runs (debug: the
    same process)."""
    if record["state"] == "submitted" or not record.get("pid"):
        who, pid, host = "launcher", record.get("launcher_pid"), record.get("launcher_host")
    else:
        who, pid, host = "job", record.get("pid"), record.get("host")
    if not pid:
        return _Verdict(None, detail="no process recorded")
    if host and host != socket.gethostname():
        return _Verdict(None, detail=f"its {who} runs on {host}; it cannot be asked from here")
    if pid_alive(int(pid)):
        return _Verdict(True)
    return _Verdict(False, State.LOST, f"{who} pid {pid} on {host or 'this host'} is gone")


def _ask_slurm(records: list[dict[str, Any]]) -> list[_Verdict]:
    ids = [_last_job(r) for r in records]
    queue = queued_slurm_jobs([j for j in ids if j]) if any(ids) else {}
    gone = [j for j in ids if j and queue is not None and j not in queue]
    accounting = sacct_states(gone) if gone else {}
    out = []
    for job in ids:
        if job is None:
            out.append(_Verdict(None, detail="no job id recorded"))
        elif queue is None:
            out.append(_Verdict(None, detail="squeue did not answer; state as recorded"))
        elif job in queue:
            out.append(_Verdict(True))
        elif accounting is None:
            out.append(_Verdict(False, State.LOST, "sacct did not answer"))
        elif job not in accounting:
            out.append(_Verdict(False, State.LOST, "no accounting record"))
        else:
            raw, detail = accounting[job]
            end = slurm_end_state(raw)
            out.append(
                _Verdict(None, detail=f"the queue no longer lists it; sacct still says {raw}")
                if end is None
                else _Verdict(False, end, detail)
            )
    return out


def slurm_end_state(sacct_state: str) -> State | None:
    """The run state a job's SLURM state makes (the module docstring's table); None while the
    job is queued or running."""
    word = sacct_state.split()[0].upper() if sacct_state.strip() else ""
    return SLURM_STATES.get(word, State.FAILED)


def _scheduler(cmd: list[str]) -> subprocess.CompletedProcess[str] | None:
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=SCHEDULER_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired):
        return None


def _squeue(*args: str) -> dict[str, str] | None:
    """{job or array task id: queue state} of the jobs squeue lists; None when it cannot answer."""
    out = _scheduler(["squeue", "-h", "-r", "-o", "%i %T", *args])
    if out is None:
        return None
    if out.returncode != 0:
        # every id asked for has left the controller's memory: none of them is queued
        return {} if "Invalid job id" in out.stderr else None
    listed = (line.split() for line in out.stdout.splitlines())
    return {parts[0]: parts[1] for parts in listed if len(parts) == 2 and slurm_end_state(parts[1]) is None}


_snapshot: tuple[float, dict[str, str]] = (float("-inf"), {})
_snapshot_lock = threading.Lock()


def queued_slurm_jobs(job_ids: list[str]) -> dict[str, str] | None:
    """{id: queue state} of the given job ids that SLURM has queued or running; None when squeue
    cannot answer. This user's queue is listed once per QUEUE_SNAPSHOT_TTL_S (deciding over a
    study of 500 runs asks squeue once, not 500 times); the ids it lacks (jobs newer than the
    listing, another user's in a shared results folder) are asked for by id, in one call."""
    global _snapshot
    with _snapshot_lock:
        now = time.monotonic()
        if now - _snapshot[0] > QUEUE_SNAPSHOT_TTL_S:
            mine = _squeue("--me")
            if mine is not None:
                _snapshot = (now, mine)
        snapshot = _snapshot[1] if now - _snapshot[0] <= QUEUE_SNAPSHOT_TTL_S else {}
    found = {j: snapshot[j] for j in job_ids if j in snapshot}
    rest = [j for j in dict.fromkeys(job_ids) if j not in found]
    if not rest:
        return found
    asked = _squeue("-j", ",".join(rest))
    return None if asked is None else found | {j: asked[j] for j in rest if j in asked}


def sacct_states(job_ids: list[str]) -> dict[str, tuple[str, str]] | None:
    """{id: (sacct State, "state (sacct; reason R, exit C)")} of the given jobs from SLURM's
    accounting, in one call; ids without a record are absent; None when sacct cannot answer."""
    out = _scheduler(
        ["sacct", "-n", "-X", "-P", "-j", ",".join(dict.fromkeys(job_ids)), "-o", "JobID,State,Reason,ExitCode"]
    )
    if out is None or out.returncode != 0:
        return None
    found = {}
    for line in out.stdout.splitlines():
        if not line.strip():
            continue
        job, state, reason, code = (line.split("|") + ["", "", "", ""])[:4]
        state = state.strip()
        found[job.strip()] = (state, f"{state.lower()} (sacct; reason {reason or 'None'}, exit {code})")
    return found
