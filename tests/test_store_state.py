"""The store's one rule for a run's state (study/store/state.py): every state from hand-made
run records and real processes (a live pid for running, a dead one for lost), SLURM's word on the
real one-node cluster, `status`, `collect` and the report agreeing on every state, a plain
launch resubmitting a lost run but not a failed one, the job-id bookkeeping, thread counts passed
to the job rather than through the environment, record file modes from the umask, and the
missing-checkpoint error."""

from __future__ import annotations

import json
import os
import pickle
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch

import run_study
from study import config, store
from study.autoencoder.trained import MissingCheckpoint, load_trained
from study.kinds.registry import run_id
from study.launch import launcher
from study.launch.job import RunJob, torch_threads
from study.store import State
from study.studyfile.grid import expand
from study.studyfile.parse import load_study
from study.trainer.checkpoints import CHECKPOINT
from tests.launch_helpers import REPO, TINY_SET, cli_command, cli_env, run_cli, status_json, write_study
from tests.slurm_fixture import wait_for

HOST = socket.gethostname()


def dead_pid() -> int:
    """The id of a process that has exited and been reaped."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _folder(root: Path, name: str, **status) -> Path:
    folder = store.run_dir(root, name)
    folder.mkdir(parents=True)
    if status:
        store.write_json_atomic(folder / "status.json", status)
    return folder


def local(state: str, **extra) -> dict:
    return {
        "state": state,
        "executor": "local",
        "launcher_pid": os.getpid(),
        "launcher_host": HOST,
        "job_ids": ["4242"],
        "attempts": 1,
    } | extra


# name -> (status.json or None for no record, DONE?, expected state, a word of the reason)
def _cases() -> dict[str, tuple[dict | None, bool, State, str | None]]:
    me, gone = os.getpid(), dead_pid()
    return {
        "pending": ({"state": "pending", "attempts": 0, "job_ids": []}, False, State.PENDING, None),
        "no_record": (None, False, State.PENDING, None),
        "submitted": (local("submitted"), False, State.SUBMITTED, None),
        "running": (local("running", pid=me, host=HOST), False, State.RUNNING, None),
        "requeued": (
            local("requeued", pid=me, host=HOST, reason="preempted at step 3"),
            False,
            State.REQUEUED,
            "preempted at step 3",
        ),
        "completed": (local("completed", pid=gone, host=HOST), True, State.COMPLETED, None),
        "finishing": (local("completed", pid=me, host=HOST), False, State.RUNNING, None),  # between status and DONE
        "failed": (
            local("failed", pid=gone, error="NonFiniteLoss: non-finite loss at step 2"),
            False,
            State.FAILED,
            "non-finite loss",
        ),
        "cancelled": (local("cancelled", reason="cancelled by hand"), False, State.CANCELLED, "cancelled by hand"),
        "lost_job": (local("running", pid=gone, host=HOST), False, State.LOST, f"job pid {gone} on {HOST} is gone"),
        "lost_launcher": (local("submitted", launcher_pid=gone), False, State.LOST, f"launcher pid {gone}"),
        "lost_unfinished": (local("completed", pid=gone, host=HOST), False, State.LOST, "no longer queued"),
        "elsewhere": (local("running", pid=gone, host="another-node"), False, State.RUNNING, "another-node"),
    }


def test_each_state_from_its_records(tmp_path):
    cases = _cases()
    folders = {}
    for name, (status, done, _, _) in cases.items():
        folders[name] = _folder(tmp_path, name, **(status or {}))
        if done:
            (folders[name] / "DONE").write_text("1\n")
    folders["missing"] = store.run_dir(tmp_path, "missing")
    runs = dict(zip(folders, store.run_states(list(folders.values()))))
    assert runs.pop("missing") == store.RunState(State.MISSING)
    for name, (_, _, state, word) in cases.items():
        run = runs[name]
        assert run.state is state, (name, run)
        assert store.run_state(folders[name]) == run  # one folder or many: the same rule
        if word is None:
            assert run.reason is None, (name, run)
        else:
            assert word in run.reason, (name, run)
    assert runs["lost_job"].reason.startswith("job 4242 no longer queued or running")
    assert runs["lost_job"].job_id == "4242" and runs["lost_job"].attempts == 1


@pytest.mark.parametrize(
    "sacct, state",
    [
        ("CANCELLED by 1000", State.CANCELLED),
        ("FAILED", State.FAILED),
        ("OUT_OF_MEMORY", State.FAILED),
        ("TIMEOUT", State.FAILED),
        ("COMPLETED", State.FAILED),
        ("NODE_FAIL", State.LOST),
        ("BOOT_FAIL", State.LOST),
        ("PREEMPTED", State.LOST),
        ("DEADLINE", State.LOST),
        ("SOMETHING_NEW", State.FAILED),
        ("RUNNING", None),
        ("PENDING", None),
        ("REQUEUED", None),
        ("COMPLETING", None),
    ],
)
def test_slurm_end_states(sacct, state):
    assert store.slurm_end_state(sacct) is state


def _sbatch(partition: str, script: str) -> str:
    return subprocess.run(
        ["sbatch", "--parsable", "-p", partition, "-c", "1", "--mem=100M", "-o", "/dev/null", "--wrap", script],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout.strip()


def test_slurm_jobs_from_queue_and_accounting(slurm_cluster, tmp_path):
    """On the real cluster: a queued job keeps its run's recorded state; a job that exited 3
    makes a running run failed (with sacct's word) but a requeued one lost; a job id SLURM never
    had makes a lost run."""
    alive = _sbatch(slurm_cluster.partition, "sleep 120")
    ended = _sbatch(slurm_cluster.partition, "exit 3")
    try:
        wait_for(
            lambda: slurm_cluster.sacct_state(ended).startswith("FAILED"),
            90,
            lambda: f"job {ended} to fail (sacct says {slurm_cluster.sacct_state(ended)!r})",
        )
        records = {
            "queued": ("running", alive),
            "failed": ("running", ended),
            "requeued": ("requeued", ended),
            "before_start": ("submitted", ended),
            "never": ("running", "987654"),
        }
        folders = [
            _folder(tmp_path, name, state=state, executor="slurm", job_ids=[job])
            for name, (state, job) in records.items()
        ]
        runs = dict(zip(records, store.run_states(folders)))
        assert runs["queued"].state is State.RUNNING and runs["queued"].job_id == alive
        assert runs["failed"].state is State.FAILED
        assert re.fullmatch(r"failed \(sacct; reason \w+, exit 3:0\)", runs["failed"].reason), runs["failed"]
        assert runs["requeued"].state is State.LOST
        assert runs["requeued"].reason == f"job {ended} no longer queued or running ({runs['failed'].reason})"
        assert runs["before_start"].state is State.FAILED and "before the run started" in runs["before_start"].reason
        assert runs["never"] == store.RunState(
            State.LOST,
            "job 987654 no longer queued or running (no accounting record)",
            "987654",
            {"state": "running", "executor": "slurm", "job_ids": ["987654"]},
        )
    finally:
        subprocess.run(["scancel", alive], check=False, timeout=60)


# --------------------------------------------------------------------------------------------
# status, collect and the report agree
# --------------------------------------------------------------------------------------------
def test_status_collect_and_report_agree_on_every_state(tmp_path, capsys):
    from study.report.cells import cell
    from study.report.columns import Column
    from study.report.records import read_study

    cases = _cases()
    names = list(cases) + ["missing"]
    spec = write_study(tmp_path, "agree", zip=[{"train.lr": [1e-4 * (i + 1) for i in range(len(names))]}])
    variants = dict(zip(names, expand(load_study(spec))))
    root = tmp_path / "results"
    for name, (status, done, _, _) in cases.items():
        folder = _folder(root, variants[name].run_id, **(status or {}))
        if done:
            store.write_eval(folder, "ev", {"metrics": {"psnr": 30.0}})
            (folder / "DONE").write_text("1\n")
    store.write_index(root, "agree", list(variants.values()))

    assert run_study.main(["status", str(spec), "--json", "--results", str(root)]) == 0
    shown = {row["name"]: row for row in json.loads(capsys.readouterr().out)["runs"]}
    frame = read_study(root, "agree").frame.set_index("name")
    psnr = Column("psnr", "PSNR", False, 2, None)
    expected = {name: case[2] for name, case in cases.items()} | {"missing": State.MISSING}
    for name, v in variants.items():
        row, runs = shown[v.name], frame.loc[[v.name]]
        assert row["state"] == runs.iloc[0].state == expected[name], (name, row, runs.iloc[0].state)
        assert row["reason"] == (None if pd.isna(runs.iloc[0].reason) else runs.iloc[0].reason)
        text = cell(runs.reset_index(), psnr)
        if expected[name] is State.COMPLETED:
            assert text.mean == 30.0
        else:
            assert text.mean is None and text.why.startswith(expected[name].value), (name, text)


# --------------------------------------------------------------------------------------------
# launching lost and failed runs
# --------------------------------------------------------------------------------------------
@pytest.mark.training
def test_plain_launch_resubmits_a_lost_run_but_not_a_failed_one(tmp_path):
    results = tmp_path / "results"
    env = cli_env(results)
    spec = write_study(tmp_path, "relaunch", set={"train.steps": 4}, zip=[{"train.lr": [1e-4, 2e-4]}])
    lost, failed = expand(load_study(spec))
    for v, status in (
        (lost, local("submitted", launcher_pid=dead_pid())),
        (failed, local("failed", error="RuntimeError: boom")),
    ):
        store.init_run(results, v.config, run_id(v.config))
        store.write_json_atomic(store.run_dir(results, v.run_id) / "status.json", status)
    before = status_json(spec, env)
    assert before[lost.name]["state"] == "lost" and before[failed.name]["state"] == "failed"

    plain = run_cli("launch", str(spec), "--executor", "local", env=env, timeout=240)
    assert plain.returncode == 0, plain.stdout + plain.stderr
    assert "1 of 2 run(s) submitted with the local executor" in plain.stdout
    assert re.search(
        rf"\({lost.run_id}\): submit, lost: job 4242 no longer queued or running \(launcher pid", plain.stdout
    ), plain.stdout
    assert f"({failed.run_id}): skip, failed: RuntimeError: boom (use --retry-failed)" in plain.stdout
    after = status_json(spec, env)
    assert after[lost.name]["state"] == "completed" and after[lost.name]["attempts"] == 2
    assert after[failed.name]["state"] == "failed" and after[failed.name]["attempts"] == 1
    job_ids = store.read_status(store.run_dir(results, lost.run_id))["job_ids"]
    assert job_ids[0] == "4242" and len(job_ids) == 2  # the new job, recorded once

    retry = launcher.decide(results, [lost, failed], retry_failed=True)
    assert [(d.action, d.why) for d in retry] == [("skip", "completed"), ("submit", "retry: RuntimeError: boom")]


@pytest.mark.training
def test_killed_local_launch_leaves_lost_runs(tmp_path):
    """kill -9 of a local launch's process group once its job runs (the launcher, submitit's job
    controller and the job): the run is lost, and a plain launch would submit it again."""
    results = tmp_path / "results"
    env = cli_env(results)
    spec = write_study(tmp_path, "killed", set={"train.steps": 500})
    (v,) = expand(load_study(spec))
    proc = subprocess.Popen(
        cli_command("launch", str(spec), "--executor", "local"),
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    folder = store.run_dir(results, v.run_id)
    try:
        wait_for(
            lambda: (store.read_json(folder / "status.json") or {}).get("state") == "running",
            120,
            lambda: f"the job to start ({store.read_json(folder / 'status.json')})",
            interval_s=0.2,
        )
        assert store.run_state(folder).state is State.RUNNING
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(30)
    pid = store.read_status(folder)["pid"]
    wait_for(lambda: not store.pid_alive(pid), 30, f"job pid {pid} to be gone")
    run = store.run_state(folder)
    assert run.state is State.LOST and f"job pid {pid} on {HOST} is gone" in run.reason, run
    dry = run_cli("launch", str(spec), "--executor", "local", "--dry-run", env=env)
    assert f"({v.run_id}): would submit, lost: job {run.job_id} no longer queued or running" in dry.stdout, dry.stdout


@pytest.mark.training
def test_local_launch_passes_threads_to_the_job_not_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", str(REPO))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.chdir(REPO)
    spec_path = write_study(tmp_path, "threads", set={"train.steps": 2})
    spec = load_study(spec_path)
    environ = dict(os.environ)
    opts = launcher.LaunchOptions(executor="local", max_parallel=2, resources=launcher.merge_resources(spec.resources))
    report = launcher.launch(spec, expand(spec), tmp_path / "results", opts, log=lambda *_: None)
    assert not report.failed and len(report.submitted) == 1
    assert dict(os.environ) == environ
    parallel, threads = launcher._local_share(opts)
    assert parallel == 2 and threads == max(1, (os.cpu_count() or 1) // 2)
    # one run to start: one job, with every core (the demo's max-parallel is the core count)
    assert launcher._local_share(opts, runs=1) == (1, os.cpu_count() or 1)


def test_run_job_pickles_its_thread_count(monkeypatch):
    job = pickle.loads(pickle.dumps(RunJob("/x/run", "abc", 2, threads=3)))
    assert (job.folder, job.run_id, job.max_requeue, job.threads) == ("/x/run", "abc", 2, 3)
    monkeypatch.setenv("SLURM_CPUS_PER_TASK", "5")
    assert torch_threads(job.threads) == 3 and torch_threads(None) == 5
    monkeypatch.delenv("SLURM_CPUS_PER_TASK")
    assert torch_threads(None) is None


def test_append_job_id_records_each_job_once_and_counts_attempts(tmp_path):
    folder = tmp_path / "run"
    store.append_job_id(folder, "7", state="submitted", executor="slurm")
    store.append_job_id(folder, "7", new_attempt=True, state="running")  # the job itself
    store.append_job_id(folder, "7", new_attempt=True, state="running")  # requeued: same id
    status = store.append_job_id(folder, None, log="x.err")
    assert status["job_ids"] == ["7"] and status["attempts"] == 2 and status["state"] == "running"
    assert store.append_job_id(folder, "8")["job_ids"] == ["7", "8"]
    assert store.read_status(folder)["log"] == "x.err"


# --------------------------------------------------------------------------------------------
# records on disk
# --------------------------------------------------------------------------------------------
WRITE = """
import os, stat, sys
from pathlib import Path
from study import store
folder = Path(sys.argv[1])
store.write_json_atomic(folder / "status.json", {"state": "running"})
store.write_text_atomic(folder / "DONE", "1")
print(" ".join(oct(stat.S_IMODE(os.stat(folder / n).st_mode)) for n in ("status.json", "DONE")))
"""


@pytest.mark.parametrize("umask, mode", [(0o022, "0o644"), (0o077, "0o600"), (0o002, "0o664")])
def test_records_get_the_mode_of_the_umask(tmp_path, umask, mode):
    out = subprocess.run(
        [sys.executable, "-c", WRITE, str(tmp_path)],
        env=cli_env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
        preexec_fn=lambda: os.umask(umask),
    ).stdout
    assert out.split() == [mode, mode]


def test_load_trained_without_a_checkpoint_raises(tmp_path):
    cfg = config.validate(config.apply_overrides(config.ExperimentConfig(), TINY_SET | {"train.steps": 0}))
    folder = store.init_run(tmp_path, cfg, run_id(cfg))
    with pytest.raises(MissingCheckpoint) as caught:
        load_trained(folder, cfg, torch.device("cpu"))
    assert isinstance(caught.value, FileNotFoundError) and caught.value.folder == folder
    assert str(folder / CHECKPOINT) in str(caught.value) and "train.steps 0" in str(caught.value)


def test_wait_ends_on_a_lost_run(tmp_path):
    spec = write_study(tmp_path, "waiting")
    (v,) = expand(load_study(spec))
    _folder(tmp_path / "results", v.run_id, **local("running", pid=dead_pid(), host=HOST))
    start = time.monotonic()
    assert launcher.wait(tmp_path / "results", [v], poll_s=0.1, progress=False, timeout_s=30) == {v.run_id: "lost"}
    assert time.monotonic() - start < 10
