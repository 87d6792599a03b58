"""Comparison reports: our numbers beside the paper's, as tables, plots and provenance.

``report(spec, frame, root, out_dir)`` turns the DataFrame of ``store.collect`` into::

    <out_dir>/report.md        the study's table in the paper's layout, figures, provenance
    <out_dir>/report.html      the same, self-contained (figures embedded as base64 PNG)
    <out_dir>/tables/main.tex  the table with booktabs rules; main.csv the numbers behind it
    <out_dir>/figures/*.png    seaborn plots
    <out_dir>/summary.json     headline numbers, read by ``write_index``

The table: one row per variant of the study (an alias, a variant whose config equals another's,
repeats that run's numbers and says so); per metric our mean +- sample standard deviation over
seeds (ddof 1; a single seed shows the mean alone), the paper's number (results/paper/, matched
through the study file's ``paper.rows``) and the difference ours - paper. The best value of each
column is bold, judged by the metric's direction (rFID and LPIPS lower, PSNR and SSIM higher).
A cell without a number says why: ``failed: <reason>``, ``unavailable: <reason>`` (a metric the
evaluation could not compute), or the run's state (``pending``, ``running (step N)``, ``missing``).

Table 3 (encoder complexity, no training) has columns of its own: parameters, multiply-
accumulates, throughput and peak memory, from each run's ``complexity.json`` (``report``) or from
``study.complexity.complexity_rows`` (``complexity_report``); the parameter difference is given
in percent of the paper's count.
"""
from __future__ import annotations

import base64
import datetime
import html
import importlib.metadata
import json
import math
import platform
import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from study import config as C  # noqa: E402
from study import store  # noqa: E402
from study.spec.grid import Variant, expand  # noqa: E402
from study.paper import paper_table  # noqa: E402
from study.spec.studyfile import StudySpec  # noqa: E402

REPO = Path(__file__).resolve().parents[2]


# --------------------------------------------------------------------------------------------
# columns: what a table shows, in which direction "better" lies
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Column:
    key: str                 # our value: a column of the collected frame
    label: str
    lower_is_better: bool
    digits: int
    paper: str | None        # the paper's value: a column of its reference CSV
    scale: float = 1.0       # our value * scale is in the paper's unit
    relative: bool = False   # the difference in percent of the paper's value

    @property
    def heading(self) -> str:
        return f"{self.label} {'↓' if self.lower_is_better else '↑'}"


METRIC_COLUMNS = (
    Column("rfid", "rFID", True, 2, "rfid"),
    Column("lpips", "LPIPS", True, 3, "lpips"),
    Column("psnr", "PSNR", False, 2, "psnr"),
    Column("ssim", "SSIM", False, 3, "ssim"),
)
PARAMS_COLUMN = Column("encoder_params", "Params (M)", True, 3, "params_m", scale=1e-6, relative=True)
COMPLEXITY_COLUMNS = (
    PARAMS_COLUMN,
    Column("encoder_gmacs", "GMACs", True, 2, "gmacs_256"),
    Column("throughput_img_s", "Throughput (img/s)", False, 1, "throughput_img_s"),
    Column("peak_mem_mb", "Memory (MB)", True, 0, "gpu_memory_mb"),
)
COMPLEXITY_TABLE = "3"
# Tables whose parameter column counts the whole encoder (Table 20 counts the aggregator only).
ENCODER_PARAM_TABLES = ("1", "2a", "2b")
# complexity_rows names models by preset; these are their Table 3 rows.
PRESET_TABLE3_ROWS = {"SD-VAE": "VAE (SD-VAE encoder)", "LiteVAE-S": "LiteVAE-S", "LiteVAE-B": "LiteVAE-B",
                      "LiteVAE-M": "LiteVAE-M", "LiteVAE-L": "LiteVAE-L"}


def table_id(spec: StudySpec) -> str | None:
    return spec.paper.table if spec.paper else None


def columns_for(table: str | None) -> tuple[Column, ...]:
    if table == COMPLEXITY_TABLE:
        return COMPLEXITY_COLUMNS
    return METRIC_COLUMNS + ((PARAMS_COLUMN,) if table in ENCODER_PARAM_TABLES else ())


# --------------------------------------------------------------------------------------------
# the paper's rows
# --------------------------------------------------------------------------------------------
class PaperRowError(ValueError):
    """A ``paper.rows`` label that names no row, or more than one, of the paper table."""


def label_column(table: pd.DataFrame) -> str:
    return "row" if "row" in table.columns else "encoder"


def paper_row(table_id_: str, label: str, cfg: C.ExperimentConfig | None = None) -> pd.Series:
    """The one row of paper table ``table_id_`` labelled ``label``. Where a label repeats (Table 1
    has a "VAE" row per dataset, resolution and latent), the variant's config picks the row."""
    table = paper_table(table_id_)
    rows = table[table[label_column(table)] == label]
    if len(rows) > 1 and cfg is not None:
        rows = rows[[_same_setting(row, cfg) for _, row in rows.iterrows()]]
    if len(rows) != 1:
        labels = ", ".join(dict.fromkeys(table[label_column(table)]))
        found = "no row" if len(rows) == 0 else f"{len(rows)} rows"
        raise PaperRowError(f"paper table {table_id_}: {found} labelled {label!r} "
                            f"for this variant; labels: {labels}")
    return rows.iloc[0]


