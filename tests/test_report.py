"""Reports: the table's content (rows, paper numbers, mean +- std, failures), the files, the
figures, the HTML in headless Chromium, Table 3's parameter counts beside the paper's. The report
reads only records: each test writes run folders and the study's index, then reports them."""

from __future__ import annotations

import math
import os
import shutil
import statistics
import subprocess
from pathlib import Path

import pandas as pd
import pytest
import scipy.stats
from PIL import Image

from study import store
from study.kinds.registry import run_id
from study.paper import paper_table
from study.report import report as report_mod
from study.report.figures import pareto_front
from study.report.index_page import write_index
from study.report.paper_rows import paper_rows
from study.report.records import NoIndexError, read_study
from study.report.tables import main_table
from study.studyfile.grid import expand
from study.studyfile.parse import load_study
from study.studyfile.record import study_record

REPO = Path(__file__).resolve().parent.parent

STUDY = f"""
study: tiny_table4
description: A hand-made check of the report on Table 4's rows.
paper: {{table: "4", rows: {{groupnorm: GroupNorm, smc: SMC}}}}
base: {REPO / "ablations" / "base" / "smoke_cpu.yaml"}
variants:
  groupnorm: {{model.decoder.norm: groupnorm}}
  smc: {{model.decoder.norm: smc}}
  wide: {{model.decoder.channels: 64}}
seeds: [0, 1, 2]
"""
# Hand-made records: per variant, per seed, a metrics dict or a failure reason.
PSNR = {"groupnorm": [29.0, 30.5, 31.0], "wide": [28.0, 28.5]}
SSIM = {"groupnorm": [0.80, 0.84, 0.85], "wide": [0.83, 0.81]}
LPIPS = {"groupnorm": [0.10, 0.12, 0.11], "wide": [0.09, 0.10]}
FAILURE = "RuntimeError: CUDA out of memory while decoding"
RFID_MISSING = "unavailable: Inception weights not staged (run `python run_study.py weights fetch`)"
PROTOCOL = {"split": "held-out crops", "num_images": 32, "posterior": "mean", "marker": "proto-xyz"}


def _make_records(root: Path, spec) -> None:
    for v in expand(spec):
        folder = store.init_run(root, v.config, run_id(v.config))
        if v.name == "smc" or (v.name == "wide" and v.seed == 2):
            store.update_status(folder, state="failed", error=FAILURE, step=40, host="node-a")
            continue
        i = v.seed
        store.write_eval(
            folder,
            "ev1",
            {
                "metrics": {"psnr": PSNR[v.name][i], "ssim": SSIM[v.name][i], "lpips": LPIPS[v.name][i]},
                "unavailable": {"rfid": RFID_MISSING},
                "protocol": PROTOCOL,
            },
        )
        store.write_complexity(
            folder,
            {
                "encoder_params": 1_035_820 * (2 if v.name == "wide" else 1),
                "decoder_params": 3_000_000,
                "encoder_gmacs": 0.02 * (1 + i % 2),
                "throughput_img_s": 100.0,
                "peak_mem_mb": 50.0,
                "device": "cpu",
            },
        )
        for step in (10, 20, 30):
            store.append_jsonl(folder / "metrics.jsonl", {"step": step, "loss": 1.0 / step + 0.01 * i})
        store.append_jsonl(folder / "metrics.jsonl", {"step": 30, "val_psnr": PSNR[v.name][i] - 1})
        store.update_status(folder, host="node-b")
        store.mark_done(folder)


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("report")
    path = tmp / "tiny.yaml"
    path.write_text(STUDY)
    spec = load_study(path)
    root = tmp / "results"
    _make_records(root, spec)
    _write_index(root, spec)
    out = tmp / "reports" / spec.study
    html_path = report_mod.report(root, spec.study, out)
    return {
        "spec": spec,
        "records": read_study(root, spec.study),
        "root": root,
        "out": out,
        "html": html_path,
        "path": path,
    }


def _write_index(root: Path, spec, profile: str | None = None) -> dict:
    variants = expand(spec, profile)
    store.write_index(root, spec.study, variants, **study_record(spec, variants, profile))
    return store.read_index(root, spec.study)


def _paper(label: str, metric: str) -> float:
    t = paper_table("4")
    return float(t.loc[t["row"] == label, metric].iloc[0])


