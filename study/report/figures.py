"""The report's plots, drawn with seaborn on matplotlib ``Figure`` objects (no pyplot, so no
global backend is chosen: PNGs are written with matplotlib's Agg renderer).

- ``metrics.png``: each metric per variant as a dot plot on an axis that spans the values (not
  zero): every seed a dot, the mean with a standard-deviation bar, the paper's number as a red
  diamond; a variant without numbers is labelled with why, a metric no run has is a panel saying why.
- ``quality_cost.png``: rFID (PSNR where no rFID was measured) against encoder GMACs and
  parameters, the Pareto front of our variants, the paper's points where it gives parameters.
- ``training_curves.png``: training loss (smoothed, the raw trace light) and validation PSNR
  against step (``curves``).
- ``complexity.png`` (Table 3): parameters, ours beside the paper's; throughput and memory as
  ratios to SD-VAE, ours beside the paper's.
"""

from __future__ import annotations

import io
from textwrap import fill
from typing import Any

import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure as Canvas

from study.report import ratios
from study.report.cells import cell
from study.report.columns import GMACS_COLUMN, MEMORY_COLUMN, METRIC_COLUMNS, PARAMS_COLUMN, THROUGHPUT_COLUMN, Column
from study.report.curves import plot_training
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
    """Each metric per variant as a dot plot (the axis spans the values, not zero: differences of a
    few tenths of a dB stay visible): every seed a small dot, the mean a large one with a
    standard-deviation bar, the paper's number a red diamond. A metric no variant has is a panel
    that names it and why ("LPIPS: unavailable (weights not staged)"); a variant without numbers
    keeps its place, its tick label saying why ("smc (failed)")."""
    cols = [c for c in inp.columns if c in METRIC_COLUMNS]
    data = seed_values(inp, tuple(cols))
    if data.empty:
        return None
    order = [n for n in inp.names if n not in inp.aliases]  # variants without numbers stay visible
    fig, axes = _panels(len(cols), 3.2, 3.8, extra=1)
    for ax, col in zip(axes, cols):
        sub = data[data["column"] == col.heading]
        if sub.empty:
            _missing_panel(ax, col, _why_missing(inp, order, col))
            continue
        _dots(ax, sub, order)
        paper = [(i, paper_value(inp, n, col)) for i, n in enumerate(order)]
        paper = [(i, v) for i, v in paper if v is not None]
        if paper:
            ax.scatter(
                [i for i, _ in paper], [v for _, v in paper], marker="D", color="#c0392b", zorder=5, label="paper"
            )
            ax.legend(loc="best", fontsize=8)
        _label_bars(ax, col.heading, col.label)
        has = set(sub["variant"])  # a variant without numbers: its tick says why (e.g. "smc (failed)")
        ticks = [n if n in has else f"{n} ({cell(inp.runs[n], col).why.split(':')[0]})" for n in order]
        ax.set_xticks(range(len(order)), ticks)
        for tick, name in zip(ax.get_xticklabels(), order):
            tick.set_horizontalalignment("right")
            tick.set_color("black" if name in has else "#c0392b")
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle("Metrics per variant (dots: seeds; large dot and bar: mean ± sd; axes do not start at 0)")
    fig.tight_layout()
    return Figure(
        "metrics.png",
        "Each metric per variant: every seed as a small dot, the mean as a large dot with a "
        "standard-deviation bar, the paper's number as a red diamond; the axes span the values "
        "(they do not start at zero). A metric that was not computed is named with the reason.",
        _png(fig),
    )


def _dots(ax: Any, sub: pd.DataFrame, order: list[str]) -> None:
    """Seeds as small dots, the mean as a large dot with a standard-deviation bar, per variant."""
    sns.stripplot(data=sub, x="variant", y="value", order=order, color="#1f3b5c", size=4, alpha=0.6, ax=ax)
    per = sub.groupby("variant")["value"].agg(["mean", "std", "count"])
    at = [i for i, n in enumerate(order) if n in per.index]
    rows = per.loc[[order[i] for i in at]]
    ax.errorbar(
        at, rows["mean"], yerr=rows["std"].fillna(0), fmt="o", color="#2c7fb8", markersize=8, capsize=4, zorder=4
    )
    ax.margins(y=0.15)


def _why_missing(inp: TableInput, order: list[str], col: Column) -> str:
    """Why no variant has a number of ``col``: the first variant's reason, shortened."""
    why = next((cell(inp.runs[n], col).why for n in order), "no runs")
    if why.startswith("unavailable"):
        reason = why.split(":", 1)[1].strip() if ":" in why else "not computed"
        return f"unavailable ({reason.split(' (')[0]})"
    return f"no numbers ({why.split(':')[0]})"


def _missing_panel(ax: Any, col: Column, why: str) -> None:
    ax.set_axis_off()
    ax.text(
        0.5,
        0.5,
        f"{col.label}:\n{fill(why, 26)}",
        ha="center",
        va="center",
        fontsize=10,
        color="#7f7f7f",
        transform=ax.transAxes,
        bbox={"boxstyle": "round", "facecolor": "#f4f4f4", "edgecolor": "#cccccc"},
    )
    ax.set_title(col.heading)


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
