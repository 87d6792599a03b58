"""One cell of a table: our mean ± std over seeds, or the text that says why there is no number.

A cell without a number says why: ``failed: <reason>`` (the last line of the run's error),
``unavailable: <reason>`` (the evaluation could not compute that metric), ``cancelled``,
``running (step N)``, ``not measured``, ``pending`` or ``missing: not launched``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandas as pd

from study.report.columns import Column


@dataclass
class Cell:
    mean: float | None = None
    std: float | None = None
    n: int = 0
    why: str = ""  # the text shown when there is no number

    def text(self, col: Column) -> str:
        if self.mean is None:
            return self.why
        value = f"{self.mean:.{col.digits}f}"
        return value if self.std is None else f"{value} ± {self.std:.{col.digits}f}"


def short_reason(reason: Any, limit: int = 120) -> str:
    """The last non-empty line of a reason (a traceback ends with the error), shortened."""
    if reason is None or (not isinstance(reason, str) and pd.isna(reason)):
        return "no reason recorded"
    lines = [line.strip() for line in str(reason).strip().splitlines() if line.strip()]
    text = lines[-1] if lines else "no reason recorded"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def cell(runs: pd.DataFrame, col: Column) -> Cell:
    """Our value of one column for one variant: ``runs`` holds its rows, one per seed."""
    values = pd.to_numeric(runs[col.key], errors="coerce").dropna() if col.key in runs.columns else pd.Series()
    if len(values):
        values = values * col.scale
        std = float(values.std(ddof=1)) if len(values) > 1 else None
        return Cell(float(values.mean()), std, len(values))
    unavailable = f"{col.key}_unavailable"
    if unavailable in runs.columns and runs[unavailable].notna().any():
        return Cell(why=_unavailable(runs[unavailable].dropna().iloc[0]))
    return Cell(why=_state_text(runs))


def _unavailable(reason: Any) -> str:
    text = short_reason(reason)
    if " not found in " in text:  # the full path stays in the record and results.csv
        return "unavailable: weights not staged (see `run_study.py weights check`)"
    return text if text.startswith("unavailable") else f"unavailable: {text}"


def _state_text(runs: pd.DataFrame) -> str:
    """Why a variant's runs have no number: their state, the first failure's reason."""
    states = list(runs["state"].fillna("missing")) if "state" in runs.columns else []
    if "failed" in states:
        return "failed: " + short_reason(runs.loc[runs["state"] == "failed", "reason"].iloc[0])
    if "diverged" in states:
        steps = runs.loc[runs["state"] == "diverged", "step"].dropna() if "step" in runs.columns else []
        return f"diverged (step {int(min(steps))})" if len(steps) else "diverged"
    if "cancelled" in states:
        return "cancelled"
    if "running" in states:
        steps = runs.loc[runs["state"] == "running", "step"].dropna() if "step" in runs.columns else []
        return f"running (step {int(max(steps))})" if len(steps) else "running"
    if states and all(s == "completed" for s in states):
        return "not measured"
    state = states[0] if states else "missing"
    return "missing: not launched" if state == "missing" else state
