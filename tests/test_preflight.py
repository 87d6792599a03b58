"""The checks every launch makes before anything is created (study/launch/preflight.py): missing
dataset roots, split lists and images, unstaged weights, changed checkpoints; one line per
problem naming the variant, the key and the fix; exit 2 and nothing written. The SLURM half
(commands, partition, a failed sbatch) runs on the one-node cluster: tests/test_cluster_readme.py."""

from __future__ import annotations

import hashlib
import os
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from study.cli.main import main
from study.config import site
from study.launch import preflight
from study.measure import weights as weight_files
from study.studyfile.grid import expand
from study.studyfile.parse import load_study, parse_sets
from tests.launch_helpers import write_study

REPO = Path(__file__).resolve().parents[1]
TABLE4 = REPO / "ablations" / "table4.yaml"


@pytest.fixture
def clean(tmp_path, monkeypatch):
    """No site file, an empty weights directory, no custom weight files, a results folder."""
    monkeypatch.setenv(site.SITE_ENV, str(tmp_path / "site.yaml"))
    (tmp_path / "site.yaml").write_text("{}\n")
    monkeypatch.setenv(weight_files.WEIGHTS_ENV, str(tmp_path / "weights"))
    for w in weight_files.REGISTRY.values():
        monkeypatch.delenv(w.override_env, raising=False)
    monkeypatch.setenv("LITEVAE_RESULTS", str(tmp_path / "results"))
    return tmp_path


