"""The launch surface of the command line (issue 21, item 5): help without training, the default
executor named, the SLURM layout a dry run shows, `--only`, `--sbatch --KEY=VALUE` as written,
a missing `sbatch` refused before anything is created, and `cancel`. No SLURM cluster: the dry
run needs none, and `cancel` is checked against a stand-in `scancel` and a real local process."""

from __future__ import annotations

import os
import socket
import stat
import subprocess
import sys
from pathlib import Path

import pytest

import run_study
from study import store
from study.cli import launching
from study.studyfile.grid import expand
from study.studyfile.parse import load_study
from tests.launch_helpers import cli_env, run_cli, write_study

LRS = [1e-4, 2e-4, 3e-4]


@pytest.fixture
def tiny(tmp_path):
    """A study of three tiny variants (a zip over the learning rate) and its results folder."""
    spec = write_study(tmp_path, "surface", zip=[{"train.lr": LRS}], resources={"gpus": 1, "cpus_per_gpu": 4})
    return spec, tmp_path / "results", [v.name for v in expand(load_study(spec))]


def test_no_arguments_prints_help_and_trains_nothing(tmp_path):
    proc = subprocess.run(
        [sys.executable, str(Path(run_study.__file__).resolve())],
        cwd=tmp_path,
        env=cli_env(tmp_path / "results"),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("usage: run_study.py")
    assert "demo" in proc.stdout and "local executor" in proc.stdout
    assert list(tmp_path.iterdir()) == []  # no results, no reports


def test_launch_help_names_the_default_executor(capsys):
    with pytest.raises(SystemExit) as done:
        run_study.main(["launch", "--help"])
    assert done.value.code == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "local, this machine" in out.split("--executor", 2)[2] and "--sbatch --exclude=node01" in out


def test_slurm_dry_run_shows_the_arrays_and_their_resources(tiny, capsys):
    spec, results, names = tiny
    argv = ["launch", str(spec), "--executor", "slurm", "--dry-run", "--results", str(results)]
    argv += ["--partition", "gpu", "--array-parallelism", "2", "--sbatch", "--exclude=node01", "--time", "90"]
    assert run_study.main(argv) in (0, 2)  # 2: the preflight's SLURM check, where no controller answers
    out = capsys.readouterr().out
    sbatch = next(line for line in out.splitlines() if line.startswith("sbatch: "))
    for part in ("partition gpu", "1 GPU(s)", "4 CPU(s) per GPU", "time 90 min", "--exclude=node01"):
        assert part in sbatch, (part, sbatch)
    assert f"array 1: 3 task(s), at most 2 at once: {', '.join(names)}" in out
    assert "dry run: 3 of 3 run(s) to submit with the slurm executor" in out
    assert not results.exists()


def test_only_launches_the_variants_named(tiny, capsys):
    spec, results, names = tiny
    argv = ["launch", str(spec), "--executor", "slurm", "--dry-run", "--results", str(results), "--only", names[1]]
    assert run_study.main(argv) in (0, 2)  # 2: the preflight's SLURM check, where no controller answers
    out = capsys.readouterr().out
    assert f"array 1: 1 task(s), at most 256 at once: {names[1]}" in out
    assert out.count("skip, not in --only") == 2


def test_only_by_name_takes_every_seed_and_by_run_id_one_run():
    variants = expand(load_study(Path(run_study.__file__).parent / "ablations" / "smoke.yaml"))
    smc = [v.run_id for v in variants if v.name == "norm=smc"]
    assert len(smc) == 2  # two seeds
    assert launching.selected(variants, ["norm=smc"]) == frozenset(smc)
    assert launching.selected(variants, [smc[1]]) == frozenset(smc[1:])


def test_only_with_an_unknown_name_is_one_line_and_exit_2(tiny, capsys):
    spec, results, names = tiny
    argv = ["launch", str(spec), "--executor", "debug", "--results", str(results), "--only", "nope"]
    assert run_study.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "'nope'" in err[0] and all(n in err[0] for n in names)
    assert not results.exists()


def test_run_dry_run_says_nothing_was_submitted(tiny, capsys):
    spec, results, _ = tiny
    assert run_study.main(["run", str(spec), "--executor", "local", "--dry-run", "--results", str(results)]) == 0
    out = capsys.readouterr().out
    assert "dry run: nothing submitted; 3 of 3 run(s) would be submitted with the local executor" in out
    assert "submitted with" not in out.replace("would be submitted with", "")
    assert not results.exists()


def test_slurm_without_sbatch_is_one_line_before_any_folder(tiny, tmp_path):
    spec, results, _ = tiny
    bare = tmp_path / "bin"  # a PATH without sbatch or srun
    bare.mkdir()
    env = cli_env(results) | {"PATH": str(bare)}
    proc = run_cli("launch", str(spec), "--executor", "slurm", env=env)
    assert proc.returncode == 2, proc.stderr
    err = proc.stderr.strip().splitlines()
    assert len(err) == 1 and "`sbatch`" in err[0] and "--executor local" in err[0], err
    assert not results.exists()


def test_demo_runs_the_embedded_default(tmp_path, capsys):
    results = tmp_path / "results"
    assert run_study.main(["demo", "--dry-run", "--results", str(results)]) == 0
    out = capsys.readouterr().out
    assert "The embedded default study: ablations/smoke.yaml" in out
    assert "would be submitted with the local executor" in out
    makefile = (Path(run_study.__file__).parent / "Makefile").read_text()
    assert "run_study.py demo" in makefile


# --------------------------------------------------------------------------------------------
# cancel
# --------------------------------------------------------------------------------------------
def _active_run(results: Path, v, **status) -> Path:
    """A run folder whose record says a job is on it (as the launcher and the job write it)."""
    folder = store.run_dir(results, v.run_id)
    folder.mkdir(parents=True)
    (folder / "config.yaml").write_text(f"run_id: {v.run_id}\n")
    store.update_status(folder, **status)
    return folder


def _scheduler_shims(folder: Path) -> Path:
    """The scheduler's side, which this test does not have: an `scancel` that records its
    arguments and an `squeue` that cannot answer (so the runs keep their recorded states)."""
    folder.mkdir()
    log = folder / "scancel.log"
    for name, body in (
        ("scancel", f'echo "$*" >> "{log}"'),
        ("squeue", "echo 'squeue: error: no controller' >&2; exit 1"),
    ):
        shim = folder / name
        shim.write_text(f"#!/bin/sh\n{body}\n")
        shim.chmod(shim.stat().st_mode | stat.S_IXUSR)
    return log


def test_cancel_scancels_slurm_jobs_and_stops_local_ones(tiny, tmp_path):
    spec, results, names = tiny
    variants = expand(load_study(spec))
    host = socket.gethostname()
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        slurm = _active_run(results, variants[0], state="running", executor="slurm", job_ids=["4242_0"])
        local = _active_run(results, variants[1], state="running", executor="local", pid=sleeper.pid, host=host)
        log = _scheduler_shims(tmp_path / "bin")
        env = cli_env(results, path_prefix=tmp_path / "bin")
        proc = run_cli("cancel", str(spec), names[0], names[1], env=env)
        assert proc.returncode == 0, proc.stderr
        assert log.read_text().split() == ["4242_0"]
        assert sleeper.wait(timeout=30) != 0  # the local job got its signal
        for folder in (slurm, local):
            assert store.read_status(folder)["state"] == "cancelled"
        assert store.run_state(local).state is store.State.CANCELLED
        assert "2 of 2 run(s) cancelled" in proc.stdout
        again = run_cli("cancel", str(spec), env=env)  # nothing active is left: all skipped
        assert again.returncode == 0 and "0 of 3 run(s) cancelled" in again.stdout
        assert log.read_text().split() == ["4242_0"]
    finally:
        if sleeper.poll() is None:
            os.kill(sleeper.pid, 9)
        sleeper.wait()
