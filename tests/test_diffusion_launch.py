"""A diffusion run launched with its autoencoder (Tables 7, 13): on the real SLURM cluster of the
tests its job waits for the autoencoder's (``afterok``) and then completes; an autoencoder that
fails leaves the diffusion run failed with the autoencoder's reason, on SLURM and locally, never
waiting forever."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from study import store
from study.measure import weights as weight_files
from study.studyfile.grid import expand
from study.studyfile.parse import load_study
from tests.launch_helpers import RESOURCES, cli_env, run_cli, write_study
from tests.slurm_fixture import wait_for

pytestmark = pytest.mark.slurm
pytest_plugins = ["tests.metric_fixtures"]  # a generated Inception file

# A tiny denoiser on the 4x4x4 latents of the tiny autoencoder: 20 steps, 8 samples.
DIFFUSION = {
    "task": "diffusion",
    "diffusion.autoencoder": "ae",
    "diffusion.unet": "tiny",
    "diffusion.steps": 20,
    "diffusion.batch_size": 8,
    "diffusion.warmup_steps": 0,
    "diffusion.cache_images": 16,
    "diffusion.num_samples": 8,
    "diffusion.sampler_steps": 4,
    "diffusion.reference_images": 8,
    "diffusion.sample_batch_size": 8,
}


def broken(tmp_path: Path) -> dict:
    """An autoencoder whose job fails at its start, past every check before the launch: its
    ``model.init`` exists (and matches its digest) but is no checkpoint."""
    corrupt = tmp_path / "corrupt.ckpt"
    corrupt.write_bytes(b"not a checkpoint" * 64)
    return {"model.init": str(corrupt)}


def slurm_env(results: Path, inception: Path) -> dict[str, str]:
    """The jobs' environment, with a generated Inception file for the generation FID (staged
    weights: the preflight refuses a SLURM launch without them)."""
    return cli_env(results, **{weight_files.REGISTRY["inception"].override_env: str(inception)})


def _study(tmp_path: Path, name: str, ae: dict, cluster=None) -> tuple[Path, list]:
    resources = RESOURCES | ({"partition": cluster.partition} if cluster else {})
    spec = write_study(tmp_path, name, variants={"ae": ae, "ldm": dict(DIFFUSION)}, resources=resources)
    return spec, expand(load_study(spec))


def _states(root: Path, variants: list) -> dict[str, store.RunState]:
    return {v.name: s for v, s in zip(variants, store.run_states([store.run_dir(root, v.run_id) for v in variants]))}


def _dependency(job_id: str) -> str:
    out = subprocess.run(["squeue", "-h", "-j", job_id, "-o", "%E"], capture_output=True, text=True, timeout=30)
    return out.stdout.strip()


def test_on_slurm_the_diffusion_job_waits_for_its_autoencoder_then_completes(slurm_cluster, tmp_path, inception_file):
    spec, variants = _study(tmp_path, "gen_wait", {}, slurm_cluster)
    results = tmp_path / "results"
    env = slurm_env(results, inception_file)
    proc = run_cli("launch", str(spec), "--executor", "slurm", env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    ae, ldm = variants
    ae_job = store.read_status(store.run_dir(results, ae.run_id))["job_ids"][-1]
    ldm_status = store.read_status(store.run_dir(results, ldm.run_id))
    assert ldm_status["needs"] == [ae.run_id]
    # submitted behind the autoencoder's job: its sbatch script names the dependency
    ldm_job = ldm_status["job_ids"][-1]
    script = results / "gen_wait" / "logs" / ldm_job.split("_")[0] / f"{ldm_job.split('_')[0]}_submission.sh"
    directives = script.read_text()
    assert f"#SBATCH --dependency=afterok:{ae_job}" in directives and "#SBATCH --kill-on-invalid-dep=yes" in directives
    wait_for(
        lambda: all(s.state is store.State.COMPLETED for s in _states(results, variants).values()),
        600,
        lambda: f"both runs to complete: {_states(results, variants)}",
        interval_s=2.0,
    )
    # and it started only once the autoencoder was done
    ae_done = float((store.run_dir(results, ae.run_id) / "DONE").read_text())
    assert store.read_status(store.run_dir(results, ldm.run_id))["started"] >= ae_done
    evals = store.read_evals(store.run_dir(results, ldm.run_id))
    generation = [r for r in evals.values() if r["protocol"].get("kind") == "generation"]
    assert generation and ("gfid" in generation[0]["metrics"] or "gfid" in generation[0]["unavailable"])


def test_on_slurm_a_failed_autoencoder_fails_its_diffusion_run_with_its_reason(slurm_cluster, tmp_path, inception_file):
    spec, variants = _study(tmp_path, "gen_fail", broken(tmp_path), slurm_cluster)
    results = tmp_path / "results"
    proc = run_cli("launch", str(spec), "--executor", "slurm", env=slurm_env(results, inception_file))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    ae, ldm = variants

    def settled() -> bool:
        states = _states(results, variants)
        return states["ae"].state is store.State.FAILED and states["ldm"].state is store.State.FAILED

    wait_for(settled, 300, lambda: f"both runs to fail: {_states(results, variants)}", interval_s=2.0)
    why = _states(results, variants)["ldm"].reason
    assert why.startswith(f"needed run {ae.run_id} failed:") and "corrupt.ckpt" in why, why
    # SLURM cancelled the waiting job (--kill-on-invalid-dep): nothing of this study stays queued
    wait_for(
        lambda: _dependency(store.read_status(store.run_dir(results, ldm.run_id))["job_ids"][-1]) == "",
        120,
        lambda: "the diffusion job to leave the queue",
    )
    # a plain relaunch submits neither; it says why
    again = run_cli("launch", str(spec), "--executor", "slurm", env=slurm_env(results, inception_file))
    assert again.returncode == 0 and "0 of 2 run(s) submitted" in again.stdout, again.stdout


def test_locally_a_failed_autoencoder_fails_its_diffusion_run_without_starting_it(tmp_path):
    spec, variants = _study(tmp_path, "gen_local_fail", broken(tmp_path))
    results = tmp_path / "results"
    proc = run_cli("launch", str(spec), "--executor", "local", env=cli_env(results))
    ae, ldm = variants
    assert proc.returncode == 1, proc.stdout + proc.stderr  # a run failed: the launch says so
    assert f"ldm not started: needed run {ae.run_id} failed:" in proc.stdout, proc.stdout
    states = _states(results, variants)
    assert states["ae"].state is store.State.FAILED
    assert states["ldm"].state is store.State.FAILED
    assert states["ldm"].reason.startswith(f"needed run {ae.run_id} failed:"), states["ldm"].reason
    assert store.read_status(store.run_dir(results, ldm.run_id)).get("attempts", 0) == 0  # never started
    # status shows both kinds, and why the diffusion run failed
    status = run_cli("status", str(spec), env=cli_env(results))
    assert "diffusion" in status.stdout and "autoencoder" in status.stdout, status.stdout
