"""Issue 14 on real runs: a 3-seed smoke study, trained and evaluated through the debug executor,
whose report shows confidence intervals and Welch p-values equal to scipy's on the recorded
numbers; and `compare` of it with a second study that shares one of its runs, which counts that
run once."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from scipy import stats

import run_study
from study.studyfile.grid import expand
from study.studyfile.parse import load_study
from tests.launch_helpers import write_study

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def studies(tmp_path_factory) -> tuple[Path, Path, Path, Path]:
    tmp = tmp_path_factory.mktemp("seeds")
    results, reports = tmp / "results", tmp / "reports"
    grid = {"model.decoder.norm": ["groupnorm", "smc"]}
    short = {"train.steps": 3, "train.checkpoint_every": 3}  # six runs: a few steps each
    paper = {"table": "4", "baseline": "norm=groupnorm"}
    three = write_study(tmp, "three_seeds", set=short, grid=grid, seeds=[0, 1, 2], paper=paper)
    other = write_study(tmp, "other", set=short, variants={"smc": {"model.decoder.norm": "smc"}}, seeds=[0])
    for spec in (three, other):
        argv = ["run", str(spec), "--executor", "debug", "--results", str(results), "--reports", str(reports)]
        assert run_study.main([*argv, "--poll", "0.1"]) == 0
    return three, other, results, reports


def test_a_three_seed_report_shows_intervals_and_p_values_equal_to_scipys(studies):
    three, _, results, reports = studies
    frame = pd.read_csv(results / "three_seeds" / "results.csv")
    assert len(frame) == 6 and (frame["state"] == "completed").all()
    base = frame.loc[frame["name"] == "norm=groupnorm", "psnr"].to_numpy()
    smc = frame.loc[frame["name"] == "norm=smc", "psnr"].to_numpy()
    low, high = stats.t.interval(0.95, len(smc) - 1, loc=smc.mean(), scale=stats.sem(smc))
    p = stats.ttest_ind(smc, base, equal_var=False).pvalue
    significance = pd.read_csv(reports / "three_seeds" / "tables" / "significance.csv")
    row = significance[(significance["variant"] == "norm=smc") & (significance["column"] == "psnr")].iloc[0]
    assert row["low"] == pytest.approx(low) and row["high"] == pytest.approx(high)
    assert row["p"] == pytest.approx(p)
    md = (reports / "three_seeds" / "report.md").read_text()
    assert "Significance vs baseline norm=groupnorm" in md and f"{low:.2f}" in md


def test_compare_counts_a_run_shared_by_two_studies_once(studies):
    three, other, results, reports = studies
    shared = {v.run_id for v in expand(load_study(three))} & {v.run_id for v in expand(load_study(other))}
    assert len(shared) == 1  # other's smc at seed 0 is three_seeds' norm=smc at seed 0
    argv = ["compare", str(three), str(other), "--metric", "psnr", "--name", "pair", "--results", str(results)]
    assert run_study.main([*argv, "--reports", str(reports)]) == 0
    table = pd.read_csv(reports / "compare-pair" / "compare.csv")
    assert len(table) == 2, table  # groupnorm, and smc of both studies as one row
    runs = [r for cell in table["run_ids"] for r in str(cell).split()]
    assert runs.count(next(iter(shared))) == 1 and len(runs) == len(set(runs)) == 6
    joined = table[table["variant"].str.contains("other/smc")]
    assert len(joined) == 1 and joined.iloc[0]["runs"] == 3  # smc's three seeds, the shared one once
    assert (reports / "compare-pair" / "quality_cost.png").is_file()
