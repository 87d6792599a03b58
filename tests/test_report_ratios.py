"""Table 3's report: throughput and memory as ratios to SD-VAE measured in the same study, beside
the paper's ratios (results/paper/litevae_complexity.csv), with the measuring device, resolution,
batch and precision in the table's caption. Records are hand-made complexity.json files, as a
Table 3 run writes them (study/launch/job.py), then the table3 smoke profile end to end."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import yaml

import run_study
from study import store
from study.kinds.registry import run_id
from study.paper import paper_table
from study.report import report as report_mod
from study.report.records import read_study
from study.report.tables import main_table
from study.studyfile.grid import expand
from study.studyfile.parse import load_study
from study.studyfile.record import study_record

TABLE3 = Path(__file__).resolve().parent.parent / "ablations" / "table3.yaml"
# our hand-made measurements: images/s and MB per variant
THROUGHPUT = {
    "vae": 40.0,
    "vae-small": 60.0,
    "litevae-s": 200.0,
    "litevae-b": 100.0,
    "litevae-m": 30.0,
    "litevae-l": 28.0,
}
MEMORY = {
    "vae": 400.0,
    "vae-small": 300.0,
    "litevae-s": 50.0,
    "litevae-b": 120.0,
    "litevae-m": 500.0,
    "litevae-l": 520.0,
}
SETTING = {"device": "cpu", "resolution": 32, "batch": 2, "precision": "fp32"}


def _paper(label: str, column: str) -> float:
    t = paper_table("3")
    return float(t.loc[t["encoder"] == label, column].iloc[0])


@pytest.fixture(scope="module")
def table3(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("table3")
    spec = load_study(TABLE3)
    root = tmp / "results"
    variants = expand(spec, "smoke")
    for v in variants:
        folder = store.init_run(root, v.config, run_id(v.config))
        record = {"encoder_params": 1_000_000, "throughput_img_s": THROUGHPUT[v.name], "peak_mem_mb": MEMORY[v.name]}
        store.write_complexity(folder, record | SETTING)
        store.mark_done(folder)
    store.write_index(root, spec.study, variants, **study_record(spec, variants, "smoke"))
    out = tmp / "report"
    report_mod.report(root, spec.study, out, profile="smoke")
    return {"spec": spec, "root": root, "out": out}


def test_throughput_and_memory_are_ratios_to_sd_vae_beside_the_papers(table3):
    spec = table3["spec"]
    table = main_table(read_study(table3["root"], spec.study, "smoke")).set_index("Variant")
    sd = spec.paper.rows["vae"]
    assert sd == "VAE (SD-VAE encoder)"
    for name in THROUGHPUT:
        ours_t, ours_m = THROUGHPUT[name] / THROUGHPUT["vae"], MEMORY[name] / MEMORY["vae"]
        assert table.loc[name, "Throughput ÷ SD-VAE"].strip("*") == f"{ours_t:.2f}x"
        assert table.loc[name, "Memory ÷ SD-VAE"].strip("*") == f"{ours_m:.2f}x"
        label = spec.paper.rows.get(name)
        if label is None:  # VAE-Small: not in Table 3
            assert table.loc[name, "Throughput ÷ SD-VAE paper"] == "—"
            continue
        paper_t = _paper(label, "throughput_img_s") / _paper(sd, "throughput_img_s")
        paper_m = _paper(label, "gpu_memory_mb") / _paper(sd, "gpu_memory_mb")
        assert table.loc[name, "Throughput ÷ SD-VAE paper"].strip("*") == f"{paper_t:.2f}x"
        assert table.loc[name, "Memory ÷ SD-VAE paper"].strip("*") == f"{paper_m:.2f}x"
    assert table.loc["litevae-b", "Throughput ÷ SD-VAE paper"] == "1.90x"  # 129 / 68
    # the best ratio is bold by the column's direction: most images/s, least memory
    assert table.loc["litevae-s", "Throughput ÷ SD-VAE"] == "**5.00x**"
    assert table.loc["litevae-s", "Memory ÷ SD-VAE"] == "**0.12x**"
    # our absolutes stay, but never beside the paper's absolutes or as a difference to them
    assert table.loc["litevae-b", "Throughput (img/s) ↑"] == "100.0"
    for gone in ("Throughput (img/s) paper", "Throughput (img/s) Δ", "Memory (MB) paper", "Memory (MB) Δ"):
        assert gone not in table.columns
    numbers = pd.read_csv(table3["out"] / "tables" / "main.csv")
    b = numbers[(numbers["variant"] == "litevae-b") & (numbers["column"] == "throughput_img_s")].iloc[0]
    paper_b = _paper("LiteVAE-B", "throughput_img_s") / _paper("VAE (SD-VAE encoder)", "throughput_img_s")
    assert b["ratio"] == pytest.approx(2.5) and b["paper_ratio"] == pytest.approx(paper_b)
    assert pd.isna(b["diff"])


def test_caption_names_the_measuring_setting(table3):
    md = (table3["out"] / "report.md").read_text()
    tex = (table3["out"] / "tables" / "main.tex").read_text()
    setting = "cpu, 32x32, batch 2, fp32"
    assert f"Ours measured on {setting}" in md
    caption = next(line for line in tex.splitlines() if line.startswith(r"\caption{"))
    assert setting in caption and "Quadro RTX 6000" in caption and "SD-VAE (vae)" in caption


@pytest.mark.e2e
def test_table3_smoke_end_to_end(tmp_path):
    """Table 3's study with its smoke profile, cut to SD-VAE and LiteVAE-B (each encoder takes
    seconds to measure on a CPU), run end to end: measured on this CPU, launched, collected,
    reported; LiteVAE-B's ratios beside the paper's, the complexity records' device in the caption."""
    doc = yaml.safe_load(TABLE3.read_text())
    doc["base"] = str(TABLE3.parent / doc["base"])
    doc["variants"] = {k: doc["variants"][k] for k in ("vae", "litevae-b")}
    doc["paper"]["rows"] = {k: doc["paper"]["rows"][k] for k in ("vae", "litevae-b")}
    study = tmp_path / "table3_cut.yaml"
    study.write_text(yaml.safe_dump(doc))
    results, reports = tmp_path / "results", tmp_path / "reports"
    args = ["--profile", "smoke", "--executor", "debug", "--results", str(results), "--reports", str(reports)]
    assert run_study.main(["run", str(study), *args, "--poll", "0.1"]) == 0
    spec = load_study(study)
    table = main_table(read_study(results, spec.study, "smoke")).set_index("Variant")
    assert table.loc["vae", "Throughput ÷ SD-VAE"].strip("*") == "1.00x"
    assert table.loc["vae", "Memory ÷ SD-VAE"].strip("*") == "1.00x"
    assert float(table.loc["litevae-b", "Throughput ÷ SD-VAE"].strip("*x")) > 0
    assert float(table.loc["litevae-b", "Memory ÷ SD-VAE"].strip("*x")) > 0
    assert table.loc["litevae-b", "Throughput ÷ SD-VAE paper"].strip("*") == "1.90x"  # 129 / 68
    memory = _paper("LiteVAE-B", "gpu_memory_mb") / _paper("VAE (SD-VAE encoder)", "gpu_memory_mb")
    assert table.loc["litevae-b", "Memory ÷ SD-VAE paper"].strip("*") == f"{memory:.2f}x"
    md = (reports / spec.study / "report.md").read_text()
    assert "Ours measured on cpu, 32x32, batch 2, fp32" in md
    assert "Throughput (img/s) Δ" not in md
    assert (reports / "index.html").read_text().count("complete: 2 completed (of 2 variants)") == 1


def test_headline_names_the_fastest_encoder_relative_to_sd_vae(table3):
    summary = store.read_json(table3["out"] / "summary.json")
    s_paper = _paper("LiteVAE-S", "throughput_img_s") / _paper("VAE (SD-VAE encoder)", "throughput_img_s")
    assert f"fastest litevae-s: 5.00x SD-VAE's throughput (paper {s_paper:.2f}x)" in summary["headline"]
