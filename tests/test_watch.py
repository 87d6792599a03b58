"""The training watch (study/trainer/watch.py) on real tiny runs: protocol metrics during training
at their steps for the model's and the EMA's weights, in during.jsonl and TensorBoard, without
changing what is trained; a run killed and resumed records each step once and keeps its best;
a learning rate that blows up marks the run diverged at that step and stops it; the PSNR and
discriminator rules on the watch itself; `status`'s rows (progress, ETA, stalled)."""

from __future__ import annotations

import math
import os
import socket
import time

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from study import config, store
from study.autoencoder.loop import train
from study.evaluation.during import during_evaluator
from study.kinds.registry import run_id
from study.store.media import tensorboard_dir
from study.trainer.checkpoints import load_checkpoint
from study.trainer.watch import DURING, Diverged, Watch
from tests.launch_helpers import TINY_SET

WATCHED = TINY_SET | {
    "train.steps": 6,
    "train.log_every": 1,
    "train.checkpoint_every": 4,
    "train.ema_decay": 0.9,
    "eval.during.every": 2,
    "eval.during.num_images": 4,
    "eval.metrics": ["rfid", "psnr", "ssim", "lpips"],
}


def tiny(**overrides) -> config.ExperimentConfig:
    return config.validate(config.apply_overrides(config.ExperimentConfig(), WATCHED | overrides))


def _run(root, cfg, **kwargs):
    folder = store.init_run(root, cfg, run_id(cfg))
    on_eval = during_evaluator(cfg, folder, torch.device("cpu")) if cfg.eval.during.every else None
    return folder, train(cfg, folder, progress=False, on_eval=on_eval, **kwargs)


def _scalars(folder) -> dict[str, list[tuple[int, float]]]:
    acc = EventAccumulator(str(tensorboard_dir(folder)))
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def test_protocol_metrics_during_training_at_their_steps(tmp_path, one_thread):
    cfg = tiny()
    folder, _ = _run(tmp_path / "watched", cfg)
    lines = store.read_jsonl(folder / DURING)
    assert [(r["step"], r["weights"]) for r in lines] == [(s, w) for s in (2, 4, 6) for w in ("model", "ema")]
    for r in lines:
        assert r["num_images"] == 4
        # every metric of the protocol is a number or unavailable with its reason, never both
        assert set(r["metrics"]) | set(r["unavailable"]) == {"rfid@4", "psnr", "ssim", "lpips"}
        assert not set(r["metrics"]) & set(r["unavailable"])
        assert {"psnr", "ssim"} <= set(r["metrics"]) and all(math.isfinite(v) for v in r["metrics"].values())
    assert lines[0]["protocol_id"] != lines[1]["protocol_id"]  # the EMA's weights: another protocol
    assert not (folder / "eval").exists()  # the final evaluation stays the run's only record
    scalars = _scalars(folder)
    for weights in ("model", "ema"):
        mine = {r["step"]: r["metrics"]["psnr"] for r in lines if r["weights"] == weights}
        assert dict(scalars[f"during/{weights}/psnr"]) == pytest.approx(mine)
        best = max(mine, key=lambda s: mine[s])
        assert store.read_status(folder)["best"][weights]["psnr"] == {"value": mine[best], "step": best}
    # measuring during training changes nothing trained: the same weights as a run without it
    plain, _ = _run(tmp_path / "plain", tiny(**{"eval.during.every": 0}))
    a, b = load_checkpoint(folder), load_checkpoint(plain)
    for name, tensor in a["autoencoder"].items():
        assert torch.equal(tensor, b["autoencoder"][name]), name


def test_killed_and_resumed_run_records_each_step_once(tmp_path, one_thread):
    cfg = tiny()
    folder, _ = _run(tmp_path, cfg, max_steps=5)  # checkpointed at 4; 5 is lost, as in a crash
    assert [r["step"] for r in store.read_jsonl(folder / DURING)] == [2, 2, 4, 4]
    saved = load_checkpoint(folder)["watch"]
    assert saved["best"]["model"]["psnr"]["step"] in (2, 4)
    _run(tmp_path, cfg)  # resumes from 4
    history = [r["step"] for r in store.read_jsonl(folder / "metrics.jsonl") if "loss" in r]
    assert history == [1, 2, 3, 4, 5, 6]
    lines = store.read_jsonl(folder / DURING)
    assert [(r["step"], r["weights"]) for r in lines] == [(s, w) for s in (2, 4, 6) for w in ("model", "ema")]
    assert [s for s, _ in _scalars(folder)["during/model/psnr"]] == [2, 4, 6]
    # the best is over every step's line, the resumed watch having kept steps 2 and 4's
    mine = {r["step"]: r["metrics"]["psnr"] for r in lines if r["weights"] == "model"}
    best = max(mine, key=lambda s: mine[s])
    assert load_checkpoint(folder)["watch"]["best"]["model"]["psnr"] == {"value": mine[best], "step": best}


