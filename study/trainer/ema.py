"""An exponential moving average of a model's weights (``train.ema_decay``, off by default; the
diffusion UNet's with LitEma's ramp), updated after each optimiser step. The update, the ramp and
what is copied: docs/models.md, "The EMA update".
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn


class EMAStateError(ValueError):
    """A checkpoint's EMA state that does not fit this EMA (another decay or other parameters)."""


class EMA:
    """The moving average of ``module``'s parameters, a deep copy updated in place."""

    def __init__(self, module: nn.Module, decay: float, ramp: bool = False):
        if not 0.0 < decay < 1.0:
            raise ValueError(f"ema decay must lie in (0, 1), got {decay}")
        self.decay = float(decay)
        # LDM's LitEma (ldm/modules/ema.py) ramps the decay up: min(decay, (1 + n) / (10 + n)),
        # n the number of this update, counting from 1 (LitEma increments before it computes).
        self.ramp = ramp
        self.num_updates = 0
        self.module = copy.deepcopy(module)
        self.module.requires_grad_(False)
        self.module.eval()

    @torch.no_grad()
    def update(self, module: nn.Module) -> None:
        """One step of ``ema <- decay * ema + (1 - decay) * w`` for every parameter of ``module``."""
        ours = dict(self.module.named_parameters())
        theirs = dict(module.named_parameters())
        if ours.keys() != theirs.keys():
            raise EMAStateError("the module's parameters are not those the EMA was built from")
        n = self.num_updates + 1  # this update's number: LitEma counts it before the decay
        decay = min(self.decay, (1 + n) / (10 + n)) if self.ramp else self.decay
        for name, w in theirs.items():
            e = ours[name]
            e.copy_(decay * e + (1.0 - decay) * w.detach())
        for b_ema, b in zip(self.module.buffers(), module.buffers()):
            b_ema.copy_(b)
        self.num_updates = n

    def state_dict(self) -> dict[str, Any]:
        """For the checkpoint: the averaged weights, the decay and the update count."""
        return {"decay": self.decay, "num_updates": self.num_updates, "module": self.module.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a checkpoint's EMA bitwise; another decay is an error (a resumed run must not
        average with a different rate than the run it continues)."""
        if float(state["decay"]) != self.decay:
            raise EMAStateError(f"checkpoint EMA decay {state['decay']} != configured {self.decay}")
        try:
            self.module.load_state_dict(state["module"], strict=True)
        except RuntimeError as e:
            raise EMAStateError(f"the checkpoint's EMA weights do not fit the model: {e}") from None
        self.num_updates = int(state["num_updates"])
