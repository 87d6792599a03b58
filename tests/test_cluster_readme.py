"""README.md's "Table 4 on your cluster", run on the one-node SLURM cluster: every command of its
block, in order (the weights fetched from generated files, the site file written where the block
writes it, Table 4 with tiny ``--set`` values added to each command so it trains in seconds),
and the refusals before anything is submitted: a site file naming a missing ImageNet root, an
unknown partition, and an ``sbatch`` that fails (no run folder left behind)."""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import stat
import subprocess
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from study.cli.main import main
from study.measure import weights as weight_files
from tests.launch_helpers import REPO, cli_env, run_cli
from tests.slurm_fixture import SlurmCluster, wait_for

pytestmark = pytest.mark.timeout(600)

SPEC = "ablations/table4.yaml"
README_WEIGHTS, README_ROOT = "/shared/litevae/weights", "/shared/datasets/imagenet"
TINY = [
    f"--set={k}={v}"
    for k, v in {
        "model.encoder.preset": "S",
        "model.latent_channels": 4,
        "model.decoder.channels": 32,
        "model.decoder.channel_mult": "[1, 1, 2, 2]",
        "model.decoder.blocks_per_level": 1,
        "model.decoder.mid_attention": "false",
        "loss.lpips_weight": 0.1,  # the paper's LPIPS-VGG term stays: its weights must be staged
        "loss.discriminator": "none",
        "data.resolution": 32,
        "train.steps": 3,
        "train.batch_size": 4,
        "train.num_workers": 0,
        "train.val_every": 1000,
        "train.val_images": 2,
        "train.checkpoint_every": 2,
        "eval.num_images": 8,
        "eval.batch_size": 8,
        "eval.metrics": "[psnr, ssim]",
    }.items()
]
HOLD_S = 90
ON_THE_NODE = ["--gpus", "0", "--cpus", "1", "--mem-gb", "1", "--time", "10"]  # what the 2-core node has


def readme_block() -> tuple[list[list[str]], str]:
    """The block's `python run_study.py` commands (arguments after the script) and its site file."""
    text = (REPO / "README.md").read_text()
    section = text.split("## Table 4 on your cluster", 1)[1].split("\n## ", 1)[0]
    block = section.split("```bash\n", 1)[1].split("```", 1)[0]
    site_text = block.split("<<'EOF'\n", 1)[1].split("\nEOF\n", 1)[0] + "\n"
    commands = [shlex.split(line)[2:] for line in block.splitlines() if line.startswith("python run_study.py ")]
    return commands, site_text


def _states(env: dict[str, str]) -> dict[str, str]:
    """{variant: state} from `status SPEC --json` (with the tiny settings: their run ids)."""
    proc = run_cli("status", SPEC, "--json", *TINY, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return {row["name"]: row["state"] for row in json.loads(proc.stdout)["runs"]}


def _imagenet(root: Path) -> Path:
    rng = np.random.default_rng(0)
    for folder, n in (("train/n01", 20), ("train/n02", 20), ("val", 8)):
        (root / folder).mkdir(parents=True)
        for i in range(n):
            Image.fromarray(rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)).save(root / folder / f"{i}.png")
    return root


def _vgg16_features(path: Path) -> bytes:
    """Random torchvision VGG16 ``features`` tensors: what LPIPS-VGG loads (study/measure/weights.py)."""
    from torchvision.models import vgg16

    torch.manual_seed(0)
    torch.save({f"features.{k}": v for k, v in vgg16().features.state_dict().items()}, path)
    return path.read_bytes()


@pytest.fixture
def setup(tmp_path, monkeypatch):
    """The generated dataset, a file:// source for the weights, the environment of the commands."""
    root = _imagenet(tmp_path / "imagenet")
    data = _vgg16_features(tmp_path / "vgg16-features.pth")
    served = replace(
        weight_files.REGISTRY["vgg16"],
        url=(tmp_path / "vgg16-features.pth").as_uri(),
        sha256=hashlib.sha256(data).hexdigest(),
    )
    monkeypatch.setattr(weight_files, "REGISTRY", {"vgg16": served})  # `weights fetch` in this process
    weights = tmp_path / "weights"
    env = cli_env(tmp_path / "results", XDG_CONFIG_HOME=str(tmp_path / "config"), HOME=str(tmp_path))
    for var in ("LITEVAE_SITE", weight_files.WEIGHTS_ENV, "LITEVAE_INCEPTION_WEIGHTS", "LITEVAE_ALEXNET_WEIGHTS"):
        env.pop(var, None)
    # the jobs check the real pinned digest, which a generated file lacks: they take it as a custom file
    env["LITEVAE_VGG16_WEIGHTS"] = str(weights / served.filename)
    return tmp_path, root, weights, env


def _site(text: str, cluster: SlurmCluster, root: Path, weights: Path) -> str:
    return (
        text.replace(README_ROOT, str(root))
        .replace(README_WEIGHTS, str(weights))
        .replace("partition: gpu", f"partition: {cluster.partition}")
    )


