"""The EMA of the autoencoder (study/trainer/ema.py): the update formula after each step, and a
checkpoint round trip that resumes bitwise."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from study.trainer.ema import EMA, EMAStateError

DECAY = 0.9


def _model(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.GroupNorm(4, 8),
        nn.SiLU(),
        nn.Conv2d(8, 3, 1),
        nn.Flatten(),
        nn.BatchNorm1d(3 * 4 * 4),
    )


def _step(model: nn.Module, opt: torch.optim.Optimizer, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(4, 3, 4, 4, generator=g)
    loss = model(x).square().mean()
    opt.zero_grad()
    loss.backward()
    opt.step()


def test_ema_starts_as_a_frozen_copy_in_eval_mode():
    model = _model()
    ema = EMA(model, DECAY)
    for (n, p), (_, e) in zip(model.named_parameters(), ema.module.named_parameters()):
        assert torch.equal(p, e) and p.data_ptr() != e.data_ptr() and not e.requires_grad, n
    assert not ema.module.training and ema.num_updates == 0
    for bad in (0.0, 1.0, -0.5, 1.5):
        with pytest.raises(ValueError):
            EMA(model, bad)


def test_update_is_decay_times_ema_plus_one_minus_decay_times_w_after_each_step():
    model = _model()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    ema = EMA(model, DECAY)
    expected64 = {n: p.detach().double().numpy().copy() for n, p in model.named_parameters()}
    for step in range(4):
        _step(model, opt, step)
        before = {n: e.clone() for n, e in ema.module.named_parameters()}
        ema.update(model)
        assert ema.num_updates == step + 1
        for n, w in model.named_parameters():
            e = dict(ema.module.named_parameters())[n]
            # bitwise: the formula evaluated in the parameters' dtype
            assert torch.equal(e, DECAY * before[n] + (1 - DECAY) * w.detach()), (step, n)
            # and the recursion in float64 numpy, to float32 rounding
            expected64[n] = DECAY * expected64[n] + (1 - DECAY) * w.detach().double().numpy()
            np.testing.assert_allclose(e.double().numpy(), expected64[n], rtol=1e-5, atol=1e-7)
            assert not torch.equal(e, w), (step, n)  # an average, not a copy
        # buffers (BatchNorm's running statistics) follow the model
        for b_ema, b in zip(ema.module.buffers(), model.buffers()):
            assert torch.equal(b_ema, b)


def test_checkpoint_round_trip_resumes_bitwise(tmp_path):
    model = _model()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    ema = EMA(model, DECAY)
    for step in range(3):
        _step(model, opt, step)
        ema.update(model)
    path = tmp_path / "ckpt.pt"
    torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "ema": ema.state_dict()}, path)

    resumed_model = _model(seed=1)  # other initial weights: everything must come from the file
    resumed_opt = torch.optim.Adam(resumed_model.parameters(), lr=1e-2)
    resumed = EMA(resumed_model, DECAY)
    state = torch.load(path, weights_only=True)
    resumed_model.load_state_dict(state["model"])
    resumed_opt.load_state_dict(state["opt"])
    resumed.load_state_dict(state["ema"])
    assert resumed.num_updates == 3
    for a, b in zip(ema.module.state_dict().values(), resumed.module.state_dict().values()):
        assert torch.equal(a, b)

    for step in range(3, 5):
        for m, o, e in ((model, opt, ema), (resumed_model, resumed_opt, resumed)):
            _step(m, o, step)
            e.update(m)
    for (n, a), b in zip(ema.module.state_dict().items(), resumed.module.state_dict().values()):
        assert torch.equal(a, b), n


def test_a_checkpoint_with_another_decay_or_other_weights_is_refused():
    ema = EMA(_model(), DECAY)
    state = ema.state_dict()
    with pytest.raises(EMAStateError, match="decay"):
        EMA(_model(), 0.99).load_state_dict(state)
    other = EMA(nn.Linear(2, 2), DECAY)
    with pytest.raises(EMAStateError, match="do not fit"):
        other.load_state_dict(state)
    with pytest.raises(EMAStateError, match="parameters"):
        other.update(_model())


def _litema(shadow: torch.Tensor, weights: list[torch.Tensor], decay: float) -> list[torch.Tensor]:
    """LDM's LitEma.forward (ldm/modules/ema.py) written out: num_updates += 1, THEN
    decay_n = min(decay, (1 + num_updates) / (10 + num_updates)), shadow -= (1 - decay_n) * (shadow - w).
    The shadow after each update, in float64."""
    num_updates, out = 0, []
    shadow = shadow.double().clone()
    for w in weights:
        num_updates += 1
        d = min(decay, (1 + num_updates) / (10 + num_updates))
        shadow -= (1.0 - d) * (shadow - w.double())
        out.append(shadow.clone())
    return out


def test_the_ramped_decay_is_ldms_litema():
    """LitEma counts an update before it computes its decay: the first update's decay is 2/11
    (the shadow moves 9/11 of the way), the second's 3/12; then the ramp meets the decay."""
    m = nn.Linear(2, 2, bias=False)
    with torch.no_grad():
        m.weight.zero_()
    ema = EMA(m, 0.9999, ramp=True)
    with torch.no_grad():
        m.weight.fill_(1.0)
    ema.update(m)  # n = 1: decay 2/11
    assert torch.allclose(ema.module.weight, torch.full((2, 2), 9 / 11))
    ema.update(m)  # n = 2: decay 3/12
    assert torch.allclose(ema.module.weight, torch.full((2, 2), 3 / 12 * 9 / 11 + 9 / 12))

    # against the LitEma recursion over varying weights, past the point where the ramp meets 0.8
    torch.manual_seed(0)
    m = nn.Linear(3, 4, bias=False)
    start = m.weight.detach().clone()
    ema = EMA(m, 0.8, ramp=True)
    weights = [torch.randn(4, 3) for _ in range(40)]
    expected = _litema(start, weights, 0.8)
    for n, (w, e) in enumerate(zip(weights, expected), start=1):
        with torch.no_grad():
            m.weight.copy_(w)
        ema.update(m)
        assert ema.num_updates == n
        np.testing.assert_allclose(ema.module.weight.double().numpy(), e.numpy(), rtol=1e-5, atol=1e-6)
