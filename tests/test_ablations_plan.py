"""Every study file in ablations/ plans, with and without its smoke profile; the paper-table
studies name real paper rows, use the paper's settings by default and a CPU-sized smoke profile."""

from __future__ import annotations

from pathlib import Path

import pytest

from study import store
from study.paper import paper_table
from study.report.paper_rows import label_column, paper_rows
from study.studyfile.grid import expand
from study.studyfile.parse import load_study
from study.studyfile.record import study_record

ABLATIONS = Path(__file__).resolve().parent.parent / "ablations"
# protocol_check.yaml plans only once model.init points at real checkpoints (their sha256 is part
# of each run id): tests/test_protocol_check.py plans and runs it with one the test makes.
STUDY_FILES = sorted(p for p in ABLATIONS.glob("*.yaml") if p.name != "protocol_check.yaml")
TABLE_FILES = sorted(ABLATIONS.glob("table*.yaml"))
# The reconstruction tables the issue asks a study for (Table 3: encoder complexity).
REQUIRED_TABLES = {
    "1",
    "2a",
    "2b",
    "3",
    "4",
    "5",
    "6",
    "8",
    "9",
    "10",
    "11",
    "12",
    "14",
    "15",
    "16",
    "17",
    "18",
    "19",
    "20",
    "21",
    "22",
}
# Tables whose smoke profile cannot keep every axis (documented in the study files): Table 1's
# datasets and resolutions all become 32x32 sample crops (the encoder x latent axes stay: 4 runs);
# Tables 5 and 22 vary train.stages, which one profile cannot scale per variant (1 run); Table 11's
# two datasets become sample crops (the encoder axis stays: 2 runs).
SMOKE_RUNS = {"1": 4, "5": 1, "7": 4, "11": 2, "22": 1}  # 7: FFHQ and CelebA-HQ collapse
# Tables whose smoke profile keeps the perceptual term, as it is their axis (Table 14: LPIPS vs
# ESRGAN); tests/test_ablations_e2e.py runs them with random stand-in VGG weights.
PERCEPTUAL_SMOKE = {"14"}
PAPER_STEPS = {"5": 150_000, "19": 150_000, "22": 150_000}  # 150k at 256 (docs/paper.md, Table 5)


def _ids(paths):
    return [p.name for p in paths]


@pytest.fixture(scope="module")
def cli():
    import run_study

    return run_study.main


@pytest.mark.parametrize("path", STUDY_FILES, ids=_ids(STUDY_FILES))
def test_plan_with_and_without_smoke(path, cli, capsys):
    assert cli(["plan", str(path)]) == 0
    spec = load_study(path)
    if path in TABLE_FILES:
        assert "smoke" in spec.profiles, f"{path.name} needs a smoke profile"
    if "smoke" in spec.profiles:
        assert cli(["plan", str(path), "--profile", "smoke"]) == 0
    out = capsys.readouterr().out
    assert f"study {spec.study}:" in out


def test_every_paper_table_has_a_study():
    tables = {load_study(p).paper.table for p in TABLE_FILES}
    assert REQUIRED_TABLES <= tables, sorted(REQUIRED_TABLES - tables)


@pytest.mark.parametrize("path", TABLE_FILES, ids=_ids(TABLE_FILES))
def test_paper_rows_exist_and_are_distinct(path):
    spec = load_study(path)
    assert spec.paper is not None and spec.paper.rows
    table = paper_table(spec.paper.table)
    labels = set(table[label_column(table)])
    variants = expand(spec)
    names = {n for v in variants for n in (v.name, *v.aliases)}
    assert set(spec.paper.rows) <= names, set(spec.paper.rows) - names
    assert set(spec.paper.rows.values()) <= labels, set(spec.paper.rows.values()) - labels
    index = study_record(spec, variants) | {"variants": [store.variant_record(v) for v in variants]}
    rows = paper_rows(index)
    assert not [r for r in rows.values() if isinstance(r, str)], rows  # a label ambiguous for its variant
    keys = [tuple(r.values) for r in rows.values()]
    assert len(set(map(str, keys))) == len(keys), "two variants compared with one paper row"
    assert f"Table {spec.paper.table} " in spec.description + " "


@pytest.mark.parametrize("path", TABLE_FILES, ids=_ids(TABLE_FILES))
def test_default_is_the_papers_setting(path):
    spec = load_study(path)
    for v in expand(spec):
        cfg = v.config
        assert cfg.data.kind == "folder" and cfg.data.path.startswith(("/", "${datasets.")), v.name
        if spec.paper.table == "3":  # no training: encoders measured at Table 3's batch of 32
            assert (cfg.train.steps, cfg.train.batch_size, cfg.data.resolution) == (0, 32, 256), v.name
            continue
        assert (cfg.train.batch_size, cfg.train.lr, cfg.train.betas) == (16, 1e-4, (0.5, 0.9)), v.name
        res = cfg.eval.resolution or cfg.data.resolution
        expected = PAPER_STEPS.get(spec.paper.table, 200_000 if (cfg.data.name, res) == ("imagenet", 128) else 100_000)
        assert cfg.train.steps == expected, (v.name, cfg.train.steps)


@pytest.mark.parametrize("path", TABLE_FILES, ids=_ids(TABLE_FILES))
def test_smoke_profile_is_cpu_sized_and_keeps_the_axis(path):
    spec = load_study(path)
    full, smoke = expand(spec), expand(spec, "smoke")
    for v in smoke:
        cfg = v.config
        assert cfg.data.kind == "samples" and cfg.data.resolution <= 32, v.name
        if cfg.task == "diffusion":  # Tables 7, 13: a tiny denoiser, a few hundred steps, 64 samples
            d = cfg.diffusion
            assert (d.unet, d.steps <= 300, d.num_samples <= 64, d.sampler_steps <= 20) == ("tiny", True, True, True)
            continue
        assert cfg.train.steps <= 300 and cfg.train.batch_size <= 8, v.name
        if cfg.train.steps == 0:
            continue  # Table 3: the encoders are measured, nothing is trained or evaluated
        assert cfg.eval.num_images <= 32, v.name
        if spec.paper.table in PERCEPTUAL_SMOKE:
            assert cfg.loss.lpips_weight > 0.0, v.name  # the axis stays live
        else:
            assert cfg.loss.lpips_weight == 0.0, v.name  # no download
        assert cfg.model.decoder.channels == 32 and not cfg.model.decoder.mid_attention, v.name
    assert len(smoke) == SMOKE_RUNS.get(spec.paper.table, len(full))
    names = {n for v in smoke for n in (v.name, *v.aliases)}
    assert names == {n for v in full for n in (v.name, *v.aliases)}  # every variant still reported
