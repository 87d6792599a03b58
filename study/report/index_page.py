"""``reports/index.html`` (and ``index.md``): one line per study report, with its paper table,
headline numbers and state, read from each report's ``summary.json``.

A study's state is counted from the states of its runs as the report read them (the run store's
one rule, ``study.store.run_states``, applied by ``collect``), as of the report's time: per
variant (aliases left out) ``completed`` when every seed completed, else ``failed`` when a seed
failed, ``running`` when a job is on one (submitted, running, requeued), else the first seed's
state (cancelled, lost, pending, missing). The study is ``complete`` when every variant
completed, ``running`` while a job is on any run, else ``incomplete``.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any, Collection, Iterable

import pandas as pd

from study import store
from study.report.render import CSS

ACTIVE = {str(s) for s in store.ACTIVE}
ORDER = ("completed", "running", "failed", "diverged", "cancelled", "lost", "pending", "missing")


def variant_state(runs: pd.DataFrame) -> str:
    """One variant's state from its seeds' run states (the module docstring's rule)."""
    states = [str(s) for s in runs["state"].fillna("missing")] if "state" in runs.columns else []
    if not states:
        return "missing"
    if all(s == "completed" for s in states):
        return "completed"
    if "failed" in states:
        return "failed"
    if any(s in ACTIVE for s in states):
        return "running"
    return next(s for s in states if s != "completed")


def study_state(runs: dict[str, pd.DataFrame], aliases: Collection[str] = ()) -> dict[str, Any]:
    """``label`` (complete, running, incomplete) and ``variants``: state -> how many variants."""
    owners = [n for n in runs if n not in aliases]
    per = [variant_state(runs[n]) for n in owners]
    counts = {s: per.count(s) for s in _ordered(per)}
    active = any(str(s) in ACTIVE for n in owners if "state" in runs[n] for s in runs[n]["state"].dropna())
    label = "complete" if per and all(s == "completed" for s in per) else "running" if active else "incomplete"
    return {"label": label, "variants": counts}


def _ordered(states: Iterable[str]) -> list[str]:
    """The distinct states in ``ORDER`` (completed first), any other after them."""
    rank = {s: i for i, s in enumerate(ORDER)}
    return sorted(set(states), key=lambda s: (rank.get(s, len(ORDER)), s))


def state_text(state: dict[str, Any] | None) -> str:
    """``running: 3 completed, 1 running, 2 failed (of 6 variants)``; "not recorded" for a summary
    written before states were recorded."""
    if not state:
        return "not recorded"
    counts = state.get("variants") or {}
    total = sum(counts.values())
    listed = ", ".join(f"{counts[s]} {s}" for s in _ordered(counts))
    return f"{state.get('label', '?')}: {listed} (of {total} variants)"


def summaries(reports_root: Path) -> list[tuple[str, dict[str, Any]]]:
    """(folder name, summary) of every report under ``reports_root``, by folder name."""
    entries = []
    for path in sorted(Path(reports_root).glob("*/summary.json")):
        summary = store.read_json(path)
        if summary:
            entries.append((path.parent.name, summary))
    return entries


def index_html(entries: list[tuple[str, dict[str, Any]]]) -> str:
    esc = html.escape
    rows = "".join(
        f'<tr><td><a href="{esc(folder)}/{esc(s.get("report", "report.html"))}">{esc(s.get("study", folder))}</a></td>'
        f"<td>{esc(str(s.get('table') or '—'))}</td><td>{esc(state_text(s.get('state')))}</td>"
        f"<td>{esc('; '.join(s.get('headline', [])))}</td>"
        f"<td>{esc(s.get('description', ''))}</td><td>{esc(s.get('generated', ''))}</td></tr>"
        for folder, s in entries
    )
    return (
        f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>LiteVAE study reports'
        f"</title><style>{CSS}</style></head><body><h1>LiteVAE study reports</h1>"
        f'<table class="results"><thead><tr><th>Study</th><th>Paper table</th><th>State</th><th>Headline</th>'
        f"<th>Description</th><th>Generated</th></tr></thead><tbody>{rows}</tbody></table>"
        + ("" if entries else "<p>No reports yet.</p>")
        + "</body></html>\n"
    )


def index_markdown(entries: list[tuple[str, dict[str, Any]]]) -> str:
    md = ["# LiteVAE study reports", "", "| Study | Paper table | State | Headline |", "|---|---|---|---|"]
    md += [
        f"| [{s.get('study', folder)}]({folder}/{s.get('report', 'report.html')}) | {s.get('table') or '—'} "
        f"| {state_text(s.get('state'))} | {'; '.join(s.get('headline', []))} |"
        for folder, s in entries
    ]
    return "\n".join(md) + "\n"


def write_index(reports_root: Path) -> Path:
    """reports/index.html (and index.md): every study's report with its headline numbers."""
    reports_root = Path(reports_root)
    entries = summaries(reports_root)
    reports_root.mkdir(parents=True, exist_ok=True)
    store.write_text_atomic(reports_root / "index.md", index_markdown(entries))
    store.write_text_atomic(reports_root / "index.html", index_html(entries))
    return reports_root / "index.html"
