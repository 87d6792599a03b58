"""``collect``, ``report`` and ``compare``: a study's records gathered into results.csv, its
report, and one table over several studies.

Each rewrites the study's index (``results/<study>/index.json``, ``index-<profile>.json`` under a
profile) from the study file, and only once it has found a record of at least one of the
variants asked for: a study that never ran, or a wrong ``--profile``/``--set``, exits 1 saying
what exists instead, and leaves the index, results.csv and every report as they were. Reports go
to ``--reports``, else to the ``reports`` folder beside the results folder (``<results>/../reports``:
``./reports`` for ``./results``), so a report of another results folder never replaces this one's.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from study import store
from study.cli.common import (
    Command,
    NothingRecorded,
    UsageError,
    add_profile_and_sets,
    index_fields,
    results_root,
    spec_and_variants,
)
from study.config import METRICS
from study.studyfile.grid import Variant
from study.studyfile.parse import StudyFile

REPORTS_HELP = "reports folder (default: `reports` beside the results folder, ./reports for ./results)"


def reports_root(args: argparse.Namespace) -> Path:
    """``--reports``, else the ``reports`` folder beside the results folder."""
    if getattr(args, "reports", None):
        return Path(args.reports)
    return results_root(args).parent / "reports"


def add_reports(p: argparse.ArgumentParser) -> None:
    p.add_argument("--reports", default=None, help=REPORTS_HELP)


# --------------------------------------------------------------------------------------------
# records before writing
# --------------------------------------------------------------------------------------------
def require_records(root: Path, spec: StudyFile, variants: list[Variant]) -> None:
    """NothingRecorded when no variant asked for has a run folder under ``root``, naming the
    completed runs the study's other indexes (other profiles, other --set) point at."""
    states = store.run_states([store.run_dir(root, v.run_id) for v in variants])
    if any(run.state is not store.State.MISSING for run in states):
        return
    elsewhere = [f"{n} completed run(s) exist under {label}" for label, n in _completed_elsewhere(root, spec)]
    raise NothingRecorded(
        f"no run of these {len(variants)} variant(s) of study {spec.study} has a record under {root}; "
        + ("; ".join(elsewhere) if elsewhere else "the study was never launched there")
        + "; nothing written"
    )


def _completed_elsewhere(root: Path, spec: StudyFile) -> list[tuple[str, int]]:
    """(how to ask for it, completed runs) of every index of the study that points at completed
    runs (this command line's own index, if any, points at the missing ones)."""
    found = []
    for path in sorted(store.study_dir(root, spec.study).glob("index*.json")):
        index = store.read_json(path) or {}
        other, sets = index.get("profile"), index.get("set") or []
        label = f"`--profile {other}`" if other else "the plain study (no --profile)"
        label += f" with `--set {' '.join(sets)}`" if sets else ""
        done = sum(store.is_done(store.run_dir(root, v["run_id"])) for v in index.get("variants", []))
        if done:
            found.append((label, done))
    return found


def write_index(args: argparse.Namespace, spec: StudyFile, variants: list[Variant], root: Path) -> None:
    """(Re)write the study's index (this profile's) from the study file's expansion: what the
    report reads."""
    store.write_index(root, spec.study, variants, **index_fields(args, spec, variants))


def collect_results(args: argparse.Namespace, spec: StudyFile, variants: list[Variant], root: Path) -> tuple[int, Path]:
    """The index rewritten, then results/<study>/results.csv from its variants: (rows, path)."""
    write_index(args, spec, variants, root)
    profile = getattr(args, "profile", None)
    index = store.read_index(root, spec.study, profile) or {"variants": []}
    frame = store.collect(root, spec.study, index["variants"])
    return len(frame), store.write_results(root, spec.study, frame)


def write_report(args: argparse.Namespace, study: str, root: Path, **meta: Any) -> tuple[Path, str]:
    """Write reports/<study>/ and the reports index; the report's path and its table (markdown)."""
    from study.report import report
    from study.report.index_page import write_index as write_reports_index

    out = reports_root(args) / study
    path = report.report(root, study, out, meta=meta, profile=getattr(args, "profile", None))
    write_reports_index(out.parent)
    return path, (out / "tables" / "main.md").read_text().rstrip("\n")


# --------------------------------------------------------------------------------------------
# the commands
# --------------------------------------------------------------------------------------------
def collect(args: argparse.Namespace) -> int:
    spec, variants = spec_and_variants(args)
    root = results_root(args)
    require_records(root, spec, variants)
    rows, path = collect_results(args, spec, variants, root)
    print(f"{rows} row(s) -> {path}")
    return 0


def report_options(p: argparse.ArgumentParser) -> None:
    add_reports(p)


def report(args: argparse.Namespace) -> int:
    """Collect the study's runs and write reports/<study>/ (report.md, report.html, tables/,
    figures/), then the reports index; prints the report's path and its main table."""
    spec, variants = spec_and_variants(args)
    root = results_root(args)
    require_records(root, spec, variants)
    write_index(args, spec, variants, root)
    path, main_table = write_report(args, spec.study, root)
    print(f"report: {path}")
    print(main_table)
    return 0


def compare_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("specs", nargs="+", metavar="SPEC", help="study files, e.g. ablations/table2a.yaml")
    p.add_argument("--metric", default="rfid", choices=list(METRICS), help="the plot's quality axis (default rfid)")
    p.add_argument("--name", help="names reports/compare-<name>/ (default: the studies' names joined by '-')")
    add_profile_and_sets(p)
    add_reports(p)


def compare(args: argparse.Namespace) -> int:
    """One table and one quality-against-cost plot over the variants of several studies, a run
    shared by two counted once (study/report/compare.py) -> reports/compare-<name>/."""
    from study.report import compare as comparing

    try:
        name = comparing.check_name(args.name) if args.name else None
        root = results_root(args)
        expanded = [spec_and_variants(argparse.Namespace(**{**vars(args), "spec": path})) for path in args.specs]
        for spec, variants in expanded:  # every study checked before any index is written
            require_records(root, spec, variants)
        for spec, variants in expanded:  # as `report` does: the records the comparison reads
            write_index(args, spec, variants, root)
        studies = [spec.study for spec, _ in expanded]
        out = reports_root(args) / f"compare-{name or '-'.join(dict.fromkeys(studies))}"
        path = comparing.compare(root, studies, out, args.metric, profile=args.profile)
    except comparing.CompareError as e:
        raise UsageError(str(e)) from None
    print(f"comparison: {path}")
    print(comparing.markdown_table(out))
    return 0


COMMANDS = (
    Command("collect", "gather the runs into results/<study>/results.csv", collect, spec=True),
    Command(
        "report", "write reports/<study>/: tables, plots, the paper's numbers beside ours", report, report_options, True
    ),
    Command("compare", "one table and a quality-vs-cost plot over several studies", compare, compare_options),
)
