"""Several studies side by side: one table and one quality-against-cost plot over their variants
(``compare``), shared runs counted once. Its files, rows, cells and metric choice:
docs/reports.md, "What `compare` writes".
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from matplotlib.figure import Figure as Canvas

from study import store
from study.report.cells import cell
from study.report.columns import GMACS_COLUMN, METRIC_COLUMNS, PARAMS_COLUMN, Column
from study.report.figures import pareto_front
from study.report.provenance import now
from study.report.records import StudyRecords, main_eval_id, read_study, rows_for_protocol
from study.report.render import Doc, Figure, render_html, render_markdown

METRICS = {c.key: c for c in METRIC_COLUMNS}
DECODER_PARAMS = Column("decoder_params", "Dec. params (M)", True, 2, None, scale=1e-6)
COSTS = (GMACS_COLUMN, PARAMS_COLUMN)  # the plot's x axes, in this order
NAME = re.compile(r"[a-z0-9_-]+")
LABELS = {GMACS_COLUMN.key: "Enc. GMACs", PARAMS_COLUMN.key: "Enc. params (M)"}
AXES = {GMACS_COLUMN.key: "GMACs", PARAMS_COLUMN.key: "params"}
METRIC_NOTE = "Metric compared and plotted:"


class CompareError(ValueError):
    """Fewer than one study, an unknown metric, or a comparison name outside [a-z0-9_-]+."""


@dataclass
class Row:
    """One configuration of the compared studies: every variant that shares its runs."""

    labels: list[str]  # "study/variant", in the order the studies were given
    run_ids: list[str]  # each run once
    runs: pd.DataFrame = field(default_factory=pd.DataFrame)  # the runs' rows under the compared protocol

    @property
    def studies(self) -> list[str]:
        return list(dict.fromkeys(label.split("/", 1)[0] for label in self.labels))

    @property
    def name(self) -> str:
        return " = ".join(self.labels)


# --------------------------------------------------------------------------------------------
# rows: variants joined by their runs
# --------------------------------------------------------------------------------------------
def variant_runs(records: StudyRecords) -> list[tuple[list[str], list[str]]]:
    """(labels, run ids) of each variant of a study: its name and aliases, its seeds' runs."""
    runs: dict[str, list[str]] = {}
    labels: dict[str, list[str]] = {}
    for v in records.index["variants"]:
        runs.setdefault(v["name"], []).append(v["run_id"])
        labels.setdefault(v["name"], [v["name"]])
        labels[v["name"]] += [a for a in v.get("aliases", []) if a not in labels[v["name"]]]
    study = records.study
    return [([f"{study}/{n}" for n in labels[name]], ids) for name, ids in runs.items()]


def join_rows(variants: list[tuple[list[str], list[str]]]) -> list[Row]:
    """One row per group of variants connected by a shared run id, in first-seen order."""
    rows: list[Row] = []
    for labels, ids in variants:
        touching = [r for r in rows if set(r.run_ids) & set(ids)]
        if not touching:
            rows.append(Row(list(labels), list(dict.fromkeys(ids))))
            continue
        first = touching[0]
        for other in touching[1:]:
            first.labels += other.labels
            first.run_ids += other.run_ids
            rows.remove(other)
        first.labels = list(dict.fromkeys(first.labels + labels))
        first.run_ids = list(dict.fromkeys(first.run_ids + ids))
    return rows


def compared_rows(records: list[StudyRecords]) -> tuple[list[Row], str | None]:
    """The rows of the studies and the evaluation protocol their cells use."""
    frame = pd.concat([r.frame for r in records], ignore_index=True)
    if "run_id" in frame.columns:  # a run of two studies has its rows twice: keep them once
        frame = frame.drop_duplicates(subset=[c for c in ("run_id", "eval_id") if c in frame.columns])
    eval_id = main_eval_id(frame)
    frame = rows_for_protocol(frame, eval_id)
    rows = join_rows([v for r in records for v in variant_runs(r)])
    for row in rows:
        row.runs = frame[frame["run_id"].isin(row.run_ids)] if "run_id" in frame.columns else frame.iloc[0:0]
    return rows, eval_id