def test_learning_rate_blow_up_marks_the_run_diverged_and_stops_it(tmp_path, one_thread):
    cfg = tiny(**{"train.steps": 10, "train.lr": 1e6, "train.val_every": 1, "train.checkpoint_every": 1})
    folder = store.init_run(tmp_path, cfg, run_id(cfg))
    with pytest.raises(Diverged) as raised:
        train(cfg, folder, progress=False)
    status = store.read_status(folder)
    step = status["divergence"]["step"]
    assert raised.value.divergence is not None and raised.value.divergence.step == step
    assert status["state"] == "diverged" and status["step"] == step < 10
    assert store.run_state(folder).state is store.State.DIVERGED
    # it happened at that step: every step before it was finite, and nothing was trained after it
    logged = [r for r in store.read_jsonl(folder / "metrics.jsonl") if "loss" in r]
    assert [r["step"] for r in logged] == list(range(1, len(logged) + 1)) and len(logged) in (step - 1, step)
    assert all(math.isfinite(r["loss"]) for r in logged[: step - 1])
    assert load_checkpoint(folder)["step"] == step - 1  # the last checkpoint is from before it
    (row,) = store.status_rows([folder])
    assert row["state"] == "diverged" and row["diverged_step"] == step and row["eta_s"] is None


def _watch(tmp_path, **overrides) -> Watch:
    cfg = config.validate(config.apply_overrides(config.ExperimentConfig(), TINY_SET | overrides))
    folder = store.init_run(tmp_path, cfg, run_id(cfg))
    watch = Watch(cfg, folder, main=True, device=torch.device("cpu"))
    watch.start(0)
    return watch


def test_validation_psnr_far_below_its_best_is_a_divergence(tmp_path):
    watch = _watch(tmp_path / "go_on", **{"train.stop_on_divergence": False, "train.divergence_psnr_drop": 5.0})
    for step, psnr, resolution in [(1, 20.0, 32), (2, 26.0, 32), (3, 21.5, 32), (4, 18.0, 64), (5, 20.9, 32)]:
        watch.validated(step, psnr, resolution)  # a new stage (64) starts its own best
        watch.stop_if_diverged()  # it goes on
    assert store.read_status(watch.folder).get("divergence") is None
    watch.validated(6, 15.8, 32)  # 5.1 dB below 20.9, the best since the stage came back to 32
    watch.stop_if_diverged()
    status = store.read_status(watch.folder)
    assert status["divergence"]["step"] == 6 and status["divergence"]["figures"]["best_psnr"] == 20.9
    assert status["state"] == "pending"  # recorded, not stopped
    stopping = _watch(tmp_path / "stop", **{"train.divergence_psnr_drop": 5.0})
    stopping.validated(1, 26.0, 32)
    stopping.validated(2, 20.0, 32)
    with pytest.raises(Diverged, match="at step 2: validation PSNR fell 6.00 dB"):
        stopping.stop_if_diverged()
    assert store.read_status(stopping.folder)["state"] == "diverged"


def test_discriminator_winning_outright_for_the_patience_is_a_divergence(tmp_path):
    watch = _watch(tmp_path, **{"train.divergence_patience": 30})
    record = {"loss": 1.0, "images_per_s": 1.0}
    watch.logged(10, record | {"discriminator": 0.0, "generator": 0.5})
    watch.logged(20, record | {"discriminator": 0.3, "generator": 0.9})  # not winning: the streak ends
    for step, g in [(30, 0.5), (40, 0.6), (50, 0.7)]:
        watch.logged(step, record | {"discriminator": 0.0, "generator": g})
    watch.stop_if_diverged()  # 20 steps of 30
    watch.logged(60, record | {"discriminator": 0.001, "generator": 0.4})  # 30 steps, but the generator fell
    watch.stop_if_diverged()
    watch.logged(70, record | {"discriminator": 0.0, "generator": 1.2})
    with pytest.raises(Diverged, match="at step 70: the discriminator won outright from step 30"):
        watch.stop_if_diverged()


def test_status_rows_show_progress_eta_and_a_stalled_run(tmp_path, one_thread):
    cfg = tiny(**{"eval.during.every": 0, "train.steps": 4})
    folder, _ = _run(tmp_path, cfg, max_steps=3)
    store.update_status(folder, state="running", executor="local", pid=os.getpid(), host=socket.gethostname())
    (row,) = store.status_rows([folder])
    assert row["state"] == "running" and row["step"] == 3 and row["total_steps"] == 4
    assert row["eta_s"] is not None and 0 < row["eta_s"] < 600 and row["images_per_s"] > 0
    assert math.isfinite(row["loss"]) and row["host"] == socket.gethostname() and not row["stalled"]
    (late,) = store.status_rows([folder], now=time.time() + 3600)
    assert late["stalled"] and late["log_age_s"] > 3600


def test_bad_watch_settings_name_their_key():
    with pytest.raises(config.ConfigError, match="eval.during.every: got -1"):
        tiny(**{"eval.during.every": -1})
    with pytest.raises(config.ConfigError, match="train.divergence_psnr_drop: got 0"):
        tiny(**{"train.divergence_psnr_drop": 0})
