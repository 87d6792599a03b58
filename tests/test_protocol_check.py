"""ablations/protocol_check.yaml: the public SD VAEs evaluated as they are (train.steps 0,
model.init) beside the published numbers of results/paper/reference_autoencoders.csv. The smoke
profile runs on a small diffusers checkpoint the test makes; its report shows the reference
numbers, each with its source, beside ours."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pytest

pytest.importorskip("diffusers")

import run_study
from study.paper import reference_autoencoders
from study.report.references import ReferenceLabelError, split_label
from study.studyfile.grid import expand
from study.studyfile.parse import load_study, parse_sets
from tests.test_init_e2e import save_diffusers

pytestmark = pytest.mark.usefixtures("one_thread")
SPEC = Path(__file__).resolve().parent.parent / "ablations" / "protocol_check.yaml"


def test_the_study_names_reference_rows_and_needs_real_checkpoints(tmp_path, capsys):
    spec = load_study(SPEC)
    refs = reference_autoencoders()
    pairs = set(zip(refs["model"], refs["dataset"]))
    labels = [split_label(label) for label in spec.paper.rows.values()]
    assert spec.paper.table == "reference" and len(labels) == 6
    assert sum(pair in pairs for pair in labels) == 5  # sd-vae-ft-ema has no published ImageNet row
    assert run_study.main(["plan", str(SPEC)]) == 2  # the placeholders are not checkpoints
    assert "model.init" in capsys.readouterr().err
    vae = save_diffusers(tmp_path / "vae")
    variants = expand(spec, None, parse_sets(SPEC, [f"model.init={vae}"]))
    # the eval section is not identity: data.name keeps the two sets' runs apart
    assert len(variants) == 2 and {v.config.eval.num_images for v in variants} == {5000, 50000}
    assert {v.config.eval.name for v in variants} == {"coco2017-val", "imagenet-val"}
    with pytest.raises(ReferenceLabelError):
        split_label("sd-vae-ft-mse")


def test_smoke_profile_reports_the_reference_numbers_beside_ours(tmp_path):
    vae = save_diffusers(tmp_path / "vae")
    results, reports = tmp_path / "results", tmp_path / "reports"
    code = run_study.main(
        [
            "run",
            str(SPEC),
            "--profile",
            "smoke",
            "--set",
            f"model.init={vae}",
            "--executor",
            "debug",
            "--results",
            str(results),
            "--reports",
            str(reports),
            "--poll",
            "0.1",
        ]
    )
    assert code == 0
    frame = pd.read_csv(results / "protocol_check" / "results.csv")
    assert len(frame) == 2 and (frame["state"] == "completed").all()
    md = (reports / "protocol_check" / "report.md").read_text()
    assert "## Published numbers beside ours" in md and "not a LiteVAE table" in md
    ours = frame.set_index("name")["psnr"]
    lines = md.split("## Published numbers beside ours", 1)[1].split("\n## ", 1)[0].splitlines()
    # the model card's sd-vae-ft-mse on COCO: rFID 4.70, PSNR 24.5, SSIM 0.71, beside our PSNR
    row = next(line for line in lines if line.startswith("| coco-ft-mse ") and "model card" in line)
    assert "4.70 / —" in row and f"24.50 / {ours['coco-kl-f8']:.2f}" in row and "0.710 / " in row
    assert "unknown" in row
    imagenet = [
        line for line in lines if line.startswith("| imagenet-ft-mse ") and "lavinal712/AutoencoderKL README" in line
    ]
    assert len(imagenet) == 1 and "another harness" in imagenet[0]
    assert f"26.91 / {ours['imagenet-kl-f8']:.2f}" in imagenet[0]  # its own protocol, not COCO's
    assert re.search(r"^\| imagenet-ft-ema .*no published row", md, re.M)
    _check_published_under_conventions(md, ours)


def _check_published_under_conventions(md: str, ours: pd.Series) -> None:
    """The Conventions section: each published number beside ours under its source's convention
    (study/report/conventions.py); a source that does not state one says so in the cell."""
    section = md.split("## Conventions", 1)[1].split("\n## ", 1)[0]
    rows = [[c.strip() for c in line.strip("|").split(" | ")] for line in section.splitlines() if line.startswith("|")]
    header = next(r for r in rows if r[:3] == ["Variant", "Source", "Model"])
    table = {(r[0], r[1], r[3]): dict(zip(header, r)) for r in rows[rows.index(header) + 2 :] if len(r) == len(header)}
    card = table[("coco-ft-mse", "stabilityai/sd-vae-ft-mse model card", "PSNR")]
    assert card["Published"] == "24.50" and card["Ours (this protocol)"] == f"{ours['coco-kl-f8']:.2f}"
    assert card["Ours under its convention"] == f"convention not stated; psnr: {ours['coco-kl-f8']:.2f}"
    assert card["Convention"].startswith("SD-VAE model cards (not stated, posterior not stated")
    harness = table[("imagenet-ft-mse", "lavinal712/AutoencoderKL README", "PSNR")]
    assert harness["Published"] == "26.91" and harness["Ours under its convention"] == f"≈ {ours['imagenet-kl-f8']:.2f}"
    assert "posterior sample, here mean" in harness["Convention"]  # their eval.py samples the posterior
    ssim = table[("imagenet-ft-mse", "lavinal712/AutoencoderKL README", "SSIM")]["Ours under its convention"]
    assert ssim.startswith("not computed here: not ours: scikit-image with a uniform 11x11 window")
    lpips = table[("imagenet-ft-mse", "lavinal712/AutoencoderKL README", "LPIPS")]["Ours under its convention"]
    assert lpips == "not measured (add lpips@vgg to eval.metrics)"  # the smoke profile measures PSNR, SSIM
    litevae = table[("imagenet-kl-f8", "RGenDiff/open-litevae README", "SSIM")]["Ours under its convention"]
    assert litevae.startswith("convention not stated; ssim: ")
