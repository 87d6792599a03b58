"""Launching studies on the real one-node SLURM cluster (tools/slurm_cluster.sh) through the real
command line and real submitit: job arrays, completion and `collect`, a preempted run that is
requeued and resumes to the same weights as an uninterrupted one, a cancelled run seen through
sacct, relaunch and --retry-failed, arrays split at MaxArraySize, and two launches at once.

No mocks. `sbatch` calls are counted with a shim on PATH that logs each call and execs the real
sbatch. Each variant is tiny (tests/launch_helpers.py) and asks for one CPU, so the 2-core node
runs two at once; every wait is bounded.
"""

from __future__ import annotations

import math
import subprocess
import time
from pathlib import Path

import pandas as pd
import pytest
import submitit
import torch

from study import store
from study.launch import launcher as launch
from study.launch.launcher import LaunchOptions, merge_resources
from study.studyfile.grid import expand
from study.studyfile.parse import load_study
from tests.launch_helpers import (
    REPO,
    RESOURCES,
    cli_command,
    cli_env,
    run_cli,
    sbatch_calls,
    sbatch_shim,
    status_json,
    write_study,
)
from tests.slurm_fixture import SlurmCluster, wait_for

pytestmark = pytest.mark.timeout(420)

RUN_TIMEOUT_S = 240


def _queue() -> dict[str, str]:
    """{job id: state} of every job SLURM has queued or running now (array tasks expanded)."""
    out = subprocess.run(["squeue", "-h", "-r", "-o", "%i %T"], capture_output=True, text=True, timeout=60).stdout
    return dict(line.split() for line in out.splitlines() if line.strip())


@pytest.fixture
def cancel_new_jobs(slurm_cluster: SlurmCluster, tmp_path):
    """Cancels, at the end of the test, every job it left queued or running: those whose batch
    script (submitit's submission file) lies under the test's tmp_path, and no other."""
    yield
    out = subprocess.run(["squeue", "-h", "-o", "%A|%o"], capture_output=True, text=True, timeout=60).stdout
    mine = sorted(
        {
            job
            for job, _, script in (line.partition("|") for line in out.splitlines())
            if script.startswith(str(tmp_path))
        }
    )
    if mine:
        subprocess.run(["scancel", *mine], check=False, timeout=60)


def _spec_resources(cluster: SlurmCluster) -> dict:
    return RESOURCES | {"partition": cluster.partition}


def _status(root: Path, run_id: str) -> dict:
    return store.read_status(store.run_dir(root, run_id))


def _launched(proc: subprocess.CompletedProcess, submitted: int, total: int) -> None:
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"{submitted} of {total} run(s) submitted with the slurm executor" in proc.stdout, proc.stdout


def _wait_state(root: Path, variants: list, state: str, timeout_s: float = RUN_TIMEOUT_S) -> None:
    def states() -> dict[str, str]:
        runs = store.run_states([store.run_dir(root, v.run_id) for v in variants])
        return {v.name: run.state.value for v, run in zip(variants, runs)}

    wait_for(
        lambda: all(s == state for s in states().values()),
        timeout_s,
        lambda: f"runs to be {state}: {states()} (queue {_queue()})",
        interval_s=1.0,
    )


def _accounted(cluster: SlurmCluster, job_id: str, state: str) -> None:
    """sacct reports the job in this state (a job marks its run DONE before it ends, and slurmctld
    hands job records to slurmdbd asynchronously)."""
    wait_for(
        lambda: cluster.sacct_state(job_id).startswith(state),
        60,
        lambda: f"sacct to report job {job_id} {state} (it says {cluster.sacct_state(job_id)!r})",
    )


