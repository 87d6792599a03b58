"""The study's table in the paper's layout, and the numbers behind it.

One row per variant, in the study's order; an alias (a variant whose config equals another's)
repeats that run's numbers and says so. Per column: our mean ± sample standard deviation over the
completed seeds (ddof 1; one seed shows the mean alone), the paper's number and ours − paper
(Table 3's parameters: in percent of the paper's count; Table 3's throughput and memory: ours and
the paper's as ratios to SD-VAE, no difference of absolutes, see ``ratios``). The best value of
each column, ours and the paper's separately, is **bold** (markdown), judged by the column's
direction.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import pandas as pd

from study.report import ratios
from study.report.cells import cell, short_reason
from study.report.columns import GENERATION_TABLES, Column, columns_for
from study.report.paper_rows import paper_rows
from study.report.records import (
    StudyRecords,
    diffusion_runs,
    main_eval_id,
    planned_seeds,
    rows_for_protocol,
    variant_order,
)

ALIAS_NOTE = "same run as"


@dataclass
class TableInput:
    """What a comparison table is made of, independent of where the numbers came from."""

    names: list[str]
    runs: dict[str, pd.DataFrame]  # name -> its rows (one per seed)
    columns: tuple[Column, ...]
    planned_seeds: int
    paper: dict[str, pd.Series | str] = field(default_factory=dict)  # a row, or why none
    paper_labels: dict[str, str] = field(default_factory=dict)
    notes: dict[str, list[str]] = field(default_factory=dict)

    @property
    def aliases(self) -> set[str]:
        """The names that repeat another variant's run."""
        return {n for n, notes in self.notes.items() if any(x.startswith(ALIAS_NOTE) for x in notes)}


def table_input(records: StudyRecords) -> TableInput:
    """The table of a study's records, under the evaluation protocol most runs used."""
    frame = records.frame
    names, alias_of = variant_order(records.index)
    if records.table in GENERATION_TABLES:  # Tables 7, 13: the diffusion runs (their autoencoders beside)
        runs_of = diffusion_runs(records.index)
        names = [n for n in names if alias_of.get(n, n) in runs_of]
        frame = frame[frame["name"].isin(runs_of)] if "name" in frame.columns else frame
    frame = rows_for_protocol(frame, main_eval_id(frame))
    by_name = {n: frame[frame["name"] == n] if "name" in frame.columns else frame.iloc[0:0] for n in names}
    paper = records.paper or {}
    return TableInput(
        names=names,
        runs={n: by_name[alias_of.get(n, n)] for n in names},
        columns=columns_for(records.table),
        planned_seeds=planned_seeds(records.index),
        paper=paper_rows(records.index),
        paper_labels=dict(paper.get("rows") or {}),
        notes={n: [f"{ALIAS_NOTE} {alias_of[n]}"] for n in names if n in alias_of},
    )


def paper_value(inp: TableInput, name: str, col: Column) -> float | None:
    """The paper's number for a variant's column (None: no paper row, or none in that column)."""
    ref = inp.paper.get(name)
    if isinstance(ref, pd.Series) and col.paper in ref.index and pd.notna(ref[col.paper]):
        return float(ref[col.paper])
    return None


def summarize(inp: TableInput) -> pd.DataFrame:
    """The numbers behind the table, long format: one row per (variant, column) with our mean,
    std and seed count, the text shown, the paper's value and the difference; for a ratio column
    (Table 3) ours and the paper's relative to SD-VAE instead of the difference."""
    rows = []
    reference = ratios.reference_name(inp.names, inp.paper_labels)
    for name in inp.names:
        for col in inp.columns:
            c = cell(inp.runs[name], col)
            theirs = paper_value(inp, name, col)
            diff = ratio = paper_ratio = None
            if c.mean is not None and theirs is not None and not col.ratio:
                diff = (c.mean - theirs) / theirs * 100 if col.relative else c.mean - theirs
            if col.ratio and reference is not None:
                ratio = ratios.relative(c.mean, cell(inp.runs[reference], col).mean)
                paper_ratio = ratios.relative(theirs, paper_value(inp, reference, col))
            rows.append(
                {
                    "variant": name,
                    "column": col.key,
                    "label": col.label,
                    "mean": c.mean,
                    "std": c.std,
                    "n": c.n,
                    "text": c.text(col),
                    "paper": theirs,
                    "diff": diff,
                    "ratio": ratio,
                    "paper_ratio": paper_ratio,
                }
            )
    return pd.DataFrame(rows)


