"""A report's "Conventions" section: our numbers under each source's convention, from the same
reconstructions (``mapping_table``, ``values_table``, ``published_table``). What each table holds
and when the section is shown: docs/reports.md, "The Conventions section's tables".
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from study import store
from study.config import metric_specs
from study.paper import REFERENCE_TABLE, reference_autoencoders
from study.report.cells import cell
from study.report.columns import metric_column
from study.report.conventions import (
    CONVENTIONS,
    METRICS,
    NOT_STATED,
    PAPER,
    Convention,
    Rule,
    convention_of,
    mismatch,
    preprocess_name,
)
from study.report.provenance import run_records
from study.report.records import StudyRecords, main_eval_id, rows_for_protocol, variant_order
from study.report.references import split_label

TITLE = "Conventions"
NOTE = (
    "Our numbers under each source's evaluation convention, all from the same reconstructions "
    "(decoded once; study/report/conventions.py maps each source to our metrics, "
    "docs/conventions.md cites the files each was read from). A plain number is the source's "
    "computation; ≈ marks the nearest of ours, differing as the first table says; "
    f"“{NOT_STATED}” marks a source whose files do not say, beside the nearest of ours as a "
    "guess. Ours is only the source's number where the resize and posterior match too "
    "(“differs here”). LDM is the paper's convention."
)
PUBLISHED_NOTE = (
    "Each published number beside ours under the convention of its source (the cell names what "
    "of ours computes it, or says that the source does not state it)."
)
CSV_NAME = "conventions.csv"


@dataclass(frozen=True)
class Variant:
    """One variant's rows under the protocol its numbers come from, and that protocol."""

    name: str
    runs: pd.DataFrame
    protocol: dict[str, Any]


def variants(records: StudyRecords) -> list[Variant]:
    """Every variant (aliases included) with its runs under the study's main protocol, or, in a
    protocol check, under its own (each evaluation set is a protocol of its own)."""
    frame = records.frame
    names, alias_of = variant_order(records.index)
    protocols = run_records(records.root, frame)["protocols"] if len(frame) else {}
    study_wide = main_eval_id(frame)
    out = []
    for name in names:
        runs = frame[frame["name"] == alias_of.get(name, name)] if "name" in frame.columns else frame.iloc[0:0]
        eval_id = main_eval_id(runs) if records.table == REFERENCE_TABLE else study_wide
        out.append(Variant(name, rows_for_protocol(runs, eval_id), dict(protocols.get(eval_id) or {})))
    return out


def _column(v: Variant, metric: str) -> str:
    """The frame column holding ``metric``: itself where measured, else ``lpips`` where the
    evaluation's own LPIPS is the wanted net (``lpips@alex`` of a study with ``lpips_net: alex``)."""
    if metric in v.runs.columns and v.runs[metric].notna().any():
        return metric
    net = metric.removeprefix("lpips@")
    lpips = v.protocol.get("lpips")
    if metric.startswith("lpips@") and isinstance(lpips, dict) and lpips.get("net") == net:
        return "lpips"
    return metric


def ours(v: Variant, rule: Rule, spread: bool) -> tuple[str, float | None, float | None]:
    """A variant's cell under ``rule``: its text, the mean and the per-image spread behind it."""
    if rule.metric is None:
        return ("not computed here" if rule.status == "not ours" else rule.label()), None, None
    key = _column(v, rule.metric)
    col = metric_column(rule.metric)
    c = cell(v.runs, metric_column(key))
    if c.mean is None:
        why = f"not measured (add {rule.metric} to eval.metrics)" if c.why == "not measured" else c.why
        return (f"{NOT_STATED}; {why}" if rule.status == "not stated" else why), None, None
    spread_key = key + metric_specs.STD_SUFFIX
    std = cell(v.runs, metric_column(spread_key)).mean if spread and spread_key in metric_specs.names() else None
    text = f"{c.mean:.{col.digits}f}" + ("" if std is None else f" ± {std:.{col.digits}f}")
    if rule.status == "nearest":
        text = f"≈ {text}"
    elif rule.status == "not stated":
        text = f"{NOT_STATED}; {rule.metric}: {text}"
    return text, c.mean, std


def _evaluated(vs: list[Variant]) -> tuple[str, str]:
    """The resize and posterior this study's numbers were evaluated with ("a / b" where several)."""
    pre = dict.fromkeys(preprocess_name(v.protocol.get("resize")) for v in vs if v.protocol)
    post = dict.fromkeys(str(v.protocol.get("posterior", "not recorded")) for v in vs if v.protocol)
    return " / ".join(pre) or "not recorded", " / ".join(post) or "not recorded"


def mapping_table(vs: list[Variant]) -> pd.DataFrame:
    """Per source: what computes each metric here, its resize and posterior, what differs."""
    preprocess, posterior = _evaluated(vs)
    rows = []
    for conv in CONVENTIONS.values():
        row = {"Source": conv.name + (" (the paper's)" if conv.name == PAPER else "")}
        row |= {metric_specs.SPECS[m].heading: conv.rule(m).label() for m in METRICS}
        row |= {"Resize": conv.preprocess, "Posterior": conv.posterior}
        row |= {"Differs here": mismatch(conv, preprocess, posterior) or "—", "Files": conv.files}
        rows.append(row)
    return pd.DataFrame(rows)