def _same_tensors(a, b, where: str = "") -> None:
    """Every tensor in two checkpoints is bitwise equal (dtype, shape, values); the rest equal."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and a.shape == b.shape, where
        assert torch.equal(a, b), f"{where} differs"
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for k in a:
            _same_tensors(a[k], b[k], f"{where}/{k}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            _same_tensors(x, y, f"{where}[{i}]")
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


# --------------------------------------------------------------------------------------------
def test_study_runs_as_one_array_survives_a_cancel_and_relaunches(slurm_cluster, tmp_path, cancel_new_jobs):
    """5 variants go out as one array; the long one is cancelled mid-training (scancel), the
    other 4 complete; status says cancelled with sacct's word; a relaunch submits nothing;
    --retry-failed resubmits only the cancelled one, which resumes and completes; collect
    gathers all 5."""
    shim, calls = sbatch_shim(tmp_path / "bin")
    results = tmp_path / "results"
    env = cli_env(results, path_prefix=shim)
    spec = write_study(
        tmp_path,
        "lifecycle",
        zip=[{"train.steps": [100, 8, 8, 8, 8], "train.lr": [1e-4, 2e-4, 3e-4, 4e-4, 5e-4]}],
        resources=_spec_resources(slurm_cluster),
    )
    variants = expand(load_study(spec))
    victim, tiny = variants[0], variants[1:]

    _launched(run_cli("launch", str(spec), "--executor", "slurm", env=env), 5, 5)
    assert len(sbatch_calls(calls)) == 1
    first_ids = {v.run_id: _status(results, v.run_id)["job_ids"] for v in variants}
    array = first_ids[victim.run_id][0].split("_")[0]
    assert [first_ids[v.run_id] for v in variants] == [[f"{array}_{i}"] for i in range(5)]

    # cancel the long variant once it has written a checkpoint (so the retry resumes from it)
    victim_dir = store.run_dir(results, victim.run_id)
    wait_for(
        lambda: (victim_dir / "checkpoints" / "last.pt").exists(),
        RUN_TIMEOUT_S,
        lambda: f"a checkpoint of {victim.name} (status {_status(results, victim.run_id)})",
    )
    victim_job = f"{array}_0"
    subprocess.run(["scancel", victim_job], check=True, timeout=60)
    _wait_state(results, [victim], "cancelled", timeout_s=90)
    _wait_state(results, tiny, "completed")

    _accounted(slurm_cluster, victim_job, "CANCELLED")
    rows = status_json(spec, env)
    assert rows[victim.name]["state"] == "cancelled"
    assert "cancelled" in rows[victim.name]["reason"] and "sacct" in rows[victim.name]["reason"]
    assert rows[victim.name]["job_id"] == victim_job
    assert rows[victim.name]["step"] < 100
    for v in tiny:
        assert rows[v.name]["state"] == "completed" and rows[v.name]["attempts"] == 1, rows[v.name]
        _accounted(slurm_cluster, rows[v.name]["job_id"], "COMPLETED")

    # relaunch: nothing to submit, not even an sbatch call
    again = run_cli("launch", str(spec), "--executor", "slurm", env=env)
    _launched(again, 0, 5)
    assert f"({victim.run_id}): skip, cancelled" in again.stdout and "--retry-failed" in again.stdout
    assert len(sbatch_calls(calls)) == 1
    assert {v.run_id: _status(results, v.run_id)["job_ids"] for v in variants} == first_ids

    # --retry-failed: only the cancelled run, as a job of its own
    retry = run_cli("launch", str(spec), "--executor", "slurm", "--retry-failed", env=env)
    _launched(retry, 1, 5)
    assert f"({victim.run_id}): submit, retry: cancelled" in retry.stdout
    assert len(sbatch_calls(calls)) == 2
    job_ids = {v.run_id: _status(results, v.run_id)["job_ids"] for v in variants}
    assert all(job_ids[v.run_id] == first_ids[v.run_id] for v in tiny)
    assert job_ids[victim.run_id][0] == victim_job and len(job_ids[victim.run_id]) == 2
    retry_job = job_ids[victim.run_id][1]
    assert not retry_job.startswith(f"{array}_")
    _wait_state(results, [victim], "completed")
    result = submitit.SlurmJob(folder=results / "lifecycle" / "logs" / "%j", job_id=retry_job).result()
    assert 5 <= result["resumed_from"] < 100  # resumed from the cancelled attempt's checkpoint
    assert _status(results, victim.run_id)["attempts"] == 2

    collected = run_cli("collect", str(spec), env=env)
    assert collected.returncode == 0, collected.stderr
    frame = pd.read_csv(results / "lifecycle" / "results.csv")
    assert sorted(frame["run_id"]) == sorted(v.run_id for v in variants)
    assert (frame["state"] == "completed").all()
    assert all(math.isfinite(x) for x in frame["psnr"]) and all(0 < x <= 1 for x in frame["ssim"])
    assert frame.set_index("run_id").loc[victim.run_id, "attempts"] == 2


def test_preempted_run_requeues_and_resumes_to_the_same_weights(slurm_cluster, tmp_path, cancel_new_jobs):
    """scancel --signal=USR2 mid-training: submitit calls RunJob.checkpoint, the job is requeued,
    resumes from its checkpoint and ends with weights bitwise equal to an uninterrupted run of
    the same config (launched the same way into another results folder, at the same time)."""
    spec = write_study(
        tmp_path,
        "preempt",
        set={"train.steps": 60, "train.checkpoint_every": 5},
        resources=_spec_resources(slurm_cluster),
    )
    (variant,) = expand(load_study(spec))
    preempted, reference = tmp_path / "preempted", tmp_path / "reference"
    for root in (preempted, reference):
        _launched(run_cli("launch", str(spec), "--executor", "slurm", env=cli_env(root)), 1, 1)
    (job_id,) = _status(preempted, variant.run_id)["job_ids"]
    folder = store.run_dir(preempted, variant.run_id)

    wait_for(
        lambda: (folder / "checkpoints" / "last.pt").exists(),
        RUN_TIMEOUT_S,
        lambda: f"the first checkpoint (status {_status(preempted, variant.run_id)})",
    )
    subprocess.run(["scancel", "--signal=USR2", job_id], check=True, timeout=60)
    wait_for(
        lambda: _status(preempted, variant.run_id).get("state") == "requeued",
        120,
        lambda: f"the run to be requeued (status {_status(preempted, variant.run_id)})",
    )
    stopped_at = _status(preempted, variant.run_id)["reason"]
    wait_for(lambda: _queue().get(job_id) == "PENDING", 60, lambda: f"job {job_id} pending again ({_queue()})")
    # SLURM holds a requeued job ~2 minutes; release() skips that, but not too soon: slurmd revokes
    # the old allocation's credential with a 1-second timestamp, and a restart within that same
    # second is killed at once ("Job credential revoked", the job FAILED; seen here)
    time.sleep(2.5)
    slurm_cluster.release(job_id)

    _wait_state(preempted, [variant], "completed")
    _wait_state(reference, [variant], "completed")
    rows = status_json(spec, cli_env(preempted))
    assert rows[variant.name]["state"] == "completed"
    assert rows[variant.name]["attempts"] == 2
    assert rows[variant.name]["job_id"] == job_id and _status(preempted, variant.run_id)["job_ids"] == [job_id]
    assert status_json(spec, cli_env(reference))[variant.name]["attempts"] == 1

    result = submitit.SlurmJob(folder=preempted / "preempt" / "logs" / "%j", job_id=job_id).result()
    assert 5 <= result["resumed_from"] < 60, (result, stopped_at)
    assert stopped_at == f"preempted at step {result['resumed_from']}"  # resumed where it stopped

    a = torch.load(folder / "checkpoints" / "last.pt", map_location="cpu", weights_only=False)
    b = torch.load(
        store.run_dir(reference, variant.run_id) / "checkpoints" / "last.pt", map_location="cpu", weights_only=False
    )
    assert a["step"] == b["step"] == 60
    _same_tensors(a, b)
    (eval_a,) = store.read_evals(folder).values()
    (eval_b,) = store.read_evals(store.run_dir(reference, variant.run_id)).values()
    assert eval_a["metrics"] == eval_b["metrics"]


def test_arrays_split_at_max_array_size(slurm_small_arrays, tmp_path, monkeypatch, cancel_new_jobs):
    """MaxArraySize=4: a 5-variant study goes out as two arrays (4 + 1), two sbatch calls, and
    every run completes."""
    shim, calls = sbatch_shim(tmp_path / "bin")
    for key, value in cli_env(path_prefix=shim).items():
        if key in ("PATH", "PYTHONPATH", "OMP_NUM_THREADS"):
            monkeypatch.setenv(key, value)
    monkeypatch.chdir(REPO)
    spec_path = write_study(tmp_path, "split", seeds=[0, 1, 2, 3, 4], resources=_spec_resources(slurm_small_arrays))
    spec = load_study(spec_path)
    variants = expand(spec)
    results = tmp_path / "results"
    assert launch.max_array_size() == 4
    opts = LaunchOptions(executor="slurm", resources=merge_resources(spec.resources))
    report = launch.launch(spec, variants, results, opts, log=lambda *_: None)

    assert report.arrays == 2
    assert len(sbatch_calls(calls)) == 2
    ids = [report.job_ids[v.run_id] for v in variants]
    first, second = ids[0].split("_")[0], ids[4].split("_")[0]
    assert ids[:4] == [f"{first}_{i}" for i in range(4)]
    assert ids[4] in (second, f"{second}_0") and second != first
    assert [_status(results, v.run_id)["job_ids"] for v in variants] == [[i] for i in ids]
    _wait_state(results, variants, "completed")
    for job_id in ids:
        _accounted(slurm_small_arrays, job_id, "COMPLETED")


def test_two_launches_at_once_submit_each_run_once(slurm_cluster, tmp_path, cancel_new_jobs):
    """Three `launch` processes of the same study started together: one submits; the others
    either stop at the study lock (exit 1, "another launch ... is submitting") or find every run
    submitted and skip it. Each run ends with exactly one job, and SLURM saw each run once."""
    shim, calls = sbatch_shim(tmp_path / "bin")
    results = tmp_path / "results"
    env = cli_env(results, path_prefix=shim)
    spec = write_study(
        tmp_path, "concurrent", grid={"train.lr": [1e-4, 2e-4, 3e-4, 4e-4]}, resources=_spec_resources(slurm_cluster)
    )
    variants = expand(load_study(spec))
    procs = [
        subprocess.Popen(
            cli_command("launch", str(spec), "--executor", "slurm"),
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            stdin=subprocess.DEVNULL,
        )
        for _ in range(3)
    ]
    outcomes = []
    for p in procs:
        out, err = p.communicate(timeout=180)
        outcomes.append((p.returncode, out, err))
    submitted = [o for o in outcomes if o[0] == 0 and "4 of 4 run(s) submitted" in o[1]]
    skipped = [o for o in outcomes if o[0] == 0 and "0 of 4 run(s) submitted" in o[1]]
    locked = [o for o in outcomes if o[0] == 1 and "another launch of study 'concurrent' is submitting" in o[2]]
    assert len(submitted) == 1 and len(skipped) + len(locked) == 2, outcomes
    assert len(sbatch_calls(calls)) == 1

    job_ids = [_status(results, v.run_id)["job_ids"] for v in variants]
    assert all(len(ids) == 1 for ids in job_ids), job_ids
    array = job_ids[0][0].split("_")[0]
    assert sorted(ids[0] for ids in job_ids) == [f"{array}_{i}" for i in range(4)]
    # SLURM's own record: the jobs submitted from this study's log folder are exactly these 4
    logs = str(results / "concurrent" / "logs")

    def seen() -> list[str]:
        out = subprocess.run(
            ["sacct", "-X", "-n", "-P", "-o", "JobID,SubmitLine", "-S", "now-1hour"],
            capture_output=True,
            text=True,
            timeout=60,
        ).stdout
        return [line.split("|")[0] for line in out.splitlines() if logs in line]

    # sacct lists a pending array as one line until its tasks start: wait for all four lines
    wait_for(
        lambda: sorted(seen()) == sorted(ids[0] for ids in job_ids),
        60,
        lambda: f"sacct to show the 4 tasks (it shows {seen()})",
    )
    queued = [j for j in _queue() if j.startswith(f"{array}_")]
    assert len(queued) == len(set(queued)) <= 4