def _markdown_rows(md: str) -> tuple[list[str], list[list[str]]]:
    """The header and body rows of the first table after '## Results'."""
    lines = md.split("## Results", 1)[1].splitlines()
    table = [line for line in lines[lines.index(next(l for l in lines if l.startswith("|"))) :]]
    table = table[: next(i for i, l in enumerate(table) if not l.startswith("|"))]
    cells = [[c.strip() for c in line.strip("|").split(" | ")] for line in table]
    return cells[0], cells[2:]


def test_markdown_table_one_row_per_variant_with_paper_numbers(study):
    header, rows = _markdown_rows((study["out"] / "report.md").read_text())
    assert [r[0] for r in rows] == ["groupnorm", "smc", "wide"]
    by = {r[0]: dict(zip(header, r)) for r in rows}
    for name, label in (("groupnorm", "GroupNorm"), ("smc", "SMC")):
        assert by[name]["Paper row"] == label
        for metric, col in (("psnr", "PSNR paper"), ("rfid", "rFID paper"), ("ssim", "SSIM paper")):
            assert float(by[name][col].strip("*")) == pytest.approx(_paper(label, metric))
    assert by["wide"]["PSNR paper"] == "—"  # not a paper row


def test_mean_std_difference_and_best(study):
    table = main_table(study["records"]).set_index("Variant")
    gn = PSNR["groupnorm"]
    expected = f"{statistics.mean(gn):.2f} ± {statistics.stdev(gn):.2f}"
    # groupnorm's PSNR is the higher, but not beyond the seed noise (Welch p = 0.07): not bold
    assert scipy.stats.ttest_ind(gn, PSNR["wide"], equal_var=False).pvalue > 0.05
    assert table.loc["groupnorm", "PSNR ↑"] == expected
    assert table.loc["wide", "PSNR ↑"] == f"{statistics.mean(PSNR['wide']):.2f} ± {statistics.stdev(PSNR['wide']):.2f}"
    assert table.loc["groupnorm", "PSNR Δ"] == f"{statistics.mean(gn) - _paper('GroupNorm', 'psnr'):+.2f}"
    assert not any(str(v).startswith("**") for c in ("PSNR ↑", "LPIPS ↓", "SSIM ↑") for v in table[c])
    assert table.loc["groupnorm", "Seeds"] == "3/3" and table.loc["wide", "Seeds"] == "2/3"
    # the paper's best stays bold: its numbers have no seeds
    assert table.loc["smc", "PSNR paper"].startswith("**")


def test_failed_and_unavailable_cells_say_why(study):
    table = main_table(study["records"]).set_index("Variant")
    for col in ("PSNR ↑", "SSIM ↑", "LPIPS ↓"):
        assert table.loc["smc", col] == f"failed: {FAILURE}"
    assert table.loc["smc", "Seeds"] == "0/3"
    assert table.loc["smc", "PSNR paper"] == f"**{_paper('SMC', 'psnr'):.2f}**"  # the paper's best stays
    # a metric not computed reads "n/a" in every cell, its reason once, under the table
    assert table.loc["groupnorm", "rFID ↓"] == table.loc["wide", "rFID ↓"] == "n/a"
    assert "seed 2 failed: " + FAILURE in table.loc["wide", "Note"]
    md = (study["out"] / "report.md").read_text()
    assert md.count(f"failed: {FAILURE}") >= 3
    reason = RFID_MISSING.split(": ", 1)[1]
    assert md.count(reason) == 1 and f"n/a: rFID not computed: {reason}" in md
    results = md.split("## Results", 1)[1].split("## ", 1)[0]
    assert results.index("| groupnorm") < results.index("n/a: rFID not computed")  # below the table
    printed = (study["out"] / "tables" / "main.md").read_text()  # what the command prints
    assert f"n/a: rFID not computed: {reason}" in printed


