"""The report's plots, drawn with seaborn on matplotlib ``Figure`` objects (no pyplot, so no
global backend is chosen: PNGs are written with matplotlib's Agg renderer).

- ``metrics.png``: each metric per variant, the mean with a standard-deviation bar, every seed as
  a dot, the paper's number as a red diamond; a variant without numbers is labelled with why.
- ``quality_cost.png``: rFID (PSNR where no rFID was measured) against encoder GMACs and
  parameters, the Pareto front of our variants, the paper's points where it gives parameters.
- ``training_curves.png``: training loss and validation PSNR against step (band: sd over seeds).
- ``complexity.png`` (Table 3): parameters, ours beside the paper's; throughput and memory as
  ratios to SD-VAE, ours beside the paper's.
"""

from __future__ import annotations

import io
from typing import Any

import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure as Canvas

from study.report import ratios
from study.report.cells import cell
from study.report.columns import GMACS_COLUMN, MEMORY_COLUMN, METRIC_COLUMNS, PARAMS_COLUMN, THROUGHPUT_COLUMN, Column
from study.report.render import Figure
from study.report.tables import TableInput, paper_value, summarize


def _png(fig: Canvas) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    return buf.getvalue()


def _panels(count: int, width: float, height: float, extra: float = 0.0) -> tuple[Canvas, list[Any]]:
    """A figure of ``count`` panels side by side, each ``width`` x ``height`` inches."""
    fig = Canvas(figsize=(width * count + extra, height))
    return fig, list(fig.subplots(1, count, squeeze=False)[0])


def _label_bars(ax: Any, title: str, ylabel: str) -> None:
    """Title and y label of a per-variant bar panel, its variant names slanted to fit."""
    ax.set_title(title)
    ax.set_xlabel("")
    ax.set_ylabel(ylabel)
    ax.tick_params(axis="x", rotation=40, labelsize=8)
    for tick in ax.get_xticklabels():
        tick.set_horizontalalignment("right")


def seed_values(inp: TableInput, columns: tuple[Column, ...]) -> pd.DataFrame:
    """Long format for plots: variant, column, one value per seed (aliases left out)."""
    rows = []
    for name in inp.names:
        if name in inp.aliases:
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
    order = [n for n in inp.names if n not in inp.aliases]  # variants without numbers stay visible
    fig, axes = _panels(len(shown), 3.2, 3.6, extra=1)
    for ax, col in zip(axes, shown):
        sub = data[data["column"] == col.heading]
        sns.barplot(data=sub, x="variant", y="value", order=order, errorbar="sd", color="#8fb3d9", capsize=0.2, ax=ax)
        sns.stripplot(data=sub, x="variant", y="value", order=order, color="#1f3b5c", size=4, ax=ax)
        paper = [(i, paper_value(inp, n, col)) for i, n in enumerate(order)]
        paper = [(i, v) for i, v in paper if v is not None]
        if paper:
            ax.scatter(
                [i for i, _ in paper], [v for _, v in paper], marker="D", color="#c0392b", zorder=5, label="paper"
            )
            ax.legend(loc="best", fontsize=8)
        for i, name in enumerate(order):
            if name not in set(sub["variant"]):
                ax.text(
                    i,
                    0,
                    " " + cell(inp.runs[name], col).why.split(":")[0],
                    rotation=90,
                    ha="center",
                    va="bottom",
                    fontsize=8,
                    color="#c0392b",
                )
        _label_bars(ax, col.heading, col.label)
    fig.suptitle("Metrics per variant (mean ± sd over seeds; dots: seeds)")
    fig.tight_layout()
    return Figure(
        "metrics.png",
        "Each metric per variant: mean over seeds with a standard-deviation "
        "bar, the seeds as dots, the paper's number as a red diamond.",
        _png(fig),
    )


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
    numbers = summarize(
        TableInput(
            inp.names,
            inp.runs,
            METRIC_COLUMNS + (PARAMS_COLUMN, GMACS_COLUMN),
            inp.planned_seeds,
            inp.paper,
            inp.paper_labels,
            inp.notes,
        )
    )
    numbers = numbers[~numbers["variant"].isin(inp.aliases)]
    measured = set(numbers.loc[numbers["mean"].notna(), "column"])
    quality = next((c for c in (METRIC_COLUMNS[0], METRIC_COLUMNS[2]) if c.key in measured), None)
    costs = [c for c in (PARAMS_COLUMN, GMACS_COLUMN) if c.key in measured]
    if quality is None or not costs:
        return None
    wide = numbers.pivot(index="variant", columns="column", values="mean")
    err = numbers.pivot(index="variant", columns="column", values="std")
    fig, axes = _panels(len(costs), 5.2, 4)
    for ax, cost in zip(axes, costs):
        ok = wide[[cost.key, quality.key]].dropna()
        ok = ok.assign(variant=ok.index)
        sns.scatterplot(data=ok, x=cost.key, y=quality.key, hue="variant", s=70, ax=ax, zorder=3)
        yerr = err.loc[ok.index, quality.key].fillna(0)
        ax.errorbar(ok[cost.key], ok[quality.key], yerr=yerr, fmt="none", ecolor="gray", zorder=2)
        front = pareto_front(list(zip(ok[cost.key], ok[quality.key])), quality.lower_is_better)
        if len(front) > 1:
            ax.plot(*zip(*front), color="black", linestyle="--", linewidth=1, label="Pareto front")
        paper = [
            (float(r["params_m"]), float(r[quality.paper]))
            for r in inp.paper.values()
            if cost is PARAMS_COLUMN
            and isinstance(r, pd.Series)
            and "params_m" in r.index
            and pd.notna(r["params_m"])
            and pd.notna(r.get(quality.paper))
        ]
        if paper:
            ax.scatter(*zip(*paper), marker="D", facecolors="none", edgecolors="#c0392b", label="paper")
        ax.set_xlabel(cost.label if cost is not PARAMS_COLUMN else "Encoder parameters (M)")
        ax.set_ylabel(quality.heading)
        ax.legend(fontsize=7, loc="best")
    fig.suptitle(f"Quality against encoder cost ({quality.label}; dashed: Pareto front)")
    fig.tight_layout()
    return Figure(
        "quality_cost.png",
        f"{quality.label} against encoder cost, with the Pareto front of our variants (error bars: sd over seeds).",
        _png(fig),
    )


