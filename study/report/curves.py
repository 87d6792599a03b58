"""The report's training curves (``training_curves.png``): the training loss and the validation
PSNR of each run's ``metrics.jsonl`` against the step, one colour per variant.

The logged loss is one batch's, so it is noisy: each run's trace is drawn light and thin, and over
it the variant's smoothed loss, an exponential moving average of each run's logged values whose
span is ``SPAN_FRACTION`` of the run's logged points (weight 2 / (span + 1) on the newest value;
debiased, pandas' ``ewm(adjust=True)``: the first points are not pulled towards 0; no smoothing
where the span is under two points), averaged over the variant's seeds. Validation PSNR is measured on held-out
images, a few times per run: its points are drawn as they are, the line the mean over seeds.
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure as Canvas

from study.report.render import Figure

SPAN_FRACTION = 0.05  # the EMA's span: a twentieth of a run's logged points
QUANTITIES = ("loss", "val_psnr", "during_psnr")
TITLES = {
    "loss": "Training loss",
    "val_psnr": "Validation PSNR (dB)",
    "during_psnr": "Protocol PSNR during training (dB)",  # during.jsonl: eval.during, the model's weights
}


def _value(r: dict[str, Any], quantity: str) -> Any:
    """A history line's value of ``quantity``: metrics.jsonl's keys, or a during.jsonl line's
    PSNR of the model's weights (study/trainer/watch.py)."""
    if quantity == "during_psnr":
        return (r.get("metrics") or {}).get("psnr") if r.get("weights") == "model" else None
    return r.get(quantity)


def history_frame(histories: dict[str, list[dict[str, Any]]], names: dict[str, str]) -> pd.DataFrame:
    """Training histories as one long frame: variant, run, step, quantity, value."""
    rows = []
    for run_id, records in histories.items():
        for r in records:
            for quantity in QUANTITIES:
                if "step" in r and isinstance(value := _value(r, quantity), (int, float)):
                    rows.append(
                        {
                            "variant": names.get(run_id, run_id),
                            "run": run_id,
                            "step": r["step"],
                            "quantity": quantity,
                            "value": float(value),
                        }
                    )
    return pd.DataFrame(rows, columns=["variant", "run", "step", "quantity", "value"])


def span(points: int) -> float:
    """The EMA's span for a run of ``points`` logged values (the module docstring)."""
    return SPAN_FRACTION * points


def ema(values: np.ndarray) -> np.ndarray:
    """The debiased exponential moving average of ``values`` over ``span(len(values))``; the values
    as they are where that span is under two points."""
    width = span(len(values))
    if width < 2:
        return np.asarray(values, dtype=float)
    return pd.Series(values, dtype=float).ewm(span=width, adjust=True).mean().to_numpy()


def _smoothed(sub: pd.DataFrame) -> pd.DataFrame:
    """Per run, its loss in step order with the EMA beside it (column ``smooth``)."""
    parts = []
    for _, run in sub.groupby("run", sort=False):
        run = run.drop_duplicates("step", keep="last").sort_values("step")
        parts.append(run.assign(smooth=ema(run["value"].to_numpy())))
    return pd.concat(parts, ignore_index=True)


def _draw_loss(ax: Any, sub: pd.DataFrame, colours: dict[str, str]) -> None:
    data = _smoothed(sub)
    for variant, runs in data.groupby("variant", sort=False):
        colour = colours[str(variant)]
        for _, run in runs.groupby("run", sort=False):
            ax.plot(run["step"], run["value"], color=colour, alpha=0.25, linewidth=0.8)
        mean = runs.groupby("step")["smooth"].mean()
        ax.plot(mean.index, mean.to_numpy(), color=colour, linewidth=2, label=str(variant))
    if (data["value"] > 0).all():
        ax.set_yscale("log")
    ax.set_title(f"{TITLES['loss']} (light: as logged; line: EMA)")


def _draw_points(ax: Any, sub: pd.DataFrame, colours: dict[str, str], quantity: str) -> None:
    for variant, runs in sub.groupby("variant", sort=False):
        colour = colours[str(variant)]
        ax.scatter(runs["step"], runs["value"], color=colour, s=12, alpha=0.5)
        mean = runs.groupby("step")["value"].mean()
        ax.plot(mean.index, mean.to_numpy(), color=colour, linewidth=1.5, marker=".", label=str(variant))
    ax.set_title(TITLES[quantity])


def plot_training(curves: pd.DataFrame) -> Figure | None:
    """The figure of the module docstring; None without a history."""
    if curves.empty:
        return None
    shown = [q for q in QUANTITIES if (curves["quantity"] == q).any()]
    fig = Canvas(figsize=(5.8 * len(shown), 4.0))
    axes = list(fig.subplots(1, len(shown), squeeze=False)[0])
    colours = {v: f"C{i % 10}" for i, v in enumerate(dict.fromkeys(curves["variant"]))}
    for ax, quantity in zip(axes, shown):
        sub = curves[curves["quantity"] == quantity]
        if quantity == "loss":
            _draw_loss(ax, sub, colours)
        else:
            _draw_points(ax, sub, colours, quantity)
        ax.set_xlabel("step")
        ax.set_ylabel(TITLES[quantity])
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    caption = (
        "Training loss and validation PSNR from the runs' histories (metrics.jsonl). Loss: each run as "
        f"logged (light), and its exponential moving average over a span of {SPAN_FRACTION:.0%} of the run's "
        "logged points (debiased; none under two points), averaged over seeds (line). Validation PSNR: "
        "every run's points, the line their mean."
    )
    return Figure("training_curves.png", caption, _png(fig))


def _png(fig: Canvas) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    return buf.getvalue()
