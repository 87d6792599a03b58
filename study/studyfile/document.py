"""A study file as data: ``StudyFile`` (what study/studyfile/parse.py builds and validates), the
paper table it reproduces (``PaperRef``) and what each variant asks of the cluster (``Resources``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PRESET_KEY = "preset"  # the pseudo-key naming a model preset of Tables 2/3 in an override mapping
SEED_KEY = "seed"  # set by the top-level `seeds` list (or a profile / --set, which replace it)


@dataclass(frozen=True)
class Resources:
    """What one variant asks of the cluster (not part of its id)."""

    gpus: int = 1
    cpus_per_gpu: int = 8
    mem_gb: int = 64
    timeout_min: int = 1440
    nodes: int = 1
    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    constraint: str | None = None
    array_parallelism: int = 256
    max_requeue: int = 3
    sbatch: tuple[str, ...] = ()  # extra "--key=value" sbatch parameters


@dataclass(frozen=True)
class PaperRef:
    """The paper table a study reproduces; ``rows`` maps variant names to the table's rows."""

    table: str
    rows: dict[str, str] = field(default_factory=dict)
    baseline: str | None = None  # the variant the report tests the others against (None: the first)


@dataclass(frozen=True)
class StudyFile:
    path: Path
    study: str
    description: str = ""
    paper: PaperRef | None = None
    base: dict[str, Any] = field(default_factory=dict)  # dotted overrides from `base`
    set: dict[str, Any] = field(default_factory=dict)  # dotted overrides
    grid: dict[str, list[Any]] = field(default_factory=dict)  # axis -> values
    zip: list[dict[str, list[Any]]] = field(default_factory=list)
    variants: dict[str, dict[str, Any]] = field(default_factory=dict)
    exclude: list[dict[str, Any]] = field(default_factory=list)
    seeds: tuple[int, ...] = (0,)
    profiles: dict[str, dict[str, Any]] = field(default_factory=dict)
    resources: Resources = field(default_factory=Resources)

    @property
    def axes(self) -> list[str]:
        """The keys varied by ``grid`` and ``zip``, in file order."""
        return list(self.grid) + [k for group in self.zip for k in group]
