"""The diffusion trainer (study/diffusion/train.py), for real on the CPU on a tiny frozen
autoencoder's latent cache: the loss falls, a run stopped mid-training (preemption) and resumed
ends with bitwise the same weights as an uninterrupted one, and a step's draws are a pure
function of (seed, step) that DDP ranks slice."""

from __future__ import annotations

import threading

import pytest
import torch

from study import store
from study.diffusion import train as diffusion_train
from study.diffusion.latents import build_cache
from study.kinds.registry import run_id
from study.trainer.checkpoints import load_checkpoint
from study.trainer.context import Context, Preempted
from tests.diffusion_helpers import CPU, diffusion_run, tiny_autoencoder


@pytest.fixture(scope="module")
def ae_folder(tmp_path_factory, one_thread):
    return tiny_autoencoder(tmp_path_factory.mktemp("results"))


def _train(ae_folder, **overrides):
    cfg, folder = diffusion_run(ae_folder, **overrides)
    build_cache(cfg, ae_folder, CPU.device, progress=False)
    return cfg, folder, diffusion_train.train_diffusion(cfg, folder, ae_folder, CPU, progress=False)


def test_draws_are_a_pure_function_of_seed_and_step_and_ranks_slice_them():
    a = diffusion_train.draw_batch(0, 5, 8, 64, 2, (4, 4, 4), 1000)
    b = diffusion_train.draw_batch(0, 5, 8, 64, 2, (4, 4, 4), 1000)
    c = diffusion_train.draw_batch(0, 6, 8, 64, 2, (4, 4, 4), 1000)
    assert all(torch.equal(x, y) for x, y in zip(vars(a).values(), vars(b).values()))
    assert not torch.equal(a.noise, c.noise) and not torch.equal(a.t, c.t)
    halves = [a.local(Context(CPU.device, rank, 2)) for rank in (0, 1)]
    assert torch.equal(torch.cat([h.noise for h in halves]), a.noise)
    assert torch.equal(torch.cat([h.index for h in halves]), a.index)
    assert int(a.flip.max()) <= 1 and int(a.t.max()) < 1000 and int(a.index.max()) < 64


@pytest.mark.training
def test_the_diffusion_loss_falls_on_a_fixed_latent_set(ae_folder):
    """L_simple (l1) of the last 20 of 100 steps is below that of the first 20 (the zero-initialised
    UNet predicts eps = 0 at first: loss E|eps| = 0.80)."""
    cfg, folder, summary = _train(ae_folder, **{"diffusion.steps": 100, "train.checkpoint_every": 100})
    losses = [r["loss"] for r in store.read_jsonl(folder / "metrics.jsonl")]
    assert len(losses) == 100 and summary["step"] == 100
    first, last = sum(losses[:20]) / 20, sum(losses[-20:]) / 20
    print(f"diffusion loss: first 20 steps {first:.4f}, last 20 steps {last:.4f}")
    assert last < 0.8 * first
    record = store.read_jsonl(folder / "metrics.jsonl")[-1]
    assert record.keys() >= {"step", "loss", "lr", "images_per_s"} and record["lr"] == cfg.diffusion.lr
    assert store.read_status(folder)["step"] == 100


class StopAfter(threading.Event):
    """A stop event that becomes set after the loop has looked at it ``n`` times (a preemption
    signal at step ``n``, deterministically)."""

    def __init__(self, n: int):
        super().__init__()
        self.n, self.calls = n, 0

    def is_set(self) -> bool:
        self.calls += 1
        return self.calls > self.n or super().is_set()


@pytest.mark.training
def test_a_run_stopped_mid_training_and_resumed_ends_bitwise_as_an_uninterrupted_one(ae_folder, tmp_path):
    steps = {"diffusion.steps": 25, "train.checkpoint_every": 10, "train.log_every": 5}
    cfg, whole, _ = _train(ae_folder, **steps)
    split = store.init_run(tmp_path, cfg, run_id(cfg))  # the same run in another results folder
    with pytest.raises(Preempted, match="step 13"):
        diffusion_train.train_diffusion(cfg, split, ae_folder, CPU, stop=StopAfter(13), progress=False)
    assert load_checkpoint(split)["step"] == 13
    summary = diffusion_train.train_diffusion(cfg, split, ae_folder, CPU, progress=False)
    assert summary["resumed_from"] == 13 and summary["step"] == 25
    a, b = load_checkpoint(whole), load_checkpoint(split)
    assert a["unet"].keys() == b["unet"].keys() and all(torch.equal(a["unet"][k], b["unet"][k]) for k in a["unet"])
    assert all(torch.equal(a["ema"]["module"][k], b["ema"]["module"][k]) for k in a["ema"]["module"])
    opt_a, opt_b = a["optimizer"]["state"], b["optimizer"]["state"]
    assert all(torch.equal(opt_a[i][k], opt_b[i][k]) for i in opt_a for k in opt_a[i])
    assert [r["step"] for r in store.read_jsonl(split / "metrics.jsonl")] == [5, 10, 15, 20, 25]


def test_the_learning_rate_warms_up_linearly_from_1e_6_then_stays():
    """LDM's LambdaLinearScheduler of the KL-f8 config: 1e-6 x lr at step 0, lr from warm_up_steps."""
    from study import config as cfgmod
    from study.diffusion.train import learning_rate

    d = cfgmod.DiffusionConfig(lr=5e-5, warmup_steps=10_000)
    assert learning_rate(d, 0) == pytest.approx(5e-5 * 1e-6)
    assert learning_rate(d, 5_000) == pytest.approx(5e-5 * (1e-6 + (1 - 1e-6) * 0.5))
    assert learning_rate(d, 10_000) == learning_rate(d, 150_000) == 5e-5
    assert learning_rate(cfgmod.DiffusionConfig(lr=1e-3, warmup_steps=0), 0) == 1e-3
