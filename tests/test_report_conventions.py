"""The report's Conventions section (issue 20.4): ablations/smoke.yaml run for real (one variant,
two training steps, four evaluation images, generated Inception and LPIPS weights), its report
shows PSNR, SSIM and LPIPS under several named sources' conventions, and each number equals what
that source's own library call gives on the gallery PNGs the evaluation saved (the originals and
reconstructions exactly as the metrics saw them): scikit-image's ``peak_signal_noise_ratio`` /
``structural_similarity`` and an independently built ``lpips.LPIPS``. The calls are written out
here per source, from docs/conventions.md, not read from study/report/conventions.py."""

from __future__ import annotations

import re
from pathlib import Path

import lpips
import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

import run_study
from study import store
from study.config import metric_specs
from study.evaluation import gallery as galleries
from study.report.conventions import CONVENTIONS, NOT_STATED, preprocess_name
from study.store.media import gallery_dir
from study.studyfile.grid import expand
from study.studyfile.parse import load_study, parse_sets
from tests.metric_helpers import independent_lpips

pytest_plugins = ["tests.metric_fixtures"]
pytestmark = pytest.mark.usefixtures("one_thread")

SMOKE = Path(__file__).resolve().parent.parent / "ablations" / "smoke.yaml"
N = 4  # evaluation images, all of them in the gallery


def _psnr(o: np.ndarray, r: np.ndarray) -> float:
    return float(peak_signal_noise_ratio(o, r, data_range=255))


def _gaussian_ssim(o: np.ndarray, r: np.ndarray) -> float:
    """Our SSIM, torchmetrics' window and constants (LightningDiT, DC-AE), as scikit-image computes it."""
    kw = {"gaussian_weights": True, "sigma": 1.5, "use_sample_covariance": False, "data_range": 255}
    return float(structural_similarity(o, r, channel_axis=-1, **kw))


def _lpips(model: torch.nn.Module, o: np.ndarray, r: np.ndarray) -> float:
    with torch.no_grad():
        return float(model(lpips.im2tensor(o), lpips.im2tensor(r)))


# Each source's call, per image, on uint8 H x W x 3 arrays (docs/conventions.md, "Metrics and reductions").
PER_IMAGE = {
    ("LightningDiT", "PSNR"): _psnr,  # 20 log10(255 / sqrt(MSE)) per image
    ("LightningDiT", "SSIM"): _gaussian_ssim,
    ("LlamaGen", "PSNR"): lambda o, r: peak_signal_noise_ratio(o / 255.0, r / 255.0, data_range=1.0),  # on [0, 1]
    ("LlamaGen", "SSIM"): lambda o, r: structural_similarity(o / 255.0, r / 255.0, data_range=2.0, channel_axis=-1),
    ("MAETok", "SSIM"): lambda o, r: structural_similarity(o / 255.0, r / 255.0, data_range=2.0, channel_axis=-1),
    ("FlowMo", "SSIM"): lambda o, r: structural_similarity(o / 255.0, r / 255.0, data_range=1.0, channel_axis=-1),
    ("DC-AE", "PSNR"): _psnr,
    ("DC-AE", "SSIM"): _gaussian_ssim,
    ("LDM", "PSNR"): _psnr,  # not stated: the nearest of ours, labelled
}
LPIPS_NET = {"LightningDiT": "vgg", "FlowMo": "alex", "DC-AE": "alex", "LDM": "vgg"}
DIGITS = {"PSNR": 2, "SSIM": 3, "LPIPS": 3}


@pytest.fixture(scope="module")
def smoke(tmp_path_factory, inception_file, alexnet_file, vgg16_file):
    from study.measure import weights as weight_files

    tmp = tmp_path_factory.mktemp("conventions_report")
    spec = load_study(SMOKE)
    results, reports = tmp / "results", tmp / "reports"
    sets = ["train.steps=2", f"eval.num_images={N}", f"eval.batch_size={N}", f"eval.gallery_images={N}"]
    sets += ["train.ema_decay=0", "eval.weights=model"]  # two steps: the weights, not their EMA
    variant = expand(spec, None, parse_sets(SMOKE, sets))[0]  # the first seed of the first variant
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(weight_files.WEIGHTS_ENV, str(tmp / "no-weights"))
        for name, path in (("inception", inception_file), ("alexnet", alexnet_file), ("vgg16", vgg16_file)):
            mp.setenv(weight_files.REGISTRY[name].override_env, str(path))
        args = ["run", str(SMOKE), "--executor", "debug", "--only", variant.run_id, "--poll", "0.1"]
        args += ["--results", str(results), "--reports", str(reports)]
        code = run_study.main(args + [x for s in sets for x in ("--set", s)])
    assert code == 0
    frame = pd.read_csv(results / spec.study / "results.csv")
    run = frame[frame["run_id"] == variant.run_id].iloc[0]
    assert run["state"] == "completed"
    saved = gallery_dir(store.run_dir(results, run["run_id"]), run["eval_id"])

    def read(kind: str, i: int) -> np.ndarray:
        return np.array(Image.open(saved / galleries.file_name(kind, i)).convert("RGB"))

    pairs = [(read("original", i), read("reconstruction", i)) for i in range(N)]
    nets = {net: independent_lpips(net, f) for net, f in (("alex", alexnet_file), ("vgg", vgg16_file))}
    out = reports / spec.study
    return {"variant": variant.name, "md": (out / "report.md").read_text(), "out": out, "pairs": pairs, "nets": nets}


def _section_tables(md: str) -> list[list[dict[str, str]]]:
    """The markdown tables of the Conventions section, as lists of rows."""
    text = md.split("## Conventions", 1)[1].split("\n## ", 1)[0]
    tables, current = [], []
    for line in text.splitlines() + [""]:
        if line.startswith("|"):
            current.append([c.strip().replace("\\|", "|") for c in line.strip().strip("|").split(" | ")])
        elif current:
            header, *body = current
            tables.append([dict(zip(header, row)) for row in body[1:]])
            current = []
    return tables