# --------------------------------------------------------------------------------------------
# the numbers, the table, the plot
# --------------------------------------------------------------------------------------------
def numbers(rows: list[Row], metric: Column) -> pd.DataFrame:
    """One line per row: its names, studies, runs, each metric's mean/sd/n, the costs and whether
    it lies on the Pareto front of ``metric`` against each cost."""
    lines = []
    for row in rows:
        done = int((row.runs["state"] == "completed").sum()) if "state" in row.runs.columns else 0
        line: dict[str, Any] = {
            "variant": row.name,
            "studies": ", ".join(row.studies),
            "run_ids": " ".join(row.run_ids),
            "runs": len(row.run_ids),
            "completed": done,
        }
        for col in METRIC_COLUMNS + COSTS + (DECODER_PARAMS,):
            c = cell(row.runs, col)
            line |= {f"{col.key}_mean": c.mean, f"{col.key}_std": c.std, f"{col.key}_n": c.n}
            fixed = col not in METRIC_COLUMNS and c.mean is not None  # a cost: one config, no spread to show
            line[f"{col.key}_text"] = f"{c.mean:.{col.digits}f}" if fixed else c.text(col)
        lines.append(line)
    table = pd.DataFrame(lines)
    for cost in COSTS:
        table[f"pareto_{cost.key}"] = _on_front(table, metric, cost)
    return table


def _on_front(table: pd.DataFrame, metric: Column, cost: Column) -> list[bool]:
    ok = table[[f"{cost.key}_mean", f"{metric.key}_mean"]].astype(float).dropna()
    front = set(pareto_front(list(ok.itertuples(index=False, name=None)), metric.lower_is_better))
    return [i in ok.index and tuple(ok.loc[i]) in front for i in table.index]


def display_table(table: pd.DataFrame, metric: Column) -> pd.DataFrame:
    """The table shown: the chosen metric first, then the other metrics any row has, the costs,
    and the fronts a row lies on."""
    others = [c for c in METRIC_COLUMNS if c is not metric and table[f"{c.key}_mean"].notna().any()]
    shown = pd.DataFrame({"Variant": table["variant"], "Studies": table["studies"]})
    shown["Runs"] = [f"{d}/{n}" for d, n in zip(table["completed"], table["runs"])]
    for col in [metric, *others, *COSTS, DECODER_PARAMS]:
        shown[col.heading if col in METRIC_COLUMNS else LABELS.get(col.key, col.label)] = list(table[f"{col.key}_text"])
    shown["Pareto front"] = [
        ", ".join(AXES[c.key] for c in COSTS if table.loc[i, f"pareto_{c.key}"]) or "—" for i in table.index
    ]
    return shown


def plot(table: pd.DataFrame, metric: Column) -> Figure | None:
    """``metric`` against encoder GMACs and parameters: a point per row (error bar: sd over its
    runs), coloured by its studies, the Pareto front dashed."""
    costs = [c for c in COSTS if table[[f"{c.key}_mean", f"{metric.key}_mean"]].notna().all(axis=1).any()]
    if not costs:
        return None
    fig = Canvas(figsize=(5.6 * len(costs), 4.4))
    axes = list(fig.subplots(1, len(costs), squeeze=False)[0])
    groups = list(dict.fromkeys(table["studies"]))
    colours = {g: f"C{i % 10}" for i, g in enumerate(groups)}
    for ax, cost in zip(axes, costs):
        ok = table[table[[f"{cost.key}_mean", f"{metric.key}_mean"]].notna().all(axis=1)]
        x, y = ok[f"{cost.key}_mean"], ok[f"{metric.key}_mean"]  # cell() gave them in the shown units
        for group in dict.fromkeys(ok["studies"]):
            at = ok["studies"] == group
            ax.errorbar(
                x[at],
                y[at],
                yerr=ok.loc[at, f"{metric.key}_std"].fillna(0),
                fmt="o",
                color=colours[group],
                label=group,
                capsize=3,
            )
        for xi, yi, name in zip(x, y, ok["variant"]):
            ax.annotate(name, (xi, yi), fontsize=7, xytext=(4, 3), textcoords="offset points")
        front = pareto_front(list(zip(x, y)), metric.lower_is_better)
        if len(front) > 1:
            ax.plot(*zip(*front), color="black", linestyle="--", linewidth=1, label="Pareto front")
        ax.set_xlabel("Encoder GMACs" if cost is GMACS_COLUMN else "Encoder parameters (M)")
        ax.set_ylabel(metric.heading)
        ax.legend(fontsize=7, loc="best")
    fig.suptitle(f"{metric.label} against encoder cost (dashed: Pareto front)")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    caption = f"{metric.label} against encoder cost over the compared studies; error bars: sd over a row's runs."
    return Figure("quality_cost.png", caption, buf.getvalue())


