"""The trainer, for real on the CPU: it learns, it resumes bit for bit after a kill -9, DDP over
two gloo processes follows the same trajectory as one process, and a non-finite loss stops the
run with the step recorded."""

from __future__ import annotations

import copy
import os
import random
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from torch import nn

from study import config, store
from study.autoencoder.loop import train, validate_psnr
from study.autoencoder.steps import NonFiniteLoss, Reconstruct, discriminator_step, train_step
from study.kinds.registry import run_id
from study.models.autoencoder import build_autoencoder
from study.models.discriminators import build_discriminator
from study.trainer.checkpoints import load_checkpoint
from study.trainer.context import Context
from tests.launch_helpers import TINY_MODEL

ROOT = Path(__file__).resolve().parent.parent

TINY = TINY_MODEL | {
    "loss.discriminator_channels": 16,
    "data.kind": "samples",
    "data.resolution": 32,
    "train.batch_size": 8,
    "train.num_workers": 0,
    "train.val_images": 32,
}


def tiny(**overrides) -> config.ExperimentConfig:
    return config.validate(config.apply_overrides(config.ExperimentConfig(), TINY | overrides))


def _worker_env(threads: int = 1) -> dict[str, str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS=str(threads))
    return env


TRAIN_SCRIPT = """
import sys, torch
from pathlib import Path
from study import store
from study.autoencoder.loop import train
torch.set_num_threads(1)
folder = Path(sys.argv[1])
train(store.read_config(folder), folder, progress=False)
"""