def history_frame(histories: dict[str, list[dict[str, Any]]], names: dict[str, str]) -> pd.DataFrame:
    """Training histories as one long frame: variant, run, step, quantity, value."""
    rows = []
    for run_id, records in histories.items():
        for r in records:
            for quantity in ("loss", "val_psnr"):
                if "step" in r and isinstance(r.get(quantity), (int, float)):
                    rows.append(
                        {
                            "variant": names.get(run_id, run_id),
                            "run": run_id,
                            "step": r["step"],
                            "quantity": quantity,
                            "value": float(r[quantity]),
                        }
                    )
    return pd.DataFrame(rows, columns=["variant", "run", "step", "quantity", "value"])


def plot_training(curves: pd.DataFrame) -> Figure | None:
    """Training loss and validation PSNR against step, per variant (band: sd over seeds)."""
    if curves.empty:
        return None
    shown = [q for q in ("loss", "val_psnr") if (curves["quantity"] == q).any()]
    fig, axes = _panels(len(shown), 5.5, 3.8)
    titles = {"loss": "Training loss", "val_psnr": "Validation PSNR (dB)"}
    for ax, quantity in zip(axes, shown):
        sub = curves[curves["quantity"] == quantity]
        sns.lineplot(data=sub, x="step", y="value", hue="variant", errorbar="sd", marker=".", ax=ax)
        ax.set_title(titles[quantity])
        ax.set_ylabel(titles[quantity])
        if quantity == "loss" and (sub["value"] > 0).all():
            ax.set_yscale("log")
        ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    return Figure(
        "training_curves.png", "Training loss and validation PSNR from the runs' histories (metrics.jsonl).", _png(fig)
    )


def plot_complexity(inp: TableInput) -> Figure | None:
    """Table 3: parameters per encoder, ours beside the paper's; throughput and memory as ratios to
    SD-VAE (ours measured in the same study, the paper's to its SD-VAE row: study.report.ratios)."""
    reference = ratios.reference_name(inp.names, inp.paper_labels)
    rows = []
    for name in inp.names:
        for col in (PARAMS_COLUMN, THROUGHPUT_COLUMN, MEMORY_COLUMN):
            c = cell(inp.runs[name], col)
            theirs = paper_value(inp, name, col)
            quantity = col.heading
            if col.ratio and reference is not None:
                quantity = ratios.ratio_label(col.label)
                c.mean = ratios.relative(c.mean, cell(inp.runs[reference], col).mean)
                theirs = ratios.relative(theirs, paper_value(inp, reference, col))
            if c.mean is not None:
                rows.append({"encoder": name, "quantity": quantity, "source": "ours", "value": c.mean})
            if theirs is not None:
                rows.append({"encoder": name, "quantity": quantity, "source": "paper", "value": theirs})
    data = pd.DataFrame(rows)
    if data.empty or not (data["source"] == "ours").any():
        return None
    quantities = list(dict.fromkeys(data["quantity"]))
    fig, axes = _panels(len(quantities), 4.6, 4)
    for ax, quantity in zip(axes, quantities):
        sns.barplot(
            data=data[data["quantity"] == quantity],
            x="encoder",
            y="value",
            hue="source",
            hue_order=["ours", "paper"],
            palette=["#4c72b0", "#c0392b"],
            order=inp.names,
            ax=ax,
        )
        _label_bars(ax, quantity, quantity)
    fig.suptitle("Encoder complexity: ours beside the paper's Table 3")
    fig.tight_layout()
    return Figure(
        "complexity.png",
        "Parameters per encoder, ours beside the paper's; throughput and peak memory relative to "
        "SD-VAE, ours measured in this study, the paper's from Table 3 (batch 32 on one Quadro RTX 6000).",
        _png(fig),
    )


def figures_for(inp: TableInput, curves: pd.DataFrame, complexity_table: bool) -> list[Figure]:
    """The report's figures: Table 3 its complexity bars; any other study its metrics, quality
    against cost and training curves (a figure without data to draw is left out)."""
    plots = (
        [plot_complexity(inp)]
        if complexity_table
        else [plot_metrics(inp), plot_quality_cost(inp), plot_training(curves)]
    )
    return [f for f in plots if f is not None]
