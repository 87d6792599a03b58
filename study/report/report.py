"""A study's report: our numbers beside the paper's, as tables, plots and provenance, read from
``results/<study>/index.json`` and the run folders only (``report``). Its files: docs/reports.md,
"What `report` writes".
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

from study import store
from study.paper import REFERENCE_TABLE
from study.report import convention_tables, ratios
from study.report.baseline import baseline_table
from study.report.cells import short_reason
from study.report.columns import COMPLEXITY_TABLE, PARAMS_COLUMN
from study.report.curves import history_frame
from study.report.figures import figures_for
from study.report.gallery import add_reconstructions
from study.report.index_page import study_state
from study.report.provenance import now, provenance, run_records
from study.report.records import StudyRecords, main_eval_id, read_study, variant_order
from study.report.references import NOTE as REFERENCE_NOTE
from study.report.references import reference_table
from study.report.render import Doc, Figure, render_html, render_markdown, table_latex, table_markdown
from study.report.samples import add_samples
from study.report.setup import SETUP_NOTE, protocol_table, setup_table
from study.report.significance import significance
from study.report.tables import TableInput, build_table, footnotes, legend, summarize, table_input

PROTOCOL_NOTE = "The protocols' main fields; each one's full record, verbatim, is in the provenance below."
PARAMS_NOTE = (
    "The paper prints parameter counts with two decimals, cut rather than rounded where it "
    "can be told: LiteVAE-S's 1.036 M (Tables 23/24's structure counted by hand) appears as "
    "1.03, so its difference reads about +0.56%."
)


def report(
    root: Path,
    study: str,
    out_dir: Path,
    histories: dict[str, list[dict[str, Any]]] | None = None,
    meta: dict[str, Any] | None = None,
    profile: str | None = None,
) -> Path:
    """Write the report of study ``study`` whose runs live in the results folder ``root`` (see
    the module docstring); ``histories``: run id -> its training history (None: read each run's
    metrics.jsonl); ``meta``: extra provenance lines; ``profile``: whose index to read. Returns
    report.html's path."""
    records = read_study(root, study, profile)
    inp = table_input(records)
    table, numbers = build_table(inp), summarize(inp)
    frame = records.frame
    names = dict(zip(frame.get("run_id", []), frame.get("name", [])))
    curves = history_frame(histories if histories is not None else _histories(records), names)
    figures = figures_for(inp, curves, records.table == COMPLEXITY_TABLE)
    notes = footnotes(numbers)  # why a metric reads "n/a", once
    doc = document(records, inp, table, notes, figures, meta)
    base = baseline_table(inp, records.index) if records.table != COMPLEXITY_TABLE else None
    if base is not None:  # right after the results and their legend
        at = _after_results(doc)
        doc.blocks[at:at] = base.blocks()
    linear = _linear_reference(records)
    if linear:  # the floor a trained autoencoder of this latent size should clear (the demo's)
        at = _after_results(doc)
        doc.blocks[at:at] = linear
    figures = figures + add_reconstructions(doc, records)  # study/report/gallery.py
    figures = figures + add_samples(doc, records)  # Tables 7, 13: study/report/samples.py
    seeds = significance(inp, records.index)  # None: no cell has two seeds
    if seeds is not None:  # after the figures, before the provenance
        at = next(i for i, block in enumerate(doc.blocks) if block == ("h2", "Provenance"))
        doc.blocks[at:at] = seeds.blocks()
    if records.table == REFERENCE_TABLE:  # a protocol check: the published numbers beside ours
        at = _after_results(doc)
        doc.blocks[at:at] = [
            ("h2", "Published numbers beside ours"),
            ("p", REFERENCE_NOTE),
            ("table", reference_table(records)),
        ]
    conventions = convention_tables.section(records) if convention_tables.shown(records) else None
    if conventions is not None:  # our numbers under each source's convention (study/report/conventions.py)
        at = _after_results(doc)
        doc.blocks[at:at] = conventions[0]
    summary = {
        "study": records.study,
        "description": records.index.get("description", ""),
        "table": records.table,
        "variants": len(inp.names),
        "headline": headline(inp, numbers),
        "state": study_state(_runs_per_variant(records, inp)),
        "report": "report.html",
        "generated": now(),
    }
    caption = (
        f"{records.study}: ours beside LiteVAE Table {records.table}"
        if records.table and records.table != REFERENCE_TABLE
        else records.study
    )
    if records.table == COMPLEXITY_TABLE:
        caption += ". " + _complexity_caption(records)
    path = write_report(Path(out_dir), doc, (table, notes), numbers, caption, f"tab:{records.study}", figures, summary)
    if base is not None:
        base.write(Path(out_dir), records.study)
    if conventions is not None:
        convention_tables.write_numbers(Path(out_dir), conventions[1])
    if seeds is not None:
        seeds.write(Path(out_dir), records.study)
    return path


