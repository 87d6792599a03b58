"""A study's records as the report reads them: ``results/<study>/index.json`` and the run folders.

The index (written by ``study.store.write_index`` at launch, and again by ``collect`` and
``report``) holds everything the report needs of the study file: the variants (name, aliases,
run id, seed, axes, dataset, resolution, latent, paper row), the study's row order, its planned
seeds, its paper table with the row each name is compared with, the profile and the study file's
path. The run folders hold the numbers; ``store.collect`` gathers them into one frame.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from study import store


class NoIndexError(FileNotFoundError):
    """A study without ``results/<study>/index.json``: nothing was launched or collected yet."""


@dataclass(frozen=True)
class StudyRecords:
    root: Path  # the results folder the runs live in
    index: dict[str, Any]  # results/<study>/index.json
    frame: pd.DataFrame  # store.collect over the index's variants

    @property
    def study(self) -> str:
        return str(self.index["study"])

    @property
    def paper(self) -> dict[str, Any] | None:
        """The paper reference: ``table``, ``rows`` (name -> row label), ``settings``."""
        return self.index.get("paper") or None

    @property
    def table(self) -> str | None:
        """The id of the paper table the study reproduces (None: none)."""
        return str(self.paper["table"]) if self.paper else None


def read_study(root: Path, study: str, profile: str | None = None) -> StudyRecords:
    """The study's index (``profile``'s: ``store.index_path``) and its runs, collected."""
    root = Path(root)
    index = store.read_index(root, study, profile)
    if index is None:
        raise NoIndexError(
            f"{store.index_path(root, study, profile)} not found: launch the study "
            "or run `run_study.py collect SPEC` first"
        )
    return StudyRecords(root, index, store.collect(root, study, index["variants"]))


def variant_order(index: dict[str, Any]) -> tuple[list[str], dict[str, str]]:
    """Every variant name in the study's order (grid rows, then named variants as written), and
    alias -> the name whose run it shares."""
    variants = index["variants"]
    alias_of = {a: v["name"] for v in variants for a in v.get("aliases", [])}
    order = index.get("order") or list(dict.fromkeys([v["name"] for v in variants] + list(alias_of)))
    return list(order), alias_of


def generative_runs(index: dict[str, Any]) -> set[str]:
    """The names of the index's runs that generate samples (their kind says ``generates``:
    the latent diffusion runs of Tables 7, 13)."""
    return {v["name"] for v in index["variants"] if v.get("generates")}


def planned_seeds(index: dict[str, Any]) -> int:
    seeds = index.get("seeds")
    return len(seeds) if seeds else len({v["seed"] for v in index["variants"]})


def main_eval_id(frame: pd.DataFrame) -> str | None:
    """The evaluation protocol most runs were evaluated with (None: no evaluation yet)."""
    if "eval_id" not in frame.columns or frame["eval_id"].isna().all():
        return None
    return str(frame["eval_id"].dropna().value_counts().index[0])


def rows_for_protocol(frame: pd.DataFrame, eval_id: str | None) -> pd.DataFrame:
    """The frame's rows of one protocol, plus the rows of runs not evaluated at all."""
    if eval_id is None or "eval_id" not in frame.columns:
        return frame
    return frame[(frame["eval_id"] == eval_id) | frame["eval_id"].isna()]
