"""Live curves: a tiny real training run writes TensorBoard event files that TensorBoard's own
reader (EventAccumulator) reads back, scalar for scalar equal to metrics.jsonl; the study folder
links its runs' event folders so TensorBoard lists the variants by name; a resumed run shows each
step once; W&B asked for without wandb installed warns and trains on."""

from __future__ import annotations

import importlib.util
import os
import shutil

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.backend.event_processing.event_multiplexer import EventMultiplexer

from study import config as cfgmod
from study import store
from study.autoencoder.loop import train
from study.kinds.registry import run_id
from study.store.media import link_names, link_tensorboard, tensorboard_dir
from study.studyfile.grid import expand
from study.studyfile.parse import load_study
from study.studyfile.record import study_record
from study.trainer import live_log
from tests.launch_helpers import TINY_SET, write_study

STEPS = 6
# the discriminator on from step 2 with Eq. 2's adaptive weight: every scalar the log knows
LIVE = TINY_SET | {
    "train.steps": STEPS,
    "train.log_every": 2,
    "train.val_every": 3,
    "train.checkpoint_every": 2,
    "loss.discriminator": "patchgan",
    "loss.discriminator_channels": 8,
    "loss.discriminator_start": 2,
    "loss.adversarial_weight_mode": "adaptive",
}


def tiny(**overrides) -> cfgmod.ExperimentConfig:
    return cfgmod.validate(cfgmod.apply_overrides(cfgmod.ExperimentConfig(), LIVE | overrides))


def _scalars(logdir) -> dict[str, list[tuple[int, float]]]:
    acc = EventAccumulator(str(logdir))
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


@pytest.fixture(scope="module")
def trained(tmp_path_factory, one_thread):
    folder = store.init_run(tmp_path_factory.mktemp("live") / "results", tiny(), run_id(tiny()))
    train(store.read_config(folder), folder, progress=False)
    return folder


def test_event_accumulator_reads_every_logged_scalar(trained):
    scalars = _scalars(tensorboard_dir(trained))
    history = store.read_jsonl(trained / "metrics.jsonl")
    logged = [r for r in history if "loss" in r]
    assert [r["step"] for r in logged] == [2, 4, 6]
    expected = {
        "loss/total": "loss",
        "loss/l1": "l1",
        "loss/kl": "kl",
        "loss/rec": "rec",
        "loss/generator": "generator",
        "loss/discriminator": "discriminator",
        "adversarial/weight": "adversarial_weight",
        "speed/images_per_s": "images_per_s",
        "train/resolution": "resolution",
    }
    for tag, key in expected.items():
        got = dict(scalars[tag])
        want = {r["step"]: r[key] for r in logged if key in r}
        assert set(got) == set(want), tag
        assert all(got[s] == pytest.approx(want[s], rel=1e-6, abs=1e-7) for s in want), tag
    assert dict(scalars["val/psnr"]) == pytest.approx({r["step"]: r["val_psnr"] for r in history if "val_psnr" in r})
    assert [s for s, _ in scalars["val/psnr"]] == [3, 6]
    assert dict(scalars["lr/autoencoder"]) == pytest.approx({2: 1e-4, 4: 1e-4, 6: 1e-4})
    assert "lr/discriminator" in scalars
    # the gradient norms are real norms of real updates: positive, finite, one per log step
    # (the discriminator's from its first update on: step 3)
    for net, steps in (("autoencoder", [2, 4, 6]), ("discriminator", [4, 6])):
        norms = scalars[f"grad_norm/{net}"]
        assert [s for s, _ in norms] == steps and all(0 < v < 1e6 for _, v in norms)


def test_study_folder_lists_the_variants_for_tensorboard(trained, tmp_path):
    """The study's tensorboard folder links each launched run under its variant's name:
    TensorBoard's multiplexer finds the trained run through the link and nothing in a run that
    has not trained; a variant without a run folder has no link; the folder copies."""
    root = trained.parent.parent
    spec = load_study(write_study(tmp_path, "live_pair", variants={"a": {}, "b": {"train.lr": 2e-4}}))
    variants = expand(spec)
    records = [store.variant_record(v) for v in variants]
    records[0]["run_id"] = trained.name  # variant a is the trained run (one config, one run)
    logdir = link_tensorboard(root, store.study_dir(root, spec.study), records)
    assert os.listdir(logdir) == ["a"]  # b has no run folder yet
    assert not os.path.isabs(os.readlink(logdir / "a"))
    store.init_run(root, variants[1].config, run_id(variants[1].config))  # b launched, not trained
    link_tensorboard(root, store.study_dir(root, spec.study), records)
    assert sorted(os.listdir(logdir)) == ["a", "b"]
    mux = EventMultiplexer().AddRunsFromDirectory(str(logdir))
    mux.Reload()
    assert list(mux.Runs()) == ["a"]
    assert [e.step for e in mux.Scalars("a", "loss/total")] == [2, 4, 6]
    shutil.copytree(root, tmp_path / "copy")  # no dangling link in the way
    # write_index links what the index names: a's own id has no run folder, so only b remains
    store.write_index(root, spec.study, variants, **study_record(spec, variants, None))
    assert os.listdir(logdir) == ["b"]
    assert os.path.realpath(logdir / "b") == str(tensorboard_dir(store.run_dir(root, variants[1].run_id)).resolve())


def test_link_names_per_seed_and_alias():
    rows = [
        {"name": "smc", "seed": 0, "run_id": "r0"},
        {"name": "smc", "seed": 1, "run_id": "r1"},
        {"name": "gn", "seed": 0, "run_id": "r2"},
        {"name": "gn-again", "seed": 0, "run_id": "r2"},
    ]
    assert link_names(rows) == {"smc/seed0": "r0", "smc/seed1": "r1", "gn": "r2", "gn-again": "r2"}


def test_resumed_run_shows_each_step_once(tmp_path, one_thread):
    folder = store.init_run(
        tmp_path / "results", tiny(**{"train.log_every": 1}), run_id(tiny(**{"train.log_every": 1}))
    )
    cfg = store.read_config(folder)
    train(cfg, folder, progress=False, max_steps=5)  # logs 1..5, checkpoints at 4: 5 is lost, as in a crash
    train(cfg, folder, progress=False)  # resumes from 4: logs 5 and 6 again
    scalars = _scalars(tensorboard_dir(folder))
    history = {r["step"]: r for r in store.read_jsonl(folder / "metrics.jsonl") if "loss" in r}
    assert sorted(history) == [1, 2, 3, 4, 5, 6]
    assert [s for s, _ in scalars["loss/total"]] == [1, 2, 3, 4, 5, 6]
    assert dict(scalars["loss/total"]) == pytest.approx({s: r["loss"] for s, r in history.items()})


@pytest.mark.skipif(importlib.util.find_spec("wandb") is not None, reason="wandb is installed here")
def test_wandb_asked_for_without_wandb_warns_and_keeps_tensorboard(tmp_path, one_thread):
    folder = store.init_run(
        tmp_path / "results",
        tiny(**{"train.steps": 2, "train.wandb_project": "litevae"}),
        run_id(tiny(**{"train.steps": 2, "train.wandb_project": "litevae"})),
    )
    with pytest.warns(live_log.LiveLogWarning, match="wandb is not installed"):
        train(store.read_config(folder), folder, progress=False)
    assert [s for s, _ in _scalars(tensorboard_dir(folder))["loss/total"]] == [2]
