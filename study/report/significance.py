"""The report's "significance vs baseline" table: per variant and column with at least two seeds,
the mean ± std, the 95% confidence interval, the difference to the study's baseline row, Welch's
p-value (marked ``*`` where p < 0.05) and, where the difference is not significant, the seeds per
arm that would resolve it at power 0.8 (``study.report.stats``).

The baseline is the index's ``baseline`` (the study file's ``paper.baseline``, or its first
variant; see ``study.studyfile.record``); an index without one takes the table's first row. Aliases
(a variant sharing another's run) are left out: their numbers are that run's.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from study import store
from study.report import stats
from study.report.columns import Column
from study.report.render import table_latex, table_markdown
from study.report.tables import TableInput

MARK = "*"
LEGEND = (
    "Seeds as statistics (cells with at least two seeds): mean ± sample std, the 95% confidence "
    "interval of the mean (Student t), Δ: variant − baseline {baseline!r}, p: Welch's two-sided "
    "t-test against the baseline (* p < {alpha}). Seeds for power {power}: the seeds per arm at "
    "which a two-sided t-test at α {alpha} would detect the observed difference with probability "
    "{power} (pooled std; n/a where the std is 0, an arm has fewer than two seeds, or more than "
    "{max_seeds} seeds would be needed); — where the difference is already significant."
)


@dataclass
class Significance:
    baseline: str
    numbers: pd.DataFrame  # one row per (variant, column): n, mean, std, low, high, diff, p, seeds
    table: pd.DataFrame  # the display table

    def blocks(self) -> list[tuple[str, Any]]:
        """The report's section: a heading, the legend, the table."""
        legend = LEGEND.format(baseline=self.baseline, alpha=stats.ALPHA, power=stats.POWER, max_seeds=stats.MAX_SEEDS)
        return [("h2", f"Significance vs baseline {self.baseline}"), ("p", legend), ("table", self.table)]

    def write(self, out_dir: Path, study: str) -> None:
        """tables/significance.{md,tex,csv} beside the main table."""
        tables = Path(out_dir) / "tables"
        tables.mkdir(parents=True, exist_ok=True)
        caption = f"{study}: each variant against the baseline {self.baseline} over seeds"
        store.write_text_atomic(tables / "significance.md", table_markdown(self.table) + "\n")
        store.write_text_atomic(tables / "significance.tex", table_latex(self.table, caption, f"tab:{study}-sig"))
        store.write_text_atomic(tables / "significance.csv", self.numbers.to_csv(index=False))


def baseline_name(index: dict[str, Any], names: list[str]) -> str:
    """The study's baseline row: the index's ``baseline`` where it names a row, else the first."""
    chosen = index.get("baseline")
    return str(chosen) if chosen in names else names[0]


def seed_values(runs: pd.DataFrame, col: Column) -> list[float]:
    """A cell's numbers, one per seed, in the paper's unit (as ``cells.cell`` reads them)."""
    if col.key not in runs.columns:
        return []
    return [float(v) * col.scale for v in pd.to_numeric(runs[col.key], errors="coerce").dropna()]


def significance(inp: TableInput, index: dict[str, Any]) -> Significance | None:
    """The table of the module docstring; None where no cell has two seeds."""
    if not inp.names:
        return None
    base = baseline_name(index, inp.names)
    rows = []
    for col in inp.columns:
        reference = seed_values(inp.runs[base], col)
        for name in [base] + [n for n in inp.names if n != base]:  # the baseline first
            values = seed_values(inp.runs[name], col)
            if len(values) < 2 or (name in inp.aliases and name != base):
                continue
            s = stats.summary(values)
            row = {"variant": name, "column": col.key, "label": col.heading, "n": s.n, "mean": s.mean}
            row |= {"std": s.std, "low": s.low, "high": s.high, "diff": None, "p": None, "seeds_for_power": None}
            if name != base and reference:
                row["diff"] = s.mean - stats.summary(reference).mean
                row["p"] = stats.welch_p(values, reference)
                row["seeds_for_power"] = stats.seeds_for_power(values, reference)
            rows.append(row)
    if not rows:
        return None
    numbers = pd.DataFrame(rows)
    return Significance(base, numbers, _display(numbers, inp, base))


def _display(numbers: pd.DataFrame, inp: TableInput, base: str) -> pd.DataFrame:
    digits = {c.key: c.digits for c in inp.columns}
    reference_n = {r.column: r.n for r in numbers.itertuples() if r.variant == base}
    out = []
    for r in numbers.itertuples():
        d = digits[r.column]
        is_base = r.variant == base
        out.append(
            {
                "Variant": r.variant + (" (baseline)" if is_base else ""),
                "Metric": r.label,
                "Seeds": str(r.n),
                "Mean ± std": f"{r.mean:.{d}f} ± {r.std:.{d}f}",
                "95% CI": f"[{r.low:.{d}f}, {r.high:.{d}f}]",
                f"Δ vs {base}": "—" if is_base else _diff(r.diff, d),
                "p (Welch)": "—" if is_base else _p_text(r.p, reference_n.get(r.column, 0)),
                f"Seeds for power {stats.POWER}": "—" if is_base else _seeds_text(r.p, r.seeds_for_power),
            }
        )
    return pd.DataFrame(out)


def _missing(value: Any) -> bool:
    return value is None or pd.isna(value)


def _diff(diff: Any, digits: int) -> str:
    return "—" if _missing(diff) else f"{diff:+.{digits}f}"


def _p_text(p: Any, reference_n: int) -> str:
    if _missing(p):
        return "n/a (baseline: fewer than 2 seeds)" if reference_n < 2 else "n/a (std 0)"
    text = "<0.001" if p < 0.001 else f"{p:.3f}"
    return f"{text} {MARK}" if p < stats.ALPHA else text


def _seeds_text(p: Any, seeds: Any) -> str:
    if not _missing(p) and p < stats.ALPHA:
        return "—"  # resolved by the seeds at hand
    return "n/a" if _missing(seeds) else str(int(seeds))
