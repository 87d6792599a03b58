"""The order of a study's runs: a run that needs others (a diffusion run needs its frozen
autoencoder, Tables 7, 13; its run kind says which: ``study.kinds``) starts after they are done.
On SLURM its job depends on theirs (``afterok``); locally it runs after them; a run whose needed
run failed, was cancelled or is running elsewhere is not submitted, and says why."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from study import store
from study.kinds.registry import needs
from study.studyfile.grid import Variant


@dataclass
class Decision:
    """What ``launch`` does with one variant: "submit" or "skip", and why."""

    variant: Variant
    action: str
    why: str


def needs_of(v: Variant) -> tuple[str, ...]:
    """The run ids ``v``'s run needs completed first."""
    return needs(v.config)


def waiting_runs(variants: list[Variant]) -> list[Variant]:
    """The variants whose runs need others first."""
    return [v for v in variants if needs_of(v)]


def hold_for_needed(root: Path, decisions: list[Decision], executor: str) -> list[Decision]:
    """A run that needs others is submitted only where each is done, submitted with it, or (on
    SLURM, which orders them) queued or running; otherwise it is skipped, saying why."""
    submitting = {d.variant.run_id for d in decisions if d.action == "submit"}
    held = [d for d in decisions if d.action == "submit" and needs_of(d.variant)]
    needed = list(dict.fromkeys(r for d in held for r in needs_of(d.variant)))
    states = dict(zip(needed, store.run_states([store.run_dir(root, r) for r in needed])))
    out = {id(d): d for d in decisions}
    for d in held:
        for r in needs_of(d.variant):
            run = states[r]
            if r in submitting or run.state is store.State.COMPLETED:
                continue
            if run.state in store.ACTIVE and executor == "slurm":
                continue
            why = f"needed run {r} is {run.state}" + (f": {run.reason}" if run.reason else "")
            if run.state in (store.State.FAILED, store.State.CANCELLED, store.State.DIVERGED):
                why += " (use --retry-failed to run both again)"
            elif run.state in store.ACTIVE:
                why += " (launch again once it is done)"
            out[id(d)] = Decision(d.variant, "skip", why)
            break
    return [out[id(d)] for d in decisions]


def needed_ready(root: Path, v: Variant, failed: dict[str, str], log: Any) -> bool:
    """Locally, after the runs it needs ran: whether each is done; if not, ``v``'s run is failed
    with the needed run's reason (never left waiting)."""
    for r in needs_of(v):
        run = store.run_state(store.run_dir(root, r))
        if run.state is store.State.COMPLETED:
            continue
        why = f"needed run {r} {run.state}: {run.reason or 'no reason recorded'}"
        store.update_status(store.run_dir(root, v.run_id), state="failed", error=why)
        failed[v.run_id] = why
        log(f"[{v.index}] {v.name} not started: {why}")
        return False
    return True


def dependency_groups(root: Path, todo: list[Variant], job_ids: dict[str, str]) -> dict[tuple[str, ...], list[int]]:
    """The waiting runs of ``todo`` (their indices) by the SLURM jobs of the runs they need: ones
    just submitted (``job_ids``) or queued or running; a needed run already done adds no job."""
    groups: dict[tuple[str, ...], list[int]] = {}
    for i, v in enumerate(todo):
        if not needs_of(v):
            continue
        jobs = []
        for r in needs_of(v):
            job = job_ids.get(r)
            if job is None:
                run = store.run_state(store.run_dir(root, r))
                job = run.job_id if run.state in store.ACTIVE else None
            if job is not None:
                jobs.append(job)
        groups.setdefault(tuple(sorted(set(jobs))), []).append(i)
    return groups


def afterok(jobs: tuple[str, ...]) -> tuple[str, ...]:
    """The sbatch options of a job that starts once ``jobs`` completed (none without a job); a job
    whose needed run fails is cancelled by SLURM, never left pending."""
    return () if not jobs else (f"--dependency=afterok:{':'.join(jobs)}", "--kill-on-invalid-dep=yes")