def _same_setting(row: pd.Series, cfg: C.ExperimentConfig) -> bool:
    """Whether a paper row's dataset, resolution and latent are the config's."""
    res = cfg.eval.resolution or cfg.data.resolution
    latent = f"{res // 8}x{res // 8}x{cfg.model.latent_channels}"
    return (str(row.get("dataset", "")).lower() == cfg.data.name.lower()
            and int(row.get("resolution", -1)) == res and row.get("latent") == latent)


def paper_rows(spec: StudySpec, variants: list[Variant] | None = None) -> dict[str, pd.Series]:
    """Variant name -> its paper row, for every name in the study's ``paper.rows``. The configs
    that tell repeated labels apart are the study's own (no profile): the paper's settings."""
    if spec.paper is None:
        return {}
    configs = variant_configs(variants if variants is not None else expand(spec))
    return {name: paper_row(spec.paper.table, label, configs.get(name))
            for name, label in spec.paper.rows.items()}


def variant_configs(variants: list[Variant]) -> dict[str, C.ExperimentConfig]:
    out: dict[str, C.ExperimentConfig] = {}
    for v in variants:
        for name in (v.name, *v.aliases):
            out.setdefault(name, v.config)
    return out


# --------------------------------------------------------------------------------------------
# which variants, which runs
# --------------------------------------------------------------------------------------------
def expansion_of(spec: StudySpec, frame: pd.DataFrame) -> list[Variant]:
    """The expansion (with whichever profile) whose run ids the frame's rows came from."""
    ids = set(frame["run_id"].dropna()) if "run_id" in frame.columns else set()
    for profile in (None, *spec.profiles):
        variants = expand(spec, profile)
        if ids and ids <= {v.run_id for v in variants}:
            return variants
    return expand(spec)


def variant_order(spec: StudySpec, variants: list[Variant], frame: pd.DataFrame) -> tuple[list[str], dict[str, str]]:
    """Every variant name in the study's order (grid rows, then named variants as written), and
    alias -> the name whose run it shares."""
    alias_of = {a: v.name for v in variants for a in v.aliases}
    names = list(dict.fromkeys([v.name for v in variants] + list(alias_of)))
    named = [n for n in spec.variants if n in names]
    order = [n for n in names if n not in spec.variants] + named
    extra = [n for n in dict.fromkeys(frame.get("name", pd.Series(dtype=str)).dropna()) if n not in order]
    return order + extra, alias_of


def main_eval_id(frame: pd.DataFrame) -> str | None:
    """The evaluation protocol most runs were evaluated with (None: no evaluation yet)."""
    if "eval_id" not in frame.columns or frame["eval_id"].isna().all():
        return None
    return frame["eval_id"].dropna().value_counts().index[0]


def rows_for_protocol(frame: pd.DataFrame, eval_id: str | None) -> pd.DataFrame:
    """The frame's rows of one protocol, plus the rows of runs not evaluated at all."""
    if eval_id is None or "eval_id" not in frame.columns:
        return frame
    return frame[(frame["eval_id"] == eval_id) | frame["eval_id"].isna()]


# --------------------------------------------------------------------------------------------
# one cell: mean +- std over seeds, or why there is no number
# --------------------------------------------------------------------------------------------
@dataclass
class Cell:
    mean: float | None = None
    std: float | None = None
    n: int = 0
    why: str = ""            # the text shown when there is no number

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
        reason = short_reason(runs[unavailable].dropna().iloc[0])
        if " not found in " in reason:  # the full path stays in the record and results.csv
            reason = "unavailable: weights not staged (see `run_study.py weights check`)"
        return Cell(why=reason if reason.startswith("unavailable") else f"unavailable: {reason}")
    states = list(runs["state"].fillna("missing")) if "state" in runs.columns else []
    if "failed" in states:
        return Cell(why="failed: " + short_reason(runs.loc[runs["state"] == "failed", "reason"].iloc[0]))
    if "cancelled" in states:
        return Cell(why="cancelled")
    if "running" in states:
        steps = runs.loc[runs["state"] == "running", "step"].dropna() if "step" in runs.columns else []
        return Cell(why=f"running (step {int(max(steps))})" if len(steps) else "running")
    if states and all(s == "completed" for s in states):
        return Cell(why="not measured")
    state = states[0] if states else "missing"
    return Cell(why="missing: not launched" if state == "missing" else state)


# --------------------------------------------------------------------------------------------
# the table
# --------------------------------------------------------------------------------------------
@dataclass
class TableInput:
    """What a comparison table is made of, independent of where the numbers came from."""

    names: list[str]
    runs: dict[str, pd.DataFrame]              # name -> its rows (one per seed)
    columns: tuple[Column, ...]
    planned_seeds: int
    paper: dict[str, pd.Series | str] = field(default_factory=dict)  # a row, or why none
    paper_labels: dict[str, str] = field(default_factory=dict)
    notes: dict[str, list[str]] = field(default_factory=dict)


def table_input(spec: StudySpec, frame: pd.DataFrame) -> TableInput:
    frame = rows_for_protocol(frame, main_eval_id(frame))
    variants = expansion_of(spec, frame)
    names, alias_of = variant_order(spec, variants, frame)
    by_name = {n: frame[frame["name"] == n] if "name" in frame.columns else frame.iloc[0:0] for n in names}
    runs = {n: by_name[alias_of.get(n, n)] for n in names}
    notes = {n: [f"same run as {alias_of[n]}"] for n in names if n in alias_of}
    paper: dict[str, pd.Series | str] = {}
    if spec.paper is not None:
        configs = variant_configs(expand(spec))  # the paper's settings tell repeated labels apart
        for name, label in spec.paper.rows.items():
            try:
                paper[name] = paper_row(spec.paper.table, label, configs.get(name))
            except PaperRowError as e:
                paper[name] = str(e)
    return TableInput(names=names, runs=runs, columns=columns_for(table_id(spec)),
                      planned_seeds=len(spec.seeds), paper=paper,
                      paper_labels=dict(spec.paper.rows) if spec.paper else {}, notes=notes)