def test_report_files_figures_and_provenance(study):
    out = study["out"]
    pngs = sorted(p.name for p in (out / "figures").glob("*.png"))
    assert {"metrics.png", "quality_cost.png", "training_curves.png"} <= set(pngs)
    for name in pngs:
        with Image.open(out / "figures" / name) as im:
            assert sum(1 for h in im.convert("L").histogram() if h) > 10, name
    page = study["html"].read_text()
    assert page.count("data:image/png;base64,") == len(pngs)
    assert 'src="http' not in page and "<link" not in page  # self-contained
    assert "<strong>" in page and f"failed: {FAILURE}" in page
    tex = (out / "tables" / "main.tex").read_text()
    assert tex.count(r"\toprule") == tex.count(r"\midrule") == tex.count(r"\bottomrule") == 1
    assert tex.count(r"\\") == 1 + 3  # header + one row per variant
    assert r"$\pm$" in tex and r"\textbf{" in tex
    md = (out / "report.md").read_text()
    head = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True)
    if head.returncode == 0:
        assert head.stdout.strip() in md
    import importlib.metadata

    assert importlib.metadata.version("torch") in md and importlib.metadata.version("pandas") in md
    assert "proto-xyz" in md and "node-a" in md and "node-b" in md  # protocol and hosts from the records
    numbers = pd.read_csv(out / "tables" / "main.csv")
    gn = numbers[(numbers["variant"] == "groupnorm") & (numbers["column"] == "psnr")].iloc[0]
    assert gn["mean"] == pytest.approx(statistics.mean(PSNR["groupnorm"]))
    assert gn["std"] == pytest.approx(statistics.stdev(PSNR["groupnorm"]))


def test_index_links_reports_with_headlines(study):
    index = write_index(study["out"].parent)
    page = index.read_text()
    assert 'href="tiny_table4/report.html"' in page
    assert "best PSNR" in page and "groupnorm" in page  # the headline numbers


def test_pareto_front():
    points = [(1.0, 3.0), (2.0, 2.0), (3.0, 2.5), (4.0, 1.0), (0.5, 5.0)]
    assert pareto_front(points, lower_is_better=True) == [(0.5, 5.0), (1.0, 3.0), (2.0, 2.0), (4.0, 1.0)]
    assert pareto_front(points, lower_is_better=False) == [(0.5, 5.0)]


def test_repeated_paper_labels_resolve_by_dataset_resolution_latent(tmp_path):
    spec = load_study(REPO / "ablations" / "table1.yaml")
    index = _write_index(tmp_path, spec)
    rows = paper_rows(index)
    t = paper_table("1")
    assert len({id(r) for r in rows.values()}) == len(rows)
    got = rows["imagenet256-z12-litevae-b"]
    want = t[(t["dataset"] == "ImageNet") & (t["latent"] == "32x32x12") & (t["row"] == "LiteVAE-B")].iloc[0]
    assert got["rfid"] == want["rfid"] and got["psnr"] == want["psnr"]
    assert len({(r["dataset"], r["resolution"], r["latent"], r["row"]) for r in rows.values()}) == 12
    # A profile that runs every variant on 32x32 sample crops changes the runs' own settings; the
    # paper's settings recorded in the index still pick each variant's block.
    for v in index["variants"]:
        v.update(dataset="samples", resolution=32, latent="4x4x4")
    assert {n: r["latent"] for n, r in paper_rows(index).items()} == {n: r["latent"] for n, r in rows.items()}
    # Without them, the runs' own settings decide, and a repeated label names no row.
    index["paper"].pop("settings")
    assert all(isinstance(r, str) and "no row labelled" in r for r in paper_rows(index).values())


def test_table3_parameter_counts_match_the_paper(tmp_path):
    """Our encoders' parameter counts beside Table 3's, within 0.5%, through the report of the
    Table 3 study's records (complexity.json as a run writes it)."""
    from study.measure.complexity import parameter_counts
    from study.models import registry

    spec = load_study(REPO / "ablations" / "table3.yaml")
    for name, overrides in spec.variants.items():  # the study compares the registry's rows
        assert registry.paper_labels("3").get(overrides["preset"]) == spec.paper.rows.get(name)
    root = tmp_path / "results"
    counts = {}
    for v in expand(spec):
        folder = store.init_run(root, v.config, run_id(v.config))
        counts[v.name] = parameter_counts(v.config.model)[0]  # on the meta device
        store.write_complexity(folder, {"encoder_params": counts[v.name]})
        store.mark_done(folder)
    _write_index(root, spec)
    report_mod.report(root, spec.study, tmp_path / "report")
    table = main_table(read_study(root, spec.study)).set_index("Variant")
    md = (tmp_path / "report" / "report.md").read_text()
    t3 = paper_table("3")
    checked = 0
    for name, ours in counts.items():
        label = spec.paper.rows.get(name)
        if label is None:
            assert table.loc[name, "Params (M) paper"] == "—"  # VAE-Small: not in Table 3
            continue
        paper_m = float(t3.loc[t3["encoder"] == label, "params_m"].iloc[0])
        ours_m = ours / 1e6
        shown = float(table.loc[name, "Params (M) Δ"].rstrip("%"))
        assert shown == pytest.approx((ours_m - paper_m) / paper_m * 100, abs=0.006)
        # Within 0.5%, or equal at the paper's printed precision: it truncates to two decimals
        # (LiteVAE-S counts 1.0358 M, printed 1.03: 0.57% apart; B, M and L are within 0.01%).
        assert abs(shown) < 0.5 or math.floor(ours_m * 100) / 100 == paper_m, name
        assert table.loc[name, "Params (M) paper"].strip("*") == f"{paper_m:.3f}"
        assert f"{ours_m:.3f}" in md
        checked += 1
    assert checked == 5
    assert (tmp_path / "report" / "figures" / "complexity.png").is_file()


