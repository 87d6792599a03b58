"""``reports/index.html`` (and ``index.md``): one line per study report, with its paper table and
headline numbers, read from each report's ``summary.json``."""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

from study import store
from study.report.render import CSS


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
        f"<td>{esc(str(s.get('table') or '—'))}</td><td>{esc('; '.join(s.get('headline', [])))}</td>"
        f"<td>{esc(s.get('description', ''))}</td><td>{esc(s.get('generated', ''))}</td></tr>"
        for folder, s in entries
    )
    return (
        f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>LiteVAE study reports'
        f"</title><style>{CSS}</style></head><body><h1>LiteVAE study reports</h1>"
        f'<table class="results"><thead><tr><th>Study</th><th>Paper table</th><th>Headline</th>'
        f"<th>Description</th><th>Generated</th></tr></thead><tbody>{rows}</tbody></table>"
        + ("" if entries else "<p>No reports yet.</p>")
        + "</body></html>\n"
    )


def index_markdown(entries: list[tuple[str, dict[str, Any]]]) -> str:
    md = ["# LiteVAE study reports", "", "| Study | Paper table | Headline |", "|---|---|---|"]
    md += [
        f"| [{s.get('study', folder)}]({folder}/{s.get('report', 'report.html')}) | {s.get('table') or '—'} "
        f"| {'; '.join(s.get('headline', []))} |"
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
