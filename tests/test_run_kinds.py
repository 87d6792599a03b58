"""The run-kind registry (study/kinds): every config is a run of exactly one kind; a new kind is a
module and a registry line. The toy kind below is defined here, registered with monkeypatch, and
planned, run in the debug executor, collected and reported without touching another module."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from study import config, store
from study.kinds import registry
from study.kinds.base import Config, Job, RunKind
from study.measure import cost

REPO = Path(__file__).resolve().parents[1]


def _cfg(**overrides: Any) -> Config:
    return config.apply_overrides(config.ExperimentConfig(), overrides)


# --------------------------------------------------------------------------------------------
# the kinds of today's configs
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("overrides", "kind"),
    [
        ({}, "autoencoder"),
        ({"train.steps": 0}, "complexity"),
        ({"train.steps": 0, "model.init": "some/checkpoint.ckpt"}, "evaluation"),
        ({"model.init": "some/checkpoint.ckpt"}, "autoencoder"),  # fine-tuned from a checkpoint
        ({"task": "diffusion", "diffusion.autoencoder_id": "0123456789ab"}, "diffusion"),
    ],
)
def test_each_config_is_a_run_of_one_kind(overrides, kind):
    cfg = _cfg(**overrides)
    assert registry.kind_of(cfg).name == kind
    assert sum(k.task == cfg.task and k.claims(cfg) for k in registry.KINDS) == 1


def test_an_unknown_task_names_the_kinds():
    with pytest.raises(config.ConfigError, match=r"task.*'nope'.*autoencoder \| diffusion"):
        registry.kind_of(_cfg(task="nope"))


def test_a_diffusion_run_needs_its_autoencoder_and_reads_no_evaluation_set():
    cfg = _cfg(task="diffusion", **{"diffusion.autoencoder_id": "0123456789ab"})
    assert registry.needs(cfg) == ("0123456789ab",)
    assert "eval" not in registry.reads(cfg) and "model" not in registry.reads(cfg)
    assert registry.needs(_cfg()) == () and "eval" in registry.reads(_cfg())


def test_no_kind_test_outside_the_registry_and_the_diffusion_package():
    """A kind is decided in study/kinds only: no other module of study/ compares ``task`` or
    tests for "diffusion"."""
    pattern = re.compile(r"task\s*[!=]=|[!=]=\s*\"diffusion\"|\"diffusion\"\s*[!=]=")
    offenders = []
    for path in sorted((REPO / "study").rglob("*.py")):
        rel = path.relative_to(REPO).as_posix()
        if rel.startswith(("study/kinds/", "study/diffusion/")):
            continue
        for n, line in enumerate(path.read_text().splitlines(), 1):
            if pattern.search(line):
                offenders.append(f"{rel}:{n}: {line.strip()}")
    assert not offenders, "\n".join(offenders)


# --------------------------------------------------------------------------------------------
# a new kind: one module (here: this test's) and one registry line (here: monkeypatch)
# --------------------------------------------------------------------------------------------
def _toy_run(job: Job) -> dict[str, Any]:
    """The toy kind's job: the mean brightness of its seed's noise, recorded as an evaluation."""
    value = float(job.cfg.seed) + 0.5
    store.write_eval(job.folder, "toy", {"protocol_id": "toy", "metrics": {"psnr": value}, "unavailable": {}})
    return {"metrics": {"psnr": value}}


def _toy_work(cfg: Config, others: Any) -> cost.Work:
    return cost.Work(cfg.data.resolution, None, cfg.data.resolution, (), lambda res, device: "toy")


TOY = RunKind(
    name="toy",
    task="toy",
    claims=lambda cfg: cfg.task == "toy",
    reads=("data", "seed"),
    run=_toy_run,
    work=_toy_work,
    total_steps=lambda cfg: 0,
    identity=lambda d: {"task": d["task"], "seed": d["seed"]},
)


def test_a_toy_kind_plans_runs_and_reports_through_the_registry_alone(tmp_path, monkeypatch):
    monkeypatch.setattr(registry, "KINDS", [TOY, *registry.KINDS])
    study = tmp_path / "toy.yaml"
    study.write_text("study: toy\ndescription: a toy kind\nset: {task: toy, data.kind: samples}\nseeds: [0, 1]\n")
    results = tmp_path / "results"
    from study.cli.main import main

    assert main(["plan", str(study), "--json", "--results", str(results)]) == 0
    assert main(["launch", str(study), "--executor", "debug", "--results", str(results)]) == 0
    frame = store.collect(results, "toy", store.read_index(results, "toy")["variants"])
    assert sorted(frame["psnr"]) == [0.5, 1.5] and set(frame["state"]) == {"completed"}
    assert main(["report", str(study), "--results", str(results)]) == 0
    text = (tmp_path / "reports" / "toy" / "report.md").read_text()  # beside the results folder
    assert "1.00 ± 0.71" in text  # the two seeds' 0.5 and 1.5 as mean ± standard deviation


def test_the_toy_kind_is_refused_once_unregistered(tmp_path):
    """Outside the test's registry, ``task: toy`` is bad input: one line naming the file, exit 2."""
    study = tmp_path / "toy.yaml"
    study.write_text("study: toy\nset: {task: toy}\n")
    proc = subprocess.run(
        [sys.executable, str(REPO / "run_study.py"), "plan", str(study)],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2 and "task" in proc.stderr and "toy" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and str(study) in proc.stderr