def _images(folder: Path, n: int) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        Image.fromarray(rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    return folder


def test_a_missing_imagenet_root_refuses_the_launch_naming_the_dataset_and_the_site_file(clean, capsys):
    (clean / "site.yaml").write_text(f"datasets: {{imagenet: {clean / 'no-imagenet'}}}\n")
    start = time.monotonic()
    assert main(["launch", str(TABLE4), "--executor", "local"]) == 2
    took = time.monotonic() - start
    err = capsys.readouterr().err
    lines = [line.strip() for line in err.splitlines()[1:]]
    data = next(line for line in lines if "data.path" in line)
    assert data.startswith("table4_decoder_norm groupnorm, smc: data.path: ")
    assert f"{clean / 'no-imagenet'}/train does not exist" in data
    assert f"the site file {clean / 'site.yaml'} sets datasets.imagenet" in data and "--set data.path=" in data
    vgg = next(line for line in lines if "loss.perceptual" in line)
    assert "vgg16-397923af.pth" in vgg and "weights fetch" in vgg
    assert not (clean / "results").exists()  # no lock file, no index, no run folder
    assert took < 10


def test_unset_references_name_the_key_and_what_is_missing(clean, capsys, monkeypatch):
    monkeypatch.delenv("NO_SUCH_ROOT", raising=False)
    sets = ["--set", "data.path=${NO_SUCH_ROOT}/train"]
    assert main(["plan", str(TABLE4), "--check", *sets]) == 2
    out = capsys.readouterr().out
    assert "groupnorm, smc: data.path: ${NO_SUCH_ROOT}/train: the environment variable NO_SUCH_ROOT is not set" in out
    assert "eval.path: ${datasets.imagenet}/val: the site file" in out and "has no datasets.imagenet" in out


def _tiny(tmp_path: Path, **settings) -> Path:
    return write_study(tmp_path, "tiny", set=settings, grid={"model.decoder.norm": ["groupnorm", "smc"]})


def test_unstaged_lpips_vgg_is_refused_and_a_staged_file_lets_the_variant_through(clean, capsys, monkeypatch):
    spec = _tiny(clean, **{"loss.lpips_weight": 0.5})
    assert main(["launch", str(spec), "--executor", "local"]) == 2
    err = capsys.readouterr().err
    assert (
        f"tiny norm=groupnorm, norm=smc: loss.perceptual (lpips, loss.lpips_weight 0.5): vgg16-397923af.pth in {clean / 'weights'} is not staged"
        in err
    )
    assert "run `python run_study.py weights fetch`" in err
    assert not (clean / "results").exists()
    # a generated file staged under the pinned name, its digest pinned as the real one would be
    data = os.urandom(4096)
    (clean / "weights").mkdir()
    (clean / "weights" / "vgg16-397923af.pth").write_bytes(data)
    pinned = replace(weight_files.REGISTRY["vgg16"], sha256=hashlib.sha256(data).hexdigest())
    monkeypatch.setitem(weight_files.REGISTRY, "vgg16", pinned)
    assert main(["launch", str(spec), "--executor", "local", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "checks: data, weights, checkpoints: all passed" in out and "dry run: 2 of 2 run(s) to submit" in out
    (clean / "weights" / "vgg16-397923af.pth").write_bytes(data[:-1])  # a torn copy
    assert main(["launch", str(spec), "--executor", "local", "--dry-run"]) == 2
    assert "vgg16-397923af.pth is corrupt" in capsys.readouterr().out


def test_metric_weights_are_a_note_here_and_a_problem_on_slurm(clean):
    spec = load_study(_tiny(clean, **{"eval.metrics": ["psnr", "rfid", "lpips@vgg"]}))
    v = expand(spec)[0]
    here = list(preflight.variant_problems(v.config, site.load(), strict_metrics=False))
    assert [(p.key, p.blocking) for p in here] == [("eval.metrics (rfid)", False), ("eval.metrics (lpips@vgg)", False)]
    assert "recorded as unavailable" in here[0].fix and "vgg16-397923af.pth" in here[1].what
    there = list(preflight.variant_problems(v.config, site.load(), strict_metrics=True))
    assert all(p.blocking for p in there) and len(there) == 2


def test_image_folders_split_lists_and_eval_sizes(clean, capsys):
    folder = _images(clean / "faces", 12)
    (clean / "train.txt").write_text("0.png\n1.png\n2.png\n")
    base = {"data.kind": "folder", "data.name": "faces", "data.path": str(folder)}
    evals = {"eval.path": str(folder), "eval.name": "faces-val", "eval.num_images": 20}
    spec = _tiny(clean, **base, **evals, **{"data.list": str(clean / "missing.txt")})
    assert main(["plan", str(spec), "--check"]) == 2
    out = capsys.readouterr().out
    assert f"data.list: {clean / 'missing.txt'} does not exist (set it in the site file as datasets.faces" in out
    assert (
        "eval.num_images: eval.num_images is 20 but the evaluation set 'faces-val'" in out and "holds 12 images" in out
    )
    (clean / "train.txt").write_text("".join(f"{i}.png\n" for i in range(10)))
    fixed = evals | {"data.list": str(clean / "train.txt"), "eval.num_images": 12, "data.val_fraction": 0.5}
    spec = _tiny(clean, **base, **fixed)  # validation PSNR: train.val_images 8 of the hold-out
    assert main(["plan", str(spec), "--check"]) == 2
    assert "train.val_images: 8 but the held-out split of" in capsys.readouterr().out
    spec = _tiny(clean, **base, **fixed, **{"train.val_images": 2})
    assert main(["plan", str(spec), "--check"]) == 0
    assert "all passed" in capsys.readouterr().out


def test_only_the_sections_a_run_kind_reads_are_checked(clean):
    # a complexity run (no steps, no checkpoint) reads data.resolution only: its folder is not looked at
    spec = _tiny(clean, **{"train.steps": 0, "data.kind": "folder", "data.name": "x", "data.path": "/nowhere"})
    found = preflight.check("tiny", expand(load_study(spec)), "local", load_study(spec).resources)
    assert found.ok and not found.notes
    spec = _tiny(clean, **{"data.kind": "folder", "data.name": "x", "data.path": "/nowhere"})
    found = preflight.check("tiny", expand(load_study(spec)), "local", load_study(spec).resources)
    assert [p.key for p in found.problems] == ["data.path"]


def test_a_checkpoint_changed_since_the_plan_is_refused(clean):
    ckpt = clean / "start.bin"
    ckpt.write_bytes(b"weights, as a test stands them in")
    spec = load_study(_tiny(clean, **{"train.steps": 0}))
    (v,) = expand(spec, extra=parse_sets(spec.path, [f"model.init={ckpt}", "model.decoder.norm=smc"]))
    assert preflight.check("tiny", [v], "local", spec.resources).ok
    ckpt.write_bytes(b"other weights")
    (problem,) = preflight.check("tiny", [v], "local", spec.resources).problems
    assert problem.key == "model.init" and "not the" in problem.what and "plan again" in problem.fix
    ckpt.unlink()
    (problem,) = preflight.check("tiny", [v], "local", spec.resources).problems
    assert problem.what == f"{ckpt} does not exist" and "checkpoints.NAME" in problem.fix


def test_unstaged_metric_weights_are_one_note_naming_each_file_and_its_metrics(clean):
    variants = expand(load_study(_tiny(clean)), None, {"eval.metrics": ["rfid", "psnr", "lpips", "lpips@alex"]})
    found = preflight.check("tiny", variants, "local", load_study(_tiny(clean)).resources)
    assert found.ok  # an evaluation metric without its weights is recorded as unavailable, not refused
    (note,) = [line for line in found.lines() if "not staged" in line]
    assert note.startswith("note: tiny: weights not staged: inception (for rfid); alexnet (for lpips, lpips@alex)")
    assert "weights fetch" in note and "n/a" in note
    assert not any("not staged" in line for line in found.lines(weights_said=True))