def _train_subprocess(folder: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", TRAIN_SCRIPT, str(folder)],
        env=_worker_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def test_training_raises_held_out_psnr(tmp_path):
    """LiteVAE-S with a UNet discriminator, an SMC decoder and both high-frequency losses gains
    at least 3 dB of validation PSNR over the untrained model in 150 steps (the demo's one
    encoder block per level and Adam betas, docs/demo.md)."""
    cfg = tiny(
        **{
            "model.encoder.num_res_blocks": 1,
            "model.decoder.norm": "smc",
            "loss.discriminator": "unet",
            "loss.discriminator_start": 50,
            "loss.wavelet_weight": 0.1,
            "loss.gaussian_weight": 0.1,
            "train.steps": 150,
            "train.lr": 1e-3,
            "train.betas": [0.9, 0.99],
            "train.val_every": 150,
            "train.checkpoint_every": 150,
            "train.log_every": 50,
        }
    )
    torch.manual_seed(cfg.seed)
    before = validate_psnr(
        build_autoencoder(config.autoencoder_args(cfg.model)), cfg, 32, torch.device("cpu"), cfg.train.val_images
    )
    folder = store.init_run(tmp_path, cfg, run_id(cfg))
    summary = train(cfg, folder, ctx=Context(torch.device("cpu")), progress=False)
    history = store.read_jsonl(folder / "metrics.jsonl")
    assert summary["step"] == 150
    assert [r["step"] for r in history if "loss" in r] == list(range(50, 151, 50))
    assert any(r.get("discriminator") is not None for r in history), "the discriminator never trained"
    assert summary["val_psnr"] >= before + 3.0, (before, summary["val_psnr"])  # measured 11.25 -> 17.46 dB


@pytest.mark.parametrize("kind", ["patchgan", "stylegan"])
def test_discriminator_logits_on_real_images_do_not_depend_on_the_fakes(kind):
    """PatchGAN's BatchNorm in train mode and the StyleGAN discriminator's minibatch standard
    deviation compute statistics over the batch: real and fake images go through separate
    forward passes (LDM), so the logits on the real half are the same whatever the fakes are."""
    cfg = tiny(**{"loss.discriminator": kind})
    torch.manual_seed(0)
    disc = build_discriminator(kind, 16).train()
    g = torch.Generator().manual_seed(1)
    x = torch.rand(4, 3, 32, 32, generator=g) * 2 - 1
    fakes = [torch.rand(4, 3, 32, 32, generator=g) * 2 - 1, torch.full((4, 3, 32, 32), -0.9)]
    steps = []
    for fake in fakes:  # each from the same discriminator and optimiser state
        d = copy.deepcopy(disc)
        opt = torch.optim.Adam(d.parameters(), lr=1e-4, betas=(0.5, 0.9))
        steps.append(discriminator_step(cfg.loss, d, opt, x, fake, step=0))
        assert any(not torch.equal(a, b) for a, b in zip(disc.state_dict().values(), d.state_dict().values()))
    for a, b in zip(steps[0].real_logits, steps[1].real_logits):
        assert torch.equal(a, b)
    assert not all(torch.equal(a, b) for a, b in zip(steps[0].fake_logits, steps[1].fake_logits))
    # the control: one forward of real and fake together (the step before) mixes them
    joint = [copy.deepcopy(disc)(torch.cat([x, fake]))[0][:4].detach() for fake in fakes]
    assert (joint[0] - joint[1]).abs().max() > 1e-6  # same shapes: no rounding difference


class _Seen(nn.Module):
    """A real discriminator that keeps a copy of every batch it judges (the test reads them)."""

    def __init__(self, disc: nn.Module):
        super().__init__()
        self.disc, self.seen = disc, []

    def forward(self, x: torch.Tensor):
        self.seen.append(x.detach().clone())
        return self.disc(x)


@pytest.mark.parametrize("rule", ["fresh", "stale"])
def test_the_discriminator_judges_a_fresh_reconstruction_of_the_updated_autoencoder(rule):
    """LDM's Lightning loop runs training_step again for the discriminator's optimiser, and it
    decodes again, after the autoencoder's update: the discriminator's fakes are the updated
    autoencoder's reconstructions of the batch (same posterior noise here), not the ones the
    autoencoder's loss saw; ``train.discriminator_input: stale`` keeps the old shortcut. Two
    micro-batches: the fresh reconstruction is made per micro-batch too."""
    cfg = tiny(**{"loss.discriminator": "patchgan", "loss.discriminator_start": 0, "train.grad_accum": 2,
                  "train.discriminator_input": rule})  # fmt: skip
    torch.manual_seed(0)
    ae = build_autoencoder(config.autoencoder_args(cfg.model))
    disc = _Seen(build_discriminator("patchgan", 16))
    opt_ae = torch.optim.Adam(ae.parameters(), lr=1e-3, betas=(0.5, 0.9))
    opt_d = torch.optim.Adam(disc.parameters(), lr=1e-3, betas=(0.5, 0.9))
    g = torch.Generator().manual_seed(1)
    x, noise = torch.rand(8, 3, 32, 32, generator=g) * 2 - 1, torch.randn(8, 4, 4, 4, generator=g)
    model = Reconstruct(ae).train()
    x_hat, _, terms = train_step(cfg, model, disc, opt_ae, opt_d, x, noise, step=0, perceptual=None,
                                 last_layer=ae.last_layer)  # fmt: skip
    assert "discriminator" in terms
    # the calls: the generator's loss on each micro-batch's x_hat, then (real, fake) per micro-batch
    assert len(disc.seen) == 6
    torch.testing.assert_close(torch.cat(disc.seen[:2]), x_hat, rtol=0, atol=0)
    judged = torch.cat([disc.seen[3], disc.seen[5]])
    with torch.no_grad():
        updated, _ = model(x, noise)
    assert (updated - x_hat).abs().max() > 1e-3  # the update moved the reconstructions
    if rule == "fresh":
        torch.testing.assert_close(judged, updated, rtol=1e-5, atol=1e-6)
    else:
        torch.testing.assert_close(judged, x_hat, rtol=0, atol=0)


def test_kill_minus_nine_then_resume_is_bitwise_identical(tmp_path):
    cfg = tiny(
        **{
            "loss.discriminator": "unet",
            "loss.discriminator_start": 4,
            "train.steps": 24,
            "train.checkpoint_every": 4,
            "train.log_every": 2,
            "train.val_every": 1000,
        }
    )
    straight = store.init_run(tmp_path / "a", cfg, run_id(cfg))
    resumed = store.init_run(tmp_path / "b", cfg, run_id(cfg))

    proc = _train_subprocess(straight)
    assert proc.wait(timeout=600) == 0, proc.stderr.read().decode()[-2000:]

    proc = _train_subprocess(resumed)
    kill_after = random.Random().randint(5, 18)  # a step after the first checkpoint (step 4)
    deadline = time.time() + 600
    while store.read_status(resumed).get("step", 0) < kill_after and proc.poll() is None:
        assert time.time() < deadline
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_at = load_checkpoint(resumed)["step"]
    assert 4 <= killed_at < 24, killed_at

    proc = _train_subprocess(resumed)
    assert proc.wait(timeout=600) == 0, proc.stderr.read().decode()[-2000:]

    a, b = load_checkpoint(straight), load_checkpoint(resumed)
    assert a["step"] == b["step"] == 24
    for part in ("autoencoder", "discriminator"):
        for name, tensor in a[part].items():
            assert torch.equal(tensor, b[part][name]), f"{part}.{name} differs after resuming at {killed_at}"
    # the history holds each logged step once, as if the run had never been killed
    steps = [r["step"] for r in store.read_jsonl(resumed / "metrics.jsonl") if "loss" in r]
    assert steps == list(range(2, 25, 2))


DDP_SCRIPT = """
import os, sys, torch, torch.distributed as dist
from pathlib import Path
from study import store
from study.trainer.context import Context
from study.autoencoder.loop import train
torch.set_num_threads(1)
dist.init_process_group("gloo", rank=int(os.environ["RANK"]), world_size=int(os.environ["WORLD_SIZE"]))
folder = Path(sys.argv[1])
train(store.read_config(folder), folder, ctx=Context(torch.device("cpu"), dist.get_rank(), dist.get_world_size()),
      progress=False)
dist.destroy_process_group()
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_ddp_on_two_processes_follows_one_process(tmp_path):
    cfg = tiny(
        **{
            "loss.discriminator": "unet",
            "loss.discriminator_start": 3,
            "train.steps": 8,
            "train.log_every": 1,
            "train.val_every": 1000,
            "train.checkpoint_every": 8,
        }
    )
    one = store.init_run(tmp_path / "one", cfg, run_id(cfg))
    two = store.init_run(tmp_path / "two", cfg, run_id(cfg))
    proc = _train_subprocess(one)
    assert proc.wait(timeout=600) == 0, proc.stderr.read().decode()[-2000:]

    port = _free_port()
    procs = []
    for rank in range(2):
        env = _worker_env() | {
            "MASTER_ADDR": "127.0.0.1",
            "MASTER_PORT": str(port),
            "RANK": str(rank),
            "WORLD_SIZE": "2",
        }
        procs.append(
            subprocess.Popen(
                [sys.executable, "-c", DDP_SCRIPT, str(two)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
            )
        )
    for p in procs:
        assert p.wait(timeout=600) == 0, p.stderr.read().decode()[-2000:]

    h1 = [r for r in store.read_jsonl(one / "metrics.jsonl") if "loss" in r]
    h2 = [r for r in store.read_jsonl(two / "metrics.jsonl") if "loss" in r]
    assert [r["step"] for r in h1] == [r["step"] for r in h2] == list(range(1, 9))
    for r1, r2 in zip(h1, h2):
        for key in ("loss", "l1", "kl", "generator", "discriminator"):
            if key in r1:
                assert r2[key] == pytest.approx(r1[key], abs=1e-5, rel=1e-5), (r1["step"], key)
    assert "discriminator" in h1[-1]


def test_non_finite_loss_stops_the_run_with_its_step(tmp_path):
    cfg = tiny(
        **{
            "loss.discriminator": "none",
            "train.steps": 10,
            "train.lr": 1e30,
            "train.log_every": 1,
            "train.val_every": 1000,
            "train.checkpoint_every": 1000,
        }
    )
    folder = store.init_run(tmp_path, cfg, run_id(cfg))
    with pytest.raises(NonFiniteLoss, match=r"non-finite loss at step \d+"):
        train(cfg, folder, ctx=Context(torch.device("cpu")), progress=False)