def summarize(inp: TableInput) -> pd.DataFrame:
    """The numbers behind the table, long format: one row per (variant, column) with our mean,
    std and seed count, the text shown, the paper's value and the difference."""
    rows = []
    for name in inp.names:
        ref = inp.paper.get(name)
        for col in inp.columns:
            c = cell(inp.runs[name], col)
            theirs = None
            if isinstance(ref, pd.Series) and col.paper in ref.index and pd.notna(ref[col.paper]):
                theirs = float(ref[col.paper])
            diff = None
            if c.mean is not None and theirs is not None:
                diff = (c.mean - theirs) / theirs * 100 if col.relative else c.mean - theirs
            rows.append({"variant": name, "column": col.key, "label": col.label, "mean": c.mean,
                         "std": c.std, "n": c.n, "text": c.text(col), "paper": theirs, "diff": diff})
    return pd.DataFrame(rows)


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
        ours = list(sub["text"])
        for i in _best(list(sub["mean"]), col.lower_is_better):
            ours[i] = f"**{ours[i]}**"
        table[col.heading] = ours
        if not has_paper:
            continue
        theirs = []
        for name, value in zip(inp.names, sub["paper"]):
            ref = inp.paper.get(name)
            theirs.append(_paper_text(value, col) if value is not None and not pd.isna(value)
                          else (f"({ref})" if isinstance(ref, str) else "—"))
        for i in _best(list(sub["paper"]), col.lower_is_better):
            theirs[i] = f"**{theirs[i]}**"
        table[f"{col.label} paper"] = theirs
        table[f"{col.label} Δ"] = [_diff_text(d, col) for d in sub["diff"]]
    notes = {n: inp.notes.get(n, []) + _partial_failures(inp.runs[n]) for n in inp.names}
    if any(notes.values()):
        table["Note"] = ["; ".join(notes[n]) for n in inp.names]
    return table


def _paper_text(value: float, col: Column) -> str:
    """The paper's number with the column's digits, or more where the paper printed more."""
    printed = next(d for d in range(7) if round(value, d) == value or d == 6)
    return f"{value:.{max(col.digits, printed)}f}"


def _diff_text(diff: float | None, col: Column) -> str:
    if diff is None or pd.isna(diff):
        return "—"
    return f"{diff:+.2f}%" if col.relative else f"{diff:+.{col.digits}f}"


def main_table(spec: StudySpec, frame: pd.DataFrame) -> pd.DataFrame:
    """The study's table in the paper's layout (see the module docstring)."""
    return build_table(table_input(spec, frame))


# --------------------------------------------------------------------------------------------
# renderers of a display table
# --------------------------------------------------------------------------------------------
BOLD = re.compile(r"\*\*(.+?)\*\*")


def table_markdown(table: pd.DataFrame) -> str:
    safe = table.map(lambda s: str(s).replace("|", "\\|"))
    return safe.to_markdown(index=False, disable_numparse=True)


def table_html(table: pd.DataFrame) -> str:
    body = table.to_html(index=False, escape=True, border=0, classes="results")
    return '<div class="scroll">' + BOLD.sub(r"<strong>\1</strong>", body) + "</div>"


_TEX_ESCAPES = {"&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{", "}": r"\}",
                "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "\\": r"\textbackslash{}",
                "±": r"$\pm$", "Δ": r"$\Delta$", "↓": r"$\downarrow$", "↑": r"$\uparrow$", "—": "---"}


def tex_escape(text: str) -> str:
    return "".join(_TEX_ESCAPES.get(ch, ch) for ch in str(text))


def table_latex(table: pd.DataFrame, caption: str, label: str) -> str:
    """A booktabs table; bold cells become \\textbf."""
    def fmt(value: Any) -> str:
        parts = BOLD.split(str(value))  # odd indices were inside ** **
        return "".join(r"\textbf{" + tex_escape(p) + "}" if i % 2 else tex_escape(p)
                       for i, p in enumerate(parts))

    spec = "l" * 2 + "r" * (len(table.columns) - 2)
    lines = [r"\begin{table}[t]", r"\centering", r"\small", f"\\caption{{{tex_escape(caption)}}}",
             f"\\label{{{label}}}", f"\\begin{{tabular}}{{{spec}}}", r"\toprule",
             " & ".join(tex_escape(c) for c in table.columns) + r" \\", r"\midrule"]
    lines += [" & ".join(fmt(v) for v in row) + r" \\" for row in table.itertuples(index=False)]
    lines += [r"\bottomrule", r"\end{tabular}", r"\end{table}"]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------------------
# figures
# --------------------------------------------------------------------------------------------
@dataclass
class Figure:
    name: str       # file name under figures/
    caption: str
    png: bytes


def _png(fig: plt.Figure) -> bytes:
    import io
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def seed_values(inp: TableInput, columns: tuple[Column, ...]) -> pd.DataFrame:
    """Long format for plots: variant, column, one value per seed (aliases left out)."""
    rows = []
    for name in inp.names:
        if any(note.startswith("same run as") for note in inp.notes.get(name, [])):
            continue
        runs = inp.runs[name]
        for col in columns:
            if col.key in runs.columns:
                for v in pd.to_numeric(runs[col.key], errors="coerce").dropna():
                    rows.append({"variant": name, "column": col.heading, "value": v * col.scale})
    return pd.DataFrame(rows, columns=["variant", "column", "value"])


