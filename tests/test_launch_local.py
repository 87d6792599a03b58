"""`run_study.py launch` with the debug executor (in process) and the local executor (a queue of
subprocesses, at most --max-parallel at once), and --dry-run. Real training of tiny variants
through the real command line in a subprocess; no mocks.

A variant with train.lr 1e30 diverges after its first step and fails at run time with
"non-finite loss at step N": it must never stop the others, and `status` must say why it failed.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from study import store
from study.studyfile.grid import expand
from study.studyfile.parse import load_study
from tests.launch_helpers import cli_env, run_cli, status_json, write_study

pytestmark = pytest.mark.timeout(300)

NON_FINITE = re.compile(r"NonFiniteLoss: non-finite loss at step \d+")


def _study(tmp_path: Path, name: str, lrs: list[float], steps: int = 6) -> tuple[Path, list]:
    """Variants of these learning rates; lr 1e30 diverges, the others train normally."""
    spec = write_study(tmp_path, name, set={"train.steps": steps}, zip=[{"train.lr": lrs}])
    return spec, expand(load_study(spec))


def _status_file(results: Path, run_id: str) -> dict:
    return json.loads((store.run_dir(results, run_id) / "status.json").read_text())


def test_debug_executor_runs_in_process_and_skips_completed(tmp_path):
    results = tmp_path / "results"
    env = cli_env(results)
    spec, variants = _study(tmp_path, "debug_study", [1e30, 1e-4, 2e-4])
    diverge, good = variants[0], variants[1:]

    first = run_cli("launch", str(spec), "--executor", "debug", env=env)
    # a variant failed: exit 1, but only after every other variant ran
    assert first.returncode == 1, first.stdout + first.stderr
    assert "3 of 3 run(s) submitted with the debug executor" in first.stdout
    rows = status_json(spec, env)
    assert rows[diverge.name]["state"] == "diverged"  # a non-finite loss (study/trainer/watch.py)
    assert NON_FINITE.search(rows[diverge.name]["reason"] or ""), rows[diverge.name]
    for v in good:
        assert rows[v.name]["state"] == "completed", rows[v.name]
        assert rows[v.name]["attempts"] == 1
        assert rows[v.name]["step"] == 6
        folder = store.run_dir(results, v.run_id)
        assert store.is_done(folder)
        (record,) = store.read_evals(folder).values()
        assert set(record["metrics"]) >= {"psnr", "ssim"}
    for v in variants:
        status = _status_file(results, v.run_id)
        # in process: the job ran in the launching process itself
        assert status["pid"] == status["launcher_pid"]
        assert status["executor"] == "debug"
    # the failure is recorded in the run's own status.json, with its traceback
    failed = _status_file(results, diverge.run_id)
    assert NON_FINITE.search(failed["error"]) and "NonFiniteLoss" in failed["traceback"]

    done_marks = {v.run_id: (store.run_dir(results, v.run_id) / "DONE").read_text() for v in good}
    again = run_cli("launch", str(spec), "--executor", "debug", env=env)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "0 of 3 run(s) submitted" in again.stdout
    assert re.search(rf"\({diverge.run_id}\): skip, diverged: .*non-finite loss.*--retry-failed", again.stdout)
    for v in good:
        assert re.search(rf"\({v.run_id}\): skip, completed", again.stdout)
        assert (store.run_dir(results, v.run_id) / "DONE").read_text() == done_marks[v.run_id]
        assert _status_file(results, v.run_id)["attempts"] == 1

    # --retry-failed runs only the failed variant again (and it fails again, the same way)
    retry = run_cli("launch", str(spec), "--executor", "debug", "--retry-failed", env=env)
    assert retry.returncode == 1, retry.stdout + retry.stderr
    assert "1 of 3 run(s) submitted" in retry.stdout
    assert re.search(rf"\({diverge.run_id}\): submit, retry: .*non-finite loss", retry.stdout)
    assert _status_file(results, diverge.run_id)["attempts"] == 2
    for v in good:
        assert _status_file(results, v.run_id)["attempts"] == 1


def test_dry_run_writes_nothing(tmp_path):
    results = tmp_path / "results"
    env = cli_env(results)
    spec, variants = _study(tmp_path, "dry_study", [1e30, 1e-4])
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    for executor in ("debug", "local", "slurm"):
        proc = run_cli("launch", str(spec), "--executor", executor, "--dry-run", env=env)
        # without a SLURM controller here, the dry run says so and exits 2 (study/launch/preflight.py)
        refused = executor == "slurm" and "--executor slurm: " in proc.stdout
        assert proc.returncode == (2 if refused else 0), proc.stdout + proc.stderr
        assert "dry run: 2 of 2 run(s) to submit" in proc.stdout
        assert all(f"({v.run_id}): would submit, new" in proc.stdout for v in variants)
    assert not results.exists()
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before


def test_local_executor_runs_subprocesses_at_most_max_parallel(tmp_path):
    results = tmp_path / "results"
    env = cli_env(results)
    spec, variants = _study(tmp_path, "local_study", [1e-4, 2e-4, 1e30, 3e-4], steps=8)
    diverge, good = variants[2], [variants[i] for i in (0, 1, 3)]

    proc = run_cli("launch", str(spec), "--executor", "local", "--max-parallel", "2", env=env, timeout=240)
    assert proc.returncode == 1, proc.stdout + proc.stderr  # the diverging variant failed
    assert "4 of 4 run(s) submitted with the local executor" in proc.stdout
    rows = status_json(spec, env)
    assert rows[diverge.name]["state"] == "diverged"  # a non-finite loss (study/trainer/watch.py)
    assert NON_FINITE.search(rows[diverge.name]["reason"] or ""), rows[diverge.name]
    assert all(rows[v.name]["state"] == "completed" for v in good), rows

    statuses = {v.run_id: _status_file(results, v.run_id) for v in variants}
    launcher = statuses[diverge.run_id]["launcher_pid"]
    pids = [s["pid"] for s in statuses.values()]
    # each variant ran in a process of its own, none in the launcher
    assert launcher not in pids and len(set(pids)) == len(pids)
    assert all(s["executor"] == "local" and len(s["job_ids"]) == 1 for s in statuses.values())

    # at most 2 at once: the queue starts variants in order, so the third starts only after one
    # of the first two finished, and the fourth after two of the first three did; the first two
    # ran side by side
    spans = [
        (statuses[v.run_id]["started"], statuses[v.run_id].get("finished") or statuses[v.run_id]["updated"])
        for v in variants
    ]
    ends = [end for _, end in spans]
    assert spans[2][0] >= sorted(ends[:2])[0]
    assert spans[3][0] >= sorted(ends[:3])[1]
    assert spans[1][0] < spans[0][1] and spans[0][0] < spans[1][1]

    again = run_cli("launch", str(spec), "--executor", "local", "--max-parallel", "2", env=env)
    assert again.returncode == 0 and "0 of 4 run(s) submitted" in again.stdout, again.stdout + again.stderr
