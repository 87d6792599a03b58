"""What a study's index records of the study file (``study_record``: the top level of
``results/<study>/index.json``), so that the report needs nothing else. The fields:
docs/reports.md, "What the index records of the study file".
"""

from __future__ import annotations

import dataclasses
from typing import Any, Iterable

from study import store
from study.paper import REFERENCE_TABLE
from study.studyfile.grid import Variant, expand
from study.studyfile.parse import StudyFile

SETTING = ("dataset", "resolution", "latent")  # what picks a paper row where its label repeats


def study_record(
    spec: StudyFile, variants: list[Variant], profile: str | None = None, sets: Iterable[str] = ()
) -> dict[str, Any]:
    """The index's study-level fields for ``variants`` (the expansion with ``profile`` and
    ``sets`` applied); pass them to ``store.write_index`` as keywords."""
    order = variant_order(spec, variants)
    return {
        "description": spec.description,
        "spec": str(spec.path),
        "profile": profile,
        "set": list(sets),
        "seeds": list(spec.seeds),
        "order": order,
        "paper": paper_record(spec),
        "baseline": (spec.paper.baseline if spec.paper else None) or (order[0] if order else None),
    }


def variant_order(spec: StudyFile, variants: list[Variant]) -> list[str]:
    """Every variant name, aliases included: grid rows first, then named variants as written."""
    names = list(dict.fromkeys([v.name for v in variants] + [a for v in variants for a in v.aliases]))
    return [n for n in names if n not in spec.variants] + [n for n in spec.variants if n in names]


def paper_record(spec: StudyFile) -> dict[str, Any] | None:
    """The study's paper reference with the paper's setting of every labelled variant name."""
    if spec.paper is None:
        return None
    settings: dict[str, dict[str, Any]] = {}
    if spec.paper.rows and spec.paper.table != REFERENCE_TABLE:  # reference rows: by label alone
        for v in expand(spec):  # no profile: the paper's settings tell repeated labels apart
            record = store.variant_record(v)
            for name in (v.name, *v.aliases):
                settings.setdefault(name, {k: record[k] for k in SETTING})
    return dataclasses.asdict(spec.paper) | {"settings": {n: settings[n] for n in spec.paper.rows if n in settings}}
