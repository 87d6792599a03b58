"""`run_study.py compare SPEC SPEC...` (study/report/compare.py): one table and one quality-vs-cost
plot over the variants of two smoke studies that share a run, the shared run counted once. The
records are hand-made run folders (as tests/test_report.py's); the command writes the indexes."""

from __future__ import annotations

import statistics
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image

import run_study
from study import store
from study.kinds.registry import run_id
from study.report.compare import join_rows
from study.studyfile.grid import expand
from study.studyfile.parse import load_study

REPO = Path(__file__).resolve().parent.parent
BASE = REPO / "ablations" / "base" / "smoke_cpu.yaml"
STUDY = """
study: {name}
base: {base}
variants:
{variants}
seeds: [0, 1]
"""
VARIANTS = {
    "pair_a": {"groupnorm": "{model.decoder.norm: groupnorm}", "smc": "{model.decoder.norm: smc}"},
    "pair_b": {"smc": "{model.decoder.norm: smc}", "wide": "{model.decoder.channels: 64}"},
}
# Hand-made numbers per variant: PSNR per seed, and the encoder cost its runs recorded.
PSNR = {"groupnorm": [30.0, 31.0], "smc": [28.0, 29.5], "wide": [32.0, 33.0]}
GMACS = {"groupnorm": 1.0, "smc": 2.0, "wide": 3.0}  # smc: more cost, less PSNR: off the front


@pytest.fixture(scope="module")
def compared(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("compare")
    specs = []
    for study, variants in VARIANTS.items():
        body = "\n".join(f"  {name}: {over}" for name, over in variants.items())
        path = tmp / f"{study}.yaml"
        path.write_text(STUDY.format(name=study, base=BASE, variants=body))
        specs.append(path)
    root = tmp / "results"
    written = set()
    for path in specs:
        for v in expand(load_study(path)):
            if v.run_id in written:
                continue  # the shared run: one folder, written once
            written.add(v.run_id)
            folder = store.init_run(root, v.config, run_id(v.config))
            store.write_eval(folder, "ev1", {"metrics": {"psnr": PSNR[v.name][v.seed]}})
            store.write_complexity(folder, {"encoder_params": 1_000_000, "encoder_gmacs": GMACS[v.name]})
            store.mark_done(folder)
    reports = tmp / "reports"
    argv = ["compare", *map(str, specs), "--metric", "psnr", "--name", "pair", "--results", str(root)]
    assert run_study.main([*argv, "--reports", str(reports)]) == 0
    shared = {v.run_id for v in expand(load_study(specs[0])) if v.name == "smc"}
    return {"out": reports / "compare-pair", "shared": shared, "written": written}


def test_one_table_with_the_shared_run_once(compared):
    table = pd.read_csv(compared["out"] / "compare.csv")
    assert list(table["variant"]) == ["pair_a/groupnorm", "pair_a/smc = pair_b/smc", "pair_b/wide"]
    ids = [rid for cell in table["run_ids"] for rid in cell.split()]
    assert sorted(ids) == sorted(compared["written"])  # every run once, the shared ones included
    smc = table.set_index("variant").loc["pair_a/smc = pair_b/smc"]
    assert set(smc["run_ids"].split()) == compared["shared"]
    assert smc["studies"] == "pair_a, pair_b" and smc["runs"] == 2 and smc["psnr_n"] == 2
    assert smc["psnr_mean"] == pytest.approx(statistics.mean(PSNR["smc"]))
    assert smc["psnr_std"] == pytest.approx(statistics.stdev(PSNR["smc"]))  # a doubled run would shrink it
    md = (compared["out"] / "compare.md").read_text()
    body = [line for line in md.splitlines() if line.startswith("| pair_")]
    assert len(body) == 3 and sum("pair_b/smc" in line for line in body) == 1


def test_pareto_front_and_the_plot(compared):
    table = pd.read_csv(compared["out"] / "compare.csv")
    assert list(table["pareto_encoder_gmacs"]) == [True, False, True]
    with Image.open(compared["out"] / "quality_cost.png") as img:
        assert img.width > 300 and img.height > 200
    html = (compared["out"] / "compare.html").read_text()
    assert "data:image/png;base64," in html and "pair_a/smc = pair_b/smc" in html
    assert "quality_cost.png" in (compared["out"] / "compare.md").read_text()


def test_variants_joined_through_a_chain_of_shared_runs():
    rows = join_rows([(["a/x"], ["1", "2"]), (["b/y"], ["3"]), (["c/z"], ["2", "3"]), (["d/w"], ["4"])])
    assert [(r.labels, r.run_ids) for r in rows] == [(["a/x", "b/y", "c/z"], ["1", "2", "3"]), (["d/w"], ["4"])]


def test_bad_name_and_metric_are_usage_errors(tmp_path, capsys):
    spec = REPO / "ablations" / "smoke.yaml"
    assert run_study.main(["compare", str(spec), "--name", "Bad Name", "--results", str(tmp_path)]) == 2
    assert "--name" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        run_study.main(["compare", str(spec), "--metric", "fid"])


def test_the_default_metric_falls_back_to_one_every_study_has(compared, tmp_path, capsys):
    """No study measured rFID (the default --metric): the comparison plots PSNR and says so."""
    specs = [compared["out"].parent.parent / f"{name}.yaml" for name in VARIANTS]
    root = compared["out"].parent.parent / "results"
    argv = ["compare", *map(str, specs), "--name", "fallback", "--results", str(root), "--reports", str(tmp_path)]
    assert run_study.main(argv) == 0
    printed = capsys.readouterr().out
    said = "Metric compared and plotted: PSNR, the first metric every study has numbers of: rFID (asked for)"
    assert said in printed and "has none in pair_a, pair_b" in printed
    out = tmp_path / "compare-fallback"
    assert said in (out / "compare.md").read_text() and said in (out / "compare.html").read_text()
    with Image.open(out / "quality_cost.png") as img:  # drawn, not "no plot"
        assert img.width > 300
    table = pd.read_csv(out / "compare.csv")
    assert list(table["pareto_encoder_gmacs"]) == [True, False, True]  # the front of PSNR
