"""Seeds as statistics (confidence intervals, Welch's test against the baseline, the seeds that
would resolve a difference), the study's baseline in the study file and the index, and
reports/index.html's state per study. Records are hand-made, as in tests/test_report.py."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import numpy as np
import pytest
import scipy.stats

from study import store
from study.kinds.registry import run_id
from study.report import report as report_mod
from study.report import stats
from study.report.index_page import study_state, write_index
from study.studyfile.grid import expand
from study.studyfile.parse import load_study
from study.studyfile.record import study_record
from study.studyfile.yamlfile import StudyFileError

REPO = Path(__file__).resolve().parent.parent
BASE = REPO / "ablations" / "base" / "smoke_cpu.yaml"

# A baseline, a variant clearly better (p < 0.05) and one whose difference the seeds do not
# resolve (p = 0.109; 7 seeds per arm would, at power 0.8).
PSNR = {"ref": [29.0, 29.3, 30.3], "better": [33.0, 33.4, 33.9], "unclear": [30.0, 30.9, 31.8]}
SSIM = {"ref": [0.80, 0.80, 0.80], "better": [0.80, 0.80, 0.80], "unclear": [0.81, 0.83, 0.82]}


def _spec(tmp_path: Path, paper: str, variants: str = "", grid: str = "") -> Path:
    path = tmp_path / "study.yaml"
    path.write_text(f"study: seeds3\npaper: {paper}\nbase: {BASE}\n{grid}{variants}seeds: [0, 1, 2]\n")
    return path


THREE = (
    "variants:\n  better: {model.decoder.channels: 64}\n  ref: {model.decoder.norm: groupnorm}\n"
    "  unclear: {model.decoder.norm: smc}\n"
)


def _index(root: Path, spec) -> dict:
    variants = expand(spec)
    store.write_index(root, spec.study, variants, **study_record(spec, variants))
    return store.read_index(root, spec.study)


# --------------------------------------------------------------------------------------------
# the statistics
# --------------------------------------------------------------------------------------------
def test_interval_and_welch_p_equal_scipy():
    a, b = [29.0, 30.5, 31.0, 30.1], [28.0, 28.5, 29.4]
    low, high = stats.interval(a)
    want = scipy.stats.t.interval(0.95, len(a) - 1, loc=np.mean(a), scale=scipy.stats.sem(a))
    assert (low, high) == pytest.approx(want, rel=1e-12)
    assert low < np.mean(a) < high
    assert stats.welch_p(a, b) == pytest.approx(scipy.stats.ttest_ind(a, b, equal_var=False).pvalue, rel=1e-12)
    s = stats.summary(a)
    assert (s.n, s.mean, s.std) == (4, pytest.approx(np.mean(a)), pytest.approx(np.std(a, ddof=1)))
    assert stats.summary([1.0]).low is None  # one seed: no interval
    assert stats.welch_p([1.0], b) is None and stats.welch_p([1.0, 1.0], [2.0, 2.0]) is None


def test_seeds_for_power_reach_power_and_one_fewer_do_not():
    a, b = PSNR["unclear"], PSNR["ref"]
    assert stats.welch_p(a, b) > 0.05  # not resolved by three seeds
    n = stats.seeds_for_power(a, b)
    assert n == 7
    effect = (np.mean(a) - np.mean(b)) / stats.pooled_std(a, b)
    assert stats.power(effect, n) >= 0.8 > stats.power(effect, n - 1)
    # The power itself, by simulation: two-sided Student tests on normal samples of that effect.
    rng = np.random.default_rng(0)
    for m, lo, hi in ((n - 1, 0.70, 0.795), (n, 0.805, 0.87)):
        x, y = rng.normal(effect, 1, (40_000, m)), rng.normal(0, 1, (40_000, m))
        rate = float((scipy.stats.ttest_ind(x, y, axis=1).pvalue < 0.05).mean())
        assert lo < rate < hi, (m, rate)
        assert rate == pytest.approx(stats.power(effect, m), abs=0.01)
    # the pooled std is the usual one
    assert stats.pooled_std(a, b) == pytest.approx(np.sqrt((np.var(a, ddof=1) + np.var(b, ddof=1)) / 2))


def test_seeds_for_power_not_available():
    assert stats.seeds_for_power([1.0], [1.0, 2.0]) is None  # fewer than two seeds
    assert stats.seeds_for_power([1.0, 1.0], [2.0, 2.0]) is None  # std 0
    assert stats.seeds_for_power([1.0, 2.0], [1.0, 2.0]) is None  # no difference
    assert stats.seeds_for_power([1.0, 2.0, 3.0], [1.0001, 2.0001, 3.0001]) is None  # beyond MAX_SEEDS


# --------------------------------------------------------------------------------------------
# the baseline: study file and index
# --------------------------------------------------------------------------------------------
def test_baseline_is_validated_and_recorded(tmp_path):
    path = _spec(tmp_path, '{table: "4", baseline: nope}', THREE)
    with pytest.raises(StudyFileError) as e:
        load_study(path)
    assert (e.value.path, e.value.key, e.value.value) == (str(path), "paper.baseline", "nope")
    assert e.value.allowed == "a variant name: better, ref, unclear"
    # a grid row's name is a variant name too
    grid = "grid: {model.decoder.norm: [groupnorm, smc]}\n"
    assert load_study(_spec(tmp_path, '{table: "4", baseline: norm=smc}', grid=grid)).paper.baseline == "norm=smc"
    with pytest.raises(StudyFileError, match=r"paper.baseline: got 'norm=x'; allowed: .*norm=groupnorm, norm=smc"):
        load_study(_spec(tmp_path, '{table: "4", baseline: norm=x}', grid=grid))
    # recorded in the index; without one the first variant is the baseline
    assert (
        _index(tmp_path / "a", load_study(_spec(tmp_path, '{table: "4", baseline: ref}', THREE)))["baseline"] == "ref"
    )
    assert _index(tmp_path / "b", load_study(_spec(tmp_path, '{table: "4"}', THREE)))["baseline"] == "better"


# --------------------------------------------------------------------------------------------
# a 3-seed study's report
# --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def three_seeds(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("seeds3")
    spec = load_study(_spec(tmp, '{table: "4", baseline: ref}', THREE))
    root = tmp / "results"
    for v in expand(spec):
        folder = store.init_run(root, v.config, run_id(v.config))
        metrics = {"psnr": PSNR[v.name][v.seed], "ssim": SSIM[v.name][v.seed]}
        store.write_eval(folder, "ev1", {"metrics": metrics, "protocol": {"num_images": 8}})
        store.mark_done(folder)
    _index(root, spec)
    out = tmp / "reports" / spec.study
    report_mod.report(root, spec.study, out)
    return {"spec": spec, "root": root, "out": out}


def _significance_rows(md: str) -> dict[tuple[str, str], dict[str, str]]:
    lines = md.split("## Significance vs baseline ref", 1)[1].splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("|"))
    table = lines[start : next(i for i in range(start, len(lines)) if not lines[i].startswith("|"))]
    header = [c.strip() for c in table[0].strip("|").split(" | ")]
    rows = [dict(zip(header, (c.strip() for c in line.strip("|").split(" | ")))) for line in table[2:]]
    return {(r["Variant"], r["Metric"]): r for r in rows}


def test_report_shows_intervals_p_values_and_seeds(three_seeds):
    md = (three_seeds["out"] / "report.md").read_text()
    rows = _significance_rows(md)
    ref = PSNR["ref"]
    for name in ("ref", "better", "unclear"):
        values = PSNR[name]
        row = rows[(name + (" (baseline)" if name == "ref" else ""), "PSNR ↑")]
        low, high = scipy.stats.t.interval(0.95, 2, loc=np.mean(values), scale=scipy.stats.sem(values))
        assert row["95% CI"] == f"[{low:.2f}, {high:.2f}]"
        assert row["Mean ± std"] == f"{np.mean(values):.2f} ± {np.std(values, ddof=1):.2f}"
        assert row["Seeds"] == "3"
        if name == "ref":
            assert row["p (Welch)"] == "—"
            continue
        p = scipy.stats.ttest_ind(values, ref, equal_var=False).pvalue
        assert row["Δ vs ref"] == f"{np.mean(values) - np.mean(ref):+.2f}"
        assert row["p (Welch)"] == (f"{p:.3f} *" if p < 0.05 else f"{p:.3f}")
    assert rows[("better", "PSNR ↑")]["p (Welch)"].endswith("*")
    assert rows[("better", "PSNR ↑")]["Seeds for power 0.8"] == "—"  # already resolved
    assert rows[("unclear", "PSNR ↑")]["Seeds for power 0.8"] == "7"
    # SSIM: the baseline and "better" have no spread; "unclear" against a std-0 baseline
    assert rows[("better", "SSIM ↑")]["p (Welch)"] == "n/a (std 0)"
    assert rows[("better", "SSIM ↑")]["Seeds for power 0.8"] == "n/a"
    # the same in HTML and LaTeX, the numbers in CSV
    html = (three_seeds["out"] / "report.html").read_text()
    assert "Significance vs baseline ref" in html and rows[("unclear", "PSNR ↑")]["95% CI"] in html
    tex = (three_seeds["out"] / "tables" / "significance.tex").read_text()
    assert r"\toprule" in tex and r"$\pm$" in tex and "[" + f"{low:.2f}" in tex
    csv = (three_seeds["out"] / "tables" / "significance.csv").read_text()
    assert csv.splitlines()[0].startswith("variant,column,label,n,mean,std,low,high,diff,p,seeds_for_power")


def test_one_seed_studies_have_no_significance_table(tmp_path):
    path = tmp_path / "one.yaml"
    path.write_text(f"study: one_seed\npaper: {{table: '4'}}\nbase: {BASE}\n{THREE}seeds: [0]\n")
    spec = load_study(path)
    root = tmp_path / "results"
    for v in expand(spec):
        folder = store.init_run(root, v.config, run_id(v.config))
        store.write_eval(folder, "ev1", {"metrics": {"psnr": PSNR[v.name][0]}})
        store.mark_done(folder)
    _index(root, spec)
    report_mod.report(root, spec.study, tmp_path / "out")
    assert "Significance vs baseline" not in (tmp_path / "out" / "report.md").read_text()
    assert not (tmp_path / "out" / "tables" / "significance.md").exists()


# --------------------------------------------------------------------------------------------
# reports/index.html: every study with its headline numbers and its state
# --------------------------------------------------------------------------------------------
def test_index_page_links_every_study_with_its_state(three_seeds, tmp_path):
    path = tmp_path / "mixed.yaml"
    variants = (
        "variants:\n  done: {model.decoder.norm: groupnorm}\n  broken: {model.decoder.norm: smc}\n"
        "  busy: {model.decoder.channels: 64}\n  queued: {model.decoder.channels: 48}\n"
        "  never: {model.decoder.channels: 40}\n"
    )
    path.write_text(f"study: mixed\nbase: {BASE}\n{variants}seeds: [0]\n")
    spec = load_study(path)
    root = tmp_path / "results"
    for v in expand(spec):
        if v.name == "never":
            continue  # no run folder: missing
        folder = store.init_run(root, v.config, run_id(v.config))  # "queued": pending
        if v.name == "done":
            store.write_eval(folder, "ev1", {"metrics": {"psnr": 30.0}})
            store.mark_done(folder)
        elif v.name == "broken":
            store.update_status(folder, state="failed", error="RuntimeError: NaN loss")
        elif v.name == "busy":  # a live local job: this process
            store.update_status(
                folder, state="running", executor="local", pid=os.getpid(), host=socket.gethostname(), step=7
            )
    _index(root, spec)
    reports = three_seeds["out"].parent
    report_mod.report(root, spec.study, reports / spec.study)
    page = write_index(reports).read_text()
    assert 'href="seeds3/report.html"' in page and 'href="mixed/report.html"' in page
    assert "complete: 3 completed (of 3 variants)" in page
    assert "running: 1 completed, 1 running, 1 failed, 1 pending, 1 missing (of 5 variants)" in page
    assert "best PSNR 33.43: better" in page  # the headline numbers
    md = (reports / "index.md").read_text()
    assert "| running: 1 completed, 1 running, 1 failed" in md


def test_study_state_rule():
    import pandas as pd

    def runs(*states):
        return pd.DataFrame({"state": list(states)})

    state = study_state({"a": runs("completed", "failed"), "b": runs("completed", "completed"), "c": runs("lost")})
    assert state == {"label": "incomplete", "variants": {"completed": 1, "failed": 1, "lost": 1}}
    assert study_state({"a": runs("completed"), "alias": runs("failed")}, {"alias"})["label"] == "complete"
    assert study_state({"a": runs("completed", "requeued")})["variants"] == {"running": 1}
