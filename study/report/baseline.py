"""The report's difference to the baseline, shown for every study whatever its seeds: per variant
and column, our mean minus the baseline's mean. Where both have at least two seeds the cell adds
the 95% interval of the difference and Welch's two-sided p-value (``stats.difference_interval``,
``stats.welch_p``, marked ``*`` where p < 0.05); otherwise it says why there is none ("n=1: no
interval"), so a reader never takes a one-seed difference for a measured effect.

The baseline is the index's ``baseline`` (``significance.baseline_name``). Aliases (a variant
sharing another's run) are left out: their numbers are that run's.
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
from study.report.significance import MARK, baseline_name, seed_values
from study.report.tables import TableInput

NO_INTERVAL = "n=1: no interval"
LEGEND = (
    "Δ: the variant's mean − the baseline {baseline}'s mean, for every variant whatever its seeds. "
    "With at least two seeds in both: [the 95% interval of the difference] and p, Welch's two-sided "
    "t-test (* p < {alpha}); a difference whose interval holds 0 is inside the seed noise. With one "
    'seed in either: "{none}" (one run cannot tell a difference from seed noise).'
)


@dataclass
class BaselineTable:
    baseline: str
    numbers: pd.DataFrame  # one row per (variant, column): n, base_n, diff, low, high, p
    table: pd.DataFrame  # the display table

    def blocks(self) -> list[tuple[str, Any]]:
        """The report's section: a heading, the table, the legend."""
        legend = LEGEND.format(baseline=self.baseline, alpha=stats.ALPHA, none=NO_INTERVAL)
        return [("h2", f"Difference to the baseline {self.baseline}"), ("table", self.table), ("p", legend)]

    def write(self, out_dir: Path, study: str) -> None:
        """tables/baseline.{md,tex,csv} beside the main table."""
        tables = Path(out_dir) / "tables"
        tables.mkdir(parents=True, exist_ok=True)
        caption = f"{study}: each variant minus the baseline {self.baseline}"
        store.write_text_atomic(tables / "baseline.md", table_markdown(self.table) + "\n")
        store.write_text_atomic(tables / "baseline.tex", table_latex(self.table, caption, f"tab:{study}-baseline"))
        store.write_text_atomic(tables / "baseline.csv", self.numbers.to_csv(index=False))


def difference(values: list[float], reference: list[float]) -> dict[str, Any]:
    """One cell's numbers: the difference of means, its interval and p (None where undefined)."""
    low_high = stats.difference_interval(values, reference)
    diff = sum(values) / len(values) - sum(reference) / len(reference)
    return {
        "n": len(values),
        "base_n": len(reference),
        "diff": diff,
        "low": low_high[0] if low_high else None,
        "high": low_high[1] if low_high else None,
        "p": stats.welch_p(values, reference),
    }


def cell_text(d: dict[str, Any], col: Column) -> str:
    """``+1.20 [+0.31, +2.09], p=0.021 *``; ``+0.04 (n=1: no interval)`` with one seed."""
    digits = col.digits
    diff = f"{d['diff']:+.{digits}f}"
    if d["n"] < 2:
        return f"{diff} ({NO_INTERVAL})"
    if d["base_n"] < 2:
        return f"{diff} (baseline {NO_INTERVAL})"
    if d["low"] is None or d["p"] is None:
        return f"{diff} (std 0: no interval)"
    p = "p<0.001" if d["p"] < 0.001 else f"p={d['p']:.3f}"
    mark = f" {MARK}" if d["p"] < stats.ALPHA else ""
    return f"{diff} [{d['low']:+.{digits}f}, {d['high']:+.{digits}f}], {p}{mark}"


def baseline_table(inp: TableInput, index: dict[str, Any]) -> BaselineTable | None:
    """The table of the module docstring; None where no column has a number for the baseline."""
    if not inp.names:
        return None
    base = baseline_name(index, inp.names)
    names = [n for n in inp.names if n not in inp.aliases or n == base]
    columns = [c for c in inp.columns if seed_values(inp.runs[base], c)]
    if not columns:
        return None
    rows, shown = [], []
    for name in names:
        line = {"Variant": name + (" (baseline)" if name == base else ""), "Seeds": str(_seeds(inp, name, columns))}
        for col in columns:
            values, reference = seed_values(inp.runs[name], col), seed_values(inp.runs[base], col)
            if name == base or not values:
                line[f"Δ {col.heading}"] = "—" if name == base else "no number"
                continue
            d = difference(values, reference)
            rows.append({"variant": name, "column": col.key} | d)
            line[f"Δ {col.heading}"] = cell_text(d, col)
        shown.append(line)
    numbers = pd.DataFrame(rows, columns=["variant", "column", "n", "base_n", "diff", "low", "high", "p"])
    return BaselineTable(base, numbers, pd.DataFrame(shown))


def _seeds(inp: TableInput, name: str, columns: list[Column]) -> int:
    """The seeds with a number in the variant's first measured column."""
    return max((len(seed_values(inp.runs[name], c)) for c in columns), default=0)