def build_table(inp: TableInput) -> pd.DataFrame:
    """The display table: strings, best values of each column as **bold** (markdown)."""
    numbers = summarize(inp)
    has_paper = bool(inp.paper_labels)
    table = pd.DataFrame({"Variant": inp.names})
    if has_paper:
        table["Paper row"] = [inp.paper_labels.get(n, "—") for n in inp.names]
    table["Seeds"] = [_seeds(inp.runs[n], inp.planned_seeds) for n in inp.names]
    for col in inp.columns:
        sub = numbers[numbers["column"] == col.key].set_index("variant").loc[inp.names]
        table[col.heading] = _bold_best(list(sub["text"]), list(sub["mean"]), col)
        if has_paper and col.ratio:  # absolutes measured elsewhere do not compare: ratios to SD-VAE
            short = ratios.ratio_label(col.label)
            table[short] = _bold_best([ratios.ratio_text(r) for r in sub["ratio"]], list(sub["ratio"]), col)
            theirs = [ratios.ratio_text(r) for r in sub["paper_ratio"]]
            table[f"{short} paper"] = _bold_best(theirs, list(sub["paper_ratio"]), col)
        elif has_paper and col.paper is not None:  # a column the paper has (not Table 7's AE numbers)
            theirs = [_paper_cell(inp, name, value, col) for name, value in zip(inp.names, sub["paper"])]
            table[f"{col.label} paper"] = _bold_best(theirs, list(sub["paper"]), col)
            table[f"{col.label} Δ"] = [_diff_text(d, col) for d in sub["diff"]]
    notes = {n: inp.notes.get(n, []) + _partial_failures(inp.runs[n]) for n in inp.names}
    if any(notes.values()):
        table["Note"] = ["; ".join(notes[n]) for n in inp.names]
    return table


def main_table(records: StudyRecords) -> pd.DataFrame:
    """The study's table in the paper's layout (see the module docstring)."""
    return build_table(table_input(records))


def _bold_best(texts: list[str], values: list[float | None], col: Column) -> list[str]:
    best = _best(values, col.lower_is_better)
    return [f"**{t}**" if i in best else t for i, t in enumerate(texts)]


def _best(values: list[float | None], lower_is_better: bool) -> set[int]:
    """Indices of the best of at least two numbers (ties included)."""
    numbers = [(i, v) for i, v in enumerate(values) if v is not None and not math.isnan(v)]
    if len(numbers) < 2 or len({v for _, v in numbers}) == 1:  # nothing to choose between
        return set()
    target = (min if lower_is_better else max)(v for _, v in numbers)
    return {i for i, v in numbers if v == target}


def _seeds(runs: pd.DataFrame, planned: int) -> str:
    done = int((runs["state"] == "completed").sum()) if "state" in runs.columns else 0
    return f"{done}/{max(planned, len(runs))}"


def _partial_failures(runs: pd.DataFrame) -> list[str]:
    if "state" not in runs.columns or (runs["state"] != "completed").all():
        return []  # nothing completed: the cells already say why
    failed = runs[runs["state"] == "failed"]
    return [f"seed {int(r.seed)} failed: {short_reason(r.reason)}" for r in failed.itertuples()]


def _paper_cell(inp: TableInput, name: str, value: float | None, col: Column) -> str:
    """The paper's number, or why the variant has none: "(<why>)" where its row was not found."""
    if value is not None and not pd.isna(value):
        return _paper_text(value, col)
    ref = inp.paper.get(name)
    return f"({ref})" if isinstance(ref, str) else "—"


def _paper_text(value: float, col: Column) -> str:
    """The paper's number with the column's digits, or more where the paper printed more."""
    printed = next(d for d in range(7) if round(value, d) == value or d == 6)
    return f"{value:.{max(col.digits, printed)}f}"


def _diff_text(diff: float | None, col: Column) -> str:
    if diff is None or pd.isna(diff):
        return "—"
    return f"{diff:+.2f}%" if col.relative else f"{diff:+.{col.digits}f}"
