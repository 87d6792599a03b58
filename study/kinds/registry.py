"""The registry of run kinds: each config is a run of the first kind that claims it. Adding a kind
is a module beside this one and a line in ``KINDS``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from study import config
from study.kinds import autoencoder, complexity, diffusion, evaluation
from study.kinds.base import Config, RunKind
from study.measure import cost

KINDS: list[RunKind] = [diffusion.KIND, complexity.KIND, evaluation.KIND, autoencoder.KIND]


def tasks() -> list[str]:
    """The values ``task`` may take."""
    return sorted({k.task for k in KINDS})


def kind_of(cfg: Config) -> RunKind:
    """The kind of run ``cfg`` is; ConfigError naming ``task`` when no kind claims it. A config
    does not change: its kind is kept per config object (a plan asks for it ten times a run)."""
    found = _KIND_OF.get(id(cfg))
    if found is not None and found[0] is cfg:
        return found[1]
    for kind in KINDS:
        if kind.task == cfg.task and kind.claims(cfg):
            if len(_KIND_OF) >= _KIND_OF_MAX:
                _KIND_OF.clear()
            _KIND_OF[id(cfg)] = (cfg, kind)
            return kind
    raise config.ConfigError("task", cfg.task, " | ".join(tasks()))


_KIND_OF: dict[int, tuple[Config, RunKind]] = {}  # id(config) -> (that config, its kind)
_KIND_OF_MAX = 300_000  # cleared when full: a memo, not a store


def check(cfg: Config) -> None:
    """The checks of the sections only ``cfg``'s kind reads (ConfigError)."""
    kind_of(cfg).check(cfg)


def identity(cfg: Config) -> dict[str, Any]:
    """What defines the run: its kind's part of ``config.identity``."""
    return kind_of(cfg).identity(config.identity(cfg))


def run_id(cfg: Config) -> str:
    """A run's id: 12 hex digits of the sha256 of its canonical identity."""
    return config.identity_hash(identity(cfg))


def needs(cfg: Config) -> tuple[str, ...]:
    """The run ids that must be completed before ``cfg``'s run starts."""
    return kind_of(cfg).needs(cfg)


def reads(cfg: Config) -> tuple[str, ...]:
    """The config sections (or dotted fields) ``cfg``'s run reads."""
    return kind_of(cfg).reads


def total_steps(cfg: Config) -> int:
    return kind_of(cfg).total_steps(cfg)


def index_fields(cfg: Config) -> dict[str, Any]:
    """The run's entry in the study's index beyond its name and id: its kind and what the report
    shows beside it."""
    kind = kind_of(cfg)
    return {"kind": kind.name, "needs": list(kind.needs(cfg))} | kind.index_fields(cfg)


def step_time_key(cfg: Config, device: str | None, resolution: int | None = None) -> str:
    """The key of a measured step time of ``cfg``'s run at ``resolution`` (default: its data's)."""
    return kind_of(cfg).work(cfg, {}).key(resolution or cfg.data.resolution, device)


def works(configs: Sequence[Config], ids: Sequence[str] | None = None) -> list[cost.Work]:
    """What each run trains, as the study's cost counts it (``ids``: the configs' run ids where
    known already: hashing 100 000 configs again takes seconds)."""
    by_id: Mapping[str, Config] = dict(zip(ids, configs)) if ids is not None else {run_id(c): c for c in configs}
    return [kind_of(c).work(c, by_id) for c in configs]