def _number(cell: str) -> tuple[float, float | None]:
    """``"≈ 24.12 ± 3.10"`` / ``"convention not stated; psnr: 24.12"`` -> (24.12, 3.10)."""
    found = re.findall(r"-?\d+\.\d+", cell.split(":")[-1])
    return float(found[0]), (float(found[1]) if len(found) > 1 else None)


def _checked(source: str, metric: str) -> bool:
    """Whether the test computes this source's number itself."""
    return (
        (source, metric) in PER_IMAGE
        or (source, metric) == ("FlowMo", "PSNR")
        or (metric == "LPIPS" and source in LPIPS_NET)
    )


def _reference(smoke, source: str, metric: str) -> tuple[float, list[float]]:
    """The source's number computed with its library on the saved PNGs (mean, per-image values)."""
    pairs = smoke["pairs"]
    if (source, metric) == ("FlowMo", "PSNR"):  # one PSNR of the stacked images (FlowMo's batch PSNR)
        stacked = np.stack([o for o, _ in pairs]), np.stack([r for _, r in pairs])
        return float(peak_signal_noise_ratio(*stacked, data_range=255)), []
    if metric == "LPIPS":
        values = [_lpips(smoke["nets"][LPIPS_NET[source]], o, r) for o, r in pairs]
    else:
        values = [float(PER_IMAGE[(source, metric)](o, r)) for o, r in pairs]
    return float(np.mean(values)), values


def test_the_report_shows_psnr_ssim_lpips_under_three_named_conventions_equal_to_the_libraries(smoke):
    md, name = smoke["md"], smoke["variant"]
    assert "## Conventions" in md
    mapping, values = _section_tables(md)[:2]
    assert [r["Source"] for r in mapping][0] == "LDM (the paper's)" and {r["Source"] for r in values} >= {"LDM"}
    checked: dict[str, set[str]] = {}
    for row in values:
        source, metric, cell = row["Source"], row["Metric"], row[name]
        if not _checked(source, metric):
            continue
        if source == "LDM" and metric == "LPIPS":
            assert cell.startswith(NOT_STATED) and "lpips@vgg" in cell  # PSIM's net: not stated, labelled
        mean, spread = _number(cell)
        ref, per_image = _reference(smoke, source, metric)
        assert mean == pytest.approx(ref, abs=0.5 * 10 ** -DIGITS[metric] + 1e-9), (source, metric, cell)
        if CONVENTIONS[source].spread and metric in ("PSNR", "LPIPS"):  # LDM prints mean +- std over images
            assert spread == pytest.approx(np.std(per_image), abs=0.5 * 10 ** -DIGITS[metric] + 1e-9), cell
        checked.setdefault(source, set()).add(metric)
    full = [s for s, metrics in checked.items() if metrics >= {"PSNR", "SSIM", "LPIPS"}]
    assert len(full) >= 3, checked  # LightningDiT, FlowMo, DC-AE
    # the conventions give different numbers from the same reconstructions
    by = {(r["Source"], r["Metric"]): _number(r[name])[0] for r in values if (r["Source"], r["Metric"]) in PER_IMAGE}
    assert by[("LlamaGen", "SSIM")] != by[("LightningDiT", "SSIM")] != by[("FlowMo", "SSIM")]


def test_the_numbers_behind_the_section_are_the_libraries_unrounded(smoke):
    numbers = pd.read_csv(smoke["out"] / "tables" / "conventions.csv")
    numbers = numbers[numbers["variant"] == smoke["variant"]].set_index(["source", "metric"])
    heading = {"psnr": "PSNR", "ssim": "SSIM", "lpips": "LPIPS"}
    for (source, metric), row in numbers.iterrows():
        key = (source, heading[metric])
        if _checked(*key):
            assert row["mean"] == pytest.approx(_reference(smoke, *key)[0], abs=1e-6), key


def test_the_mapping_names_where_this_evaluation_differs_and_unknowns_say_so(smoke):
    mapping = {r["Source"]: r for r in _section_tables(smoke["md"])[0]}
    # the sample photos' grid crops are no source's resize: every source with a stated one says so
    assert "here sample photos' grid crops" in mapping["LlamaGen"]["Differs here"]
    assert "posterior sample, here mean" in mapping["LightningDiT"]["Differs here"]
    assert mapping["SD-VAE model cards"]["PSNR"].startswith("not stated")
    assert mapping["LlamaGen"]["LPIPS"] == "not reported" and mapping["LlamaGen"]["SSIM"] == "ssim@range2"
    assert mapping["AutoencoderKL (lavinal712)"]["SSIM"].startswith("not ours: ")
    assert preprocess_name("adm: PIL BOX halving ...") == "adm"


def test_every_convention_names_registry_metrics_and_eval_metrics_is_not_identity():
    for conv in CONVENTIONS.values():
        for metric in ("rfid", "psnr", "ssim", "lpips"):
            rule = conv.rule(metric)
            assert rule.metric is None or rule.metric in metric_specs.names(), (conv.name, rule)
            assert rule.status in ("exact", "nearest") or rule.label().startswith(("not stated", "not ", "not ours"))
        assert conv.files
    spec = load_study(SMOKE)
    assert "lpips@vgg" in spec.set["eval.metrics"] and "ssim@range2" in spec.set["eval.metrics"]
    plain = expand(spec, None, parse_sets(SMOKE, ["eval.metrics=[psnr]"]))
    assert [v.run_id for v in expand(spec)] == [v.run_id for v in plain]  # eval is not a run's identity
