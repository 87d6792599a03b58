"""Every paper-table study runs end to end on the CPU with its smoke profile: train, evaluate,
collect, report. Tables 4, 10, 20 and 21 run their smoke profile in full; the others share one
parametrised test with the smoke profile cut to a few steps (``--set train.steps=...``) so the
suite fits CI's budget. The report is checked for content, not only for existence."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pytest

import run_study
from study import store
from study.studyfile.grid import expand
from study.studyfile.parse import load_study

ABLATIONS = Path(__file__).resolve().parent.parent / "ablations"
FULL = ["table4.yaml", "table10.yaml", "table20.yaml", "table21.yaml"]
# Tables 7 and 13 train diffusion models on their autoencoders: tests/test_generation_e2e.py.
GENERATION = ["table7.yaml", "table13.yaml"]
SHORT = sorted(p.name for p in ABLATIONS.glob("table*.yaml") if p.name not in FULL + GENERATION)


# Studies whose smoke profile keeps a perceptual term (Table 14: LPIPS vs ESRGAN): they train with
# random stand-ins for the VGG16 (LPIPS) and VGG19 (ESRGAN) weights, as CI has no downloads.
PERCEPTUAL = {"table14.yaml"}


def _stage_random_vgg_weights(folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Random torchvision VGG16 / VGG19 ``features`` tensors as $LITEVAE_VGG16/VGG19_WEIGHTS."""
    import torch
    from torchvision.models.vgg import cfgs, make_layers

    from study.measure import weights as weight_files

    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    for name, layout in (("vgg16", "D"), ("vgg19", "E")):
        features = make_layers(cfgs[layout], batch_norm=False)
        path = folder / f"{name}-random.pth"
        torch.save({f"features.{k}": v for k, v in features.state_dict().items()}, path)
        monkeypatch.setenv(weight_files.REGISTRY[name].override_env, str(path))


def _run(spec: Path, tmp_path: Path, *extra: str) -> tuple[int, Path, Path]:
    results, reports = tmp_path / "results", tmp_path / "reports"
    code = run_study.main(
        [
            "run",
            str(spec),
            "--profile",
            "smoke",
            "--executor",
            "debug",
            "--results",
            str(results),
            "--reports",
            str(reports),
            "--poll",
            "0.1",
            *extra,
        ]
    )
    return code, results, reports


def _check_report(spec_path: Path, results: Path, reports: Path, extra_sets: dict | None = None) -> pd.DataFrame:
    spec = load_study(spec_path)
    variants = expand(spec, "smoke", extra_sets)
    out = reports / spec.study
    md = (out / "report.md").read_text()
    html = (out / "report.html").read_text()
    # one table row per variant name, with the paper's row label beside it where the study maps one
    for name in {v.name for v in variants}:
        assert re.search(rf"^\| {re.escape(name)}\s*\|", md, re.M), f"no row for {name} in {out}/report.md"
        if spec.paper and name in spec.paper.rows:
            assert spec.paper.rows[name] in md
    figures = 1 if spec.paper and spec.paper.table == "3" else 2  # Table 3: the complexity bars
    assert len(list((out / "figures").glob("*.png"))) >= figures
    assert html.count("data:image/png;base64,") >= figures
    assert (out / "tables" / "main.tex").read_text().count("\\toprule") == 1
    frame = pd.read_csv(results / spec.study / "results.csv")
    assert set(frame["run_id"]) == {v.run_id for v in variants}
    assert (frame["state"] == "completed").all(), frame[["name", "state", "reason"]]
    for v in variants:
        assert store.is_done(store.run_dir(results, v.run_id))
    return frame


@pytest.mark.parametrize("name", FULL)
def test_paper_table_smoke_profile_in_full(name, tmp_path):
    spec = ABLATIONS / name
    code, results, reports = _run(spec, tmp_path)
    assert code == 0
    frame = _check_report(spec, results, reports)
    # trained and evaluated: PSNR and SSIM are numbers, rFID and LPIPS say why they are missing
    assert frame["psnr"].between(5, 60).all() and frame["ssim"].between(-1, 1).all()
    assert frame["rfid_unavailable"].str.startswith("unavailable:").all()
    assert (frame["encoder_params"] > 0).all()
    # a second run skips every completed variant and reuses the records
    code, _, _ = _run(spec, tmp_path)
    assert code == 0


@pytest.mark.parametrize("name", SHORT)
def test_paper_table_smoke_profile_shortened(name, tmp_path, monkeypatch):
    spec = ABLATIONS / name
    if name in PERCEPTUAL:
        _stage_random_vgg_weights(tmp_path / "weights", monkeypatch)
    steps = load_study(spec).profiles["smoke"].get("train.steps")
    sets = [] if steps == 0 or name == "table3.yaml" else ["--set", "train.steps=6"]
    if any("train.stages" in v for v in [load_study(spec).profiles["smoke"], load_study(spec).set]) or any(
        "train.stages" in o for o in load_study(spec).variants.values()
    ):
        sets = []  # stages must add up to train.steps: keep the profile's own short stages
    code, results, reports = _run(spec, tmp_path, *sets)
    assert code == 0
    extra = {"train.steps": 6} if sets else None
    frame = _check_report(spec, results, reports, extra)
    # the fixed DWT latents of Tables 11 and 12 have no learned encoder: 0 parameters
    fixed = {
        v.run_id for v in expand(load_study(spec), "smoke", extra) if v.config.model.encoder.kind in ("dwt", "dwt2")
    }
    assert (frame.loc[~frame["run_id"].isin(fixed), "encoder_params"] > 0).all()
    assert (frame.loc[frame["run_id"].isin(fixed), "encoder_params"] == 0).all()
