"""pytest fixtures for a real one-node SLURM cluster (tools/slurm_cluster.sh).

    slurm_cluster       session: brings the cluster up (or finds it up), sets SLURM_CONF, yields
                        a SlurmCluster. Fails loudly when the cluster cannot start, unless
                        LITEVAE_SKIP_SLURM=1, which skips the tests that use it.
    slurm_small_arrays  function: the same cluster with MaxArraySize=4 for one test, restored after.

Use them from tests/conftest.py:

    from tests.slurm_fixture import slurm_cluster, slurm_small_arrays  # noqa: F401

The cluster settings come from the environment the script reads (SLURM_BASE, SLURM_PARTITION,
SLURM_MAX_ARRAY_SIZE, ...). A cluster that this session started is stopped at the end of the
session; one that was already up (CI starts it in .ci/run) is left up. Jobs submitted during the
session and still queued at its end are cancelled either way.
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Iterator

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "tools" / "slurm_cluster.sh"
SMALL_MAX_ARRAY_SIZE = 4
_START_TIMEOUT_S = 600  # first start on a fresh machine installs packages


def _script(action: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", str(SCRIPT), action],
        env={**os.environ, **env},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=_START_TIMEOUT_S,
    )


def _start(**env: str) -> Path:
    """Runs `slurm_cluster.sh start`; returns the SLURM_CONF path it printed, or fails the test."""
    try:
        proc = _script("start", **env)
    except (OSError, subprocess.TimeoutExpired) as err:
        pytest.fail(f"tools/slurm_cluster.sh start did not finish: {err!r}", pytrace=False)
    match = re.search(r"^export SLURM_CONF=(\S+)$", proc.stdout, re.MULTILINE)
    if proc.returncode != 0 or match is None:
        pytest.fail(
            "The local SLURM cluster did not start (set LITEVAE_SKIP_SLURM=1 to skip the SLURM tests).\n"
            f"tools/slurm_cluster.sh start exited {proc.returncode}\n"
            f"--- stdout ---\n{proc.stdout[-3000:]}\n--- stderr ---\n{proc.stderr[-3000:]}",
            pytrace=False,
        )
    return Path(match.group(1))


def _run(*cmd: str) -> str:
    return subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=60).stdout


def _queued_job_ids() -> set[str]:
    return set(_run("squeue", "-h", "-o", "%A").split())


@dataclass(frozen=True)
class SlurmCluster:
    conf: Path
    partition: str
    max_array_size: int
    base: Path

    def config(self, key: str) -> str:
        """A value from `scontrol show config`, e.g. config("MaxArraySize") -> "1001"."""
        for line in _run("scontrol", "show", "config").splitlines():
            name, sep, value = line.partition("=")
            if sep and name.strip() == key:
                return value.strip()
        raise KeyError(key)

    def release(self, job_id: str) -> None:
        """Starts a pending (e.g. requeued) job now instead of at its delayed begin time."""
        _run("scontrol", "update", f"JobId={job_id}", "StartTime=now")

    def sacct_state(self, job_id: str) -> str:
        """The accounting state of a job (allocation line only), e.g. "COMPLETED", "CANCELLED by 0"."""
        out = _run("sacct", "-n", "-X", "-P", "-o", "State", "-j", str(job_id))
        lines = [line.strip() for line in out.splitlines() if line.strip()]
        return lines[-1] if lines else ""

    def executor(self, folder: str | os.PathLike, **parameters: Any):
        """A submitit AutoExecutor on this cluster whose jobs run this interpreter and import this repo."""
        import submitit

        executor = submitit.AutoExecutor(folder=folder, cluster="slurm", slurm_python=sys.executable)
        executor.update_parameters(
            slurm_partition=self.partition,
            timeout_min=5,
            cpus_per_task=1,
            slurm_setup=[f'export PYTHONPATH="{REPO}${{PYTHONPATH:+:$PYTHONPATH}}"'],
        )
        executor.update_parameters(**parameters)
        return executor

    @contextlib.contextmanager
    def reconfigured(self, max_array_size: int) -> Iterator["SlurmCluster"]:
        """The cluster with another MaxArraySize for the duration of the block."""
        same = {"SLURM_BASE": str(self.base), "SLURM_PARTITION": self.partition}
        _start(**same, SLURM_MAX_ARRAY_SIZE=str(max_array_size))
        self._wait_for_max_array_size(max_array_size)
        try:
            yield replace(self, max_array_size=max_array_size)
        finally:
            _start(**same, SLURM_MAX_ARRAY_SIZE=str(self.max_array_size))
            self._wait_for_max_array_size(self.max_array_size)  # the next test must not see the small size

    def _wait_for_max_array_size(self, size: int) -> None:
        """Until the controller answers with MaxArraySize ``size`` (a restarted slurmctld can answer
        with its old configuration for a moment: a suite once launched into the small arrays)."""

        def reports() -> bool:
            try:
                return self.config("MaxArraySize") == str(size)
            except (KeyError, RuntimeError, OSError, subprocess.SubprocessError):  # not answering yet
                return False

        wait_for(reports, 60, f"slurmctld to report MaxArraySize={size}")


@pytest.fixture(scope="session")
def slurm_cluster() -> Iterator[SlurmCluster]:
    if os.environ.get("LITEVAE_SKIP_SLURM") == "1":
        pytest.skip("LITEVAE_SKIP_SLURM=1: SLURM cluster tests skipped")
    # a cluster already up (CI starts it in .ci/run) is used as it is configured
    status = _script("status")
    match = re.search(r"^export SLURM_CONF=(\S+)$", status.stdout, re.MULTILINE)
    was_up = status.returncode == 0 and match is not None
    conf = Path(match.group(1)) if was_up else _start()
    old_conf = os.environ.get("SLURM_CONF")
    os.environ["SLURM_CONF"] = str(conf)
    cluster = SlurmCluster(conf=conf, partition="", max_array_size=0, base=conf.parent.parent)
    default_partition = [p for p in _run("sinfo", "-h", "-o", "%P").split() if p.endswith("*")]
    cluster = replace(
        cluster,
        partition=default_partition[0].rstrip("*"),
        max_array_size=int(cluster.config("MaxArraySize")),
    )
    before = _queued_job_ids()
    try:
        yield cluster
    finally:
        leftovers = sorted(_queued_job_ids() - before)
        if leftovers:
            subprocess.run(["scancel", *leftovers], check=False, timeout=60)
        if not was_up:
            _script("stop")
        if old_conf is None:
            os.environ.pop("SLURM_CONF", None)
        else:
            os.environ["SLURM_CONF"] = old_conf


@pytest.fixture
def slurm_small_arrays(slurm_cluster: SlurmCluster) -> Iterator[SlurmCluster]:
    with slurm_cluster.reconfigured(SMALL_MAX_ARRAY_SIZE) as cluster:
        yield cluster


def wait_for(predicate, timeout_s: float, what, interval_s: float = 0.5) -> None:
    """Polls predicate() until true; fails the test after timeout_s (jobs must never hang CI).

    `what` (a string, or a callable giving one when the wait fails) names what was awaited.
    """
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout_s:.0f} s waiting for {what() if callable(what) else what}")
        time.sleep(interval_s)
