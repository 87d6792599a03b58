"""`status` answers "how is it going" (issue 24): a running local study shows step / total, images/s
and a finite ETA in `status --json`, and the table and `--watch` show them too."""

from __future__ import annotations

import json
import subprocess
import time

from tests.launch_helpers import cli_command, cli_env, run_cli, write_study


def test_status_of_a_running_local_study_shows_step_total_and_a_finite_eta(tmp_path):
    results = tmp_path / "results"
    env = cli_env(results)
    spec = write_study(
        tmp_path, "watch", set={"train.steps": 200, "train.log_every": 2, "train.checkpoint_every": 1000}
    )
    launch = subprocess.Popen(
        cli_command("launch", str(spec), "--executor", "local", "--max-parallel", "1"),
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
    )
    try:
        row: dict = {}
        deadline = time.time() + 240
        while time.time() < deadline:
            proc = run_cli("status", str(spec), "--json", env=env)
            if proc.returncode == 0:
                row = json.loads(proc.stdout)["runs"][0]
                if row["state"] == "running" and row.get("eta_s") is not None and row.get("step"):
                    break
            time.sleep(1.0)
        assert row.get("state") == "running", row
        assert row["total_steps"] == 200 and 0 < row["step"] < 200
        assert row["eta_s"] > 0 and row["images_per_s"] > 0 and row["host"]
        assert row["stalled"] is False and row["log_age_s"] is not None
        table = run_cli("status", str(spec), env=env)
        assert table.returncode == 0 and f"/{200}" in table.stdout and "running" in table.stdout
        flagged = run_cli("status", str(spec), "--json", "--stall-after", "0", env=env)
        assert json.loads(flagged.stdout)["runs"][0]["stalled"] is True  # no log line for 0 minutes: stalled
    finally:
        run_cli("cancel", str(spec), env=env)
        launch.terminate()
        launch.wait(60)
