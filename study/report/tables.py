"""The study's table in the paper's layout, and the numbers behind it.

One row per variant, in the study's order; an alias (a variant whose config equals another's)
repeats that run's numbers and says so. Per column: our mean ± sample standard deviation over the
completed seeds (ddof 1; one seed shows the mean alone), the paper's number and ours − paper
(Table 3's parameters: in percent of the paper's count; Table 3's throughput and memory: ours and
the paper's as ratios to SD-VAE, no difference of absolutes, see ``ratios``). The best value of
each column, ours and the paper's separately, is **bold** (markdown), judged by the column's
direction; ours only where it is beyond the seed noise: at least two seeds, and better than every
other variant at p < 0.05 (Welch; ``clear_best``). Table 3's columns (counted, or measured once
per configuration, not per seed) are bold by value. A metric the evaluation could not compute reads
"n/a", its reason once in a footnote under the table (``footnotes``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import pandas as pd

from study.report import ratios, stats
from study.report.cells import cell, short_reason
from study.report.columns import COMPLEXITY_COLUMNS, GENERATION_TABLES, Column, columns_for
from study.report.paper_rows import paper_rows
from study.report.records import (
    StudyRecords,
    generative_runs,
    main_eval_id,
    planned_seeds,
    rows_for_protocol,
    variant_order,
)

ALIAS_NOTE = "same run as"
UNAVAILABLE = "unavailable"  # the start of a cell's text where the evaluation could not compute it
NOT_AVAILABLE = "n/a"
MARKERS = "¹²³⁴⁵⁶⁷⁸⁹"


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
        runs_of = generative_runs(records.index)
        names = [n for n in names if alias_of.get(n, n) in runs_of]
        frame = frame[frame["name"].isin(runs_of)] if "name" in frame.columns else frame
    frame = rows_for_protocol(frame, main_eval_id(frame))
    by_name = {n: frame[frame["name"] == n] if "name" in frame.columns else frame.iloc[0:0] for n in names}
    paper = records.paper or {}
    return TableInput(
        names=names,
        runs={n: by_name[alias_of.get(n, n)] for n in names},
        columns=columns_for(records.table, [c.removesuffix("_unavailable") for c in frame if frame[c].notna().any()]),
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
    marks = unavailable_marks(numbers)
    for col in inp.columns:
        sub = numbers[numbers["column"] == col.key].set_index("variant").loc[inp.names]
        texts = [_short(t, marks) for t in sub["text"]]
        if col in COMPLEXITY_COLUMNS:  # counted, or measured once per configuration: bold by value
            table[col.heading] = _bold_best(texts, list(sub["mean"]), col)
        else:
            best = clear_best(inp, col)
            table[col.heading] = [f"**{t}**" if n in best else t for n, t in zip(inp.names, texts)]
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


def legend(inp: TableInput, table: pd.DataFrame) -> str:
    """How to read ``table`` (``build_table``'s), one sentence per kind of column it has."""
    ours = [c for c in inp.columns if c.heading in table.columns]
    headings = {c.heading for c in ours}
    parts = ["Ours: mean ± sample standard deviation over seeds (one seed: the mean alone)."]
    parts.append("Seeds: completed / planned.")
    if ours:
        parts.append("↓ lower is better, ↑ higher.")
    if any(c.endswith(" paper") for c in table.columns):
        parts.append("Paper: the paper's number.")
    relative = [c for c in ours if f"{c.label} Δ" in table.columns]
    if relative:
        percent = " (parameters: in percent of the paper's count)" if any(c.relative for c in relative) else ""
        parts.append(f"Δ: ours − paper{percent}.")
    bold_ours = any(str(v).startswith("**") for h in headings for v in table[h])
    noisy = [c for c in ours if c not in COMPLEXITY_COLUMNS]
    if noisy:
        parts.append(
            "**Bold** (ours): the best mean of a column where it beats every other variant beyond the "
            "seed noise (Welch's p < 0.05, at least two seeds each)"
            + ("" if bold_ours else "; nothing of ours is bold here: no best value is beyond the noise")
            + "."
        )
    if any(c.endswith(" paper") for c in table.columns) or not noisy:
        parts.append("**Bold** (counts, ratios and the paper's numbers): the best value of a column.")
    whys = ("failed", "running", "pending", "missing", "cancelled", "not measured")
    if any(str(v).strip("*").startswith(whys) for h in headings for v in table[h]):
        parts.append("A cell without a number says why (failed, or the run's state).")
    return " ".join(parts)


def main_table(records: StudyRecords) -> pd.DataFrame:
    """The study's table in the paper's layout (see the module docstring)."""
    return build_table(table_input(records))


def clear_best(inp: TableInput, col: Column) -> set[str]:
    """The variant (and its aliases) whose mean of ``col`` is best beyond the seed noise: at least
    two seeds, and Welch's p < ALPHA against every other variant with a number (each with two
    seeds or more); empty where there is none, or only one variant with a number."""
    owners = {n: _values(inp.runs[n], col) for n in inp.names if n not in inp.aliases}
    owners = {n: v for n, v in owners.items() if v}
    if len(owners) < 2 or not col.ranked:
        return set()
    pick = min if col.lower_is_better else max
    best = pick(owners, key=lambda n: sum(owners[n]) / len(owners[n]))
    mean = sum(owners[best]) / len(owners[best])
    for name, values in owners.items():
        if name == best:
            continue
        p = stats.welch_p(owners[best], values)
        if p is None or p >= stats.ALPHA or sum(values) / len(values) == mean:
            return set()
    return {best} | {n for n in inp.aliases if inp.runs[n] is inp.runs[best]}


def _values(runs: pd.DataFrame, col: Column) -> list[float]:
    if col.key not in runs.columns:
        return []
    return [float(v) * col.scale for v in pd.to_numeric(runs[col.key], errors="coerce").dropna()]


def unavailable_marks(numbers: pd.DataFrame) -> dict[str, str]:
    """Each distinct reason of an unavailable cell -> its footnote mark ("" where there is one)."""
    reasons = list(dict.fromkeys(t for t in numbers["text"] if str(t).startswith(UNAVAILABLE)))
    if len(reasons) == 1:
        return {reasons[0]: ""}
    return {r: MARKERS[i] if i < len(MARKERS) else f"({i + 1})" for i, r in enumerate(reasons)}


def footnotes(numbers: pd.DataFrame) -> list[str]:
    """One line per reason a metric is "n/a", naming the columns it holds for (``numbers``:
    ``summarize``'s frame); e.g. ``n/a: rFID, LPIPS not computed: weights not staged (...)``."""
    lines = []
    for reason, mark in unavailable_marks(numbers).items():
        labels = list(dict.fromkeys(numbers.loc[numbers["text"] == reason, "label"]))
        why = reason.split(":", 1)[1].strip() if ":" in reason else reason
        lines.append(f"{NOT_AVAILABLE}{mark}: {', '.join(labels)} not computed: {why}")
    return lines


def _short(text: str, marks: dict[str, str]) -> str:
    """A cell's text, "n/a" with its footnote's mark where the metric is unavailable."""
    return f"{NOT_AVAILABLE}{marks[text]}" if text in marks else text


def _bold_best(texts: list[str], values: list[float | None], col: Column) -> list[str]:
    best = _best(values, col.lower_is_better) if col.ranked else set()
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