def test_report_reads_the_index_not_the_study_file(study, tmp_path):
    """With the results folder alone (no study file), the report has every row, in the index's order."""
    moved = tmp_path / "results"
    shutil.copytree(study["root"], moved)
    index = store.read_index(moved, study["spec"].study)
    store.write_json_atomic(moved / index["study"] / "index.json", index | {"spec": str(tmp_path / "gone.yaml")})
    report_mod.report(moved, study["spec"].study, tmp_path / "out")
    assert f"Study file: {tmp_path / 'gone.yaml'}" in (tmp_path / "out" / "report.md").read_text()
    header, rows = _markdown_rows((tmp_path / "out" / "report.md").read_text())
    assert [r[0] for r in rows] == ["groupnorm", "smc", "wide"]
    assert (tmp_path / "out" / "tables" / "main.md").read_text().startswith("| Variant")
    with pytest.raises(NoIndexError, match="index.json"):
        report_mod.report(tmp_path / "empty", "nothing", tmp_path / "none")


def test_cli_report(study, tmp_path, capsys):
    import run_study

    rc = run_study.main(["report", str(study["path"]), "--results", str(study["root"]), "--reports", str(tmp_path)])
    assert rc == 0
    printed = capsys.readouterr().out
    assert f"report: {tmp_path / 'tiny_table4' / 'report.html'}" in printed
    assert "groupnorm" in printed and f"failed: {FAILURE}" in printed
    assert (tmp_path / "index.html").is_file()


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def test_html_renders_in_headless_chromium(study, tmp_path):
    browser = _chromium()
    if browser is None:
        if os.environ.get("LITEVAE_REQUIRE_CHROMIUM"):
            pytest.fail("chromium not installed (apt-get install -y --no-install-recommends chromium)")
        pytest.skip("chromium not installed")
    shot = tmp_path / "shot.png"
    subprocess.run(
        [
            browser,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            f"--user-data-dir={tmp_path / 'profile'}",
            "--window-size=1280,5000",
            f"--screenshot={shot}",
            study["html"].resolve().as_uri(),
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    with Image.open(shot) as im:
        gray = im.convert("L")
        assert gray.size == (1280, 5000)
        histogram = gray.histogram()
        dark = sum(histogram[:128]) / sum(histogram)
        assert len([h for h in histogram if h]) > 20 and dark > 0.002  # text and figures drawn
        # the embedded figures rendered: a colourful region exists (not only black text on white)
        hsv = im.convert("RGB").resize((320, 1250)).convert("HSV")
        colourful = sum(hsv.getchannel("S").histogram()[100:])
        assert colourful > 200


# --------------------------------------------------------------------------------------------
# a report to show (issue 22): one seed, weights not staged, a setup per variant
# --------------------------------------------------------------------------------------------
ONE_SEED = f"""
study: one_seed
description: Two decoders, one seed each, no metric weights.
base: {REPO / "ablations" / "base" / "smoke_cpu.yaml"}
variants:
  groupnorm: {{model.decoder.norm: groupnorm}}
  smc: {{model.decoder.norm: smc, train.lr: 0.0005}}
seeds: [0]
"""
NOT_STAGED = "FileNotFoundError: lpips/alex.pth not found in /somewhere/weights"  # as evaluation records it
ONE_PSNR = {"groupnorm": 17.74, "smc": 17.78}
ONE_PROTOCOL = {
    "dataset": {"name": "samples", "split": "held-out"},
    "num_images": 32,
    "resolution": 32,
    "posterior": "mean",
    "metrics": ["lpips", "psnr", "rfid", "ssim"],
    "marker": "proto-one",
}


@pytest.fixture(scope="module")
def one_seed(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("one_seed")
    path = tmp / "one.yaml"
    path.write_text(ONE_SEED)
    spec = load_study(path)
    root = tmp / "results"
    for v in expand(spec):
        folder = store.init_run(root, v.config, run_id(v.config))
        metrics = {"psnr": ONE_PSNR[v.name], "ssim": 0.5}
        unavailable = {"rfid": NOT_STAGED, "lpips": NOT_STAGED}
        store.write_eval(folder, "ev1", {"metrics": metrics, "unavailable": unavailable, "protocol": ONE_PROTOCOL})
        store.mark_done(folder)
    _write_index(root, spec)
    linear = {"components": 64, "train_crops": 8192, "eval_images": 32, "resolution": 32, "psnr": 31.234, "ssim": 0.81}
    store.write_json_atomic(store.linear_reference_path(root, spec.study), linear)  # as the demo writes it
    out = tmp / "reports" / spec.study
    report_mod.report(root, spec.study, out)
    return out


def _section_table(md: str, heading: str) -> list[dict[str, str]]:
    """The rows of the first markdown table after ``## <heading>``, as dicts by header."""
    lines = md.split(f"## {heading}", 1)[1].splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("|"))
    table = lines[start : next(i for i in range(start, len(lines)) if not lines[i].startswith("|"))]
    header = [c.strip() for c in table[0].strip("|").split(" | ")]
    return [dict(zip(header, (c.strip() for c in line.strip("|").split(" | ")))) for line in table[2:]]


def test_one_seed_differences_say_no_interval_and_nothing_is_bold(one_seed):
    md = (one_seed / "report.md").read_text()
    results = {r["Variant"]: r for r in _section_table(md, "Results")}
    assert results["smc"]["PSNR ↑"] == "17.78" and results["groupnorm"]["PSNR ↑"] == "17.74"  # no bold
    assert "**" not in "".join(v for r in results.values() for v in r.values())
    rows = {r["Variant"]: r for r in _section_table(md, "Difference to the baseline groupnorm")}
    assert rows["smc"]["Δ PSNR ↑"] == "+0.04 (n=1: no interval)"
    assert rows["groupnorm (baseline)"]["Δ PSNR ↑"] == "—"
    assert "Δ LPIPS ↓" not in rows["smc"]  # a metric without numbers has no difference column
    assert (one_seed / "tables" / "baseline.csv").read_text().startswith("variant,column,n,base_n,diff")


def test_offline_said_once_above_the_table_and_the_linear_reference_row(one_seed):
    md = (one_seed / "report.md").read_text()
    results = md.split("## Results", 1)[1]
    assert results.index("Offline: the weights of some metrics were not staged") < results.index("| Variant")
    assert md.count("Offline:") == 1
    (row,) = _section_table(md, "A linear reference")
    assert row == {
        "Reference": "linear autoencoder (PCA)",
        "Latent numbers": "64",
        "PSNR ↑": "31.23",
        "SSIM ↑": "0.810",
    }
    assert "fitted on 8192 training crops and scored on the same 32 held-out 32x32 images" in md


def test_legend_explains_only_the_columns_present(one_seed, study):
    one = (one_seed / "report.md").read_text().split("## Results", 1)[1].split("## ", 1)[0]
    assert "Seeds: completed / planned" in one and "paper" not in one.lower()
    assert "says why" not in one  # no failed or pending cell here
    assert "nothing of ours is bold here" in one
    paper = (study["out"] / "report.md").read_text().split("## Results", 1)[1].split("## ", 1)[0]
    assert "Δ: ours − paper" in paper and "says why" in paper


def test_unavailable_metrics_read_na_with_one_footnote_and_no_literal_backticks(one_seed):
    md = (one_seed / "report.md").read_text()
    results = _section_table(md, "Results")
    assert all(r["rFID ↓"] == "n/a" and r["LPIPS ↓"] == "n/a" for r in results)
    note = "n/a: rFID, LPIPS not computed: weights not staged (see `run_study.py weights check`)"
    assert md.count("weights not staged") == 1 and note in md
    html = (one_seed / "report.html").read_text()
    assert "`" not in html
    assert html.count("<code>run_study.py weights check</code>") == 1
    tex = (one_seed / "tables" / "main.tex").read_text()
    assert "`" not in tex and r"\texttt{run\_study.py weights check}" in tex
    assert tex.index(r"\end{tabular}") < tex.index("weights not staged") < tex.index(r"\end{table}")


def test_training_setup_per_variant_and_a_readable_protocol(one_seed):
    md = (one_seed / "report.md").read_text()
    setup = {r["Variant"]: r for r in _section_table(md, "Training setup")}
    # ablations/base/smoke_cpu.yaml: 300 steps, batch 8, lr 1e-3 on 32x32 sample crops, 4x4x4 latent
    for name, lr in (("groupnorm", "0.001"), ("smc", "0.0005")):
        assert setup[name] == {
            "Variant": name,
            "Steps": "300",
            "Batch": "8",
            "LR": lr,
            "Resolution": "32",
            "Data": "samples",
            "Latent": "4x4x4",
        }
    protocol = {r["Field"]: r for r in _section_table(md, "Evaluation protocol")}
    assert protocol["images"]["ev1"] == "32" and protocol["data"]["ev1"] == "samples, held-out"
    assert protocol["metrics"]["ev1"] == "lpips, psnr, rfid, ssim"
    # the JSON stays, verbatim, in the provenance only
    assert md.index("## Provenance") < md.index("proto-one") and md.count("proto-one") == 1


def test_a_best_beyond_the_seed_noise_is_bold():
    from study.report.columns import METRIC_COLUMNS
    from study.report.tables import TableInput, build_table, clear_best

    psnr = next(c for c in METRIC_COLUMNS if c.key == "psnr")
    runs = {
        "a": pd.DataFrame({"psnr": [30.0, 30.2, 30.1], "state": "completed"}),
        "b": pd.DataFrame({"psnr": [28.0, 28.3, 28.1], "state": "completed"}),
        "c": pd.DataFrame({"psnr": [29.0], "state": "completed"}),
    }
    inp = TableInput(["a", "b"], runs, (psnr,), 3)
    assert clear_best(inp, psnr) == {"a"}
    assert build_table(inp).set_index("Variant").loc["a", "PSNR ↑"].startswith("**")
    # one seed in any arm: the difference cannot be told from the noise, nothing is bold
    assert clear_best(TableInput(["a", "b", "c"], runs, (psnr,), 3), psnr) == set()


def test_baseline_differences_with_seeds_have_welch_intervals(study):
    md = (study["out"] / "report.md").read_text()
    rows = {r["Variant"]: r for r in _section_table(md, "Difference to the baseline groupnorm")}
    welch = scipy.stats.ttest_ind(PSNR["wide"], PSNR["groupnorm"], equal_var=False)
    low, high = welch.confidence_interval(0.95)
    diff = statistics.mean(PSNR["wide"]) - statistics.mean(PSNR["groupnorm"])
    assert rows["wide"]["Δ PSNR ↑"] == f"{diff:+.2f} [{low:+.2f}, {high:+.2f}], p={welch.pvalue:.3f}"
    assert rows["smc"]["Δ PSNR ↑"] == "no number"  # every seed failed


def test_training_loss_is_smoothed_with_a_stated_ema():
    import numpy as np

    from study.report.curves import ema, span

    assert span(400) == 20 and ema(np.array([3.0, 1.0, 2.0])) == pytest.approx([3.0, 1.0, 2.0])  # too few
    assert ema(np.full(100, 3.0)) == pytest.approx(np.full(100, 3.0))  # debiased: no pull towards 0
    x = np.zeros(100)
    x[0] = 1.0
    alpha = 2 / (span(100) + 1)  # the weight of the newest value
    assert ema(x)[:2] == pytest.approx([1.0, (1 - alpha) / (1 + (1 - alpha))])
    noisy = np.random.default_rng(0).normal(1.0, 0.3, 400)
    assert np.std(ema(noisy)[50:]) < np.std(noisy) / 2


def test_headless_chromium_dom_has_the_difference_setup_and_code(one_seed):
    browser = _chromium()
    if browser is None:
        if os.environ.get("LITEVAE_REQUIRE_CHROMIUM"):
            pytest.fail("chromium not installed (apt-get install -y --no-install-recommends chromium)")
        pytest.skip("chromium not installed")
    dom = subprocess.run(
        [browser, "--headless", "--no-sandbox", "--disable-gpu", "--dump-dom", (one_seed / "report.html").as_uri()],
        check=True,
        capture_output=True,
        text=True,
        timeout=120,
    ).stdout
    assert "Difference to the baseline groupnorm" in dom and "+0.04 (n=1: no interval)" in dom
    assert "<h2>Training setup</h2>" in dom and "0.0005" in dom
    assert "<code>run_study.py weights check</code>" in dom and "`" not in dom
