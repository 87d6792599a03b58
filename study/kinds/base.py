"""What a kind of run is: the rule that picks it, the config it reads, the runs it needs first,
its job body, how it is costed and how its records read. One module per kind; the registry is
``study.kinds.registry``."""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from study import config
from study.measure.cost import Work

if TYPE_CHECKING:  # the job bodies import torch; the registry is read without it (plan, status)
    from study.trainer.context import Context

Config = config.ExperimentConfig


@dataclass(frozen=True)
class Job:
    """What a job body gets: the resolved config, the run folder, where it runs, a stop request
    (preemption) and whether to show progress bars."""

    cfg: Config
    folder: Path
    ctx: Context
    stop: threading.Event | None = None
    progress: bool = True


def no_needs(cfg: Config) -> tuple[str, ...]:
    return ()


def no_fields(cfg: Config) -> dict[str, Any]:
    return {}


def no_check(cfg: Config) -> None:
    return None


def as_recorded(identity: dict[str, Any]) -> dict[str, Any]:
    """The run id of an autoencoder-side run: its identity without the settings of other kinds
    (``task``, ``diffusion``), so that ids from before other kinds existed stay the same."""
    return {k: v for k, v in identity.items() if k not in ("task", "diffusion")}


@dataclass(frozen=True)
class Reference:
    """A run that a config names in one of its fields, which the study file resolves to a run of
    the study (a diffusion run's frozen autoencoder)."""

    key: str  # the dotted field that names it, e.g. "diffusion.autoencoder"
    named: Callable[[Config], str]  # the reference as the study file wrote it
    bind: Callable[[Config, str], Config]  # the config with the named run's id filled in
    # the run a checkpoint path names: described by the config's own model, evaluated as it is
    from_checkpoint: Callable[[Config, str], Config]
    label: str  # what the named run is, in plans ("autoencoder")


@dataclass(frozen=True)
class RunKind:
    # the kind's name (recorded in the study's index, shown by plan and status)
    name: str
    # the value of the config's ``task`` that asks for this kind (several kinds may share one)
    task: str
    # whether a config is a run of this kind (the registry asks each kind in turn)
    claims: Callable[[Config], bool]
    # the config sections (or dotted fields) the run reads: ``plan`` shows only these and the
    # checks before a launch look only at them
    reads: tuple[str, ...]
    # the job body (study/launch/job.py records the state around it): a summary dict
    run: Callable[[Job], dict[str, Any]]
    # what a study's cost counts for a run (``others``: the study's configs by run id)
    work: Callable[[Config, Mapping[str, Config]], Work]
    # the total steps a run trains (``status``)
    total_steps: Callable[[Config], int]
    # the identity's fields that make the run id, from ``config.identity``
    identity: Callable[[dict[str, Any]], dict[str, Any]] = as_recorded
    # the run ids that must be completed before this run starts
    needs: Callable[[Config], tuple[str, ...]] = no_needs
    # extra fields of the run's entry in the study's index (read by the report)
    index_fields: Callable[[Config], dict[str, Any]] = no_fields
    # checks of the sections only this kind reads (config.ConfigError on a bad value)
    check: Callable[[Config], None] = no_check
    # a run the config names, resolved by the study file (None: it names none)
    reference: Reference | None = None
    description: str = field(default="", compare=False)
