"""The speed options of the training step (issue 15) on the CPU: gradient accumulation gives the
unaccumulated update up to float summation order, activation checkpointing of the SD decoder
gives the same outputs and gradients, the deferred non-finite check names the first bad step,
the new config fields leave the existing run ids alone, and compile refuses a platform without
a compiler by name."""

from __future__ import annotations

import pytest
import torch

from study import config as cfgmod
from study import store
from study.autoencoder.loop import _build, train
from study.autoencoder.steps import Reconstruct, autoencoder_step, discriminator_step
from study.autoencoder.trained import load_trained
from study.kinds.registry import run_id
from study.models.arguments import DecoderArgs
from study.models.autoencoder import build_decoder
from study.trainer import accelerate as accel
from study.trainer.context import Context
from tests.launch_helpers import TINY_MODEL

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = TINY_MODEL | {
    "loss.discriminator": "unet",
    "loss.discriminator_start": 0,
    "loss.discriminator_channels": 8,
    "loss.lpips_weight": 0.0,
    "data.kind": "samples",
    "data.resolution": 32,
    "train.batch_size": 4,
    "train.num_workers": 0,
    "train.val_images": 8,
    "train.log_every": 1,
    "train.val_every": 1000,
    "train.checkpoint_every": 1000,
}


def tiny(**overrides) -> cfgmod.ExperimentConfig:
    return cfgmod.validate(cfgmod.apply_overrides(cfgmod.ExperimentConfig(), TINY | overrides))


def _one_step(cfg: cfgmod.ExperimentConfig) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor], torch.Tensor]:
    """Both networks after one autoencoder + discriminator step from seed 0, and the loss. SGD
    with lr 1, so a weight moves by its gradient (Adam's first step, about lr * sign(g), would
    amplify float noise in gradients that are zero in exact maths, e.g. a conv bias before a
    GroupNorm). The discriminator is in eval mode: its spectral norms' power iteration, which
    advances once per forward pass in train mode (so once per micro-batch), holds still."""
    torch.manual_seed(0)
    cpu = torch.device("cpu")
    ae, disc, perceptual, _, _ = _build(cfg, cpu, torch.contiguous_format)
    opt_ae, opt_d = torch.optim.SGD(ae.parameters(), lr=1.0), torch.optim.SGD(disc.parameters(), lr=1.0)
    disc.eval()
    x = torch.rand(4, 3, 32, 32) * 2 - 1
    noise = torch.randn(4, cfg.model.latent_channels, 4, 4, generator=torch.Generator().manual_seed(1))
    model = Reconstruct(ae)
    x_hat, loss, terms = autoencoder_step(
        cfg, model, disc, opt_ae, x, noise, step=0, perceptual=perceptual, last_layer=ae.last_layer
    )
    assert x_hat.shape == x.shape and set(terms) >= {"l1", "kl", "generator"}
    d = discriminator_step(cfg.loss, disc, opt_d, x, x_hat, step=0, grad_accum=cfg.train.grad_accum)
    assert all(t.shape[0] == 4 for t in d.real_logits)
    return ae.state_dict(), disc.state_dict(), loss


def test_grad_accumulation_equals_the_whole_batch_up_to_summation_order():
    ae1, d1, loss1 = _one_step(tiny())
    ae2, d2, loss2 = _one_step(tiny(**{"train.grad_accum": 2}))
    ae4, _, _ = _one_step(tiny(**{"train.grad_accum": 4}))
    torch.testing.assert_close(loss2, loss1, rtol=1e-5, atol=1e-6)
    for name, w in ae1.items():
        torch.testing.assert_close(ae2[name], w, rtol=1e-4, atol=1e-6, msg=name)
        torch.testing.assert_close(ae4[name], w, rtol=1e-4, atol=1e-6, msg=name)
    for name, w in d1.items():
        torch.testing.assert_close(d2[name], w, rtol=1e-4, atol=1e-6, msg=name)
    # the comparison means something: the step moved most weights
    torch.manual_seed(0)
    fresh = _build(tiny(), torch.device("cpu"), torch.contiguous_format)[0].state_dict()
    moved = sum(not torch.allclose(fresh[n], w, rtol=1e-4, atol=1e-6) for n, w in ae1.items())
    assert moved > len(ae1) // 2


def test_grad_accumulation_trains_the_same_run(tmp_path):
    """Through the loop (its batches and per-sample noise): three steps, with and without."""
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(5)) * 2 - 1
    outputs = {}
    for n in (1, 2):
        cfg = tiny(**{"train.steps": 3, "train.grad_accum": n, "loss.discriminator": "none"})
        folder = store.init_run(tmp_path / str(n), cfg, run_id(cfg))
        train(cfg, folder, ctx=Context(torch.device("cpu")), progress=False)
        with torch.no_grad():
            outputs[n] = load_trained(folder, cfg, torch.device("cpu")).decode(
                load_trained(folder, cfg, torch.device("cpu")).encode(x).mode()
            )
    torch.manual_seed(cfg.seed)  # the untrained model: three steps moved the outputs far more
    with torch.no_grad():
        ae0 = _build(cfg, torch.device("cpu"), torch.contiguous_format)[0].eval()
        untrained = ae0.decode(ae0.encode(x).mode())
    # Outputs, not weights: Adam's first steps move a weight by about lr * sign(g), which turns
    # float noise in a gradient that is zero in exact maths (a conv bias before a GroupNorm) into
    # a full step; such weights do not change the output.
    torch.testing.assert_close(outputs[2], outputs[1], rtol=0, atol=2e-3)
    assert (outputs[1] - untrained).abs().max() > 50 * (outputs[2] - outputs[1]).abs().max()


