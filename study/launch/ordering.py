"""The order of a study's two kinds of run: a diffusion run (Tables 7, 13) starts after its
frozen autoencoder is done. On SLURM its job depends on the autoencoder's (``afterok``);
locally it runs after the autoencoders; a diffusion run whose autoencoder failed, was cancelled or
is running elsewhere is not submitted, and says why."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from study import store
from study.studyfile.grid import Variant


@dataclass
class Decision:
    """What ``launch`` does with one variant: "submit" or "skip", and why."""

    variant: Variant
    action: str
    why: str


def diffusion_runs(variants: list[Variant]) -> list[Variant]:
    return [v for v in variants if v.config.task == "diffusion"]


def autoencoder_of(v: Variant) -> str | None:
    return v.config.diffusion.autoencoder_id if v.config.task == "diffusion" else None


def hold_for_autoencoders(root: Path, decisions: list[Decision], executor: str) -> list[Decision]:
    """A diffusion run is submitted only where its autoencoder is done, submitted with it, or
    (on SLURM, which orders them) queued or running; otherwise it is skipped, saying why."""
    submitting = {d.variant.run_id for d in decisions if d.action == "submit"}
    held = [d for d in decisions if d.action == "submit" and autoencoder_of(d.variant)]
    needed = [str(autoencoder_of(d.variant)) for d in held]
    states = dict(zip(needed, store.run_states([store.run_dir(root, a) for a in needed])))
    out = {id(d): d for d in decisions}
    for d, ae in zip(held, needed):
        run = states[ae]
        if ae in submitting or run.state is store.State.COMPLETED:
            continue
        if run.state in store.ACTIVE and executor == "slurm":
            continue
        why = f"autoencoder {ae} is {run.state}" + (f": {run.reason}" if run.reason else "")
        if run.state in (store.State.FAILED, store.State.CANCELLED):
            why += " (use --retry-failed to run both again)"
        elif run.state in store.ACTIVE:
            why += " (launch again once it is done)"
        out[id(d)] = Decision(d.variant, "skip", why)
    return [out[id(d)] for d in decisions]


def autoencoder_ready(root: Path, v: Variant, failed: dict[str, str], log: Any) -> bool:
    """Locally, after the autoencoders ran: whether this diffusion run's one is done; if not, the
    diffusion run is failed with the autoencoder's reason (never left waiting)."""
    ae = str(autoencoder_of(v))
    run = store.run_state(store.run_dir(root, ae))
    if run.state is store.State.COMPLETED:
        return True
    why = f"autoencoder {ae} {run.state}: {run.reason or 'no reason recorded'}"
    store.update_status(store.run_dir(root, v.run_id), state="failed", error=why)
    failed[v.run_id] = why
    log(f"[{v.index}] {v.name} not started: {why}")
    return False


def dependency_groups(root: Path, todo: list[Variant], job_ids: dict[str, str]) -> dict[str | None, list[int]]:
    """The diffusion runs of ``todo`` (their indices) by the SLURM job of their autoencoder:
    one just submitted (``job_ids``), one queued or running, or None (the autoencoder is done)."""
    groups: dict[str | None, list[int]] = {}
    for i, v in enumerate(todo):
        ae = autoencoder_of(v)
        if ae is None:
            continue
        job = job_ids.get(ae)
        if job is None:
            run = store.run_state(store.run_dir(root, ae))
            job = run.job_id if run.state in store.ACTIVE else None
        groups.setdefault(job, []).append(i)
    return groups


def afterok(job: str | None) -> tuple[str, ...]:
    """The sbatch options of a job that starts once ``job`` completed (none without a job); a job
    whose autoencoder fails is cancelled by SLURM, never left pending."""
    return () if job is None else (f"--dependency=afterok:{job}", "--kill-on-invalid-dep=yes")
