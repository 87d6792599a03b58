"""The local SLURM cluster (tools/slurm_cluster.sh) runs real jobs through submitit.

No mocks: every test submits to the cluster and waits for SLURM. Each keeps its jobs short (the
machine has 2 cores) and bounds its waits, so a broken cluster fails a test instead of hanging CI.
"""

from __future__ import annotations

import subprocess
import sys

import pytest
import submitit
from submitit.core.utils import FailedJobError, UncompletedJobError

from tests import slurm_jobs
from tests.slurm_fixture import SlurmCluster, wait_for

JOB_TIMEOUT_S = 120


def finished(job: submitit.Job, timeout_s: float = JOB_TIMEOUT_S) -> submitit.Job:
    wait_for(job.done, timeout_s, f"SLURM job {job.job_id} to finish")
    return job


def queue_state(job_id: str) -> str:
    """The job's state as the controller sees it now (squeue), "" once it left the queue."""
    out = subprocess.run(["squeue", "-h", "-j", job_id, "-o", "%T"], capture_output=True, text=True, timeout=60)
    return out.stdout.strip()


def running(job: submitit.Job) -> None:
    wait_for(lambda: queue_state(job.job_id) == "RUNNING", JOB_TIMEOUT_S, f"job {job.job_id} to run")


def accounted(cluster: SlurmCluster, job_id: str, state: str) -> None:
    """sacct reports the job in this state (slurmctld sends job records to slurmdbd asynchronously)."""
    wait_for(
        lambda: cluster.sacct_state(job_id).startswith(state),
        30,
        lambda: f"sacct to report job {job_id} {state} (it says {cluster.sacct_state(job_id)!r})",
    )


def test_submit_returns_result(slurm_cluster: SlurmCluster, tmp_path):
    executor = slurm_cluster.executor(tmp_path)
    job = executor.submit(slurm_jobs.add, 2, 3)
    assert finished(job).result() == 5
    accounted(slurm_cluster, job.job_id, "COMPLETED")


def test_job_runs_our_python_on_our_partition(slurm_cluster: SlurmCluster, tmp_path):
    job = slurm_cluster.executor(tmp_path, cpus_per_task=2).submit(slurm_jobs.where_am_i)
    seen = finished(job).result()
    assert seen["executable"] == sys.executable
    assert seen["job_id"] == job.job_id
    assert seen["partition"] == slurm_cluster.partition
    assert seen["slurm_conf"] == str(slurm_cluster.conf)
    assert seen["cpus_per_task"] == "2"


def test_batch_is_one_job_array(slurm_cluster: SlurmCluster, tmp_path):
    executor = slurm_cluster.executor(tmp_path)
    with executor.batch():
        jobs = [executor.submit(slurm_jobs.where_in_array, x) for x in range(3)]
    array_id = jobs[0].job_id.split("_")[0]
    assert [job.job_id for job in jobs] == [f"{array_id}_{i}" for i in range(3)]
    results = [finished(job).result() for job in jobs]
    assert results == [(x * x, array_id, str(x)) for x in range(3)]
    for job in jobs:
        accounted(slurm_cluster, job.job_id, "COMPLETED")


def test_exception_comes_back_as_failed_job_error(slurm_cluster: SlurmCluster, tmp_path):
    job = slurm_cluster.executor(tmp_path).submit(slurm_jobs.fail, "boom from the node")
    with pytest.raises(FailedJobError, match="boom from the node"):
        finished(job).result()
    assert "ValueError" in job.exception().args[0]
    accounted(slurm_cluster, job.job_id, "FAILED")


def test_cancelled_job_is_uncompleted_and_cancelled_in_sacct(slurm_cluster: SlurmCluster, tmp_path):
    job = slurm_cluster.executor(tmp_path).submit(slurm_jobs.sleep, 300)
    running(job)
    subprocess.run(["scancel", job.job_id], check=True, timeout=60)
    finished(job)
    # no result file can ever appear: do not wait submitit's 15 s grace for a slow filesystem
    job._results_timeout_s = 1
    with pytest.raises(UncompletedJobError):
        job.result()
    accounted(slurm_cluster, job.job_id, "CANCELLED")


def test_requeued_job_is_released_at_once(slurm_cluster: SlurmCluster, tmp_path):
    """What submitit does on preemption (scontrol requeue); release() skips SLURM's requeue delay."""
    job = slurm_cluster.executor(tmp_path).submit(slurm_jobs.slow_first_attempt, 300)
    running(job)
    subprocess.run(["scontrol", "requeue", job.job_id], check=True, timeout=60)
    wait_for(lambda: queue_state(job.job_id) == "PENDING", 30, f"job {job.job_id} to be pending again")
    slurm_cluster.release(job.job_id)
    # without release() the job would wait ~2 minutes for its begin time
    assert finished(job, timeout_s=60).result() == 1


def test_small_max_array_size(slurm_small_arrays: SlurmCluster, tmp_path):
    cluster = slurm_small_arrays
    assert cluster.max_array_size == 4
    assert cluster.config("MaxArraySize") == "4"
    # the controller enforces it: array indices 0..3 are accepted, 0..4 are refused
    too_big = subprocess.run(
        ["sbatch", "--hold", "--array=0-4", "-o", "/dev/null", "--wrap", "true"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert too_big.returncode != 0
    assert "Invalid job array specification" in too_big.stderr
    executor = cluster.executor(tmp_path)
    with executor.batch():
        jobs = [executor.submit(slurm_jobs.square, x) for x in range(4)]
    assert [finished(job).result() for job in jobs] == [0, 1, 4, 9]


def test_max_array_size_restored(slurm_cluster: SlurmCluster):
    # runs after test_small_max_array_size: its fixture put the configured value back (a restarted
    # controller on a busy machine may take a moment to answer with it)
    wanted = str(slurm_cluster.max_array_size)
    wait_for(lambda: slurm_cluster.config("MaxArraySize") == wanted, 60, f"MaxArraySize {wanted}", interval_s=1.0)