def plot_metrics(inp: TableInput) -> Figure | None:
    """Each metric per variant: the mean over seeds with a standard-deviation bar, every seed as
    a dot, the paper's number as a red diamond."""
    cols = [c for c in inp.columns if c in METRIC_COLUMNS]
    data = seed_values(inp, tuple(cols))
    if data.empty:
        return None
    shown = [c for c in cols if c.heading in set(data["column"])]
    order = [n for n in inp.names if n not in _aliases(inp)]  # variants without numbers stay visible
    fig, axes = plt.subplots(1, len(shown), figsize=(3.2 * len(shown) + 1, 3.6), squeeze=False)
    for ax, col in zip(axes[0], shown):
        sub = data[data["column"] == col.heading]
        sns.barplot(data=sub, x="variant", y="value", order=order, errorbar="sd", color="#8fb3d9",
                    capsize=0.2, ax=ax)
        sns.stripplot(data=sub, x="variant", y="value", order=order, color="#1f3b5c", size=4, ax=ax)
        paper = [(i, _paper_value(inp, n, col)) for i, n in enumerate(order)]
        paper = [(i, v) for i, v in paper if v is not None]
        if paper:
            ax.scatter([i for i, _ in paper], [v for _, v in paper], marker="D", color="#c0392b",
                       zorder=5, label="paper")
            ax.legend(loc="best", fontsize=8)
        for i, name in enumerate(order):
            if name not in set(sub["variant"]):
                ax.text(i, 0, " " + cell(inp.runs[name], col).why.split(":")[0], rotation=90,
                        ha="center", va="bottom", fontsize=8, color="#c0392b")
        _label_bars(ax, col.heading, col.label)
    fig.suptitle("Metrics per variant (mean ± sd over seeds; dots: seeds)")
    fig.tight_layout()
    return Figure("metrics.png", "Each metric per variant: mean over seeds with a standard-deviation "
                  "bar, the seeds as dots, the paper's number as a red diamond.", _png(fig))


def _paper_value(inp: TableInput, name: str, col: Column) -> float | None:
    ref = inp.paper.get(name)
    if isinstance(ref, pd.Series) and col.paper in ref.index and pd.notna(ref[col.paper]):
        return float(ref[col.paper])
    return None


def pareto_front(points: list[tuple[float, float]], lower_is_better: bool) -> list[tuple[float, float]]:
    """The points no other point beats on both cost (lower) and quality, sorted by cost."""
    sign = 1 if lower_is_better else -1
    front: list[tuple[float, float]] = []
    for x, y in sorted(points, key=lambda p: (p[0], sign * p[1])):
        if not front or sign * y < sign * front[-1][1]:
            front.append((x, y))
    return front


def plot_quality_cost(inp: TableInput) -> Figure | None:
    """rFID (PSNR where no rFID was measured) against encoder GMACs and parameters, with the
    Pareto front of our variants; the paper's points where it gives parameter counts."""
    numbers = summarize(TableInput(inp.names, inp.runs, METRIC_COLUMNS + COMPLEXITY_COLUMNS[:2],
                                   inp.planned_seeds, inp.paper, inp.paper_labels, inp.notes))
    numbers = numbers[~numbers["variant"].isin([n for n in inp.names if n in _aliases(inp)])]
    quality = next((c for c in (METRIC_COLUMNS[0], METRIC_COLUMNS[2])
                    if numbers.loc[numbers["column"] == c.key, "mean"].notna().any()), None)
    costs = [c for c in COMPLEXITY_COLUMNS[:2] if numbers.loc[numbers["column"] == c.key, "mean"].notna().any()]
    if quality is None or not costs:
        return None
    wide = numbers.pivot(index="variant", columns="column", values="mean")
    err = numbers.pivot(index="variant", columns="column", values="std")
    fig, axes = plt.subplots(1, len(costs), figsize=(5.2 * len(costs), 4), squeeze=False)
    for ax, cost in zip(axes[0], costs):
        ok = wide[[cost.key, quality.key]].dropna()
        ok = ok.assign(variant=ok.index)
        sns.scatterplot(data=ok, x=cost.key, y=quality.key, hue="variant", s=70, ax=ax, zorder=3)
        yerr = err.loc[ok.index, quality.key].fillna(0)
        ax.errorbar(ok[cost.key], ok[quality.key], yerr=yerr, fmt="none", ecolor="gray", zorder=2)
        front = pareto_front(list(zip(ok[cost.key], ok[quality.key])), quality.lower_is_better)
        if len(front) > 1:
            ax.plot(*zip(*front), color="black", linestyle="--", linewidth=1, label="Pareto front")
        paper = [(float(r["params_m"]), float(r[quality.paper])) for r in inp.paper.values()
                 if cost is PARAMS_COLUMN and isinstance(r, pd.Series) and "params_m" in r.index
                 and pd.notna(r["params_m"]) and pd.notna(r.get(quality.paper))]
        if paper:
            ax.scatter(*zip(*paper), marker="D", facecolors="none", edgecolors="#c0392b", label="paper")
        ax.set_xlabel(cost.label if cost is not PARAMS_COLUMN else "Encoder parameters (M)")
        ax.set_ylabel(quality.heading)
        ax.legend(fontsize=7, loc="best")
    fig.suptitle(f"Quality against encoder cost ({quality.label}; dashed: Pareto front)")
    fig.tight_layout()
    return Figure("quality_cost.png", f"{quality.label} against encoder cost, with the Pareto front of "
                  "our variants (error bars: sd over seeds).", _png(fig))