def _jobs_since(start: str) -> list[str]:
    out = subprocess.run(
        ["sacct", "-n", "-X", "-P", "-o", "JobID", "-S", start], capture_output=True, text=True, timeout=60
    )
    return out.stdout.split()


def _sacct_start() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(time.time() - 1))


def test_the_readme_cluster_section_runs_as_written(slurm_cluster, setup, cancel_readme_jobs):
    tmp_path, root, weights, env = setup
    commands, site_text = readme_block()
    assert [c[0] for c in commands] == ["weights", "plan", "launch", "status", "cancel", "launch", "report"]
    site_file = tmp_path / "config" / "litevae" / "site.yaml"  # ~/.config/litevae/site.yaml, as $XDG_CONFIG_HOME says

    # the done-when case first: a site file naming a missing ImageNet root stops the launch
    site_file.parent.mkdir(parents=True)
    site_file.write_text(_site(site_text, slurm_cluster, tmp_path / "no-imagenet", weights))
    start = time.monotonic()
    assert run_cli("--help", env=env).returncode == 0
    startup = time.monotonic() - start  # the interpreter and the imports: seconds on a busy 2-core machine
    start, before = time.monotonic(), _sacct_start()
    refused = run_cli("launch", SPEC, "--executor", "slurm", *TINY, *ON_THE_NODE, env=env)
    assert time.monotonic() - start < startup + 10  # the checks themselves: well under 10 s
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert f"data.path: {tmp_path / 'no-imagenet'}/train does not exist" in refused.stderr
    assert f"the site file {site_file} sets datasets.imagenet" in refused.stderr
    assert not (tmp_path / "results").exists() and _jobs_since(before) == []

    for args in commands:
        if args[0] == "weights":  # in this process: its source is the generated file
            assert args[1:] == ["fetch", "--dir", README_WEIGHTS]
            assert main(["weights", "fetch", "--dir", str(weights)]) == 0
            site_file.write_text(_site(site_text, slurm_cluster, root, weights))  # the block's next step
            continue
        extra = TINY + (ON_THE_NODE if args[0] == "launch" else [])
        if args[0] == "launch" and "--retry-failed" not in args:
            extra += [f"--sbatch=--begin=now+{HOLD_S}"]  # still queued when `cancel` comes (jobs take seconds)
        proc = run_cli(*args, *extra, env=env, timeout=300)
        assert proc.returncode == 0, f"{args}: {proc.stdout}\n{proc.stderr}"
        if args[0] == "plan":
            assert "checks: data, weights, checkpoints and SLURM: all passed" in proc.stdout
        elif args[0] == "launch" and "--retry-failed" not in args:
            assert "2 of 2 run(s) submitted with the slurm executor" in proc.stdout
        elif args[0] == "cancel":  # smc is still queued or training: each job imports torch first
            states = _states(env)
            assert "smc" in args and "cancelled (was" in proc.stdout, f"{proc.stdout} {states}"
            assert "1 of 1 run(s) cancelled" in proc.stdout
            assert _states(env)["smc"] == "cancelled"
        elif args[0] == "launch":
            assert "smc" in proc.stdout and "1 of 2 run(s) submitted with the slurm executor" in proc.stdout
            wait_for(
                lambda: set(_states(env).values()) == {"completed"},
                HOLD_S + 300,
                lambda: f"both variants completed: {_states(env)}",
                interval_s=2,
            )
        elif args[0] == "report":
            assert (tmp_path / "reports" / "table4_decoder_norm" / "report.md").exists()


def test_an_unknown_partition_and_a_failing_sbatch_leave_nothing_behind(slurm_cluster, setup, cancel_readme_jobs):
    tmp_path, root, weights, env = setup
    _, site_text = readme_block()
    site_file = tmp_path / "config" / "litevae" / "site.yaml"
    site_file.parent.mkdir(parents=True)
    site_file.write_text(_site(site_text, slurm_cluster, root, weights))
    assert main(["weights", "fetch", "--dir", str(weights)]) == 0

    wrong = run_cli("launch", SPEC, "--executor", "slurm", *TINY, *ON_THE_NODE, "--partition", "nosuch", env=env)
    assert wrong.returncode == 2
    assert "resources.partition: no partition 'nosuch' on this cluster" in wrong.stderr
    assert not (tmp_path / "results").exists()

    shim = tmp_path / "bin"
    shim.mkdir()
    (shim / "sbatch").write_text("#!/bin/sh\necho 'sbatch: error: Batch job submission failed: test' >&2\nexit 1\n")
    (shim / "sbatch").chmod(stat.S_IRWXU)
    failing = dict(env, PATH=f"{shim}{os.pathsep}{env['PATH']}")
    proc = run_cli("launch", SPEC, "--executor", "slurm", *TINY, *ON_THE_NODE, env=failing)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "the submission failed" in proc.stderr and "nothing was submitted" in proc.stderr
    assert not list((tmp_path / "results" / "runs").glob("*"))
    assert not list((tmp_path / "results" / "table4_decoder_norm").glob("index*.json"))


@pytest.fixture
def cancel_readme_jobs(slurm_cluster: SlurmCluster, tmp_path):
    """Cancels the jobs the test left queued: those whose batch script lies under its tmp_path."""
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