def _runs_per_variant(records: StudyRecords, inp: TableInput) -> dict[str, pd.DataFrame]:
    """Each row's runs, one line per run whatever protocols evaluated it (aliases left out)."""
    frame = records.frame
    owners = [n for n in inp.names if n not in inp.aliases]
    if "name" not in frame.columns:
        return {n: frame.iloc[0:0] for n in owners}
    return {n: frame[frame["name"] == n].drop_duplicates("run_id") for n in owners}


def _complexity_caption(records: StudyRecords) -> str:
    """Table 3: where our numbers and the paper's were measured, what the ratios are taken to."""
    names = variant_order(records.index)[0]
    reference = ratios.reference_name(names, dict((records.paper or {}).get("rows") or {}))
    return ratios.caption(records.root, records.frame, reference)


def _linear_reference(records: StudyRecords) -> list[tuple[str, Any]]:
    """The reference row of results/<study>/linear_reference.json (study/evaluation/
    linear_reference.py), where the study has one: a table of one row and what it is."""
    path = store.linear_reference_path(records.root, records.study)
    ref = store.read_json(path) if path.is_file() else None
    if not ref:
        return []
    row = {
        "Reference": "linear autoencoder (PCA)",
        "Latent numbers": ref["components"],
        "PSNR ↑": f"{ref['psnr']:.2f}",
        "SSIM ↑": f"{ref['ssim']:.3f}",
    }
    return [
        ("h2", "A linear reference"),
        ("table", pd.DataFrame([row])),
        (
            "p",
            f"PCA keeping {ref['components']} components, as many numbers as the runs' latent, fitted on "
            f"{ref['train_crops']} training crops and scored on the same {ref['eval_images']} held-out "
            f"{ref['resolution']}x{ref['resolution']} images: a linear map of the latent's size. A trained "
            "autoencoder below it has not yet learned what a linear projection gets for free.",
        ),
    ]


def document(
    records: StudyRecords,
    inp: TableInput,
    table: pd.DataFrame,
    notes: list[str],
    figures: list[Figure],
    meta: dict[str, Any] | None = None,
) -> Doc:
    """The report's content: intro, the table with its footnotes and legend, the training setup,
    the evaluation protocol, figures, provenance (with each protocol verbatim), runs."""
    index, frame, paper_table = records.index, records.frame, records.table
    doc = Doc(f"Study {records.study}")
    if index.get("description"):
        doc.add("p", index["description"])
    if paper_table == REFERENCE_TABLE:
        doc.add(
            "p",
            "Reference: published numbers of other autoencoders, each with its source "
            "(results/paper/reference_autoencoders.csv); not a LiteVAE table.",
        )
        paper_table = None
    if paper_table:
        doc.add(
            "p",
            f"Paper reference: LiteVAE (Sadat et al., NeurIPS 2024, arXiv 2405.14477), "
            f"Table {paper_table}; the paper's numbers come from results/paper/.",
        )
    doc.add("p", f"Study file: {index.get('spec', 'not recorded')}")
    doc.add("h2", "Results" + (f" beside the paper's Table {paper_table}" if paper_table else ""))
    if any("weights not staged" in note for note in notes):  # offline when the runs were evaluated
        doc.add(
            "p",
            "Offline: the weights of some metrics were not staged when the runs were evaluated (no network), so "
            "those metrics read n/a. Where there is network: `python run_study.py weights fetch`, then "
            f"`python run_study.py evaluate {index.get('spec', 'SPEC')}` (nothing retrains).",
        )
    doc.add("table", table)
    for note in notes:
        doc.add("p", note)
    doc.add("p", legend(inp, table))
    complexity = paper_table == COMPLEXITY_TABLE
    if complexity:
        doc.add("p", _complexity_caption(records))
        doc.add("p", PARAMS_NOTE)
    eval_ids = list(dict.fromkeys(frame["eval_id"].dropna())) if "eval_id" in frame else []
    if len(eval_ids) > 1:
        main = main_eval_id(frame)
        doc.add(
            "p",
            f"The table uses evaluation protocol {main}; the runs were also "
            f"evaluated with: {', '.join(e for e in eval_ids if e != main)}.",
        )
    runs = run_records(records.root, frame)
    _add_setup(doc, records, runs["protocols"])
    doc.add("h2", "Figures")
    for fig in figures:
        doc.add("figure", fig)
    if not figures:
        doc.add("p", "No figures: no run has numbers yet.")
    doc.add("h2", "Provenance")
    doc.add(
        "kv",
        provenance(_study_lines(records) | (meta or {}))
        | {"run hosts": runs["hosts"], "complexity measured with": runs["complexity"]},
    )
    for eval_id, protocol in runs["protocols"].items():
        doc.add("p", f"Evaluation protocol {eval_id}, verbatim:")
        doc.add("code", json.dumps(protocol, indent=1, sort_keys=True, default=str))
    doc.add("h2", "Runs")
    doc.add("table", _runs_table(frame) if len(frame) else pd.DataFrame({"run": ["none collected"]}))
    return doc