def _aliases(inp: TableInput) -> set[str]:
    return {n for n, notes in inp.notes.items() if any(x.startswith("same run as") for x in notes)}


def history_frame(histories: dict[str, list[dict[str, Any]]], names: dict[str, str]) -> pd.DataFrame:
    """Training histories as one long frame: variant, run, step, quantity, value."""
    rows = []
    for run_id, records in histories.items():
        for r in records:
            for quantity in ("loss", "val_psnr"):
                if "step" in r and isinstance(r.get(quantity), (int, float)):
                    rows.append({"variant": names.get(run_id, run_id), "run": run_id, "step": r["step"],
                                 "quantity": quantity, "value": float(r[quantity])})
    return pd.DataFrame(rows, columns=["variant", "run", "step", "quantity", "value"])


def plot_training(curves: pd.DataFrame) -> Figure | None:
    """Training loss and validation PSNR against step, per variant (band: sd over seeds)."""
    if curves.empty:
        return None
    shown = [q for q in ("loss", "val_psnr") if (curves["quantity"] == q).any()]
    fig, axes = plt.subplots(1, len(shown), figsize=(5.5 * len(shown), 3.8), squeeze=False)
    titles = {"loss": "Training loss", "val_psnr": "Validation PSNR (dB)"}
    for ax, quantity in zip(axes[0], shown):
        sub = curves[curves["quantity"] == quantity]
        sns.lineplot(data=sub, x="step", y="value", hue="variant", errorbar="sd", marker=".", ax=ax)
        ax.set_title(titles[quantity])
        ax.set_ylabel(titles[quantity])
        if quantity == "loss" and (sub["value"] > 0).all():
            ax.set_yscale("log")
        ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    return Figure("training_curves.png", "Training loss and validation PSNR from the runs' histories "
                  "(metrics.jsonl).", _png(fig))


def _label_bars(ax: Any, title: str, ylabel: str) -> None:
    """Title and y label of a per-variant bar panel, its variant names slanted to fit."""
    ax.set_title(title)
    ax.set_xlabel("")
    ax.set_ylabel(ylabel)
    ax.tick_params(axis="x", rotation=40, labelsize=8)
    for tick in ax.get_xticklabels():
        tick.set_horizontalalignment("right")


def plot_complexity(inp: TableInput) -> Figure | None:
    """Table 3: parameters, throughput and memory per encoder, ours beside the paper's."""
    rows = []
    for name in inp.names:
        for col in (COMPLEXITY_COLUMNS[0], COMPLEXITY_COLUMNS[2], COMPLEXITY_COLUMNS[3]):
            c = cell(inp.runs[name], col)
            if c.mean is not None:
                rows.append({"encoder": name, "quantity": col.heading, "source": "ours", "value": c.mean})
            theirs = _paper_value(inp, name, col)
            if theirs is not None:
                rows.append({"encoder": name, "quantity": col.heading, "source": "paper", "value": theirs})
    data = pd.DataFrame(rows)
    if data.empty or not (data["source"] == "ours").any():
        return None
    quantities = list(dict.fromkeys(data["quantity"]))
    fig, axes = plt.subplots(1, len(quantities), figsize=(4.6 * len(quantities), 4), squeeze=False)
    for ax, quantity in zip(axes[0], quantities):
        sns.barplot(data=data[data["quantity"] == quantity], x="encoder", y="value", hue="source",
                    hue_order=["ours", "paper"], palette=["#4c72b0", "#c0392b"], order=inp.names, ax=ax)
        _label_bars(ax, quantity, quantity)
    fig.suptitle("Encoder complexity: ours beside the paper's Table 3")
    fig.tight_layout()
    return Figure("complexity.png", "Parameters, throughput and peak memory per encoder, ours beside "
                  "the paper's (Table 3: batch 32 on one Quadro RTX 6000).", _png(fig))


