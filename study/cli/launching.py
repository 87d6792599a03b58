"""``launch``, ``run``, ``status`` and ``cancel``: a study's runs submitted (study/launch), waited
for, shown and cancelled. The executor is ``local`` (this machine) unless ``--executor`` says
otherwise; ``--dry-run`` shows what would be submitted, on SLURM with each job array's
resources, and submits nothing."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from study import store
from study.cli import staging
from study.cli.common import Command, UsageError, index_fields, num, results_root, spec_and_variants, table
from study.cli.results import add_reports, collect_results, require_records, write_report
from study.kinds.registry import total_steps
from study.launch import launcher, ordering, preflight
from study.studyfile import sources
from study.studyfile.grid import Variant
from study.studyfile.parse import Resources, StudyFile

DEFAULT_EXECUTOR = "local"
SLURM_COMMANDS = ("sbatch", "srun")  # submitit submits with sbatch; its job scripts start srun


def launch_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--executor",
        choices=launcher.EXECUTORS,
        default=None,
        help=f"where the runs go (default: the site file's launch.executor, else {DEFAULT_EXECUTOR}, this "
        "machine; slurm: job arrays through sbatch; debug: in this process)",
    )
    p.add_argument("--dry-run", action="store_true", help="show what would be submitted and how; submit nothing")
    p.add_argument("--only", nargs="+", metavar="VARIANT", help="launch these variants only (names, aliases or ids)")
    p.add_argument("--retry-failed", action="store_true", help="resubmit failed and cancelled runs")
    p.add_argument("--max-parallel", type=int, default=1, help="local executor: jobs at once")
    p.add_argument("--wandb", metavar="PROJECT", help="live curves to this W&B project too (when wandb is installed)")
    g = p.add_argument_group("resources (override the study file's `resources`)")
    g.add_argument("--partition")
    g.add_argument("--account")
    g.add_argument("--qos")
    g.add_argument("--gpus", type=int, help="GPUs per variant (DDP across them)")
    g.add_argument("--cpus", type=int, help="CPUs per GPU (per task)")
    g.add_argument("--mem-gb", type=int)
    g.add_argument("--time", type=int, help="time limit in minutes")
    g.add_argument("--constraint")
    g.add_argument("--array-parallelism", type=int)
    g.add_argument("--max-requeue", type=int, help="requeues on preemption or time-out")
    g.add_argument(
        "--sbatch",
        action="append",
        metavar="--KEY=VALUE",
        help="an extra sbatch option, e.g. --sbatch --exclude=node01 (repeatable)",
    )


def launch_settings(args: argparse.Namespace, spec: StudyFile, variants: list[Variant]) -> launcher.LaunchOptions:
    """The launcher's options: the study's resources with the command line's overrides, the
    variants ``--only`` selects. UsageError for an unknown ``--only`` name or, on SLURM, a
    machine without its commands (before anything is created)."""
    args.executor = sources.executor(args.executor)[0]  # the site file's default (study/config/site.py)
    resources = launcher.merge_resources(
        sources.launch_resources(spec)[0],
        partition=args.partition,
        account=args.account,
        qos=args.qos,
        gpus=args.gpus,
        cpus_per_gpu=args.cpus,
        mem_gb=args.mem_gb,
        timeout_min=args.time,
        constraint=args.constraint,
        sbatch=tuple(spec.resources.sbatch) + tuple(args.sbatch or ()),
        array_parallelism=args.array_parallelism,
        max_requeue=args.max_requeue,
    )
    if args.executor == "slurm" and not args.dry_run:
        missing = [c for c in SLURM_COMMANDS if shutil.which(c) is None]
        if missing:
            raise UsageError(
                f"--executor slurm: {' and '.join(f'`{c}`' for c in missing)} not found on PATH; "
                "launch from a SLURM login node, or use --executor local"
            )
    return launcher.LaunchOptions(
        executor=args.executor,
        dry_run=args.dry_run,
        retry_failed=args.retry_failed,
        max_parallel=args.max_parallel,
        resources=resources,
        only=selected(variants, args.only),
        weights_said=bool(getattr(args, "index_extra", {}).get(staging.INDEX_FLAG)),
    )


def selected(variants: list[Variant], names: list[str] | None) -> frozenset[str] | None:
    """The run ids of the variants ``names`` picks (by name or alias: every seed; by run id:
    that run); None: all."""
    if not names:
        return None
    known: dict[str, set[str]] = {}
    for v in variants:
        for key in (v.name, v.run_id, *v.aliases):
            known.setdefault(key, set()).add(v.run_id)
    unknown = [n for n in names if n not in known]
    if unknown:
        listed = ", ".join(dict.fromkeys(v.name for v in variants))
        raise UsageError(f"--only: no variant {', '.join(map(repr, unknown))}; the variants: {listed}")
    return frozenset(run for n in names for run in known[n])


# --------------------------------------------------------------------------------------------
# launch and run
# --------------------------------------------------------------------------------------------
def launch(args: argparse.Namespace) -> int:
    spec, variants = spec_and_variants(args)
    opts = launch_settings(args, spec, variants)
    root = results_root(args)
    report = launcher.launch(spec, variants, root, opts, record=index_fields(args, spec, variants))
    for d in report.decisions:
        verb = ("would submit" if args.dry_run else "submit") if d.action == "submit" else "skip"
        job = report.job_ids.get(d.variant.run_id)
        print(
            f"[{d.variant.index}] {d.variant.name} ({d.variant.run_id}): {verb}, {d.why}"
            + (f", job {job}" if job else "")
        )
    if args.dry_run:
        print("\n".join(layout(report.submitted, opts)))
        print("\n".join(preflight_lines(report.preflight)))
    n = len(report.submitted)
    print(
        f"{'dry run: ' if args.dry_run else ''}{n} of {len(variants)} run(s) "
        f"{'to submit' if args.dry_run else 'submitted'} with the {opts.executor} executor"
    )
    if report.preflight is not None and not report.preflight.ok:
        return 2  # --dry-run: the launch would be refused
    return 1 if report.failed else 0


def preflight_lines(found: preflight.Preflight | None) -> list[str]:
    """What the checks before a launch found (study/launch/preflight.py), or that all passed."""
    if found is None:
        return []
    if not found.lines():
        return ["checks: data, weights, checkpoints" + (" and SLURM" if found.slurm else "") + ": all passed"]
    head = f"checks: {len(found.problems)} problem(s), {len(found.notes)} note(s)"
    return [head] + ["  " + line for line in found.lines()]


def layout(todo: list[Variant], opts: launcher.LaunchOptions) -> list[str]:
    """How the runs would go out: on SLURM, each job array with its resources (split at the
    cluster's MaxArraySize; runs that need others in arrays of their own, ``afterok``);
    elsewhere, how many run at once."""
    if not todo:
        return ["nothing to submit"]
    if opts.executor != "slurm":
        at_once = max(1, opts.max_parallel) if opts.executor == "local" else 1
        return [f"{opts.executor} executor: {len(todo)} run(s) on this machine, {at_once} at a time"]
    size = launcher.max_array_size()
    first = [v for v in todo if not ordering.needs_of(v)]
    groups: dict[tuple[str, ...], list[Variant]] = {}
    for v in todo:
        if ordering.needs_of(v):
            groups.setdefault(ordering.needs_of(v), []).append(v)
    lines = [f"sbatch: {resources_text(opts.resources)}"]
    batches = [(part, "") for part in _chunks(first, size)]
    batches += [
        (part, f", afterok the job(s) of {', '.join(ids)}") for ids, g in groups.items() for part in _chunks(g, size)
    ]
    for i, (part, after) in enumerate(batches, 1):
        at_once = opts.resources.array_parallelism
        lines.append(
            f"array {i}: {len(part)} task(s), at most {at_once} at once{after}: " + ", ".join(v.name for v in part)
        )
    return lines


def _chunks(items: list[Variant], size: int) -> list[list[Variant]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def resources_text(r: Resources) -> str:
    """One line of a SLURM array's resources, as each of its tasks gets them."""
    parts = [
        f"partition {r.partition or '(cluster default)'}",
        f"{r.gpus} GPU(s)",
        f"{r.cpus_per_gpu} CPU(s) per GPU" if r.gpus else f"{r.cpus_per_gpu} CPU(s)",
        f"{r.mem_gb} GB",
        f"time {r.timeout_min} min",
        f"{r.nodes} node(s)",
    ]
    parts += [f"{key} {getattr(r, key)}" for key in ("account", "qos", "constraint") if getattr(r, key)]
    parts += [f"max requeue {r.max_requeue}"]
    parts += [" ".join(r.sbatch)] if r.sbatch else []
    return ", ".join(parts)


def run_options(p: argparse.ArgumentParser) -> None:
    launch_options(p)
    p.add_argument("--poll", type=float, default=5.0, help="seconds between status polls")
    add_reports(p)


def run(args: argparse.Namespace) -> int:
    """Launch, wait with a progress display, collect, report; exit 1 if a variant failed."""
    spec, variants = spec_and_variants(args)
    opts = launch_settings(args, spec, variants)
    root = results_root(args)
    started = time.time()
    result = launcher.launch(spec, variants, root, opts, record=index_fields(args, spec, variants))
    skipped = len(variants) - len(result.submitted)
    if opts.dry_run:
        print("\n".join(layout(result.submitted, opts)))
        print("\n".join(preflight_lines(result.preflight)))
        print(
            f"dry run: nothing submitted; {len(result.submitted)} of {len(variants)} run(s) would be submitted "
            f"with the {opts.executor} executor; {skipped} skipped"
        )
        return 2 if result.preflight is not None and not result.preflight.ok else 0
    print(
        f"{len(result.submitted)} of {len(variants)} run(s) submitted with the {opts.executor} executor; {skipped} skipped"
    )
    waited = [v for v in variants if opts.only is None or v.run_id in opts.only]
    states = launcher.wait(root, waited, poll_s=args.poll, progress=True)
    collect_results(args, spec, variants, root)  # also when every variant was skipped
    path, main_table = write_report(args, spec.study, root, **{"wall time": f"{time.time() - started:.0f} s"})
    print(main_table)
    print(f"\nreport: {path}")
    failed = [v for v in waited if states[v.run_id] != store.State.COMPLETED]
    for v, state in zip(failed, store.run_states([store.run_dir(root, v.run_id) for v in failed])):
        print(f"  {v.name} ({v.run_id}): {state.state}: {state.reason or ''}", file=sys.stderr)
    return 1 if failed else 0


# --------------------------------------------------------------------------------------------
# status
# --------------------------------------------------------------------------------------------
def status_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true")
    p.add_argument("--log", metavar="VARIANT", help="print the tail of a variant's job log (index, name or id)")
    p.add_argument("--lines", type=int, default=40)
    p.add_argument(
        "--watch", nargs="?", type=float, const=10.0, metavar="SECONDS", help="refresh in place every SECONDS (10)"
    )
    p.add_argument(
        "--stall-after",
        type=float,
        default=store.STALL_AFTER_S / 60,
        metavar="MIN",
        help="flag a running run whose log has not moved for MIN minutes (default %(default)g)",
    )


def status(args: argparse.Namespace) -> int:
    spec, variants = spec_and_variants(args)
    root = results_root(args)
    if args.log:
        return print_log(root, variants, args.log, args.lines)
    require_records(root, spec, variants)
    while True:
        rows = status_rows(root, variants, args.stall_after * 60)
        if args.json:
            print(json.dumps({"study": spec.study, "runs": rows}, indent=1))
        else:
            if args.watch:
                print("\x1b[H\x1b[2J", end="")  # clear the terminal: the table refreshes in place
            print(status_text(spec.study, rows))
        if not args.watch or all(r["state"] in FINAL_STATES for r in rows):
            return 0
        sys.stdout.flush()
        time.sleep(args.watch)


FINAL_STATES = {s.value for s in store.FINAL}


def status_rows(root: Path, variants: list[Variant], stall_after_s: float) -> list[dict[str, Any]]:
    """One row per variant: its run's state, job, progress (step / total, images/s, ETA), last
    loss and validation figures, attempts, host, age of its last log line, and whether it stalled."""
    progress = store.status_rows([store.run_dir(root, v.run_id) for v in variants], stall_after_s=stall_after_s)
    return [
        {"index": v.index, "name": v.name, "id": v.run_id, "seed": v.seed, "kind": v.fields.get("kind")}
        | row
        | {"total_steps": row.get("total_steps") or total_steps(v.config)}
        for v, row in zip(variants, progress)
    ]


def status_text(study: str, rows: list[dict[str, Any]]) -> str:
    header = [
        "#",
        "name",
        "kind",
        "id",
        "state",
        "step",
        "img/s",
        "ETA",
        "loss",
        "psnr",
        "att",
        "host",
        "log age",
        "reason",
    ]
    counts: dict[str, int] = {}
    for r in rows:
        counts[r["state"]] = counts.get(r["state"], 0) + 1
    summary = ", ".join(f"{n} {state}" for state, n in counts.items())
    return f"{study}\n" + table(header, [_status_cells(r) for r in rows]) + "\n" + summary


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    s = int(seconds)
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


def _status_cells(r: dict[str, Any]) -> list[str]:
    state = r["state"] + (" (stalled)" if r.get("stalled") else "")
    if r.get("diverged_step") is not None:
        state += f" at step {r['diverged_step']}"
    return [
        str(r["index"]),
        r["name"],
        str(r["kind"]),
        r["id"],
        state,
        f"{r['step'] or 0}/{r['total_steps']}",
        num(r.get("images_per_s")),
        _duration(r.get("eta_s")),
        num(r.get("loss")),
        num(r.get("val_psnr")),
        str(r["attempts"]) + (f" ({r['requeues']} requeued)" if r.get("requeues") else ""),
        str(r.get("host") or "-"),
        _duration(r.get("log_age_s")),
        (r["reason"] or "")[:60],
    ]


def print_log(root: Path, variants: list[Variant], which: str, lines: int) -> int:
    """The tail of a variant's job log (by index, name or run id)."""
    match = [v for v in variants if which in (str(v.index), v.name, v.run_id)]
    if not match:
        raise UsageError(f"--log: got {which!r}; allowed: a variant's index, name or id")
    record = store.read_status(store.run_dir(root, match[0].run_id))
    path = record.get("log")
    if not path or not Path(path).exists():
        print(f"no log recorded for {match[0].name} ({match[0].run_id})", file=sys.stderr)
        return 1
    text = Path(path).read_text(errors="replace").splitlines()
    print(f"==> {path} <==")
    print("\n".join(text[-lines:]))
    return 0


# --------------------------------------------------------------------------------------------
# cancel
# --------------------------------------------------------------------------------------------
def cancel_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("variants", nargs="*", metavar="VARIANT", help="the variants to cancel (default: all)")


def cancel(args: argparse.Namespace) -> int:
    """Cancel the jobs of the study's queued or running runs (all, or the VARIANTs named): scancel
    of their SLURM jobs, a signal to their local job; each run is then recorded as cancelled
    (``launch --retry-failed`` resubmits it). Exit 1 when a job could not be cancelled."""
    spec, variants = spec_and_variants(args)
    chosen = selected(variants, args.variants)
    root = results_root(args)
    picked = [v for v in variants if chosen is None or v.run_id in chosen]
    runs = store.run_states([store.run_dir(root, v.run_id) for v in picked])
    active = [(v, run) for v, run in zip(picked, runs) if run.state in store.ACTIVE]
    for v, run in zip(picked, runs):
        if run.state not in store.ACTIVE:
            print(f"[{v.index}] {v.name} ({v.run_id}): skip, {run.state.value}")
    slurm = [(v, run) for v, run in active if run.record.get("executor") == "slurm" and run.job_id]
    problem = _scancel([run.job_id for _, run in slurm if run.job_id]) if slurm else None
    failed = 0
    for v, run in active:
        why = problem if (v, run) in slurm else _stop_here(run)
        if why:
            failed += 1
            print(f"[{v.index}] {v.name} ({v.run_id}): not cancelled, {why}", file=sys.stderr)
            continue
        store.mark_cancelled(store.run_dir(root, v.run_id), "cancelled with `run_study.py cancel`")
        print(f"[{v.index}] {v.name} ({v.run_id}): cancelled (was {run.state.value}, job {run.job_id or '-'})")
    print(f"{len(active) - failed} of {len(picked)} run(s) cancelled")
    return 1 if failed else 0


def _scancel(job_ids: list[str]) -> str | None:
    """scancel the jobs; None, else why it could not."""
    if shutil.which("scancel") is None:
        return "`scancel` not found on PATH"
    done = subprocess.run(["scancel", *job_ids], capture_output=True, text=True, timeout=60)
    return None if done.returncode == 0 else f"scancel: {done.stderr.strip() or done.returncode}"


def _stop_here(run: store.RunState) -> str | None:
    """Stop a local run's job (SIGTERM to the job's process on this host); None, else why it
    could not (a run still queued in its launcher, one running inside its launcher (debug), one
    on another host)."""
    record = run.record
    pid, host = record.get("pid"), record.get("host")
    if run.state is store.State.SUBMITTED and record.get("launcher_pid"):
        launcher_pid = record["launcher_pid"]
        return f"queued in its launcher (pid {launcher_pid}), not started; stop that launcher to cancel its queue"
    if not pid:
        return None
    if host and host != socket.gethostname():
        return f"its job runs on {host}; cancel it there"
    if record.get("executor") == "debug" or pid == record.get("launcher_pid"):
        return f"it runs inside its launcher (pid {pid}, the debug executor); stop that process"
    if store.pid_alive(int(pid)):
        os.kill(int(pid), signal.SIGTERM)
    return None


COMMANDS = (
    Command("launch", "submit the study's runs (skips completed ones)", launch, launch_options, True),
    Command("run", "launch, wait, collect and report", run, run_options, True),
    Command("status", "a table of every variant's run", status, status_options, True),
    Command("cancel", "cancel the jobs of the study's queued and running runs", cancel, cancel_options, True),
)
