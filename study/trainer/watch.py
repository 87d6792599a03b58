"""The training watch: a run's progress record, its protocol metrics during training and the
divergence rule (``Divergence``), all restored from the checkpoint when the run resumes.
Details: docs/watch.md, "The watch module".
"""

from __future__ import annotations

import math
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
import torch.distributed as dist
from torch import nn

from study import config, store
from study.trainer import live_log

DURING = "during.jsonl"
# Ours (paper gap): a discriminator loss under this (hinge's minimum is 0; the logistic loss's
# is 0 in the limit) means it tells every real image from every reconstruction with a margin.
DISCRIMINATOR_WINS_BELOW = 0.01
LOWER_IS_BETTER = ("rfid", "lpips")  # and rfid@<n>; every other metric: higher is better

OnEval = Callable[[int, nn.Module, str], dict[str, Any]]  # (step, module, "model"|"ema") -> measured


@dataclass(frozen=True)
class Divergence:
    """Where a run diverged (``step``), why (``reason``) and the figures that said so."""

    step: int
    reason: str
    figures: dict[str, Any] = field(default_factory=dict)

    def record(self) -> dict[str, Any]:
        return {"step": self.step, "reason": self.reason, "figures": {k: _number(v) for k, v in self.figures.items()}}


class Diverged(RuntimeError):
    """A run stopped on a divergence (``divergence``: where and why, when known)."""

    def __init__(self, message: str, divergence: Divergence | None = None):
        super().__init__(message)
        self.divergence = divergence


def _number(value: Any) -> Any:
    """JSON keeps finite numbers; a NaN or an infinity is written as its name ("nan", "inf")."""
    return value if not isinstance(value, float) or math.isfinite(value) else str(value)


def lower_is_better(metric: str) -> bool:
    return metric.split("@")[0] in LOWER_IS_BETTER


@dataclass
class _State:
    """What a checkpoint keeps of the watch (``Watch.state_dict``)."""

    best_psnr: float | None = None
    best_psnr_step: int | None = None
    best_psnr_resolution: int | None = None
    streak_start: int | None = None  # the first log step of the discriminator's winning streak
    streak_generator: float | None = None  # the generator's adversarial loss then
    best: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)  # weights -> metric -> value, step
    last_val: dict[str, Any] | None = None
    divergence: dict[str, Any] | None = None