def test_grad_accum_must_divide_the_batch():
    with pytest.raises(cfgmod.ConfigError, match="train.grad_accum"):
        tiny(**{"train.grad_accum": 3})
    with pytest.raises(cfgmod.ConfigError, match="train.grad_accum"):
        tiny(**{"train.grad_accum": 0})


def test_new_fields_keep_the_default_run_id():
    base = cfgmod.ExperimentConfig()
    assert run_id(base) == "be8329899161"  # since issue 20's recipe (tests/test_recipe_identity.py)
    same = cfgmod.validate(cfgmod.apply_overrides(base, {"train.checkpoint_decoder": True, "train.grad_accum": 1}))
    assert run_id(same) == "be8329899161"
    for key, value in (("train.grad_accum", 2), ("train.compile", True)):
        assert run_id(cfgmod.validate(cfgmod.apply_overrides(base, {key: value}))) != "be8329899161", key


def test_decoder_checkpointing_gives_the_same_outputs_and_gradients():
    args = DecoderArgs(channels=16, channel_mult=(1, 1, 2, 2), blocks_per_level=1, mid_attention=True)
    torch.manual_seed(0)
    plain = build_decoder(args, 4)
    ckpt = build_decoder(args, 4, checkpoint=True)
    ckpt.load_state_dict(plain.state_dict())
    z = torch.randn(2, 4, 4, 4)
    outs, grads = [], []
    for dec in (plain, ckpt):
        zi = z.clone().requires_grad_(True)
        out = dec(zi)
        out.square().mean().backward()
        outs.append(out.detach())
        grads.append([zi.grad] + [p.grad for p in dec.parameters()])
    torch.testing.assert_close(outs[1], outs[0], rtol=0, atol=0)
    for a, b in zip(grads[0], grads[1]):
        torch.testing.assert_close(b, a, rtol=1e-6, atol=1e-7)
    with torch.no_grad():  # evaluation: no checkpointing, the plain forward
        torch.testing.assert_close(ckpt(z), plain(z), rtol=0, atol=0)


def test_deferred_loss_watch_names_the_first_bad_step():
    watch = accel.LossWatch(torch.device("cpu"), deferred=True)
    watch.observe(torch.tensor(1.0), 0)
    watch.check()
    watch.observe(torch.tensor(float("nan")), 3)
    watch.observe(torch.tensor(float("inf")), 4)
    with pytest.raises(accel.NonFiniteLoss, match="non-finite loss at step 4"):
        watch.check()
    immediate = accel.LossWatch(torch.device("cpu"))
    assert not immediate.deferred
    with pytest.raises(accel.NonFiniteLoss, match="non-finite loss at step 8"):
        immediate.observe(torch.tensor(float("inf")), 7)


def test_compile_is_refused_without_a_compiler(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delenv("CXX", raising=False)
    reason = accel.compile_support(torch.device("cpu"))
    assert reason is not None and "compiler" in reason
    with pytest.raises(accel.CompileUnavailable, match="train.compile is true but no C/C.. compiler"):
        accel.compile_networks(torch.device("cpu"), torch.nn.Linear(2, 2))


def test_cpu_settings_are_left_alone():
    cpu = torch.device("cpu")
    before = torch.backends.cudnn.benchmark, torch.backends.cuda.matmul.allow_tf32
    accel.configure_device(cpu)
    assert (torch.backends.cudnn.benchmark, torch.backends.cuda.matmul.allow_tf32) == before
    assert accel.memory_format(cpu) == torch.contiguous_format
    opt = accel.adam(torch.nn.Linear(2, 2).parameters(), 1e-4, (0.5, 0.9), cpu)
    assert not opt.defaults["fused"] and opt.defaults["betas"] == (0.5, 0.9)


def test_spectral_norm_discriminators_stay_eager_under_compile():
    """Their two forward passes before one backward break a compiled graph (accelerate.py)."""
    from study.models.discriminators import build_discriminator

    unet, patchgan = build_discriminator("unet", 8), build_discriminator("patchgan", 8)
    assert accel.has_spectral_norm(unet) and not accel.has_spectral_norm(patchgan)
    if accel.compile_support(torch.device("cpu")) is None:  # compiling is lazy: this only wraps
        linear = torch.nn.Linear(2, 2)
        assert accel.compile_networks(torch.device("cpu"), linear, unet, None) == [unet]
        assert linear._compiled_call_impl is not None and unet._compiled_call_impl is None
