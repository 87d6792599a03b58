"""Evaluation sets apart from the training data, end to end (study/data/eval_sets.py through
the command line): a tiny study trains on one folder and is evaluated on another; its record
names that set and its digest; too large an ``eval.num_images`` fails before the first step,
at launch, naming both numbers; Table 1's FFHQ rows plan with their split lists."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import run_study
from study import store
from study.data import eval_sets
from study.kinds.registry import run_id
from study.studyfile.grid import expand
from study.studyfile.parse import load_study
from tests.test_eval_data import photo_folder

pytestmark = pytest.mark.usefixtures("one_thread")
ABLATIONS = Path(__file__).resolve().parent.parent / "ablations"

# the tiny settings of ablations/base/smoke_cpu.yaml, a few steps, no discriminator
STUDY = """\
study: evalsets
set:
  preset: LiteVAE-S
  model:
    latent_channels: 4
    decoder: {{channels: 32, channel_mult: [1, 1, 2, 2], blocks_per_level: 1, mid_attention: false}}
  loss: {{lpips_weight: 0.0, discriminator: none}}
  data: {{kind: folder, name: photos, path: {train}, resolution: 32, val_fraction: 0.25}}
  train: {{steps: 3, batch_size: 4, lr: 0.001, checkpoint_every: 100, log_every: 1, val_every: 100,
          val_images: 2, num_workers: 0}}
  eval: {{path: {val}, name: photos-val, num_images: {count}, batch_size: 8, metrics: [psnr, ssim]}}
seeds: [0]
resources: {{gpus: 0, cpus_per_gpu: 1, mem_gb: 4, timeout_min: 10}}
"""


def _study(tmp_path: Path, count: object) -> Path:
    train = photo_folder(tmp_path / "train", 40)
    val = photo_folder(tmp_path / "val", 12, offset=100)
    spec = tmp_path / "evalsets.yaml"
    spec.write_text(STUDY.format(train=train, val=val, count=count))
    return spec


def _run(spec: Path, tmp_path: Path) -> int:
    return run_study.main(
        [
            "run",
            str(spec),
            "--executor",
            "debug",
            "--results",
            str(tmp_path / "results"),
            "--reports",
            str(tmp_path / "reports"),
            "--poll",
            "0.1",
        ]
    )


def test_a_study_is_evaluated_on_its_eval_set(tmp_path):
    spec = _study(tmp_path, "all")
    assert _run(spec, tmp_path) == 0
    (variant,) = expand(load_study(spec))
    cfg = variant.config
    (record,) = store.read_evals(store.run_dir(tmp_path / "results", variant.run_id)).values()
    dataset = record["protocol"]["dataset"]
    assert dataset["name"] == "photos-val" and dataset["source"] == "eval.path"
    assert dataset["fingerprint"] == eval_sets.fingerprint(cfg.data, cfg.eval, 32)
    assert "files=12 " in dataset["fingerprint"]
    assert record["num_images"] == 12 == len(eval_sets.evaluation_set(cfg.data, cfg.eval, 32))
    assert 5 < record["metrics"]["psnr"] < 60


def test_too_many_eval_images_fail_before_the_first_step(tmp_path, capsys):
    spec = _study(tmp_path, 50)
    assert _run(spec, tmp_path) == 2
    err = capsys.readouterr().err
    assert "50" in err and "12" in err
    assert "evalsets evalsets: eval.num_images" in err  # the study, the variant, the key
    assert not (tmp_path / "results" / "runs").exists()  # nothing submitted, no checkpoint


def test_the_job_checks_the_count_before_training(tmp_path):
    """Where the launch could not see the folder, the job's start fails, with no checkpoint."""
    from study.data.datasets import DataError
    from study.launch.job import run

    (variant,) = expand(load_study(_study(tmp_path, 50)))
    folder = store.init_run(tmp_path / "results", variant.config, run_id(variant.config))
    with pytest.raises(DataError, match=r"50 .* 12 images"):
        run(folder, progress=False)
    assert not (folder / "checkpoints" / "last.pt").exists()
    assert store.read_status(folder)["state"] == "failed"


def test_table1_ffhq_rows_plan_with_their_split_lists(capsys):
    assert run_study.main(["plan", str(ABLATIONS / "table1.yaml"), "--json"]) == 0
    plan = json.loads(capsys.readouterr().out)
    ffhq = [v for v in plan["variants"] if v["name"].startswith("ffhq")]
    assert len(ffhq) == 4
    for v in ffhq:
        assert v["data"]["list"].endswith("ffhqtrain.txt")
        assert v["eval"]["list"].endswith("ffhqvalidation.txt")
        assert v["eval"]["name"] == "ffhq-val" and v["eval"]["num_images"] == "all"
    others = [v for v in plan["variants"] if not v["name"].startswith("ffhq")]
    assert others and all(not v["data"]["list"] for v in others)