class Watch:
    """One training attempt's watch; every rank makes one, the main one writes."""

    def __init__(
        self, cfg: config.ExperimentConfig, folder: Path, main: bool, device: torch.device, world: int = 1,
        on_eval: OnEval | None = None,
    ):  # fmt: skip
        self.cfg, self.folder, self.main, self.device, self.world = cfg, folder, main, device, world
        self.on_eval = on_eval if cfg.eval.during.every > 0 else None
        self.state = _State()
        self._pending: Divergence | None = None  # a divergence to stop on at the next boundary
        self._t0, self._s0 = time.time(), 0

    def state_dict(self) -> dict[str, Any]:
        return dict(vars(self.state))

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.state = _State(**state)

    def start(self, step: int) -> None:
        """The attempt starts at ``step`` (restored from the checkpoint): what the earlier attempts
        recorded after it is dropped, as metrics.jsonl is, and the ETA clock starts."""
        self._t0, self._s0 = time.time(), step
        if not self.main:
            return
        if (self.folder / DURING).exists():
            store.truncate_jsonl(self.folder / DURING, step)
        recorded = store.read_status(self.folder).get("divergence")
        if recorded and int(recorded.get("step", 0)) > step:  # the checkpoint is from before it
            store.update_status(self.folder, divergence=self.state.divergence, best=self.state.best)

    # ----------------------------------------------------------------------------------------
    # at log and validation steps
    # ----------------------------------------------------------------------------------------
    def logged(self, step: int, record: dict[str, Any]) -> None:
        """A training record (metrics.jsonl's; the same on every rank): the progress record and
        the discriminator's streak."""
        self._discriminator(step, record)
        if not self.main:
            return
        total, elapsed = self.cfg.train.steps, time.time() - self._t0
        eta = (total - step) * elapsed / (step - self._s0) if step > self._s0 else None
        store.write_progress(
            self.folder,
            {
                "step": step,
                "total_steps": total,
                "images_per_s": record.get("images_per_s"),
                "eta_s": eta,
                "loss": _number(float(record["loss"])),
                "val": self.state.last_val,
                "best": self.state.best,
                "divergence": self.state.divergence,
                "host": socket.gethostname(),
                "time": time.time(),
            },
        )

    def _discriminator(self, step: int, record: dict[str, Any]) -> None:
        d, g = record.get("discriminator"), record.get("generator")
        if d is None or g is None or float(d) >= DISCRIMINATOR_WINS_BELOW:
            self.state.streak_start = self.state.streak_generator = None
            return
        if self.state.streak_start is None or self.state.streak_generator is None:
            self.state.streak_start, self.state.streak_generator = step, float(g)
            return
        start, g0 = self.state.streak_start, self.state.streak_generator
        if step - start >= self.cfg.train.divergence_patience and float(g) > g0:
            figures = {"discriminator_loss": float(d), "generator_loss": float(g), "generator_loss_at_start": g0}
            self._diverge(Divergence(step, f"the discriminator won outright from step {start}", figures))
            self.state.streak_start = self.state.streak_generator = None

    def validated(self, step: int, psnr: float, resolution: int) -> None:
        """Validation PSNR at ``step`` (main process): the best so far, or a divergence."""
        s = self.state
        s.last_val = {"step": step, "psnr": _number(psnr), "resolution": resolution}
        if s.best_psnr_resolution != resolution:  # a new stage (Table 5): its own best
            s.best_psnr, s.best_psnr_step, s.best_psnr_resolution = None, None, resolution
        if not math.isfinite(psnr):
            self._diverge(Divergence(step, "validation PSNR is not finite", {"val_psnr": psnr}))
        elif s.best_psnr is None or psnr > s.best_psnr:
            s.best_psnr, s.best_psnr_step = psnr, step
        elif s.best_psnr - psnr > self.cfg.train.divergence_psnr_drop:
            drop = s.best_psnr - psnr
            figures = {"val_psnr": psnr, "best_psnr": s.best_psnr, "best_step": s.best_psnr_step, "drop_db": drop}
            self._diverge(Divergence(step, f"validation PSNR fell {drop:.2f} dB below its best", figures))

    def _diverge(self, divergence: Divergence) -> None:
        """Record the run's first divergence; stop at the next boundary when the run says so."""
        if self.state.divergence is not None:
            return
        self.state.divergence = divergence.record()
        if self.cfg.train.stop_on_divergence:
            self._pending = divergence
        self._write(divergence, stop=self.cfg.train.stop_on_divergence)

    def _write(self, divergence: Divergence, stop: bool) -> None:
        if not self.main:
            return
        fields: dict[str, Any] = {"divergence": divergence.record()}
        if stop:
            why = f"diverged at step {divergence.step}: {divergence.reason}"
            fields |= {"state": "diverged", "step": divergence.step, "reason": why}
        store.update_status(self.folder, **fields)

    def fatal(self, error: Exception) -> None:
        """A ``Diverged`` raised in the step (a non-finite loss): recorded; the run stops."""
        divergence = getattr(error, "divergence", None)
        if isinstance(divergence, Divergence):
            self.state.divergence = divergence.record()
            self._write(divergence, stop=True)

    def stop_if_diverged(self) -> None:
        """At a boundary step, on every rank: ``Diverged`` when any rank recorded a divergence to
        stop on (validation runs on the main process only)."""
        stop = self._pending is not None
        if self.world > 1:
            flag = torch.tensor([int(stop)], device=self.device)
            dist.all_reduce(flag, op=dist.ReduceOp.MAX)
            stop = bool(flag.item())
        if stop:
            d = self._pending
            raise Diverged(f"diverged at step {d.step}: {d.reason}" if d else "diverged (see rank 0)", d)

    # ----------------------------------------------------------------------------------------
    # protocol metrics during training
    # ----------------------------------------------------------------------------------------
    def evaluate(self, step: int, networks: dict[str, nn.Module]) -> None:
        """``eval.during`` at ``step`` when due (main process): each network's line, curves, best."""
        if not (self.main and self.on_eval is not None and step % self.cfg.eval.during.every == 0):
            return
        cuda = [self.device] if self.device.type == "cuda" else []
        for weights, module in networks.items():
            with torch.random.fork_rng(devices=cuda):  # training draws the same numbers as without it
                measured = self.on_eval(step, module, weights)
            line = {"step": step, "weights": weights, **measured}
            store.append_jsonl(self.folder / DURING, line)
            metrics = measured.get("metrics") or {}
            live_log.during(self.folder, step, weights, metrics)
            self._best(step, weights, metrics)
        store.update_status(self.folder, best=self.state.best)

    def _best(self, step: int, weights: str, metrics: dict[str, float]) -> None:
        best = self.state.best.setdefault(weights, {})
        for metric, value in metrics.items():
            if not math.isfinite(value):
                continue
            old = best.get(metric)
            if old is None or (value < old["value"] if lower_is_better(metric) else value > old["value"]):
                best[metric] = {"value": value, "step": step}