def _add_setup(doc: Doc, records: StudyRecords, protocols: dict[str, dict[str, Any]]) -> None:
    """How the numbers were made: the training setup per variant, the evaluation protocols' main
    fields (``study/report/setup.py``; the protocols verbatim go into the provenance)."""
    doc.add("h2", "Training setup")
    doc.add("table", setup_table(records))
    doc.add("p", SETUP_NOTE)
    doc.add("h2", "Evaluation protocol")
    if protocols:
        doc.add("table", protocol_table(protocols))
        doc.add("p", PROTOCOL_NOTE)
    else:
        doc.add("p", "No evaluation record carries a protocol.")


def _after_results(doc: Doc) -> int:
    """The index of the block after the results and what reads them (before the training setup)."""
    return next(i for i, (kind, value) in enumerate(doc.blocks) if kind == "h2" and value == "Training setup")


def headline(inp: TableInput, numbers: pd.DataFrame) -> list[str]:
    """The one or two numbers an index shows for a study."""
    owners = [n for n in inp.names if "state" in inp.runs[n] and n not in inp.aliases]
    done = sum(int((inp.runs[n]["state"] == "completed").sum()) for n in owners)
    failed = sum(int((inp.runs[n]["state"] == "failed").sum()) for n in owners)
    lines = [f"{done} run(s) completed, {failed} failed"]
    if inp.columns[0] is PARAMS_COLUMN:  # Table 3: how close the parameter counts are
        sub = numbers[(numbers["column"] == PARAMS_COLUMN.key) & numbers["mean"].notna()]
        dev = sub["diff"].abs().dropna()
        if len(sub):
            lines.append(f"params within {dev.max():.2f}% of the paper" if len(dev) else "params measured")
        return lines + ratios.headline(numbers)
    for key in ("rfid", "psnr"):
        sub = numbers[(numbers["column"] == key) & numbers["mean"].notna()]
        if sub.empty:
            continue
        col = next(c for c in inp.columns if c.key == key)
        best = sub.loc[sub["mean"].idxmin() if col.lower_is_better else sub["mean"].idxmax()]
        paper = f" (paper {best['paper']:.{col.digits}f})" if pd.notna(best["paper"]) else ""
        lines.append(f"best {col.label} {best['mean']:.{col.digits}f}: {best['variant']}{paper}")
        break
    return lines


def write_report(
    out_dir: Path,
    doc: Doc,
    table: tuple[pd.DataFrame, list[str]],
    numbers: pd.DataFrame,
    caption: str,
    label: str,
    figures: list[Figure],
    summary: dict[str, Any],
) -> Path:
    """Every file of a report (``table``: the display table and its footnotes); returns
    report.html's path."""
    table, notes = table
    (out_dir / "figures").mkdir(parents=True, exist_ok=True)
    (out_dir / "tables").mkdir(parents=True, exist_ok=True)
    for fig in figures:
        store.write_bytes_atomic(out_dir / "figures" / fig.name, fig.png)
    store.write_text_atomic(out_dir / "tables" / "main.tex", table_latex(table, caption, label, notes))
    store.write_text_atomic(out_dir / "tables" / "main.md", "\n\n".join([table_markdown(table), *notes]) + "\n")
    store.write_text_atomic(out_dir / "tables" / "main.csv", numbers.to_csv(index=False))
    store.write_text_atomic(out_dir / "report.md", render_markdown(doc))
    store.write_text_atomic(out_dir / "report.html", render_html(doc))
    store.write_json_atomic(out_dir / "summary.json", summary)
    return out_dir / "report.html"


def _study_lines(records: StudyRecords) -> dict[str, Any]:
    """The provenance lines of the index: the profile, --set overrides, the results folder."""
    lines: dict[str, Any] = {"profile": records.index.get("profile") or "none"}
    if records.index.get("set"):
        lines["overrides (--set)"] = list(records.index["set"])
    return lines | {"results folder": str(records.root)}


def _runs_table(frame: pd.DataFrame) -> pd.DataFrame:
    shown = ("name", "seed", "run_id", "state", "step", "diverged_step", "attempts", "eval_id", "reason")
    cols = [c for c in shown if c in frame]
    runs = frame[cols].copy()
    if "reason" in runs:
        runs["reason"] = [short_reason(r) if pd.notna(r) else "" for r in runs["reason"]]
    return runs.astype(object).where(runs.notna(), "").astype(str)


def _histories(records: StudyRecords) -> dict[str, list[dict[str, Any]]]:
    ids = dict.fromkeys(records.frame.get("run_id", pd.Series(dtype=str)).dropna())
    folders = {rid: store.run_dir(records.root, rid) for rid in ids}  # training, then protocol metrics during it
    return {
        rid: store.read_jsonl(f / "metrics.jsonl") + store.read_jsonl(f / "during.jsonl") for rid, f in folders.items()
    }