# --------------------------------------------------------------------------------------------
# the files
# --------------------------------------------------------------------------------------------
def compare(root: Path, studies: list[str], out_dir: Path, metric: str = "rfid", profile: str | None = None) -> Path:
    """Write the comparison of ``studies`` (whose runs live in ``root``; their indexes under
    ``profile``) to ``out_dir`` (see the module docstring); returns compare.html's path."""
    if metric not in METRICS:
        raise CompareError(f"--metric: got {metric!r}; allowed: {', '.join(METRICS)}")
    if not studies:
        raise CompareError("compare needs at least one study")
    records = [read_study(Path(root), s, profile) for s in dict.fromkeys(studies)]
    rows, eval_id = compared_rows(records)
    col, note = choose_metric(rows, [r.study for r in records], METRICS[metric])
    table = numbers(rows, col)
    shown = display_table(table, col)
    figure = plot(table, col)
    doc = document(records, shown, figure, eval_id, root, note)
    out_dir = Path(out_dir)
    store.write_text_atomic(out_dir / "compare.csv", table.to_csv(index=False))
    store.write_text_atomic(out_dir / "compare.md", render_markdown(doc).replace("](figures/", "]("))
    store.write_text_atomic(out_dir / "compare.html", render_html(doc))
    if figure is not None:
        store.write_bytes_atomic(out_dir / figure.name, figure.png)
    return out_dir / "compare.html"


def measured(rows: list[Row]) -> dict[str, set[str]]:
    """Study -> the metrics (keys) at least one of its rows has a number of."""
    out: dict[str, set[str]] = {}
    for row in rows:
        keys = {c.key for c in METRIC_COLUMNS if cell(row.runs, c).mean is not None}
        for study in row.studies:
            out.setdefault(study, set()).update(keys)
    return out


def choose_metric(rows: list[Row], studies: list[str], wanted: Column) -> tuple[Column, str]:
    """The metric the comparison plots, and the line that says which: ``wanted`` where every study
    measured it, else the first metric (rFID, LPIPS, PSNR, SSIM) every study measured."""
    have = measured(rows)
    lacking = [s for s in studies if wanted.key not in have.get(s, set())]
    if not lacking:
        return wanted, f"{METRIC_NOTE} {wanted.label}."
    common = [c for c in METRIC_COLUMNS if all(c.key in have.get(s, set()) for s in studies)]
    if not common:
        return wanted, f"{METRIC_NOTE} {wanted.label}, though no metric has numbers in every study."
    return common[0], (
        f"{METRIC_NOTE} {common[0].label}, the first metric every study has numbers of: "
        f"{wanted.label} (asked for) has none in {', '.join(lacking)}."
    )


def document(
    records: list[StudyRecords],
    shown: pd.DataFrame,
    figure: Figure | None,
    eval_id: str | None,
    root: Path,
    note: str = "",
) -> Doc:
    """The comparison's content: which studies, the metric, the table and how to read it, the plot,
    sources."""
    doc = Doc("Comparison of " + ", ".join(r.study for r in records))
    doc.add(
        "p", "Studies: " + "; ".join(f"{r.study} ({r.index.get('spec', 'study file not recorded')})" for r in records)
    )
    if note:
        doc.add("p", note)
    doc.add("h2", "Results")
    doc.add("table", shown)
    doc.add(
        "p",
        "One row per configuration: variants of different studies that share a run (the same run id) are one "
        "row, named by all of them (a = b), and each run counts once. Cells: mean ± sample sd over the row's "
        "completed runs (Runs: completed / runs). Pareto front: no other row has both a lower cost and a better "
        "value of the chosen metric.",
    )
    doc.add("h2", "Quality against cost")
    if figure is not None:
        doc.add("figure", figure)
    else:
        doc.add("p", "No plot: no row has both the compared metric and a recorded cost yet.")
    doc.add("h2", "Provenance")
    profiles = {r.study: r.index.get("profile") or "none" for r in records}
    doc.add(
        "kv",
        {
            "evaluation protocol": eval_id or "no run evaluated yet",
            "profiles": ", ".join(f"{s}: {p}" for s, p in profiles.items()),
            "results folder": str(root),
            "generated": now(),
        },
    )
    return doc


def check_name(name: str) -> str:
    """A comparison's name: it names reports/compare-<name>/."""
    if not NAME.fullmatch(name):
        raise CompareError(f"--name: got {name!r}; allowed: letters a-z, digits, '_' and '-'")
    return name


def markdown_table(out_dir: Path) -> str:
    """The metric line and the table of a written comparison, as markdown (what the command line
    prints)."""
    text = (Path(out_dir) / "compare.md").read_text()
    return "\n".join(line for line in text.splitlines() if line.startswith(("|", METRIC_NOTE)))