def values_table(vs: list[Variant]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per (source, metric) of ours that stands for it, each variant's cell; and the numbers
    behind them (long format: variant, source, metric, ours_as, status, mean, std)."""
    rows, numbers = [], []
    for conv in CONVENTIONS.values():
        for metric in METRICS[1:]:  # rFID: one computation of ours, in the mapping table
            rule = conv.rule(metric)
            if not rule.shows_ours:
                continue
            row = {"Source": conv.name, "Metric": metric_specs.SPECS[metric].heading, "Ours as": rule.metric}
            for v in vs:
                text, mean, std = ours(v, rule, conv.spread)
                row[v.name] = text
                numbers.append(
                    {
                        "variant": v.name,
                        "source": conv.name,
                        "metric": metric,
                        "ours_as": rule.metric,
                        "status": rule.status,
                        "mean": mean,
                        "std": std,
                        "text": text,
                    }
                )
            rows.append(row)
    return pd.DataFrame(rows), pd.DataFrame(numbers)


def published_table(records: StudyRecords, vs: list[Variant]) -> pd.DataFrame:
    """A protocol check: one row per published number, beside ours under its source's convention."""
    refs = reference_autoencoders()
    labels = dict((records.paper or {}).get("rows") or {})
    rows = []
    for v in vs:
        if not labels.get(v.name):
            continue
        model, dataset = split_label(labels[v.name])
        preprocess, posterior = _evaluated([v])
        for _, r in refs[(refs["model"] == model) & (refs["dataset"].str.lower() == dataset.lower())].iterrows():
            conv = convention_of(str(r["source"]))
            for metric in METRICS:
                if pd.isna(r[metric]):
                    continue
                digits = metric_specs.spec(metric).digits
                rows.append(
                    {
                        "Variant": v.name,
                        "Source": str(r["source"]),
                        "Model": model,
                        "Metric": metric_specs.SPECS[metric].heading,
                        "Published": f"{float(r[metric]):.{digits}f}",
                        "Ours (this protocol)": cell(v.runs, metric_column(metric)).text(metric_column(metric)),
                        "Ours under its convention": _under(v, conv, metric),
                        "Convention": _convention_text(conv, preprocess, posterior),
                    }
                )
    return pd.DataFrame(rows)


def _under(v: Variant, conv: Convention | None, metric: str) -> str:
    if conv is None:
        return f"{NOT_STATED} (the source is not in study/report/conventions.py)"
    rule = conv.rule(metric)
    if rule.status in ("not ours", "not reported"):
        return f"not computed here: {rule.label()}"
    return ours(v, rule, conv.spread)[0]


def _convention_text(conv: Convention | None, preprocess: str, posterior: str) -> str:
    if conv is None:
        return NOT_STATED
    differs = mismatch(conv, preprocess, posterior)
    return conv.name_of() + (f"; differs here: {differs}" if differs else "")


def shown(records: StudyRecords) -> bool:
    """Whether a study's report has the section: a protocol check, or a study that measured a
    metric beyond the paper's four (a convention variant or a spread)."""
    if records.table == REFERENCE_TABLE:
        return True
    frame = records.frame
    extra = set(metric_specs.names()) - set(metric_specs.PAPER_METRICS)
    return any(c in extra and frame[c].notna().any() for c in frame.columns)


def section(records: StudyRecords) -> tuple[list[tuple[str, Any]], pd.DataFrame]:
    """The section's blocks (for study.report.render.Doc) and the numbers behind them."""
    vs = variants(records)
    values, numbers = values_table(vs)
    values, reasons = _not_available(values)
    blocks: list[tuple[str, Any]] = [("h2", TITLE), ("p", NOTE), ("table", mapping_table(vs)), ("table", values)]
    blocks += [("p", f"n/a: {reason}") for reason in reasons]
    if records.table == REFERENCE_TABLE:
        blocks += [("p", PUBLISHED_NOTE), ("table", published_table(records, vs))]
    return blocks, numbers


def _not_available(values: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """The values table with each "unavailable: <reason>" cell read "n/a", and the reasons, once
    each (the results table's footnote rule, study/report/tables.py)."""
    reasons: list[str] = []

    def short(text: Any) -> Any:
        if not isinstance(text, str) or "unavailable: " not in text:
            return text
        head, _, reason = text.partition("unavailable: ")
        if reason not in reasons:
            reasons.append(reason)
        return head + "n/a"

    return values.map(short) if len(values) else values, reasons


def write_numbers(out_dir: Path, numbers: pd.DataFrame) -> None:
    """``tables/conventions.csv``: the unrounded numbers of the values table."""
    store.write_text_atomic(Path(out_dir) / "tables" / CSV_NAME, numbers.to_csv(index=False))