# --------------------------------------------------------------------------------------------
# provenance
# --------------------------------------------------------------------------------------------
def git_commit(repo: Path = REPO) -> str:
    """HEAD of the repository the harness runs from ("unknown" outside git), "+dirty" when
    tracked files have uncommitted changes."""
    try:
        head = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True,
                              text=True, timeout=10)
        if head.returncode != 0:
            return "unknown"
        dirty = subprocess.run(["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return head.stdout.strip() + (" (+uncommitted changes)" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def software_versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for package in ("torch", "torchvision", "torch-fidelity", "lpips", "pandas", "numpy", "seaborn",
                    "matplotlib"):
        try:
            out[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            out[package] = "not installed"
    return out


def hardware() -> dict[str, str]:
    """The machine writing the report (the runs' own hosts are listed separately)."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpu = "none"
    try:
        import torch
        if torch.cuda.is_available():
            gpu = ", ".join(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count()))
    except Exception:  # noqa: BLE001 -- no torch or a broken driver: report no GPU
        gpu = "unknown"
    return {"cpu": cpu, "gpu": gpu, "platform": platform.platform()}


def run_records(root: Path, frame: pd.DataFrame) -> dict[str, Any]:
    """What the runs' own records say about where and how their numbers were made: the hosts of
    their status, the complexity measurement's settings, and each evaluation protocol."""
    hosts, devices, protocols = set(), set(), {}
    for run_id in dict.fromkeys(frame.get("run_id", pd.Series(dtype=str)).dropna()):
        folder = store.run_dir(root, run_id)
        status = store.read_json(folder / "status.json") or {}
        if status.get("host"):
            hosts.add(str(status["host"]))
        comp = store.read_json(folder / "complexity.json") or {}
        setting = ", ".join(f"{k} {comp[k]}" for k in ("device", "resolution", "batch", "precision") if k in comp)
        if setting:
            devices.add(setting)
        for eval_id, record in store.read_evals(folder).items():
            if "protocol" in record and eval_id not in protocols:
                protocols[eval_id] = record["protocol"]
    return {"hosts": sorted(hosts), "complexity": sorted(devices), "protocols": protocols}


def provenance(meta: dict[str, Any] | None = None) -> dict[str, Any]:
    info: dict[str, Any] = {"git commit": git_commit(),
                            "generated": datetime.datetime.now().astimezone().isoformat(timespec="seconds")}
    info |= {f"report machine {k}": v for k, v in hardware().items()}
    info |= {f"version {k}": v for k, v in software_versions().items()}
    return info | (meta or {})


# --------------------------------------------------------------------------------------------
# the document: blocks rendered to markdown and to HTML
# --------------------------------------------------------------------------------------------
@dataclass
class Doc:
    title: str
    blocks: list[tuple[str, Any]] = field(default_factory=list)

    def add(self, kind: str, value: Any) -> None:
        self.blocks.append((kind, value))


def render_markdown(doc: Doc) -> str:
    out = [f"# {doc.title}", ""]
    for kind, value in doc.blocks:
        if kind == "h2":
            out += [f"## {value}", ""]
        elif kind == "p":
            out += [value, ""]
        elif kind == "table":
            out += [table_markdown(value), ""]
        elif kind == "figure":
            out += [f"![{value.caption}](figures/{value.name})", "", f"*{value.caption}*", ""]
        elif kind == "kv":
            out += [f"- **{k}**: {_plain(v)}" for k, v in value.items()] + [""]
        elif kind == "code":
            out += ["```", value, "```", ""]
    return "\n".join(out)


CSS = """body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:2em auto;max-width:1400px;
color:#222;padding:0 1em}h1{font-size:1.6em}h2{border-bottom:1px solid #ccc;padding-bottom:.2em}
table.results{border-collapse:collapse;font-size:.85em;margin:1em 0}
table.results th,table.results td{padding:.3em .6em;border-bottom:1px solid #ddd;text-align:right}
table.results th{background:#f0f3f7}table.results td:first-child,table.results th:first-child{text-align:left}
figure{margin:1.5em 0}figure img{max-width:100%;border:1px solid #eee}figcaption{font-size:.85em;color:#555}
div.scroll{overflow-x:auto}table.results td{max-width:16em}
pre{background:#f6f8fa;padding:.8em;overflow:auto;font-size:.8em}ul.kv{font-size:.9em}"""


def render_html(doc: Doc) -> str:
    esc = html.escape
    out = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
           f"<title>{esc(doc.title)}</title><style>{CSS}</style></head><body>", f"<h1>{esc(doc.title)}</h1>"]
    for kind, value in doc.blocks:
        if kind == "h2":
            out.append(f"<h2>{esc(value)}</h2>")
        elif kind == "p":
            out.append("<p>" + BOLD.sub(r"<strong>\1</strong>", esc(value)) + "</p>")
        elif kind == "table":
            out.append(table_html(value))
        elif kind == "figure":
            data = base64.b64encode(value.png).decode()
            out.append(f'<figure><img alt="{esc(value.caption)}" src="data:image/png;base64,{data}">'
                       f"<figcaption>{esc(value.caption)}</figcaption></figure>")
        elif kind == "kv":
            out.append('<ul class="kv">' + "".join(f"<li><b>{esc(str(k))}</b>: {esc(_plain(v))}</li>"
                                                   for k, v in value.items()) + "</ul>")
        elif kind == "code":
            out.append(f"<pre>{esc(value)}</pre>")
    out.append("</body></html>")
    return "\n".join(out)


def _plain(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return ", ".join(map(str, value)) if value else "none recorded"
    return str(value)


# --------------------------------------------------------------------------------------------
# writing a report
# --------------------------------------------------------------------------------------------
LEGEND = ("Ours: mean ± sample standard deviation over seeds (one seed: the mean). Δ: ours − paper "
          "({relative}). **Bold**: the best value of a column (↓ lower is better, ↑ higher). "
          "Seeds: completed / planned. A cell without a number says why (failed, unavailable, "
          "or the run's state).")


PARAMS_NOTE = ("The paper prints parameter counts with two decimals, cut rather than rounded where it "
               "can be told: LiteVAE-S's 1.036 M (Tables 23/24's structure counted by hand) appears as "
               "1.03, so its difference reads about +0.56%.")


def write_report(out_dir: Path, doc: Doc, table: pd.DataFrame, numbers: pd.DataFrame, caption: str,
                 label: str, figures: list[Figure], summary: dict[str, Any]) -> Path:
    """Every file of a report; returns report.html's path."""
    (out_dir / "figures").mkdir(parents=True, exist_ok=True)
    (out_dir / "tables").mkdir(parents=True, exist_ok=True)
    for fig in figures:
        store.write_bytes_atomic(out_dir / "figures" / fig.name, fig.png)
    store.write_text_atomic(out_dir / "tables" / "main.tex", table_latex(table, caption, label))
    store.write_text_atomic(out_dir / "tables" / "main.csv", numbers.to_csv(index=False))
    store.write_text_atomic(out_dir / "report.md", render_markdown(doc))
    store.write_text_atomic(out_dir / "report.html", render_html(doc))
    store.write_json_atomic(out_dir / "summary.json", summary)
    return out_dir / "report.html"


def _study_intro(spec: StudySpec, doc: Doc) -> None:
    if spec.description:
        doc.add("p", spec.description)
    if spec.paper:
        doc.add("p", f"Paper reference: LiteVAE (Sadat et al., NeurIPS 2024, arXiv 2405.14477), "
                     f"Table {spec.paper.table}; the paper's numbers come from results/paper/.")
    doc.add("p", f"Study file: {spec.path}")


def _runs_table(frame: pd.DataFrame) -> pd.DataFrame:
    cols = [c for c in ("name", "seed", "run_id", "state", "step", "attempts", "eval_id", "reason") if c in frame]
    runs = frame[cols].copy()
    if "reason" in runs:
        runs["reason"] = [short_reason(r) if pd.notna(r) else "" for r in runs["reason"]]
    return runs.astype(object).where(runs.notna(), "").astype(str)


def _histories(root: Path, frame: pd.DataFrame) -> dict[str, list[dict[str, Any]]]:
    ids = dict.fromkeys(frame.get("run_id", pd.Series(dtype=str)).dropna())
    return {rid: store.read_jsonl(store.run_dir(root, rid) / "metrics.jsonl") for rid in ids}


def headline(inp: TableInput, numbers: pd.DataFrame) -> list[str]:
    """The one or two numbers an index shows for a study."""
    done = sum(int((inp.runs[n]["state"] == "completed").sum()) for n in inp.names
               if "state" in inp.runs[n] and n not in _aliases(inp))
    failed = sum(int((inp.runs[n]["state"] == "failed").sum()) for n in inp.names
                 if "state" in inp.runs[n] and n not in _aliases(inp))
    lines = [f"{done} run(s) completed, {failed} failed"]
    keys = ("encoder_params",) if COMPLEXITY_COLUMNS[0] in inp.columns and inp.columns[0] is PARAMS_COLUMN \
        else ("rfid", "psnr")
    for key in keys:
        sub = numbers[(numbers["column"] == key) & numbers["mean"].notna()]
        if sub.empty:
            continue
        col = next(c for c in inp.columns if c.key == key)
        if key == "encoder_params":
            dev = sub["diff"].abs().dropna()
            lines.append(f"params within {dev.max():.2f}% of the paper" if len(dev) else "params measured")
            break
        best = sub.loc[sub["mean"].idxmin() if col.lower_is_better else sub["mean"].idxmax()]
        paper = f" (paper {best['paper']:.{col.digits}f})" if pd.notna(best["paper"]) else ""
        lines.append(f"best {col.label} {best['mean']:.{col.digits}f}: {best['variant']}{paper}")
        break
    return lines


def report(spec: StudySpec, frame: pd.DataFrame, root: Path, out_dir: Path,
           histories: dict[str, list[dict[str, Any]]] | None = None,
           meta: dict[str, Any] | None = None) -> Path:
    """Write the study's report (see the module docstring) from the collected ``frame``;
    ``root`` is the results folder the runs live in. Returns report.html's path."""
    root, out_dir = Path(root), Path(out_dir)
    inp = table_input(spec, frame)
    table, numbers = build_table(inp), summarize(inp)
    names = dict(zip(frame.get("run_id", []), frame.get("name", [])))
    curves = history_frame(histories if histories is not None else _histories(root, frame), names)
    if table_id(spec) == COMPLEXITY_TABLE:
        plots = [plot_complexity(inp)]
    else:
        plots = [plot_metrics(inp), plot_quality_cost(inp), plot_training(curves)]
    figures = [f for f in plots if f is not None]

    doc = Doc(f"Study {spec.study}")
    _study_intro(spec, doc)
    doc.add("h2", "Results" + (f" beside the paper's Table {spec.paper.table}" if spec.paper else ""))
    doc.add("table", table)
    doc.add("p", LEGEND.format(relative="parameters: percent of the paper's count"
                               if table_id(spec) == COMPLEXITY_TABLE else "absolute"))
    if table_id(spec) == COMPLEXITY_TABLE:
        doc.add("p", PARAMS_NOTE)
    eval_ids = list(dict.fromkeys(frame["eval_id"].dropna())) if "eval_id" in frame else []
    if len(eval_ids) > 1:
        doc.add("p", f"The table uses evaluation protocol {main_eval_id(frame)}; the runs were also "
                     f"evaluated with: {', '.join(e for e in eval_ids if e != main_eval_id(frame))}.")
    doc.add("h2", "Figures")
    for fig in figures:
        doc.add("figure", fig)
    if not figures:
        doc.add("p", "No figures: no run has numbers yet.")
    records = run_records(root, frame)
    doc.add("h2", "Provenance")
    doc.add("kv", provenance(meta) | {"run hosts": records["hosts"],
                                      "complexity measured with": records["complexity"]})
    doc.add("h2", "Evaluation protocol")
    if records["protocols"]:
        for eval_id, protocol in records["protocols"].items():
            doc.add("p", f"Protocol {eval_id}:")
            doc.add("code", json.dumps(protocol, indent=1, sort_keys=True, default=str))
    else:
        doc.add("p", "No evaluation record carries a protocol.")
    doc.add("h2", "Runs")
    doc.add("table", _runs_table(frame) if len(frame) else pd.DataFrame({"run": ["none collected"]}))

    summary = {"study": spec.study, "description": spec.description, "table": table_id(spec),
               "variants": len(inp.names), "headline": headline(inp, numbers), "report": "report.html",
               "generated": datetime.datetime.now().astimezone().isoformat(timespec="seconds")}
    caption = (f"{spec.study}: ours beside LiteVAE Table {spec.paper.table}" if spec.paper else spec.study)
    return write_report(out_dir, doc, table, numbers, caption, f"tab:{spec.study}", figures, summary)


# --------------------------------------------------------------------------------------------
# Table 3 from complexity rows
# --------------------------------------------------------------------------------------------
def complexity_frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """``study.complexity.complexity_rows`` output as a collected-style frame (one 'run' per model)."""
    return pd.DataFrame([{"name": r["model"], "seed": 0, "state": "completed", "reason": None,
                          **{c.key: r.get(c.key) for c in COMPLEXITY_COLUMNS}} for r in rows])


def complexity_report(rows: list[dict[str, Any]], out_dir: Path, meta: dict[str, Any] | None = None) -> Path:
    """Table 3 from measured complexity rows (keys model, encoder_params, encoder_gmacs,
    throughput_img_s, peak_mem_mb, device, resolution, batch): ours beside the paper's, the
    bars figure, the measurement's settings. Returns report.html's path."""
    out_dir = Path(out_dir)
    frame = complexity_frame(rows)
    names = list(frame["name"])
    paper = {}
    for name in names:
        if name in PRESET_TABLE3_ROWS:
            paper[name] = paper_row(COMPLEXITY_TABLE, PRESET_TABLE3_ROWS[name])
    inp = TableInput(names=names, runs={n: frame[frame["name"] == n] for n in names},
                     columns=COMPLEXITY_COLUMNS, planned_seeds=1, paper=paper,
                     paper_labels={n: PRESET_TABLE3_ROWS.get(n, "—") for n in names})
    table, numbers = build_table(inp), summarize(inp)
    figures = [f for f in (plot_complexity(inp),) if f is not None]
    settings = {k: sorted({str(r[k]) for r in rows if k in r}) for k in ("device", "resolution", "batch",
                                                                        "precision")}
    doc = Doc("Encoder complexity beside the paper's Table 3")
    doc.add("p", "Parameters, multiply-accumulates (the paper's \"GFLOPS\"), throughput and peak memory "
                 "of each encoder. The paper measured at batch 32 on one Quadro RTX 6000; its GMACs are "
                 "given for the SD-VAE encoder only.")
    doc.add("h2", "Results beside the paper's Table 3")
    doc.add("table", table)
    doc.add("p", LEGEND.format(relative="parameters: percent of the paper's count"))
    doc.add("p", PARAMS_NOTE)
    doc.add("h2", "Figures")
    for fig in figures:
        doc.add("figure", fig)
    doc.add("h2", "Provenance")
    doc.add("kv", provenance(meta) | {f"measured {k}": v for k, v in settings.items()})
    summary = {"study": out_dir.name, "description": "Encoder complexity (Table 3)", "table": COMPLEXITY_TABLE,
               "variants": len(names), "headline": headline(inp, numbers), "report": "report.html",
               "generated": datetime.datetime.now().astimezone().isoformat(timespec="seconds")}
    return write_report(out_dir, doc, table, numbers, "Encoder complexity beside LiteVAE Table 3",
                        "tab:complexity", figures, summary)


# --------------------------------------------------------------------------------------------
# the index of all reports
# --------------------------------------------------------------------------------------------
def write_index(reports_root: Path) -> Path:
    """reports/index.html (and index.md): every study's report with its headline numbers."""
    reports_root = Path(reports_root)
    entries = []
    for path in sorted(reports_root.glob("*/summary.json")):
        summary = store.read_json(path)
        if summary:
            entries.append((path.parent.name, summary))
    esc = html.escape
    rows = "".join(
        f"<tr><td><a href=\"{esc(folder)}/{esc(s.get('report', 'report.html'))}\">{esc(s.get('study', folder))}</a></td>"
        f"<td>{esc(str(s.get('table') or '—'))}</td><td>{esc('; '.join(s.get('headline', [])))}</td>"
        f"<td>{esc(s.get('description', ''))}</td><td>{esc(s.get('generated', ''))}</td></tr>"
        for folder, s in entries)
    page = (f"<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>LiteVAE study reports"
            f"</title><style>{CSS}</style></head><body><h1>LiteVAE study reports</h1>"
            f"<table class=\"results\"><thead><tr><th>Study</th><th>Paper table</th><th>Headline</th>"
            f"<th>Description</th><th>Generated</th></tr></thead><tbody>{rows}</tbody></table>"
            + ("" if entries else "<p>No reports yet.</p>") + "</body></html>\n")
    md = ["# LiteVAE study reports", "", "| Study | Paper table | Headline |", "|---|---|---|"]
    md += [f"| [{s.get('study', folder)}]({folder}/{s.get('report', 'report.html')}) | {s.get('table') or '—'} "
           f"| {'; '.join(s.get('headline', []))} |" for folder, s in entries]
    reports_root.mkdir(parents=True, exist_ok=True)
    store.write_text_atomic(reports_root / "index.md", "\n".join(md) + "\n")
    store.write_text_atomic(reports_root / "index.html", page)
    return reports_root / "index.html"
