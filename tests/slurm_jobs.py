"""Functions that tests submit to the local SLURM cluster.

They live in an importable module (not in a test file) because the job unpickles them on the
node: the job's python must be able to `import tests.slurm_jobs`.
"""

from __future__ import annotations

import os
import sys
import time


def add(a: int, b: int) -> int:
    return a + b


def square(x: int) -> int:
    return x * x


def where_am_i() -> dict:
    """What the job sees: its interpreter, its SLURM job and the submitit environment."""
    import submitit

    env = submitit.JobEnvironment()
    return {
        "executable": sys.executable,
        "job_id": env.job_id,
        "partition": os.environ.get("SLURM_JOB_PARTITION"),
        "slurm_conf": os.environ.get("SLURM_CONF"),
        "cpus_per_task": os.environ.get("SLURM_CPUS_PER_TASK"),
    }


def where_in_array(x: int) -> tuple[int, str, str]:
    import submitit

    env = submitit.JobEnvironment()
    return x * x, env.array_job_id, env.array_task_id


def fail(message: str) -> None:
    raise ValueError(message)


def sleep(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


def slow_first_attempt(seconds: float) -> int:
    """Sleeps on the first attempt only; returns how often SLURM restarted the job."""
    restarts = int(os.environ.get("SLURM_RESTART_COUNT", "0"))
    if restarts == 0:
        time.sleep(seconds)
    return restarts
