"""Reconstructions in every report: evaluation saves the first K images of the evaluation set
and their reconstructions in each run folder (the same images, under the same names, for every
variant), and the report embeds one comparison grid across the variants, which headless
Chromium draws. Two tiny variants (untrained, different decoders) are evaluated for real."""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from study import config, store
from study.config import autoencoder_args
from study.data import eval_sets
from study.evaluation import gallery as galleries
from study.evaluation.evaluate import evaluate
from study.kinds.registry import run_id
from study.measure import metrics
from study.models.autoencoder import build_autoencoder
from study.report import report as report_mod
from study.report.gallery import FIGURE_NAME
from study.store.media import MANIFEST, gallery_dir
from study.studyfile.grid import expand
from study.studyfile.parse import load_study
from study.studyfile.record import study_record
from tests.launch_helpers import write_study

K = 3


def _png(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


@pytest.fixture(scope="module")
def study(tmp_path_factory, one_thread):
    """A two-variant study (GroupNorm vs SMC decoders), each run evaluated for real (PSNR only,
    8 held-out crops at 32 px) with a gallery of K images, then reported."""
    tmp = tmp_path_factory.mktemp("gallery")
    path = write_study(
        tmp,
        "gallery_pair",
        set={"eval.gallery_images": K, "eval.metrics": ["psnr"]},
        variants={"groupnorm": {"model.decoder.norm": "groupnorm"}, "smc": {"model.decoder.norm": "smc"}},
    )
    spec = load_study(path)
    variants = expand(spec)
    root = tmp / "results"
    store.write_index(root, spec.study, variants, **study_record(spec, variants, None))
    folders, pids = {}, {}
    for i, v in enumerate(variants):
        folder = store.init_run(root, v.config, run_id(v.config))
        torch.manual_seed(i)
        ae = build_autoencoder(autoencoder_args(v.config.model))
        pids[v.name] = evaluate(ae, v.config, folder, progress=False)["protocol_id"]
        store.mark_done(folder)
        folders[v.name] = folder
    out = tmp / "reports" / spec.study
    html = report_mod.report(root, spec.study, out)
    return {"variants": variants, "folders": folders, "pids": pids, "out": out, "html": html, "tmp": tmp}


def test_every_variant_shows_the_same_images(study):
    pid = study["pids"]["groupnorm"]
    assert study["pids"]["smc"] == pid  # one protocol for both
    a, b = (gallery_dir(study["folders"][n], pid) for n in ("groupnorm", "smc"))
    names = sorted(p.name for p in a.iterdir())
    assert names == sorted(p.name for p in b.iterdir())
    assert {f"original_{i:03d}.png" for i in range(K)} <= set(names) and "grid.png" in names
    assert store.read_json(a / MANIFEST)["original_sha256"] == store.read_json(b / MANIFEST)["original_sha256"]
    # the originals are the first K images of the evaluation set, pixel for pixel, in both
    cfg = study["variants"][0].config
    ds = eval_sets.evaluation_set(cfg.data, cfg.eval, config.eval_resolution(cfg))
    for i in range(K):
        expected = metrics.to_uint8(ds[i][None])[0].permute(1, 2, 0).numpy()
        np.testing.assert_array_equal(_png(a / f"original_{i:03d}.png"), expected)
        np.testing.assert_array_equal(_png(b / f"original_{i:03d}.png"), expected)
    # the reconstructions are each variant's own; the error map is |x - x_hat| of the saved pair
    assert not np.array_equal(_png(a / "reconstruction_000.png"), _png(b / "reconstruction_000.png"))
    x, y = _png(a / "original_001.png"), _png(a / "reconstruction_001.png")
    np.testing.assert_array_equal(_png(a / "error_001.png"), galleries.error_map(x, y))
    top, left, h, w = galleries.crop_box(32, 32)
    zoomed = _png(a / "zoom_001.png")
    assert zoomed.shape == (32, 32, 3) and (h, w) == (8, 8)
    np.testing.assert_array_equal(zoomed[::4, ::4], y[top : top + h, left : left + w])


def test_a_reused_evaluation_restores_a_missing_gallery(study):
    v = study["variants"][0]
    folder = study["folders"][v.name]
    gallery = gallery_dir(folder, study["pids"][v.name])
    before = _png(gallery / "reconstruction_002.png")
    shutil.rmtree(gallery)
    torch.manual_seed(0)
    record = evaluate(build_autoencoder(autoencoder_args(v.config.model)), v.config, folder, progress=False)
    assert record["reused"] and galleries.is_saved(gallery, K)
    np.testing.assert_array_equal(_png(gallery / "reconstruction_002.png"), before)


def test_the_report_embeds_the_comparison_grid(study):
    out, html = study["out"], study["html"].read_text()
    grid_path = out / "figures" / FIGURE_NAME
    png = grid_path.read_bytes()
    assert "<h2>Reconstructions</h2>" in html
    assert f'src="data:image/png;base64,{base64.b64encode(png).decode()}"' in html
    assert f"](figures/{FIGURE_NAME})" in (out / "report.md").read_text()
    # originals on top, then one row per variant; the top row's first tile is the original
    grid = _png(grid_path)
    original = _png(gallery_dir(study["folders"]["groupnorm"], study["pids"]["groupnorm"]) / "original_000.png")
    scale = 128 // 32
    tile_h = 32 * scale
    assert grid.shape[0] == 3 * (tile_h + 2) + 2  # originals, groupnorm, smc
    x0 = 200 + 2
    tile = grid[2 : 2 + tile_h, x0 : x0 + tile_h]
    np.testing.assert_array_equal(tile[::scale, ::scale], original)
    recon = _png(gallery_dir(study["folders"]["smc"], study["pids"]["smc"]) / "reconstruction_000.png")
    y0 = 2 + 2 * (tile_h + 2)
    np.testing.assert_array_equal(grid[y0 : y0 + tile_h : scale, x0 : x0 + tile_h : scale], recon)


def _browser() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


def _screenshot(browser: str, page: Path, shot: Path, size: str) -> np.ndarray:
    subprocess.run(
        [
            browser,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            "--force-device-scale-factor=1",
            "--force-color-profile=srgb",
            f"--user-data-dir={shot.parent / 'profile'}",
            f"--window-size={size}",
            f"--screenshot={shot}",
            page.resolve().as_uri(),
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    return _png(shot)


def test_headless_chromium_shows_the_grid(study, tmp_path):
    browser = _browser()
    if browser is None:
        if os.environ.get("LITEVAE_REQUIRE_CHROMIUM"):
            pytest.fail("no chromium, chromium-browser or google-chrome on PATH")
        pytest.skip("no chromium, chromium-browser or google-chrome on PATH (.ci/run installs chromium)")
    shot = _screenshot(browser, study["html"], tmp_path / "report.png", "1280,4000")
    gray = shot.mean(axis=2)
    assert gray.std() > 10 and (gray < 128).mean() > 0.002  # not blank: text and pictures drawn
    # the grid's <img> exactly as report.html embeds it, alone on a page: Chromium draws its pixels
    html = study["html"].read_text()
    src = base64.b64encode((study["out"] / "figures" / FIGURE_NAME).read_bytes()).decode()
    start = html.index('<img alt="Reconstructions')
    tag = html[start : html.index(">", html.index(src, start)) + 1]
    alone = tmp_path / "grid.html"
    alone.write_text(f'<!DOCTYPE html><html><body style="margin:0;background:#fff">{tag}</body></html>')
    grid = _png(study["out"] / "figures" / FIGURE_NAME)
    drawn = _screenshot(browser, alone, tmp_path / "grid.png", f"{grid.shape[1] + 100},{grid.shape[0] + 100}")
    region = drawn[: grid.shape[0], : grid.shape[1]].astype(int)
    assert np.abs(region - grid.astype(int)).mean() < 2.0
    assert drawn[grid.shape[0] + 10 :, :].min() > 250  # nothing but the grid on the page


def test_error_maps_have_their_colour_bar(study):
    from matplotlib import colormaps

    from study.report.gallery import ERRORS_NAME

    out, html = study["out"], study["html"].read_text()
    png = (out / "figures" / ERRORS_NAME).read_bytes()
    assert f'src="data:image/png;base64,{base64.b64encode(png).decode()}"' in html
    grid = _png(out / "figures" / ERRORS_NAME)
    tile_h = 32 * (128 // 32)
    # originals, then each variant's error map exactly as its gallery saved it
    error = _png(gallery_dir(study["folders"]["smc"], study["pids"]["smc"]) / "error_000.png")
    y0, x0 = 2 + 2 * (tile_h + 2), 200 + 2
    np.testing.assert_array_equal(grid[y0 : y0 + tile_h : 4, x0 : x0 + tile_h : 4], error)
    # under the tiles, a bar from the scale's bottom colour (0) to its top (64 grey levels)
    bar = grid[3 * (tile_h + 2) + 2 + 10, x0:].astype(int)
    inferno = (colormaps["inferno"]([0, 255])[:, :3] * 255).round()
    coloured = bar[np.abs(bar - 255).sum(axis=1) > 30]  # leave out the white margins
    assert np.abs(coloured[0] - inferno[0]).max() <= 3 and np.abs(coloured[-1] - inferno[1]).max() <= 3
    assert ERRORS_NAME in (out / "report.md").read_text()


def test_row_labels_are_wrapped_whole():
    from study.report.gallery import LABEL_WIDTH, _font, grid_png, wrap_label

    font = _font()
    label = "norm=groupnorm,levels=1-2-3,aggregator=vit,shared_extractors=true (seed 0)"
    lines = wrap_label(label, font, LABEL_WIDTH - 10)
    assert len(lines) > 1 and all(font.getlength(line) <= LABEL_WIDTH - 10 for line in lines)
    assert "".join(lines).replace(" ", "") == label.replace(" ", "")  # every character kept
    assert lines[-1].endswith("(seed 0)") and "(seed" in lines[-1]  # "(seed 0)" is not split
    assert wrap_label("x" * 100, font, 60) and "".join(wrap_label("x" * 100, font, 60)) == "x" * 100
    # a label taller than a tile makes its line taller, never cut
    tile = np.zeros((32, 32, 3), np.uint8)
    short = _png_bytes(grid_png([("a", [tile])], (32, 32), 1))
    tall = _png_bytes(grid_png([(" ".join(["word"] * 80), [tile])], (32, 32), 1))
    assert short.shape[0] == 128 + 4 and tall.shape[0] > short.shape[0]


def _png_bytes(data: bytes) -> np.ndarray:
    import io

    with Image.open(io.BytesIO(data)) as im:
        return np.asarray(im.convert("RGB"))
